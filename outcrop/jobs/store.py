"""Batch jobs and their records, kept in the store (tables `batch_jobs` and `batch_records`).

A job's life, whatever its API (the codec maps these states to its wire's names):

    submitted -> validating -> scheduled -> in_progress -> finalizing -> completed
                     |                          |     \\-> stopping -> stopped      (StopModelInvocationJob)
                     \\-> failed (unreadable)     \\-> expired                       (past its timeout)

Validation stores every record of the inputs in one transaction (`validated`): a record found wrong then (not
JSON, no id, a body the model cannot take) is stored with its error line already written. Running a record ends
in `finish`: its output line and the job's counters in one transaction, only if the record was still pending.
So after a crash every record is pending (run again) or done exactly once, and the counters are true; the
outputs are assembled from these rows at the end. A dead process's jobs are found by `orphans` and taken over
(`take_over`, a compare-and-set on the owner) by the next server.
"""

from __future__ import annotations

import base64
import json
import secrets
import string
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Row, and_, asc, delete, desc, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from outcrop import errors
from outcrop.auth.principal import Principal
from outcrop.store.paging import past
from outcrop.store.schema import batch_jobs, batch_records

STATES = ("submitted", "validating", "scheduled", "in_progress", "finalizing", "stopping", "completed", "failed",
          "stopped", "expired")  # fmt: skip
ACTIVE = ("submitted", "validating", "scheduled", "in_progress", "finalizing", "stopping")
FINISHED = ("completed", "failed", "stopped", "expired")
RUNNABLE = ("scheduled", "in_progress")  # records are being (or about to be) run
PAGE = 500  # records read or written per statement
_ID = string.ascii_lowercase + string.digits


def now() -> datetime:
    return datetime.now(UTC)


def aware(at: datetime | None) -> datetime | None:
    """SQLite gives timestamps back without their zone (they were written in UTC)."""
    return at if at is None or at.tzinfo else at.replace(tzinfo=UTC)


def principal_json(p: Principal) -> str:
    return json.dumps({"id": p.id, "name": p.name, "groups": list(p.groups), "is_admin": p.is_admin,
                       "credential_id": p.credential_id, "guardrail": p.guardrail})  # fmt: skip


def principal_of(text: str) -> Principal:
    raw = json.loads(text)
    return Principal(raw["id"], raw["name"], tuple(raw.get("groups") or ()), bool(raw.get("is_admin")),
                     raw.get("credential_id"), raw.get("guardrail"))  # fmt: skip


@dataclass(frozen=True)
class Job:
    id: str
    codec: str
    name: str
    principal: Principal
    model_id: str
    status: str
    message: str | None
    spec: dict[str, Any]
    inputs: tuple[str, ...]  # the input files, once validated
    client_token: str | None
    total: int
    processed: int
    succeeded: int
    errored: int
    input_tokens: int
    output_tokens: int
    owner: str | None
    submitted_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    expires_at: datetime | None
    started_at: datetime | None = None  # when it first ran records


@dataclass(frozen=True)
class Parsed:
    """A record as validation found it: its input line and, when it is wrong, its error line already."""

    part: int  # which input file
    key: str | None  # its own id (recordId), when it has a usable one
    input: str
    error: str | None = None


@dataclass(frozen=True)
class Record:
    job_id: str
    seq: int
    part: int
    key: str | None
    state: str  # pending | done | error
    input: str
    output: str | None


def _job(r: Row[Any]) -> Job:
    return Job(r.id, r.codec, r.name, principal_of(r.principal), r.model_id, r.status, r.message, json.loads(r.spec),
               tuple(json.loads(r.inputs or "[]")), r.client_token, int(r.total), int(r.processed),
               int(r.succeeded), int(r.errored), int(r.input_tokens), int(r.output_tokens), r.owner,
               aware(r.submitted_at) or now(), aware(r.updated_at) or now(), aware(r.ended_at),
               aware(r.expires_at), aware(r.started_at))  # fmt: skip


def new_id() -> str:
    """12 lowercase letters and digits, as Bedrock's job ids."""
    return "".join(secrets.choice(_ID) for _ in range(12))


class JobStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- jobs --------------------------------------------------------------------------------------

    def create(self, codec: str, name: str, principal: Principal, model_id: str, spec: dict[str, Any], *,
               client_token: str | None = None, request_hash: str | None = None, expires_at: datetime | None = None,
               owner: str | None = None) -> tuple[Job, bool]:  # fmt: skip
        """A new job, Submitted (and whether it is new): a retry with the same client token gets the job it made,
        another request under that token a Conflict."""
        at = now()
        values = {"id": new_id(), "codec": codec, "name": name, "principal": principal_json(principal),
                  "principal_name": principal.name, "model_id": model_id, "status": "submitted",
                  "spec": json.dumps(spec), "client_token": client_token, "request_hash": request_hash,
                  "owner": owner, "submitted_at": at, "updated_at": at, "expires_at": expires_at}  # fmt: skip
        try:
            with self.engine.begin() as db:
                db.execute(insert(batch_jobs).values(**values))
        except IntegrityError:
            if client_token is None:
                raise
            c = batch_jobs.c
            with self.engine.connect() as db:
                row = db.execute(select(batch_jobs).where(c.codec == codec, c.principal_name == principal.name,
                                                          c.client_token == client_token)).first()  # fmt: skip
            if row is None:
                raise
            if row.request_hash != request_hash:
                raise errors.Conflict(
                    f"The client token '{client_token}' was used for another request (job {row.id})."
                ) from None
            return _job(row), False
        found = self.get(str(values["id"]))
        assert found is not None
        return found, True

    def get(self, job_id: str) -> Job | None:
        with self.engine.connect() as db:
            row = db.execute(select(batch_jobs).where(batch_jobs.c.id == job_id)).first()
        return None if row is None else _job(row)

    def find(self, codec: str, principal: str | None = None, *, status: Sequence[str] = (),
             partial: bool | None = None, name_contains: str | None = None, after: datetime | None = None,
             before: datetime | None = None, ascending: bool = False, beyond: Job | None = None, start: int = 0,
             limit: int = 1000) -> list[Job]:  # fmt: skip
        """The codec's jobs (one principal's, or everyone's with None), by submit time, newest first unless
        `ascending`. `partial` keeps only jobs with (True) or without (False) failed records. A page is either the
        jobs past `beyond` in that order (a keyset cursor) or `start`/`limit` (an offset)."""
        c = batch_jobs.c
        where = [c.codec == codec]
        if principal is not None:
            where.append(c.principal_name == principal)
        if status:
            where.append(c.status.in_(list(status)))
        if partial is not None:
            where.append(c.errored > 0 if partial else c.errored == 0)
        if name_contains:
            where.append(func.lower(c.name).contains(name_contains.lower(), autoescape=True))
        if after is not None:
            where.append(c.submitted_at > after)
        if before is not None:
            where.append(c.submitted_at < before)
        if beyond is not None:
            where.append(past(c.submitted_at, c.id, beyond.submitted_at, beyond.id, ascending))
        order = asc if ascending else desc
        query = select(batch_jobs).where(and_(*where)).order_by(order(c.submitted_at), order(c.id))
        with self.engine.connect() as db:
            rows = db.execute(query.offset(start).limit(limit)).all()
        return [_job(r) for r in rows]

    def set_status(self, job_id: str, status: str, *, only_from: Iterable[str] = ACTIVE,
                   message: str | None = None) -> bool:  # fmt: skip
        """Move the job to `status` if it is in one of `only_from`; whether it moved. A finished status sets endTime
        and lets the owner go."""
        values: dict[str, Any] = {"status": status, "updated_at": now()}
        if message is not None:
            values["message"] = message[:2048]
        if status in FINISHED:
            values.update(ended_at=values["updated_at"], owner=None)
        if status == "in_progress":
            values["started_at"] = func.coalesce(batch_jobs.c.started_at, values["updated_at"])
        c = batch_jobs.c
        with self.engine.begin() as db:
            moved = db.execute(update(batch_jobs).where(c.id == job_id, c.status.in_(list(only_from))).values(**values))
        return bool(moved.rowcount)

    def fail(self, job_id: str, message: str) -> bool:
        return self.set_status(job_id, "failed", message=message)

    def statuses(self, job_ids: Sequence[str]) -> dict[str, str]:
        if not job_ids:
            return {}
        with self.engine.connect() as db:
            rows = db.execute(select(batch_jobs.c.id, batch_jobs.c.status).where(batch_jobs.c.id.in_(list(job_ids))))
            return {r.id: r.status for r in rows}

    def orphans(self, alive: Callable[[str | None], bool]) -> list[Job]:
        """Unfinished jobs whose owner process is dead (or that have none)."""
        with self.engine.connect() as db:
            rows = db.execute(select(batch_jobs).where(batch_jobs.c.status.in_(list(ACTIVE)))).all()
        return [_job(r) for r in rows if not alive(r.owner)]

    def take_over(self, job: Job, owner: str) -> bool:
        """Make `owner` the job's owner, if nobody else took it over first."""
        c = batch_jobs.c
        owned = c.owner.is_(None) if job.owner is None else c.owner == job.owner
        with self.engine.begin() as db:
            moved = db.execute(update(batch_jobs).where(c.id == job.id, owned, c.status.in_(list(ACTIVE)))
                               .values(owner=owner, updated_at=now()))  # fmt: skip
        return bool(moved.rowcount)

    # --- records -----------------------------------------------------------------------------------

    def validated(self, job_id: str, inputs: Sequence[str], records: Sequence[Parsed]) -> bool:
        """Store the job's records (replacing any a crashed validation left) and schedule it, in one transaction;
        False if the job was no longer validating (stopped meanwhile)."""
        errored = sum(1 for r in records if r.error is not None)
        with self.engine.begin() as db:
            moved = db.execute(update(batch_jobs).where(batch_jobs.c.id == job_id, batch_jobs.c.status == "validating")
                               .values(status="scheduled", inputs=json.dumps(list(inputs)), total=len(records),
                                       processed=errored, errored=errored, succeeded=0, input_tokens=0,
                                       output_tokens=0, updated_at=now()))  # fmt: skip
            if not moved.rowcount:
                return False
            db.execute(delete(batch_records).where(batch_records.c.job_id == job_id))
            for start in range(0, len(records), PAGE):
                rows = [{"job_id": job_id, "seq": start + i, "part": r.part, "record_key": r.key,
                         "state": "error" if r.error is not None else "pending", "input": r.input, "output": r.error}
                        for i, r in enumerate(records[start : start + PAGE])]  # fmt: skip
                db.execute(insert(batch_records), rows)
        return True

    def pending(self, job_id: str) -> list[int]:
        """The seq of every record still to run, in order."""
        c = batch_records.c
        with self.engine.connect() as db:
            rows = db.execute(select(c.seq).where(c.job_id == job_id, c.state == "pending").order_by(c.seq))
            return [int(r.seq) for r in rows]

    def record(self, job_id: str, seq: int) -> Record | None:
        c = batch_records.c
        with self.engine.connect() as db:
            r = db.execute(select(batch_records).where(c.job_id == job_id, c.seq == seq)).first()
        return None if r is None else Record(r.job_id, r.seq, r.part, r.record_key, r.state, r.input, r.output)

    def finish(self, job_id: str, seq: int, ok: bool, output: str, input_tokens: int = 0,
               output_tokens: int = 0) -> bool:  # fmt: skip
        """A record's output line and the job's counters, together; False (and nothing written) if it was not
        pending any more."""
        c, j = batch_records.c, batch_jobs.c
        with self.engine.begin() as db:
            done = db.execute(update(batch_records).where(c.job_id == job_id, c.seq == seq, c.state == "pending")
                              .values(state="done" if ok else "error", output=output, input_tokens=input_tokens,
                                      output_tokens=output_tokens))  # fmt: skip
            if not done.rowcount:
                return False
            counted = j.succeeded if ok else j.errored
            db.execute(update(batch_jobs).where(j.id == job_id).values({
                j.processed: j.processed + 1, counted: counted + 1, j.input_tokens: j.input_tokens + input_tokens,
                j.output_tokens: j.output_tokens + output_tokens, j.updated_at: now()}))  # fmt: skip
        return True

    def outputs(self, job_id: str) -> Iterator[Record]:
        """The job's records in order, a page at a time (for assembling its outputs)."""
        c = batch_records.c
        after = -1
        while True:
            with self.engine.connect() as db:
                rows = db.execute(select(batch_records).where(c.job_id == job_id, c.seq > after)
                                  .order_by(c.seq).limit(PAGE)).all()  # fmt: skip
            for r in rows:
                yield Record(r.job_id, r.seq, r.part, r.record_key, r.state, r.input, r.output)
            if len(rows) < PAGE:
                return
            after = rows[-1].seq


def page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def read_page_token(token: str) -> int:
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("offset:"))
    except ValueError:
        raise errors.InvalidRequest("nextToken is not one this server gave out.") from None
