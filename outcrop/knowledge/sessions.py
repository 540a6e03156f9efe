"""RetrieveAndGenerate sessions: a sessionId and the turns asked under it, kept in the store.

A call without a sessionId opens a session and answers with its id; a call with one replays the session's last
MAX_TURNS (question, answer) pairs to the model before the new question, and retrieval also reads the previous
question (retrieval.py), so a follow-up such as "what about its price?" is answered about the right thing.

A session belongs to the principal that opened it: another caller naming its id is told it is not valid, as an
unknown or expired id is. Sessions end after SESSION_TTL without a call (Bedrock keeps them for 24 hours);
expired ones are deleted whenever a session is opened. sessionConfiguration.kmsKeyArn is kept with the session
and reported nowhere: this server encrypts nothing with KMS (its store is the server's own).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, insert, select, update

from outcrop import errors
from outcrop.store.schema import rag_session_turns, rag_sessions

SESSION_TTL = timedelta(hours=24)
MAX_TURNS = 10  # turns replayed to the model (the newest)


@dataclass(frozen=True)
class Session:
    id: str
    turns: tuple[tuple[str, str], ...]  # (question, answer), oldest first

    @property
    def last_question(self) -> str | None:
        return self.turns[-1][0] if self.turns else None


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)  # SQLite hands timestamps back without their zone


class Sessions:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def open(self, session_id: str | None, principal: str, kms_key_arn: str | None = None) -> Session:
        """The session `session_id` names (with its recent turns), or a new one when it is None."""
        now = datetime.now(UTC)
        if session_id is None:
            new_id = str(uuid.uuid4())
            with self.engine.begin() as db:
                expired = select(rag_sessions.c.id).where(rag_sessions.c.updated_at < now - SESSION_TTL)
                db.execute(delete(rag_session_turns).where(rag_session_turns.c.session_id.in_(expired)))
                db.execute(delete(rag_sessions).where(rag_sessions.c.updated_at < now - SESSION_TTL))
                db.execute(insert(rag_sessions).values(id=new_id, principal=principal, kms_key_arn=kms_key_arn,
                                                       created_at=now, updated_at=now))  # fmt: skip
            return Session(new_id, ())
        with self.engine.connect() as db:
            row = db.execute(select(rag_sessions).where(rag_sessions.c.id == session_id)).first()
            if row is None or row.principal != principal or _aware(row.updated_at) < now - SESSION_TTL:
                raise errors.InvalidRequest(
                    f"Session with Id {session_id} is not valid (unknown, expired after "
                    f"{SESSION_TTL.total_seconds() / 3600:g} hours without a call, or another caller's). "
                    "Leave sessionId out to start a new session."
                )
            turns = db.execute(
                select(rag_session_turns.c.question, rag_session_turns.c.answer)
                .where(rag_session_turns.c.session_id == session_id)
                .order_by(rag_session_turns.c.id.desc())
                .limit(MAX_TURNS)
            ).all()
        return Session(session_id, tuple((t.question, t.answer) for t in reversed(turns)))

    def add_turn(self, session_id: str, question: str, answer: str) -> None:
        now = datetime.now(UTC)
        with self.engine.begin() as db:
            db.execute(insert(rag_session_turns).values(session_id=session_id, question=question, answer=answer,
                                                        created_at=now))  # fmt: skip
            db.execute(update(rag_sessions).where(rag_sessions.c.id == session_id).values(updated_at=now))
