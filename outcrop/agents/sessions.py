"""Agent sessions: what InvokeAgent / InvokeInlineAgent keep between calls of one sessionId.

A session is keyed by (agent id, sessionId) — inline agents share the agent id "INLINE" — and belongs to the
principal that opened it: another caller naming it is refused. It holds

- `attributes` / `prompt_attributes`: sessionAttributes and promptSessionAttributes as last given (a call's
  sessionState replaces them; an action group's Lambda may too);
- `turns`: the finished (question, answer) pairs, replayed to the model before the next question (the newest
  MAX_TURNS);
- `pending`: a plan stopped by returnControl — its messages so far, the calls the caller must answer, the passages
  found — so the next call carrying returnControlInvocationResults continues it.

It lives until the agent's idleSessionTTLInSeconds pass without a call (`expires_at`), or endSession. An expired
session is gone: its id starts a new one, as on Bedrock. Expired rows are deleted when a session is created (at
most once a minute).

Two stores: `SqlSessions` (the server's store, table `agent_sessions`) and `MemorySessions` (a server without a
store; tests). The state is one JSON document (`encode_state` / `decode_state`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Engine, delete, insert, select, update

from outcrop import errors
from outcrop.conversation import Json, Message, Part, Text, ToolResult, ToolUse
from outcrop.knowledge.retrieval import Passage

MAX_TURNS = 20
PURGE_EVERY_S = 60.0  # expired sessions are deleted at most this often (when a session is created)


@dataclass(frozen=True)
class PendingCall:
    """A call of a returnControl the caller must answer: the model's tool use and what it stands for."""

    tool_use_id: str
    action_group: str
    function: str | None = None  # functionSchema
    api_path: str | None = None  # apiSchema
    method: str | None = None


@dataclass(frozen=True)
class Pending:
    invocation_id: str
    question: str
    messages: tuple[Message, ...]  # the plan so far: the question, the model's tool uses, results already known
    calls: tuple[PendingCall, ...]
    passages: tuple[Passage, ...] = ()
    iterations: int = 0


@dataclass
class AgentSession:
    agent_id: str
    session_id: str
    principal: str
    attributes: dict[str, str] = field(default_factory=dict)
    prompt_attributes: dict[str, str] = field(default_factory=dict)
    turns: list[tuple[str, str]] = field(default_factory=list)
    pending: Pending | None = None
    new: bool = False


class SessionStore(Protocol):
    def open(self, agent_id: str, session_id: str, principal: str) -> AgentSession: ...

    def save(self, session: AgentSession, ttl_s: int) -> None: ...

    def end(self, session: AgentSession) -> None: ...


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)  # SQLite hands timestamps back without their zone


def _not_yours(session_id: str) -> errors.AccessDenied:
    return errors.AccessDenied(f"Session {session_id} belongs to another caller; use a sessionId of your own.")


class SqlSessions:
    def __init__(self, engine: Engine) -> None:
        from outcrop.store.schema import agent_sessions

        self.engine = engine
        self.table = agent_sessions
        self._purged = -PURGE_EVERY_S

    def open(self, agent_id: str, session_id: str, principal: str) -> AgentSession:
        t, now = self.table, datetime.now(UTC)
        with self.engine.connect() as db:
            row = db.execute(select(t).where(t.c.agent_id == agent_id, t.c.session_id == session_id)).first()
        if row is not None and _aware(row.expires_at) > now:
            if row.principal != principal:
                raise _not_yours(session_id)
            session = decode_state(json.loads(row.state), agent_id, session_id, principal)
            return session
        if time.monotonic() - self._purged > PURGE_EVERY_S:
            self._purged = time.monotonic()
            with self.engine.begin() as db:
                db.execute(delete(t).where(t.c.expires_at < now))
        return AgentSession(agent_id, session_id, principal, new=True)

    def save(self, session: AgentSession, ttl_s: int) -> None:
        t, now = self.table, datetime.now(UTC)
        values = {"principal": session.principal, "state": json.dumps(encode_state(session)), "updated_at": now,
                  "expires_at": now + timedelta(seconds=ttl_s)}  # fmt: skip
        with self.engine.begin() as db:
            where = (t.c.agent_id == session.agent_id, t.c.session_id == session.session_id)
            if session.new:
                db.execute(delete(t).where(*where))  # an expired one under the same id
                db.execute(insert(t).values(agent_id=session.agent_id, session_id=session.session_id, created_at=now,
                                            **values))  # fmt: skip
                session.new = False
            else:
                db.execute(update(t).where(*where).values(**values))

    def end(self, session: AgentSession) -> None:
        t = self.table
        with self.engine.begin() as db:
            db.execute(delete(t).where(t.c.agent_id == session.agent_id, t.c.session_id == session.session_id))


