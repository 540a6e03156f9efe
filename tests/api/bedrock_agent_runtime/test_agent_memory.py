"""Memory across sessions (memoryConfiguration SESSION_SUMMARY) through boto3 against a real server: a session given
a memoryId is summarized by the agent's (scripted) model when it ends — by endSession or by its idle TTL passing —
and later sessions of that memoryId show the newest maxRecentSessions summaries to the model; GetAgentMemory pages
them and DeleteAgentMemory deletes them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import update

from outcrop.agents.memory import SUMMARY_SYSTEM
from outcrop.conversation import ChatRequest
from outcrop.store.schema import agent_sessions
from tests.api.bedrock_agent_runtime.conftest import SCRIPTED, Env

INSTRUCTION = "You help the customers of a hardware shop with their orders."
MEMORY = {"enabledMemoryTypes": ["SESSION_SUMMARY"], "storageDays": 10,
          "sessionSummaryConfiguration": {"maxRecentSessions": 2}}  # fmt: skip


@pytest.fixture(autouse=True)
def _reset(env: Env) -> None:
    env.engine.script = _script
    env.engine.requests.clear()


def _script(r: ChatRequest) -> str:
    if r.system == SUMMARY_SYSTEM:  # the summary: the transcript's first line
        return "Summary of: " + r.messages[-1].text.splitlines()[0]
    return f"Noted: {r.messages[-1].text}"


def _agent(env: Env, memory: dict[str, Any] | None = MEMORY) -> str:
    extra = {"memoryConfiguration": memory} if memory else {}
    made = env.agent.create_agent(agentName=f"shop-{uuid.uuid4().hex[:8]}", foundationModel=SCRIPTED,
                                  instruction=INSTRUCTION, idleSessionTTLInSeconds=600,
                                  agentResourceRoleArn="arn:aws:iam::123456789012:role/agent", **extra)  # fmt: skip
    agent_id = str(made["agent"]["agentId"])
    env.agent.prepare_agent(agentId=agent_id)
    return agent_id


def _say(env: Env, agent_id: str, session: str, text: str, **kw: Any) -> str:
    out = env.runtime.invoke_agent(agentId=agent_id, agentAliasId="TSTALIASID", sessionId=session, inputText=text,
                                   **kw)  # fmt: skip
    return "".join(e["chunk"]["bytes"].decode() for e in out["completion"] if "chunk" in e)


def _memory(env: Env, agent_id: str, memory_id: str, **kw: Any) -> dict[str, Any]:
    return dict(env.runtime.get_agent_memory(agentId=agent_id, agentAliasId="TSTALIASID", memoryId=memory_id,
                                             memoryType="SESSION_SUMMARY", **kw))  # fmt: skip


def _summaries(env: Env, agent_id: str, memory_id: str) -> list[tuple[str, str]]:
    got = _memory(env, agent_id, memory_id)["memoryContents"]
    return [(m["sessionSummary"]["sessionId"], m["sessionSummary"]["summaryText"]) for m in got]


def test_sessions_of_a_memory_are_summarized_and_recalled(env: Env) -> None:
    agent_id = _agent(env)
    memory_id = f"ada-{uuid.uuid4().hex[:6]}"
    first = str(uuid.uuid4())
    assert _say(env, agent_id, first, "My name is Ada and I ordered a drill.", memoryId=memory_id).startswith("Noted")
    assert _memory(env, agent_id, memory_id)["memoryContents"] == []  # the session has not ended
    _say(env, agent_id, first, "Bye.", memoryId=memory_id, endSession=True)
    summarize = env.engine.requests[-1]
    assert summarize.system == SUMMARY_SYSTEM
    assert summarize.messages[-1].text.startswith("User: My name is Ada and I ordered a drill.\nAgent: Noted:")
    assert "User: Bye." in summarize.messages[-1].text
    (entry,) = _memory(env, agent_id, memory_id)["memoryContents"]
    summary = entry["sessionSummary"]
    assert summary["memoryId"] == memory_id and summary["sessionId"] == first
    assert summary["summaryText"] == "Summary of: User: My name is Ada and I ordered a drill."
    assert isinstance(summary["sessionStartTime"], datetime) and summary["sessionExpiryTime"] >= summary[
        "sessionStartTime"]  # fmt: skip

    # a later session of the memory shows the summary to the model
    env.engine.requests.clear()
    second = str(uuid.uuid4())
    _say(env, agent_id, second, "What did I order?", memoryId=memory_id)
    assert "Summary of: User: My name is Ada and I ordered a drill." in env.engine.requests[-1].system
    # another memoryId, or none, shows nothing
    _say(env, agent_id, str(uuid.uuid4()), "Hello", memoryId="someone-else")
    _say(env, agent_id, str(uuid.uuid4()), "Hello")
    assert all("Summary of" not in r.system for r in env.engine.requests[-2:])

    # the second session reaches its idle TTL: GetAgentMemory summarizes it first, and pages newest first
    assert env.app.context.agents is not None
    engine = env.app.context.agents.engine
    with engine.begin() as db:
        db.execute(update(agent_sessions).where(agent_sessions.c.session_id == second)
                   .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))  # fmt: skip
    assert _summaries(env, agent_id, memory_id) == [(second, "Summary of: User: What did I order?"),
                                                    (first, "Summary of: User: My name is Ada and I ordered a drill.")]  # fmt: skip
    page = _memory(env, agent_id, memory_id, maxItems=1)
    assert [m["sessionSummary"]["sessionId"] for m in page["memoryContents"]] == [second]
    rest = _memory(env, agent_id, memory_id, maxItems=1, nextToken=page["nextToken"])
    assert [m["sessionSummary"]["sessionId"] for m in rest["memoryContents"]] == [first] and "nextToken" not in rest

    # maxRecentSessions 2: both, oldest first
    env.engine.requests.clear()
    _say(env, agent_id, str(uuid.uuid4()), "Anything else?", memoryId=memory_id)
    system = env.engine.requests[-1].system
    assert system.index("I ordered a drill") < system.index("What did I order?")

    # DeleteAgentMemory: one session, then the whole memory
    env.runtime.delete_agent_memory(agentId=agent_id, agentAliasId="TSTALIASID", memoryId=memory_id, sessionId=first)
    assert [s for s, _ in _summaries(env, agent_id, memory_id)] == [second]
    env.runtime.delete_agent_memory(agentId=agent_id, agentAliasId="TSTALIASID", memoryId=memory_id)
    assert _summaries(env, agent_id, memory_id) == []


def test_memory_refusals(env: Env) -> None:
    plain = _agent(env, None)
    with pytest.raises(ClientError) as err:
        _say(env, plain, str(uuid.uuid4()), "hi", memoryId="m-1")
    assert err.value.response["Error"]["Code"] == "ValidationException" and "memoryConfiguration" in str(err.value)
    with pytest.raises(ClientError) as err:
        _memory(env, "AAAAAAAAAA", "m-1")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as err:
        env.runtime.delete_agent_memory(agentId=plain, agentAliasId="NOSUCHALIA", memoryId="m-1")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as err:
        _memory(env, plain, "m-1", nextToken="not-a-token")
    assert err.value.response["Error"]["Code"] == "ValidationException"
