"""RetrieveAndGenerate sessions in the store, on SQLite and PostgreSQL: opened, turns kept in order (the newest
MAX_TURNS replayed), another principal's or an expired session refused, expired ones deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from outcrop import errors, store
from outcrop.knowledge.sessions import MAX_TURNS, SESSION_TTL, Sessions
from outcrop.store.schema import rag_session_turns, rag_sessions


def test_sessions(database_url: str) -> None:
    engine = store.connect(database_url)
    sessions = Sessions(engine)
    first = sessions.open(None, "ada", "arn:aws:kms:us-east-1:123456789012:key/" + "a" * 36)
    assert first.turns == () and first.last_question is None
    for i in range(MAX_TURNS + 2):
        sessions.add_turn(first.id, f"question {i}", f"answer {i}")
    again = sessions.open(first.id, "ada")
    assert len(again.turns) == MAX_TURNS and again.turns[-1] == (f"question {MAX_TURNS + 1}", f"answer {MAX_TURNS + 1}")
    assert again.turns[0] == ("question 2", "answer 2") and again.last_question == f"question {MAX_TURNS + 1}"
    for who, sid in (("bob", first.id), ("ada", "no-such-session")):
        with pytest.raises(errors.InvalidRequest, match="not valid"):
            sessions.open(sid, who)
    old = datetime.now(UTC) - SESSION_TTL - timedelta(minutes=1)
    with engine.begin() as db:
        db.execute(update(rag_sessions).where(rag_sessions.c.id == first.id).values(updated_at=old))
    with pytest.raises(errors.InvalidRequest, match="expired"):
        sessions.open(first.id, "ada")
    sessions.open(None, "ada")  # opening a session sweeps the expired ones, turns and all
    with engine.connect() as db:
        assert db.execute(select(rag_sessions.c.id).where(rag_sessions.c.id == first.id)).first() is None
        assert db.execute(select(rag_session_turns.c.id).where(rag_session_turns.c.session_id == first.id)).all() == []
