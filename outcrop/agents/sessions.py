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
store; tests). The state is one JSON document (`encode_state` / `decode_state`), read once when a turn starts and
written once (one statement) when it ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson
from sqlalchemy import Engine, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from outcrop import errors
from outcrop.conversation import Json, Message, Part, Text, ToolResult, ToolUse
from outcrop.knowledge.retrieval import Passage
from outcrop.store.direct import DirectSqlite, stamp

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


@dataclass(frozen=True)
class MemoryLink:
    """The memory (InvokeAgent's memoryId) a session belongs to: what summarizing it when it ends needs, and the
    summaries of the memory's earlier sessions its prompt shows (read once, when the session began)."""

    memory_id: str
    model: str  # the agent's foundation model, which writes the summary
    storage_days: int
    started: str  # when the session began (ISO 8601)
    summaries: tuple[str, ...] = ()  # oldest first


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
    memory: MemoryLink | None = None
    expires: datetime | None = None  # when it was read: when it would have expired


class SessionStore(Protocol):
    """Called from the event loop: each store decides what must leave it (a thread for a database round trip)."""

    async def open(self, agent_id: str, session_id: str, principal: str) -> AgentSession: ...

    async def save(self, session: AgentSession, ttl_s: int) -> None: ...

    async def end(self, session: AgentSession) -> None: ...


def _not_yours(session_id: str) -> errors.AccessDenied:
    return errors.AccessDenied(f"Session {session_id} belongs to another caller; use a sessionId of your own.")


_READ = "SELECT principal, state, expires_at FROM agent_sessions WHERE agent_id = ? AND session_id = ?"
_UPSERT = ("INSERT INTO agent_sessions (agent_id, session_id, principal, state, created_at, updated_at, expires_at, "
           "memory_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (agent_id, session_id) DO UPDATE SET principal = "
           "excluded.principal, state = excluded.state, updated_at = excluded.updated_at, "
           "expires_at = excluded.expires_at, memory_id = excluded.memory_id")  # fmt: skip
_RESTART = _UPSERT + ", created_at = excluded.created_at"  # a new session under an expired one's id


