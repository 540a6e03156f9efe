"""The file store of /v1/files on SQLite and PostgreSQL: add, get, find by owner and purpose in both orders,
`keep` once, remove."""

from __future__ import annotations

from datetime import timedelta

from outcrop import store
from outcrop.jobs.files import FileStore, StoredFile, new_id
from outcrop.jobs.store import now


def _file(owner: str, purpose: str = "batch", seconds: int = 0, file_id: str | None = None) -> StoredFile:
    at = now() + timedelta(seconds=seconds)
    return StoredFile(file_id or new_id(), owner, purpose, "f.jsonl", 10, "s3://f/uploads/x", at, None)


def test_files_by_owner_and_purpose(database_url: str) -> None:
    files = FileStore(store.connect(database_url))
    a1, a2 = files.add(_file("alice", seconds=0)), files.add(_file("alice", "batch_output", seconds=1))
    b1 = files.add(_file("bob", seconds=2))
    assert len(a1.id) == 29 and a1.id.startswith("file-")
    got = files.get(a1.id)
    assert got is not None and got.owner == "alice" and got.bytes == 10 and got.created_at.tzinfo is not None
    assert [f.id for f in files.find("alice")] == [a2.id, a1.id]
    assert [f.id for f in files.find("alice", ascending=True)] == [a1.id, a2.id]
    assert [f.id for f in files.find("alice", purpose="batch")] == [a1.id]
    assert [f.id for f in files.find(None)] == [b1.id, a2.id, a1.id]
    kept = files.keep(_file("alice", "batch_output", file_id="file-batchxout"))
    assert files.keep(_file("bob", file_id="file-batchxout")) == kept  # the first one stays
    assert files.remove(a1.id) and not files.remove(a1.id) and files.get(a1.id) is None