class MemorySessions:
    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], tuple[str, dict[str, Any], datetime]] = {}

    def open(self, agent_id: str, session_id: str, principal: str) -> AgentSession:
        row = self._rows.get((agent_id, session_id))
        if row is not None and row[2] > datetime.now(UTC):
            if row[0] != principal:
                raise _not_yours(session_id)
            return decode_state(row[1], agent_id, session_id, principal)
        return AgentSession(agent_id, session_id, principal, new=True)

    def save(self, session: AgentSession, ttl_s: int) -> None:
        expires = datetime.now(UTC) + timedelta(seconds=ttl_s)
        self._rows[(session.agent_id, session.session_id)] = (session.principal, encode_state(session), expires)
        session.new = False

    def end(self, session: AgentSession) -> None:
        self._rows.pop((session.agent_id, session.session_id), None)


# --- the state as JSON ---------------------------------------------------------------------------------------


def _part(p: Part) -> dict[str, Any]:
    if isinstance(p, Text):
        return {"text": p.text}
    if isinstance(p, ToolUse):
        return {"toolUse": {"id": p.id, "name": p.name, "input": dict(p.input)}}
    if isinstance(p, ToolResult):
        content = [{"text": c.text} if isinstance(c, Text) else {"json": c.value} for c in p.content]
        return {"toolResult": {"id": p.tool_use_id, "content": content, "error": p.is_error}}
    raise TypeError(f"an agent session keeps no {type(p).__name__} parts")


def _unpart(d: Mapping[str, Any]) -> Part:
    if "text" in d:
        return Text(d["text"])
    if "toolUse" in d:
        u = d["toolUse"]
        return ToolUse(u["id"], u["name"], u["input"])
    r = d["toolResult"]
    content = tuple(Text(c["text"]) if "text" in c else Json(c["json"]) for c in r["content"])
    return ToolResult(r["id"], content, bool(r["error"]))


def _passage(p: Passage) -> dict[str, Any]:
    return {"text": p.text, "location": dict(p.location), "metadata": dict(p.metadata), "score": p.score}


def encode_state(s: AgentSession) -> dict[str, Any]:
    out: dict[str, Any] = {"attributes": s.attributes, "prompt_attributes": s.prompt_attributes,
                           "turns": [list(t) for t in s.turns[-MAX_TURNS:]]}  # fmt: skip
    if s.pending is not None:
        p = s.pending
        out["pending"] = {
            "invocation_id": p.invocation_id,
            "question": p.question,
            "messages": [{"role": m.role, "parts": [_part(x) for x in m.parts]} for m in p.messages],
            "calls": [c.__dict__ for c in p.calls],
            "passages": [_passage(x) for x in p.passages],
            "iterations": p.iterations,
        }
    return out


def decode_state(d: Mapping[str, Any], agent_id: str, session_id: str, principal: str) -> AgentSession:
    pending = None
    if d.get("pending"):
        p = d["pending"]
        pending = Pending(
            invocation_id=p["invocation_id"],
            question=p["question"],
            messages=tuple(Message(m["role"], tuple(_unpart(x) for x in m["parts"])) for m in p["messages"]),
            calls=tuple(PendingCall(**c) for c in p["calls"]),
            passages=tuple(Passage(x["text"], x["location"], x["metadata"], x["score"]) for x in p["passages"]),
            iterations=int(p["iterations"]),
        )
    return AgentSession(agent_id, session_id, principal, dict(d.get("attributes") or {}),
                        dict(d.get("prompt_attributes") or {}), [(q, a) for q, a in d.get("turns") or ()],
                        pending)  # fmt: skip