class SqlSessions:
    """Sessions in the server's store, one row each (table `agent_sessions`): one read when a turn starts, one
    write (an upsert) when it ends. On a SQLite file the two run on the event loop (store.direct: microseconds,
    where a hop to a worker thread and back is most of a turn's overhead); on PostgreSQL each is a round trip on
    a worker thread."""

    def __init__(self, engine: Engine) -> None:
        from outcrop.store.schema import agent_sessions

        self.engine = engine
        self.table = agent_sessions
        self._purged = -PURGE_EVERY_S
        self._file = DirectSqlite.of(engine)
        self.leftover: list[AgentSession] = []  # claimed by open() to be summarized (outcrop.agents.memory)

    def _read(self, agent_id: str, session_id: str) -> tuple[str, str, Any] | None:
        t = self.table
        with self.engine.connect() as db:
            row = db.execute(select(t.c.principal, t.c.state, t.c.expires_at)
                             .where(t.c.agent_id == agent_id, t.c.session_id == session_id)).first()  # fmt: skip
        return None if row is None else (row[0], row[1], row[2])

    async def open(self, agent_id: str, session_id: str, principal: str) -> AgentSession:
        now = datetime.now(UTC)
        row: tuple[str, str, Any] | None
        if self._file is not None:
            row = self._file.row(_READ, (agent_id, session_id))
            live = row is not None and row[2] > stamp(now)
        else:
            row = await asyncio.to_thread(self._read, agent_id, session_id)
            live = row is not None and _aware(row[2]) > now
        if row is not None and live:
            if row[0] != principal:
                raise _not_yours(session_id)
            return decode_state(orjson.loads(row[1]), agent_id, session_id, principal)
        if row is not None and orjson.loads(row[1]).get("memory"):  # expired, to be summarized: not reused here
            await asyncio.to_thread(self._forget_expired, agent_id, session_id, now)
        if time.monotonic() - self._purged > PURGE_EVERY_S:
            self._purged = time.monotonic()
            await asyncio.to_thread(self._purge, now)
        return AgentSession(agent_id, session_id, principal, new=True)

    def _purge(self, now: datetime) -> None:
        """Expired sessions that belong to no memory (those that do are summarized first: `expired`)."""
        t = self.table
        with self.engine.begin() as db:
            db.execute(delete(t).where(t.c.expires_at < now, t.c.memory_id.is_(None)))

    def _forget_expired(self, agent_id: str, session_id: str, now: datetime) -> None:
        """An expired session of a memory whose id starts a new session before the sweep summarized it: its turns
        are summarized now (by whoever claims it first), so the new session starts clean."""
        for gone in self.expired(now, (agent_id, session_id)):
            self.leftover.append(gone)

    def expired(self, now: datetime, only: tuple[str, str] | None = None, limit: int = 50) -> list[AgentSession]:
        """Claims expired sessions that belong to a memory, to be summarized: each row is deleted by the one
        process whose delete finds it still there, which gets it back (with `expires`)."""
        t = self.table
        query = select(t).where(t.c.memory_id.is_not(None), t.c.expires_at < now).limit(limit)
        if only is not None:
            query = query.where(t.c.agent_id == only[0], t.c.session_id == only[1])
        with self.engine.connect() as db:
            rows = list(db.execute(query))
        claimed = []
        for row in rows:
            with self.engine.begin() as db:
                gone = db.execute(delete(t).where(t.c.agent_id == row.agent_id, t.c.session_id == row.session_id,
                                                  t.c.expires_at == row.expires_at))  # fmt: skip
            if gone.rowcount == 1:
                session = decode_state(orjson.loads(row.state), row.agent_id, row.session_id, row.principal)
                session.expires = _aware(row.expires_at)
                claimed.append(session)
        return claimed

    async def save(self, session: AgentSession, ttl_s: int) -> None:
        now = datetime.now(UTC)
        state = orjson.dumps(encode_state(session)).decode()
        expires = now + timedelta(seconds=ttl_s)
        at, s = stamp(now), session
        memory_id = s.memory.memory_id if s.memory else None
        values = (s.agent_id, s.session_id, s.principal, state, at, at, stamp(expires), memory_id)
        if self._file is None or not self._file.write(_RESTART if s.new else _UPSERT, values):
            await asyncio.to_thread(self._write, session, state, now, expires)
        session.new = False

    def _write(self, session: AgentSession, state: str, now: datetime, expires: datetime) -> None:
        t = self.table
        values = {"agent_id": session.agent_id, "session_id": session.session_id, "principal": session.principal,
                  "state": state, "created_at": now, "updated_at": now, "expires_at": expires,
                  "memory_id": session.memory.memory_id if session.memory else None}  # fmt: skip
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(t).values(**values)
        kept = ("principal", "state", "updated_at", "expires_at", "memory_id",
                *(("created_at",) if session.new else ()))  # fmt: skip
        statement = statement.on_conflict_do_update(index_elements=[t.c.agent_id, t.c.session_id],
                                                    set_={k: statement.excluded[k] for k in kept})  # fmt: skip
        with self.engine.begin() as db:
            db.execute(statement)

    async def end(self, session: AgentSession) -> None:
        await asyncio.to_thread(self._delete, session.agent_id, session.session_id)

    def _delete(self, agent_id: str, session_id: str) -> None:
        t = self.table
        with self.engine.begin() as db:
            db.execute(delete(t).where(t.c.agent_id == agent_id, t.c.session_id == session_id))


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


class MemorySessions:
    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], tuple[str, dict[str, Any], datetime]] = {}

    async def open(self, agent_id: str, session_id: str, principal: str) -> AgentSession:
        row = self._rows.get((agent_id, session_id))
        if row is not None and row[2] > datetime.now(UTC):
            if row[0] != principal:
                raise _not_yours(session_id)
            return decode_state(row[1], agent_id, session_id, principal)
        return AgentSession(agent_id, session_id, principal, new=True)

    async def save(self, session: AgentSession, ttl_s: int) -> None:
        expires = datetime.now(UTC) + timedelta(seconds=ttl_s)
        self._rows[(session.agent_id, session.session_id)] = (session.principal, encode_state(session), expires)
        session.new = False

    async def end(self, session: AgentSession) -> None:
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
    if s.memory is not None:
        out["memory"] = {**s.memory.__dict__, "summaries": list(s.memory.summaries)}
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
    m = d.get("memory")
    memory = MemoryLink(m["memory_id"], m["model"], int(m["storage_days"]), m["started"],
                        tuple(m.get("summaries") or ())) if m else None  # fmt: skip
    return AgentSession(agent_id, session_id, principal, dict(d.get("attributes") or {}),
                        dict(d.get("prompt_attributes") or {}), [(q, a) for q, a in d.get("turns") or ()],
                        pending, memory=memory)  # fmt: skip
