"""outcrop.jobs.store on SQLite and PostgreSQL: jobs, client tokens, records checkpointed exactly once, owners."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from outcrop import errors, store
from outcrop.auth.principal import Principal
from outcrop.jobs.store import JobStore, Parsed, now
from outcrop.store.schema import batch_jobs

ALICE = Principal("p1", "alice", ("team",), guardrail="g1:2")
BOB = Principal("p2", "bob")


def _store(url: str) -> JobStore:
    return JobStore(store.connect(url))


def test_a_job_and_its_records_checkpointed_once(database_url: str) -> None:
    jobs = _store(database_url)
    job, made = jobs.create("bedrock", "first", ALICE, "m", {"a": 1}, expires_at=now() + timedelta(hours=24))
    assert made and job.status == "submitted" and len(job.id) == 12 and job.principal == ALICE
    assert job.spec == {"a": 1} and job.expires_at is not None and job.expires_at > job.submitted_at
    assert not jobs.validated(job.id, ["s3://b/in.jsonl"], [])  # only a validating job takes its records
    assert jobs.set_status(job.id, "validating")
    records = [Parsed(0, "r1", "one"), Parsed(0, None, "bad", error="ERR"), Parsed(1, "r3", "three")]
    assert jobs.validated(job.id, ["s3://b/a.jsonl", "s3://b/b.jsonl"], records)
    job = jobs.get(job.id)
    assert job is not None and job.status == "scheduled" and job.inputs == ("s3://b/a.jsonl", "s3://b/b.jsonl")
    assert (job.total, job.processed, job.errored, job.succeeded) == (3, 1, 1, 0)
    assert jobs.pending(job.id) == [0, 2]
    assert jobs.finish(job.id, 0, True, "OUT1", 5, 7)
    assert not jobs.finish(job.id, 0, True, "OUT1 again", 5, 7)  # done already: nothing counted twice
    assert jobs.finish(job.id, 2, False, "ERR3")
    job = jobs.get(job.id)
    assert job is not None
    assert (job.processed, job.succeeded, job.errored, job.input_tokens, job.output_tokens) == (3, 1, 2, 5, 7)
    assert [(r.seq, r.part, r.key, r.state, r.output) for r in jobs.outputs(job.id)] == [
        (0, 0, "r1", "done", "OUT1"), (1, 0, None, "error", "ERR"), (2, 1, "r3", "error", "ERR3")]  # fmt: skip
    assert jobs.pending(job.id) == []
    assert not jobs.set_status(job.id, "completed", only_from=("in_progress",))
    assert jobs.set_status(job.id, "completed", message="done")
    job = jobs.get(job.id)
    assert job is not None and job.status == "completed" and job.ended_at is not None and job.message == "done"


def test_many_records_are_stored_and_read_back_in_pages(database_url: str) -> None:
    jobs = _store(database_url)
    job, _ = jobs.create("bedrock", "big", ALICE, "m", {})
    jobs.set_status(job.id, "validating")
    jobs.validated(job.id, ["x"], [Parsed(0, f"r{i}", f"line {i}") for i in range(1234)])
    assert jobs.pending(job.id) == list(range(1234))
    assert [r.key for r in jobs.outputs(job.id)] == [f"r{i}" for i in range(1234)]
    # validation again (a crash in the middle of it) replaces the records
    jobs.set_status(job.id, "validating", only_from=("scheduled",))
    jobs.validated(job.id, ["x"], [Parsed(0, "only", "one")])
    assert [r.key for r in jobs.outputs(job.id)] == ["only"]


def test_client_tokens_make_a_job_once(database_url: str) -> None:
    jobs = _store(database_url)
    a, made = jobs.create("bedrock", "j", ALICE, "m", {}, client_token="t1", request_hash="h1")
    again, made_again = jobs.create("bedrock", "j", ALICE, "m", {}, client_token="t1", request_hash="h1")
    assert made and not made_again and again.id == a.id
    with pytest.raises(errors.Conflict):
        jobs.create("bedrock", "k", ALICE, "m", {}, client_token="t1", request_hash="h2")
    other, made_other = jobs.create("bedrock", "j", BOB, "m", {}, client_token="t1", request_hash="h1")
    assert made_other and other.id != a.id  # tokens are each caller's own


def test_find_filters_and_orders(database_url: str) -> None:
    jobs = _store(database_url)
    made = [jobs.create("bedrock", name, who, "m", {})[0] for name, who in
            (("alpha-one", ALICE), ("beta", ALICE), ("Alpha-two", BOB), ("gamma", ALICE))]  # fmt: skip
    jobs.create("openai", "alpha", ALICE, "m", {})
    assert [j.name for j in jobs.find("bedrock", "alice")] == ["gamma", "beta", "alpha-one"]
    assert [j.name for j in jobs.find("bedrock", None, ascending=True)] == ["alpha-one", "beta", "Alpha-two", "gamma"]
    assert [j.name for j in jobs.find("bedrock", None, name_contains="ALPHA")] == ["Alpha-two", "alpha-one"]
    jobs.set_status(made[1].id, "failed")
    assert [j.name for j in jobs.find("bedrock", "alice", status=["failed"])] == ["beta"]
    cut = made[1].submitted_at
    assert [j.name for j in jobs.find("bedrock", None, after=cut)] == ["gamma", "Alpha-two"]
    assert [j.name for j in jobs.find("bedrock", None, before=cut)] == ["alpha-one"]
    assert [j.name for j in jobs.find("bedrock", None, start=1, limit=2)] == ["Alpha-two", "beta"]
    beta = jobs.get(made[1].id)
    assert [j.name for j in jobs.find("bedrock", None, beyond=beta)] == ["alpha-one"]  # a keyset page
    assert [j.name for j in jobs.find("bedrock", None, beyond=beta, ascending=True)] == ["Alpha-two", "gamma"]
    jobs.set_status(made[3].id, "completed")
    jobs.set_status(made[0].id, "completed")
    with jobs.engine.begin() as db:
        db.execute(update(batch_jobs).where(batch_jobs.c.id == made[3].id).values(errored=2))
    assert [j.name for j in jobs.find("bedrock", None, status=["completed"], partial=True)] == ["gamma"]
    assert [j.name for j in jobs.find("bedrock", None, status=["completed"], partial=False)] == ["alpha-one"]


def test_started_at_is_the_first_move_to_in_progress(database_url: str) -> None:
    jobs = _store(database_url)
    job, _ = jobs.create("openai", "x", ALICE, "m", {})
    assert job.started_at is None
    jobs.set_status(job.id, "scheduled")
    jobs.set_status(job.id, "in_progress")
    first = jobs.get(job.id)
    assert first is not None and first.started_at is not None and first.started_at >= job.submitted_at
    jobs.set_status(job.id, "in_progress", only_from=("in_progress",))  # resumed by another process
    again = jobs.get(job.id)
    assert again is not None and again.started_at == first.started_at


def test_orphans_and_take_over(database_url: str) -> None:
    jobs = _store(database_url)
    mine, _ = jobs.create("bedrock", "mine", ALICE, "m", {}, owner="p_alive")
    dead, _ = jobs.create("bedrock", "dead", ALICE, "m", {}, owner="p_dead")
    nobody, _ = jobs.create("bedrock", "nobody", ALICE, "m", {})
    done, _ = jobs.create("bedrock", "done", ALICE, "m", {}, owner="p_dead")
    jobs.set_status(done.id, "completed")
    orphans = jobs.orphans(lambda owner: owner == "p_alive")
    assert {j.id for j in orphans} == {dead.id, nobody.id}
    assert jobs.take_over(dead, "p_new")
    assert not jobs.take_over(dead, "p_other")  # someone took it first
    assert jobs.statuses([mine.id, dead.id]) == {mine.id: "submitted", dead.id: "submitted"}
    taken = jobs.get(dead.id)
    assert taken is not None and taken.owner == "p_new"
