"""Memory across sessions (memoryConfiguration with enabledMemoryTypes SESSION_SUMMARY), as on Bedrock: a session
opened by InvokeAgent with a `memoryId` belongs to that memory; when it ends — endSession, or its idle TTL passing
— the agent's model summarizes it and the summary is kept for `storageDays` (default 30). A later session of the
same agent and memoryId shows the newest `sessionSummaryConfiguration.maxRecentSessions` (default 1) summaries
to the model (the orchestration prompt's memory section, or `$memory_content$` in an overridden template); they
are read once, when the session begins. GetAgentMemory pages the summaries (newest first), DeleteAgentMemory
deletes them. A memory is the principal's that made it: other callers see none of it.

Sessions that reach their idle TTL are summarized by a sweep (`Memories.sweep`): at most once a minute in the
background when a turn starts, and before GetAgentMemory answers. Each expired session is claimed by deleting its
row (outcrop.agents.sessions.SqlSessions.expired), so several processes never summarize one twice. A summary that
cannot be made (the model fails, or the caller may no longer use it) is logged and dropped, never failing a turn.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, delete, insert, select

from outcrop import errors
from outcrop.agents.definition import AgentDefinition
from outcrop.agents.sessions import AgentSession, MemoryLink, SqlSessions
from outcrop.auth.principal import Principal
from outcrop.conversation import ChatRequest, Message, Sampling, Text
from outcrop.inference import Inference
from outcrop.store.paging import aware

log = logging.getLogger("outcrop.agents")
SWEEP_EVERY_S = 60.0
SUMMARY_TOKENS = 400
SUMMARY_SYSTEM = (
    "Summarize the conversation below between a user and an AI agent for the agent's memory, in a few sentences: "
    "what the user wanted, the facts and preferences they gave, and what the agent did or answered. Write only "
    "the summary."
)


@dataclass(frozen=True)
class Summary:
    memory_id: str
    session_id: str
    text: str
    session_start: datetime
    session_expiry: datetime


class SqlMemory:
    """The summaries, table `agent_memory`."""

    def __init__(self, engine: Engine) -> None:
        from outcrop.store.schema import agent_memory

        self.engine = engine
        self.table = agent_memory

    def _mine(self, agent_id: str, principal: str, memory_id: str | None = None) -> Any:
        t = self.table
        where = and_(t.c.agent_id == agent_id, t.c.principal == principal, t.c.expires_at > datetime.now(UTC))
        return where if memory_id is None else and_(where, t.c.memory_id == memory_id)

    def recent(self, agent_id: str, memory_id: str, principal: str, n: int) -> tuple[str, ...]:
        """The newest `n` summaries, oldest first."""
        t = self.table
        query = select(t.c.summary).where(self._mine(agent_id, principal, memory_id))
        with self.engine.connect() as db:
            rows = list(db.execute(query.order_by(t.c.session_start.desc()).limit(n)))
        return tuple(r[0] for r in reversed(rows))

    def add(self, agent_id: str, principal: str, summary: Summary, storage_days: int) -> None:
        t = self.table
        key = and_(t.c.agent_id == agent_id, t.c.memory_id == summary.memory_id, t.c.session_id == summary.session_id)
        with self.engine.begin() as db:
            db.execute(delete(t).where(key))  # the same sessionId ended again: its newest summary stands
            db.execute(insert(t).values(
                agent_id=agent_id, memory_id=summary.memory_id, session_id=summary.session_id, principal=principal,
                summary=summary.text, session_start=summary.session_start, session_expiry=summary.session_expiry,
                expires_at=summary.session_expiry + timedelta(days=storage_days)))  # fmt: skip

    def page(self, agent_id: str, memory_id: str, principal: str, size: int,
             token: str | None) -> tuple[list[Summary], str | None]:  # fmt: skip
        """Newest first; `token` is the offset of the next page."""
        try:
            offset = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
        except ValueError:
            offset = -1
        if offset < 0:
            raise errors.InvalidRequest("nextToken is not a token this server gave out.")
        t = self.table
        query = (select(t).where(self._mine(agent_id, principal, memory_id))
                 .order_by(t.c.session_start.desc(), t.c.session_id).offset(offset).limit(size + 1))  # fmt: skip
        with self.engine.connect() as db:
            rows = list(db.execute(query))
        items = [Summary(r.memory_id, r.session_id, r.summary, aware(r.session_start), aware(r.session_expiry))
                 for r in rows[:size]]  # fmt: skip
        more = base64.urlsafe_b64encode(str(offset + size).encode()).decode() if len(rows) > size else None
        return items, more

    def delete(self, agent_id: str, principal: str, memory_id: str | None, session_id: str | None) -> None:
        t = self.table
        where = and_(t.c.agent_id == agent_id, t.c.principal == principal)
        if memory_id is not None:
            where = and_(where, t.c.memory_id == memory_id)
        if session_id is not None:
            where = and_(where, t.c.session_id == session_id)
        with self.engine.begin() as db:
            db.execute(delete(t).where(where))

    def purge(self, now: datetime) -> None:
        with self.engine.begin() as db:
            db.execute(delete(self.table).where(self.table.c.expires_at < now))


def _transcript(turns: list[tuple[str, str]]) -> str:
    return "\n".join(f"User: {q}\nAgent: {a}" for q, a in turns)


class Memories:
    """Memory for the agent runtime: the summaries' store, the sessions it claims expired ones from, and the
    Inference that writes the summaries."""

    def __init__(self, store: SqlMemory, sessions: SqlSessions, inference: Inference) -> None:
        self.store = store
        self.sessions = sessions
        self.inference = inference
        self._swept = -SWEEP_EVERY_S
        self._sweeping: asyncio.Task[int] | None = None

    async def recall(self, d: AgentDefinition, session: AgentSession, memory_id: str) -> None:
        """Links a session to its memory, and reads the memory's recent summaries when the session begins."""
        if session.memory is not None:
            return
        summaries = await asyncio.to_thread(self.store.recent, d.agent_id, memory_id, session.principal,
                                            d.memory_recent_sessions)  # fmt: skip
        session.memory = MemoryLink(memory_id, d.foundation_model, d.memory_storage_days,
                                    datetime.now(UTC).isoformat(), summaries)  # fmt: skip

    async def remember(self, session: AgentSession, principal: Principal | None = None) -> bool:
        """Summarizes a session that ended (now, or at `session.expires`) into its memory; False if it could not."""
        link = session.memory
        if link is None or not session.turns:
            return False
        who = principal or Principal(id=session.principal, name=session.principal)
        chat = ChatRequest(model=link.model, system=SUMMARY_SYSTEM, sampling=Sampling(max_tokens=SUMMARY_TOKENS),
                           messages=(Message("user", (Text(_transcript(session.turns)),)),))  # fmt: skip
        try:
            text = (await self.inference.complete(chat, who)).text.strip()
        except errors.OutcropError as exc:
            log.warning("agent %s session %s: no memory summary (%s)", session.agent_id, session.session_id,
                        exc.message)  # fmt: skip
            return False
        if not text:
            return False
        ended = session.expires or datetime.now(UTC)
        summary = Summary(link.memory_id, session.session_id, text, datetime.fromisoformat(link.started), ended)
        await asyncio.to_thread(self.store.add, session.agent_id, session.principal, summary, link.storage_days)
        return True

    async def sweep(self) -> int:
        """Summarizes the sessions of memories that reached their idle TTL (and drops expired summaries)."""
        now = datetime.now(UTC)
        claimed = await asyncio.to_thread(self.sessions.expired, now)
        claimed, self.sessions.leftover[:] = [*self.sessions.leftover, *claimed], []
        done = 0
        for session in claimed:
            done += await self.remember(session)
        await asyncio.to_thread(self.store.purge, now)
        return done

    def maybe_sweep(self) -> None:
        """At most once a minute, a sweep in the background."""
        if time.monotonic() - self._swept < SWEEP_EVERY_S or (self._sweeping and not self._sweeping.done()):
            return
        self._swept = -SWEEP_EVERY_S
        self._sweeping = asyncio.get_running_loop().create_task(self._sweep_logged())

    async def _sweep_logged(self) -> int:
        try:
            return await self.sweep()
        except Exception:
            log.exception("agent memory sweep failed")
            return 0
