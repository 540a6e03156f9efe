"""Files kept for batch APIs (OpenAI's /v1/files): a row in the store (`files`) per file, its bytes in object
storage (outcrop.objects) at the row's URI. Uploads are written to storage first and recorded after, so a row
always names bytes that exist; deleting goes the other way (row first), so a half-done delete leaves at worst an
unnamed object, never a row naming nothing.

Output files of a batch get ids made from the job's id (`output_id`), recorded with `keep` (insert if absent):
a job finished again after a crash records the same files once.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, Row, and_, asc, delete, desc, insert, select
from sqlalchemy.exc import IntegrityError

from outcrop.jobs.store import aware, now
from outcrop.store.paging import past
from outcrop.store.schema import files

_ID = string.ascii_letters + string.digits


@dataclass(frozen=True)
class StoredFile:
    id: str
    owner: str  # the principal's name
    purpose: str
    filename: str
    bytes: int
    uri: str
    created_at: datetime
    expires_at: datetime | None


def _file(r: Row[object]) -> StoredFile:
    return StoredFile(r.id, r.principal_name, r.purpose, r.filename, int(r.bytes), r.uri,
                      aware(r.created_at) or now(), aware(r.expires_at))  # fmt: skip


def new_id() -> str:
    """`file-` and 24 letters and digits, as OpenAI's file ids."""
    return "file-" + "".join(secrets.choice(_ID) for _ in range(24))


class FileStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, file: StoredFile) -> StoredFile:
        with self.engine.begin() as db:
            db.execute(insert(files).values(id=file.id, principal_name=file.owner, purpose=file.purpose,
                                            filename=file.filename, bytes=file.bytes, uri=file.uri,
                                            created_at=file.created_at, expires_at=file.expires_at))  # fmt: skip
        return file

    def keep(self, file: StoredFile) -> StoredFile:
        """`add`, unless a file with that id is recorded already (then that one)."""
        try:
            return self.add(file)
        except IntegrityError:
            found = self.get(file.id)
            if found is None:
                raise
            return found

    def get(self, file_id: str) -> StoredFile | None:
        with self.engine.connect() as db:
            row = db.execute(select(files).where(files.c.id == file_id)).first()
        return None if row is None else _file(row)

    def find(self, owner: str | None, *, purpose: str | None = None, ascending: bool = False,
             beyond: StoredFile | None = None, limit: int = 10_000) -> list[StoredFile]:  # fmt: skip
        """One owner's files (everyone's with None), by creation time, newest first unless `ascending`; at most
        `limit` of them, from the one past `beyond` in that order."""
        c = files.c
        where = []
        if owner is not None:
            where.append(c.principal_name == owner)
        if purpose is not None:
            where.append(c.purpose == purpose)
        if beyond is not None:
            where.append(past(c.created_at, c.id, beyond.created_at, beyond.id, ascending))
        order = asc if ascending else desc
        query = select(files).where(and_(True, *where)).order_by(order(c.created_at), order(c.id)).limit(limit)
        with self.engine.connect() as db:
            return [_file(r) for r in db.execute(query)]

    def remove(self, file_id: str) -> bool:
        with self.engine.begin() as db:
            return bool(db.execute(delete(files).where(files.c.id == file_id)).rowcount)
