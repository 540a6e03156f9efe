"""The agents' durable state on SQLite and on PostgreSQL (tests/postgres.py starts a throwaway server): the agent
catalog (agents, action groups, knowledge-base links, versions and aliases, the definition the runtime reads and
keeps built while the store says it is unchanged), the session store (one read, one upsert; SQLite's direct
connection and the SQLAlchemy path alike) and agent memory (summaries, paging, claiming expired sessions)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from outcrop import errors, store
from outcrop.agents.catalog import AgentCatalog
from outcrop.agents.memory import SqlMemory, Summary
from outcrop.agents.sessions import AgentSession, MemoryLink, Pending, PendingCall, SqlSessions
from outcrop.conversation import Message, Text, ToolUse
from outcrop.knowledge.retrieval import Passage

INSTRUCTION = "You help the customers of a hardware shop with their orders."
ORDERS = {"actionGroupName": "orders", "actionGroupState": "ENABLED",
          "actionGroupExecutor": {"customControl": "RETURN_CONTROL"},
          "functionSchema": {"functions": [{"name": "get_status",
                                            "parameters": {"orderId": {"type": "string", "required": True}}}]}}  # fmt: skip


@pytest.fixture
def engine(database_url: str) -> Any:
    made = store.connect(database_url)
    yield made
    made.dispose()


def _agent(catalog: AgentCatalog, **extra: Any) -> str:
    made = catalog.create({"agentName": f"shop-{uuid.uuid4().hex[:8]}", "foundationModel": "test.chat-v1:0",
                           "instruction": INSTRUCTION, **extra})  # fmt: skip
    return str(made.id)


def test_catalog_definitions_versions_and_aliases(engine: Any) -> None:
    catalog = AgentCatalog(engine)
    memory = {"enabledMemoryTypes": ["SESSION_SUMMARY"], "storageDays": 7,
              "sessionSummaryConfiguration": {"maxRecentSessions": 3}}  # fmt: skip
    agent_id = _agent(catalog, memoryConfiguration=memory)
    catalog.create_group(agent_id, ORDERS, None)
    catalog.associate(agent_id, {"knowledgeBaseId": "KB00000001", "description": "manuals"})
    with pytest.raises(errors.InvalidRequest, match="not been prepared"):
        catalog.definition(agent_id, "TSTALIASID")
    assert catalog.set_status(agent_id, "PREPARED").status == "PREPARED"

    draft = catalog.definition(agent_id, "TSTALIASID")
    assert draft.version == "DRAFT" and draft.instruction == INSTRUCTION
    assert [g.name for g in draft.action_groups] == ["orders"]
    assert [f.name for f in draft.action_groups[0].functions] == ["get_status"]
    assert [k.knowledge_base_id for k in draft.knowledge_bases] == ["KB00000001"]
    assert (draft.memory_enabled, draft.memory_storage_days, draft.memory_recent_sessions) == (True, 7, 3)
    # kept built while the store says nothing changed (on SQLite the event loop may ask without a thread)
    assert catalog.definition(agent_id, "TSTALIASID") is draft
    kept = catalog.kept_definition(agent_id, "TSTALIASID")
    assert kept is (draft if engine.dialect.name == "sqlite" else None)

    alias = catalog.create_alias(agent_id, {"agentAliasName": "live"})
    assert alias.routing == ({"agentVersion": "1"},)
    live = catalog.definition(agent_id, alias.id)
    assert live.version == "1" and [g.name for g in live.action_groups] == ["orders"]

    # a change to the DRAFT reaches the test alias once the agent is prepared again (the kept definition is
    # dropped, and built from the copy PrepareAgent made until then); version 1 stays as it was
    catalog.update(agent_id, {"agentName": f"renamed-{uuid.uuid4().hex[:6]}", "foundationModel": "test.chat-v1:0",
                              "instruction": "Answer briefly."})  # fmt: skip
    catalog.create_group(agent_id, {**ORDERS, "actionGroupName": "refunds"}, None)
    unprepared = catalog.definition(agent_id, "TSTALIASID")
    assert unprepared is not draft and unprepared.instruction == INSTRUCTION
    assert [g.name for g in unprepared.action_groups] == ["orders"]
    catalog.set_status(agent_id, "PREPARED")
    changed = catalog.definition(agent_id, "TSTALIASID")
    assert changed.instruction == "Answer briefly." and changed.version == "DRAFT"
    assert [g.name for g in changed.action_groups] == ["orders", "refunds"]
    assert catalog.definition(agent_id, alias.id).instruction == INSTRUCTION
    assert [v.version for v in catalog.list_versions(agent_id, 10, None).items] == ["DRAFT", "1"]

    with pytest.raises(errors.NotFound):
        catalog.definition(agent_id, "NOSUCHALIA")
    with pytest.raises(errors.NotFound):
        catalog.definition("AAAAAAAAAA", "TSTALIASID")
    catalog.delete_alias(agent_id, alias.id)
    with pytest.raises(errors.NotFound):
        catalog.definition(agent_id, alias.id)
    first = catalog.list_agents(1, None)
    assert len(first.items) == 1 and first.next_token is None
    catalog.delete(agent_id)
    with pytest.raises(errors.NotFound):
        catalog.definition(agent_id, "TSTALIASID")


def _session_state(s: AgentSession) -> None:
    s.attributes = {"tier": "gold"}
    s.prompt_attributes = {"today": "Monday"}
    s.turns.append(("Where is A1?", "Shipped."))
    plan = (Message("user", (Text("Where is B7?"),)), Message("assistant", (ToolUse("t1", "orders__get_status",
                                                                                       {"orderId": "B7"}),)))  # fmt: skip
    s.pending = Pending("inv-1", "Where is B7?", plan, (PendingCall("t1", "orders", "get_status"),),
                        (Passage("A passage.", {"type": "S3"}, {"k": "v"}, 0.5),), 1)  # fmt: skip


@pytest.mark.parametrize("direct", [True, False])
def test_sessions_round_trip(engine: Any, direct: bool) -> None:
    if direct and engine.dialect.name != "sqlite":
        pytest.skip("the direct connection is SQLite's")

    async def run() -> None:
        sessions = SqlSessions(engine)
        if not direct:
            sessions._file = None  # the SQLAlchemy path (PostgreSQL's, and SQLite's when the database is locked)
        sid = str(uuid.uuid4())
        fresh = await sessions.open("AGENT00001", sid, "ada")
        assert fresh.new and fresh.turns == []
        _session_state(fresh)
        await sessions.save(fresh, 600)
        back = await sessions.open("AGENT00001", sid, "ada")
        assert not back.new
        assert (back.attributes, back.prompt_attributes, back.turns) == ({"tier": "gold"}, {"today": "Monday"},
                                                                         [("Where is A1?", "Shipped.")])  # fmt: skip
        assert back.pending == fresh.pending
        with pytest.raises(errors.AccessDenied):
            await sessions.open("AGENT00001", sid, "bob")
        back.turns.append(("Thanks", "You're welcome."))
        back.pending = None
        await sessions.save(back, 600)  # the upsert of a session that exists
        again = await sessions.open("AGENT00001", sid, "ada")
        assert len(again.turns) == 2 and again.pending is None
        await sessions.end(again)
        assert (await sessions.open("AGENT00001", sid, "ada")).new

        # an expired session is gone: its id starts a new one (for another caller too), which replaces the row
        old = await sessions.open("AGENT00001", "expiring", "ada")
        old.turns.append(("q", "a"))
        await sessions.save(old, -1)
        newer = await sessions.open("AGENT00001", "expiring", "bob")
        assert newer.new and newer.turns == []
        await sessions.save(newer, 600)
        assert (await sessions.open("AGENT00001", "expiring", "bob")).principal == "bob"

    asyncio.run(run())


def test_memory_summaries_and_expired_sessions(engine: Any) -> None:
    memory, sessions = SqlMemory(engine), SqlSessions(engine)
    now = datetime.now(UTC)
    for i in range(3):
        start = now - timedelta(hours=3 - i)
        memory.add(
            "AGENT00001", "ada", Summary("m-1", f"s{i}", f"summary {i}", start, start + timedelta(minutes=5)), 30
        )
    memory.add("AGENT00001", "bob", Summary("m-1", "b0", "bob's", now, now), 30)
    memory.add("AGENT00001", "ada", Summary("m-2", "x0", "other memory", now, now), 30)
    old = now - timedelta(days=40)
    memory.add("AGENT00001", "ada", Summary("m-1", "old", "expired", old, old), 30)  # storageDays passed
    assert memory.recent("AGENT00001", "m-1", "ada", 2) == ("summary 1", "summary 2")  # oldest first
    first, token = memory.page("AGENT00001", "m-1", "ada", 2, None)
    assert [s.session_id for s in first] == ["s2", "s1"] and token is not None
    rest, end = memory.page("AGENT00001", "m-1", "ada", 2, token)
    assert [s.session_id for s in rest] == ["s0"] and end is None
    assert rest[0].session_start.tzinfo is not None
    memory.add("AGENT00001", "ada", Summary("m-1", "s0", "summary 0 again", now - timedelta(hours=3), now), 30)
    assert memory.recent("AGENT00001", "m-1", "ada", 5)[0] == "summary 0 again"  # one summary a session
    memory.delete("AGENT00001", "ada", "m-1", "s1")
    assert [s.session_id for s in memory.page("AGENT00001", "m-1", "ada", 10, None)[0]] == ["s2", "s0"]
    memory.purge(now)
    memory.delete("AGENT00001", "ada", None, None)
    assert memory.page("AGENT00001", "m-1", "ada", 10, None)[0] == []
    assert memory.page("AGENT00001", "m-2", "ada", 10, None)[0] == []
    assert [s.text for s in memory.page("AGENT00001", "m-1", "bob", 10, None)[0]] == ["bob's"]

    async def sessions_of_a_memory() -> None:
        link = MemoryLink("m-1", "test.chat-v1:0", 30, now.isoformat())
        for sid, ttl, linked in (("gone", -1, True), ("plain", -1, False), ("live", 600, True)):
            s = await sessions.open("AGENT00001", sid, "ada")
            s.turns.append(("q", "a"))
            s.memory = link if linked else None
            await sessions.save(s, ttl)

    asyncio.run(sessions_of_a_memory())
    claimed = sessions.expired(datetime.now(UTC))
    assert [(s.session_id, s.memory) for s in claimed] == [("gone", MemoryLink("m-1", "test.chat-v1:0", 30,
                                                                                now.isoformat()))]  # fmt: skip
    assert claimed[0].expires is not None and claimed[0].turns == [("q", "a")]
    assert sessions.expired(datetime.now(UTC)) == []  # claimed once
    sessions._purge(datetime.now(UTC))  # the expired session of no memory goes; the live one stays
    t = sessions.table
    with engine.connect() as db:
        left = sorted(r.session_id for r in db.execute(t.select()))
    assert left == ["live"]
