"""Agents, their versions and aliases, kept in the store (SQLite or PostgreSQL alike); action groups and
knowledge-base links are in parts.py, versions and aliases in aliases.py. `definition(agent_id, alias_id)` is what
the runtime reads.

Bodies arrive checked (outcrop/agents/resources.py); this module keeps them, hands out ids, pages lists and keeps
clientToken promises (a create retried with the same token and request returns what the first made; with another
request it is a ConflictException).

Statuses, as on Bedrock: a new or changed DRAFT is NOT_PREPARED; PrepareAgent marks it PREPARING while the route
checks it is complete, then PREPARED (or back to NOT_PREPARED with the reasons). An alias created or updated without
a routingConfiguration snapshots the PREPARED DRAFT as the next numbered version; TSTALIASID routes to the DRAFT
as it was last prepared: PrepareAgent keeps a copy of it (agent, action groups, knowledge-base links) under the
version key `PREPARED_COPY`, never listed or served as a version, so a change made since (which leaves the agent
NOT_PREPARED) is not served until the agent is prepared again, as on Bedrock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Row, and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from outcrop import errors
from outcrop.agents import definition as defs
from outcrop.agents.aliases import PREPARED_COPY, AgentAliases
from outcrop.agents.resources import (
    DEFAULT_ROLE,
    DRAFT,
    TEST_ALIAS,
    Agent,
    agent_fields,
)
from outcrop.knowledge.resources import request_hash
from outcrop.store import tags
from outcrop.store.direct import DirectSqlite
from outcrop.store.paging import Page, after, aware, dump, loads, new_id, now, page
from outcrop.store.schema import (
    agent_action_groups,
    agent_aliases,
    agent_knowledge_bases,
    agent_versions,
    agents,
    resource_tags,
)

MAX_KEPT_DEFINITIONS = 256  # agent definitions kept built for InvokeAgent (the oldest made goes first)
_STAMP = ("SELECT a.updated_at, a.status, a.prepared_at, al.updated_at, "
          "(SELECT count(*) FROM agent_versions WHERE agent_id = a.id) FROM agents a LEFT JOIN agent_aliases al "
          "ON al.agent_id = a.id AND al.id = ? WHERE a.id = ?")  # fmt: skip


class AgentCatalog(AgentAliases):
    """`lambda_urls`: the server owner's map of Lambda ARNs to local HTTP endpoints ([server.agent_lambda_urls])."""

    def __init__(self, engine: Engine, lambda_urls: Mapping[str, str] | None = None) -> None:
        self.engine = engine
        self.lambda_urls = dict(lambda_urls or {})
        self._definitions: dict[tuple[str, str], tuple[tuple[Any, ...], defs.AgentDefinition]] = {}
        self._direct = DirectSqlite.of(engine)

    # --- agents ------------------------------------------------------------------------------------

    def _agent(self, row: Row[Any]) -> Agent:
        return Agent(row.id, row.name, DRAFT, json.loads(row.spec), row.status, tuple(loads(row.failure_reasons) or ()),
                     aware(row.created_at), aware(row.updated_at),
                     aware(row.prepared_at) if row.prepared_at else None,
                     str(row.versions) if row.versions else DRAFT)  # fmt: skip

    def get(self, agent_id: str) -> Agent:
        with self.engine.connect() as db:
            row = db.execute(select(agents).where(agents.c.id == agent_id)).first()
        if row is None:
            raise errors.NotFound(f"The agent '{agent_id}' was not found.")
        return self._agent(row)

    def create(self, body: dict[str, Any]) -> Agent:
        token, digest = body.get("clientToken"), request_hash(body)
        tags.check_count(len(body.get("tags") or {}))
        agent_id, at = new_id(), now()
        with self.engine.begin() as db:
            if token is not None:
                done = db.execute(select(agents).where(agents.c.client_token == token)).first()
                if done is not None:
                    if done.request_hash != digest:
                        raise errors.Conflict("clientToken was already used for a different CreateAgent request.")
                    return self._agent(done)
            self._name_free(db, body["agentName"])
            try:
                db.execute(insert(agents).values(
                    id=agent_id, name=body["agentName"], spec=json.dumps(agent_fields(body)), status="NOT_PREPARED",
                    client_token=token, request_hash=digest, created_at=at, updated_at=at,
                ))  # fmt: skip
                tags.write(db, f"agent/{agent_id}", body.get("tags"))
            except IntegrityError:
                raise errors.Conflict(f"An agent named '{body['agentName']}' (or with this clientToken) was just "
                                      "created by another request.") from None  # fmt: skip
        return self.get(agent_id)

    @staticmethod
    def _name_free(db: Any, name: str, agent_id: str | None = None) -> None:
        taken = db.execute(select(agents.c.id).where(agents.c.name == name)).scalar()
        if taken is not None and taken != agent_id:
            raise errors.Conflict(f"An agent named '{name}' already exists ({taken}).")

    def update(self, agent_id: str, body: dict[str, Any]) -> Agent:
        self.get(agent_id)
        with self.engine.begin() as db:
            self._name_free(db, body["agentName"], agent_id)
            db.execute(update(agents).where(agents.c.id == agent_id).values(
                name=body["agentName"], spec=json.dumps(agent_fields(body)), status="NOT_PREPARED",
                failure_reasons=None, updated_at=now(),
            ))  # fmt: skip
        return self.get(agent_id)

    def changed(self, db: Any, agent_id: str) -> None:
        """The DRAFT changed (an action group, a knowledge base): it must be prepared again."""
        db.execute(update(agents).where(agents.c.id == agent_id).values(status="NOT_PREPARED", updated_at=now()))

    def list_agents(self, size: int, token: str | None) -> Page:
        query = select(agents)
        cursor = after(agents.c.created_at, agents.c.id, token)
        if cursor is not None:
            query = query.where(cursor)
        query = query.order_by(agents.c.created_at, agents.c.id).limit(size + 1)
        with self.engine.connect() as db:
            return page(list(db.execute(query)), size, self._agent, "id")

    def delete(self, agent_id: str) -> Agent:
        agent = self.get(agent_id)
        with self.engine.begin() as db:
            for table in (agent_aliases, agent_action_groups, agent_knowledge_bases, agent_versions):
                db.execute(delete(table).where(table.c.agent_id == agent_id))
            db.execute(delete(resource_tags).where(resource_tags.c.resource.like(f"agent%/{agent_id}%")))
            db.execute(delete(agents).where(agents.c.id == agent_id))
        return agent

    def set_status(self, agent_id: str, status: str, reasons: list[str] | None = None) -> Agent:
        """PREPARING, then PREPARED (stamped, and the DRAFT copied as the test alias's) or NOT_PREPARED with the
        reasons preparing found."""
        values: dict[str, Any] = {"status": status, "failure_reasons": dump(reasons or None)}
        if status == "PREPARED":
            values["prepared_at"] = now()
        with self.engine.begin() as db:
            db.execute(update(agents).where(agents.c.id == agent_id).values(**values))
            if status == "PREPARED":
                self._copy_draft(db, agent_id, PREPARED_COPY, replace=True)
        return self.get(agent_id)

    # --- the runtime's view ------------------------------------------------------------------------

    def _stamp(self, agent_id: str, alias_id: str) -> tuple[Any, ...] | None:
        """What moves whenever the definition behind an alias may have changed, in one row read: the agent's
        updated_at (every change to its DRAFT, its action groups and knowledge bases moves it), status and
        prepared_at, the alias's updated_at (its routing), and how many numbered versions remain. None: no such
        agent or alias (the caller builds, which says so)."""
        if self._direct is not None:  # SQLite: one read on the caller's thread (the event loop, by kept_definition)
            row = self._direct.row(_STAMP, (alias_id, agent_id))
        else:
            row = self._stamp_row(agent_id, alias_id)
        if row is None or (alias_id != TEST_ALIAS and row[3] is None):
            return None
        return tuple(row)

    def _stamp_row(self, agent_id: str, alias_id: str) -> tuple[Any, ...] | None:
        a, al = agents, agent_aliases
        versions = select(func.count()).where(agent_versions.c.agent_id == agent_id).scalar_subquery()
        on = and_(al.c.agent_id == a.c.id, al.c.id == alias_id)
        query = (select(a.c.updated_at, a.c.status, a.c.prepared_at, al.c.updated_at, versions)
                 .select_from(a.outerjoin(al, on)).where(a.c.id == agent_id))  # fmt: skip
        with self.engine.connect() as db:
            row = db.execute(query).first()
        return None if row is None else tuple(row)

    def kept_definition(self, agent_id: str, alias_id: str) -> defs.AgentDefinition | None:
        """The definition already built, if one read shows it unchanged, where that read is cheap enough for the
        event loop (a SQLite file); None: call `definition` on a worker thread."""
        if self._direct is None:
            return None
        kept = self._definitions.get((agent_id, alias_id))
        if kept is None or self._stamp(agent_id, alias_id) != kept[0]:
            return None
        return kept[1]

    def definition(self, agent_id: str, alias_id: str) -> defs.AgentDefinition:
        """The agent an alias routes to, as the orchestration loop reads it. An agent never prepared, or with no
        foundation model, cannot be invoked (ValidationException); unknown ids are ResourceNotFoundException.

        Built once per (agent, alias) and kept while `_stamp` reads the same (one row read per InvokeAgent instead
        of the five reads and the schema parsing a build takes); a change made by any process moves the stamp."""
        key = (agent_id, alias_id)
        stamp = self._stamp(agent_id, alias_id)
        kept = self._definitions.get(key)
        if stamp is not None and kept is not None and kept[0] == stamp:
            return kept[1]
        made = self._definition(agent_id, alias_id)
        if stamp is not None:
            if len(self._definitions) >= MAX_KEPT_DEFINITIONS:
                self._definitions.pop(next(iter(self._definitions)))
            self._definitions[key] = (stamp, made)
        return made

    def _definition(self, agent_id: str, alias_id: str) -> defs.AgentDefinition:
        alias = self.alias(agent_id, alias_id)
        agent = self.version(agent_id, alias.version)
        source = agent.version  # where the definition is read from: the version, or the DRAFT as last prepared
        if agent.version == DRAFT:
            if agent.prepared_at is None:
                raise errors.InvalidRequest(f"The agent '{agent_id}' has not been prepared: call PrepareAgent first.")
            c = agent_versions.c
            copy = select(agent_versions).where(c.agent_id == agent_id, c.version == PREPARED_COPY)
            with self.engine.connect() as db:
                kept = db.execute(copy).first()
            if kept is not None:  # (an agent prepared before copies were kept serves its DRAFT as it is)
                source, agent = PREPARED_COPY, replace(self._version(kept, agent.latest_version), version=DRAFT)
        spec = agent.spec
        if not spec.get("foundationModel") or not spec.get("instruction"):
            raise errors.InvalidRequest(f"The agent '{agent_id}' has no foundationModel or instruction; update it and "
                                        "prepare it again.")  # fmt: skip
        groups = [self.group_entry(g) for g in self.all_groups(agent_id, source)]
        links = self.all_links(agent_id, source)
        memory = spec.get("memoryConfiguration") or {}
        return defs.AgentDefinition(
            agent_id=agent_id, alias_id=alias_id, version=agent.version, name=agent.name,
            foundation_model=str(spec["foundationModel"]), instruction=str(spec["instruction"]),
            idle_session_ttl=int(spec.get("idleSessionTTLInSeconds") or defs.DEFAULT_IDLE_TTL),
            guardrail=defs.guardrail_ref(spec.get("guardrailConfiguration")),
            prompt_overrides=defs.prompt_overrides(spec.get("promptOverrideConfiguration")),
            action_groups=defs.action_groups(groups, self.lambda_urls),
            knowledge_bases=defs.knowledge_bases([{"knowledgeBaseId": k.knowledge_base_id,
                                                   "description": k.description, "knowledgeBaseState": k.state}
                                                  for k in links]),
            memory_enabled="SESSION_SUMMARY" in (memory.get("enabledMemoryTypes") or ()),
            memory_storage_days=int(memory.get("storageDays") or defs.DEFAULT_MEMORY_DAYS),
            memory_recent_sessions=int((memory.get("sessionSummaryConfiguration") or {}).get("maxRecentSessions")
                                       or defs.DEFAULT_RECENT_SESSIONS),
        )  # fmt: skip

    # --- tags --------------------------------------------------------------------------------------

    def _tagged(self, resource: str) -> None:
        kind, _, rest = resource.partition("/")
        if kind == "agent":
            self.get(rest)
        elif kind == "agent-alias":
            agent_id, _, alias_id = rest.partition("/")
            if alias_id == TEST_ALIAS:
                raise errors.InvalidRequest(f"The test alias {TEST_ALIAS} cannot be tagged.")
            self.alias(agent_id, alias_id)
        else:
            raise errors.NotFound(f"The resource '{resource}' was not found.")

    def tags(self, resource: str) -> dict[str, str]:
        self._tagged(resource)
        return tags.read(self.engine, resource)

    def tag(self, resource: str, new: dict[str, str]) -> None:
        self._tagged(resource)
        tags.put(self.engine, resource, new)

    def untag(self, resource: str, keys: list[str]) -> None:
        self._tagged(resource)
        tags.remove(self.engine, resource, keys)


def role_arn(agent: Agent) -> str:
    return str(agent.spec.get("agentResourceRoleArn") or DEFAULT_ROLE)


def stamp(at: datetime | None) -> str | None:
    return at.isoformat() if at else None
