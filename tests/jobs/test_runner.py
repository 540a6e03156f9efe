"""outcrop.jobs.runner in-process, on the echo engine and a plain-text codec: jobs share a model fairly, interactive
requests go first (the batch record they preempt runs again), a dead process's job resumes without running a done
record again, stop and expiry keep what was done, and batch usage is metered once per record as dialect "batch"."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from outcrop import errors, store
from outcrop.auth.principal import Principal
from outcrop.config import ModelSpec, Settings
from outcrop.conversation import ChatRequest, Message, Text
from outcrop.engines.echo import EchoEngine
from outcrop.inference import Inference
from outcrop.jobs.codec import Work
from outcrop.jobs.runner import JobRunner
from outcrop.jobs.store import Job, JobStore, Parsed, Record, now
from outcrop.metering.usage import UsageRecorder
from outcrop.objects import Objects, join
from outcrop.registry import Registry
from outcrop.store.schema import usage_records

ECHO = "test.echo-v1:0"
ALICE = Principal("p1", "alice")


class Lines:
    """A codec for tests: each line of the input is a user message; the answer's text is its output line."""

    name = "lines"
    operation = "TestJob"

    def __init__(self) -> None:
        self.started: list[str] = []  # records as they were sent to the model, in order

    def inputs(self, job: Job, objects: Objects) -> list[str]:
        return [str(job.spec["input"])]

    def parse(self, job: Job, files: Sequence[bytes]) -> list[Parsed]:
        lines = [x for f in files for x in f.decode().splitlines()]
        return [Parsed(0, x, x, error=f"ERR {x}" if x.startswith("bad") else None) for x in lines]

    def decode(self, job: Job, record: Record) -> Work:
        self.started.append(record.input)
        request = ChatRequest(model=job.model_id, messages=(Message("user", (Text(record.input),)),))
        return Work(request, lambda result: f"{record.input} -> {result.text}")

    def error(self, job: Job, record: Record, error: errors.OutcropError) -> str:
        return f"ERR {record.input}: {error.message}"

    def outputs(self, job: Job, records: Iterator[Record]) -> list[tuple[str, bytes]]:
        text = "".join(f"{r.output}\n" for r in records if r.state != "pending")
        return [(join(str(job.spec["output"]), job.id, "out.txt"), text.encode())]


class Setup:
    def __init__(self, tmp: Path, delay_s: float) -> None:
        (tmp / "files" / "bkt").mkdir(parents=True)
        self.tmp = tmp
        self.db = store.connect(f"sqlite:///{tmp / 'o.db'}")
        self.echo = EchoEngine(context_length=4096, max_queue=8, delay_s=delay_s)
        settings = Settings(config_path=tmp / "c.toml", builtin_model=False, builtin_embedding_model=False,
                            models=(ModelSpec(id=ECHO, engine="echo", n_ctx=4096),))  # fmt: skip
        self.usage = UsageRecorder(self.db)
        self.inference = Inference(Registry(settings, {ECHO: self.echo}), usage=self.usage)
        self.jobs = JobStore(self.db)
        self.codec = Lines()
        self.runner = JobRunner(self.jobs, self.inference, Objects([tmp / "files"]), {"lines": self.codec},
                                sweep_s=0.2, poll_s=0.05)  # fmt: skip

    def input(self, name: str, lines: list[str]) -> dict[str, str]:
        (self.tmp / "files" / "bkt" / name).write_text("".join(x + "\n" for x in lines))
        return {"input": f"s3://bkt/{name}", "output": "s3://bkt/out"}

    def output(self, job: Job) -> list[str]:
        return (self.tmp / "files" / "bkt" / "out" / job.id / "out.txt").read_text().splitlines()

    async def wait(self, job_id: str, until: tuple[str, ...] = ("completed", "failed", "stopped", "expired")) -> Job:
        for _ in range(2000):
            job = await asyncio.to_thread(self.jobs.get, job_id)
            assert job is not None
            if job.status in until:
                return job
            await asyncio.sleep(0.02)
        raise AssertionError(f"job {job_id} is still {job.status}")


@contextlib.asynccontextmanager
async def running(tmp: Path, delay_s: float = 0.0) -> AsyncIterator[Setup]:
    setup = Setup(tmp, delay_s)
    await setup.runner.start()
    try:
        yield setup
    finally:
        await setup.runner.close()
        await setup.usage.flush()


def test_two_jobs_on_one_model_take_turns(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path, delay_s=0.005) as s:
            a = await s.runner.submit("lines", "a", ALICE, ECHO, s.input("a.txt", [f"a{i}" for i in range(6)]))
            b = await s.runner.submit("lines", "b", ALICE, ECHO, s.input("b.txt", [f"b{i}" for i in range(6)]))
            done_a, done_b = await s.wait(a.id), await s.wait(b.id)
            assert (done_a.status, done_b.status) == ("completed", "completed")
            assert s.output(done_a) == [f"a{i} -> a{i}" for i in range(6)]
            both = [x for x in s.codec.started if x.startswith(("a", "b"))]
            first_b = both.index("b0")  # once both run, they alternate (one slot: one record at a time)
            tail = both[first_b - 1 : first_b + 7]
            assert all(x[0] != y[0] for x, y in itertools.pairwise(tail)), both

    asyncio.run(main())


def test_an_interactive_request_goes_before_the_batch_and_the_record_it_preempts_runs_again(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path, delay_s=0.05) as s:
            words = " ".join(f"w{i}" for i in range(10))  # 10 words: half a second a record
            job = await s.runner.submit(
                "lines", "slow", ALICE, ECHO, s.input("s.txt", [f"{i} {words}" for i in range(4)])
            )
            while (await asyncio.to_thread(s.jobs.get, job.id)).status != "in_progress":  # type: ignore[union-attr]
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # a record is generating, holding the model's only slot
            request = ChatRequest(model=ECHO, messages=(Message("user", (Text("interactive"),)),))
            answer = await s.inference.complete(request, ALICE)
            assert answer.text == "interactive"
            now_done = await asyncio.to_thread(s.jobs.get, job.id)
            assert now_done is not None and now_done.processed == 0  # it did not wait for the record it found
            done = await s.wait(job.id)
            assert done.status == "completed" and done.succeeded == 4
            assert s.output(done) == [f"{i} {words} -> {i} {words}" for i in range(4)]
            assert len(s.codec.started) == 5  # the preempted record was sent again
            assert s.echo.cancelled == 1

    asyncio.run(main())


def test_a_dead_processs_job_resumes_without_running_done_records_again(tmp_path: Path) -> None:
    async def main() -> None:
        s = Setup(tmp_path, 0.0)
        spec = s.input("r.txt", ["r0", "r1", "bad r2", "r3"])
        job, _ = s.jobs.create("lines", "left", ALICE, ECHO, spec, owner="p_dead_process")
        s.jobs.set_status(job.id, "validating")
        s.jobs.validated(job.id, [spec["input"]], s.codec.parse(job, [b"r0\nr1\nbad r2\nr3\n"]))
        s.jobs.set_status(job.id, "in_progress")
        s.jobs.finish(job.id, 1, True, "r1 -> done before the crash", 1, 1)
        await s.runner.start()
        try:
            done = await s.wait(job.id)
        finally:
            await s.runner.close()
            await s.usage.flush()
        assert done.status == "completed" and (done.succeeded, done.errored) == (3, 1)
        assert s.codec.started == ["r0", "r3"]
        assert s.output(done) == ["r0 -> r0", "r1 -> done before the crash", "ERR bad r2", "r3 -> r3"]

    asyncio.run(main())


def test_stop_keeps_the_records_done_and_expiry_ends_a_job(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path, delay_s=0.02) as s:
            job = await s.runner.submit(
                "lines", "long", ALICE, ECHO, s.input("l.txt", [f"x{i} a b c" for i in range(50)])
            )
            while (await asyncio.to_thread(s.jobs.get, job.id)).processed < 3:  # type: ignore[union-attr]
                await asyncio.sleep(0.01)
            stopping = await s.runner.stop(job.id)
            assert stopping.status == "stopping"
            done = await s.wait(job.id)
            assert done.status == "stopped" and 3 <= done.processed < 50
            assert len(s.output(done)) == done.processed
            with pytest.raises(errors.Conflict):
                await s.runner.stop(job.id)

            late = await s.runner.submit("lines", "late", ALICE, ECHO, s.input("e.txt", ["y a b c"] * 400),
                                         expires_at=now() + timedelta(seconds=1))  # fmt: skip
            expired = await s.wait(late.id)
            assert expired.status == "expired" and expired.processed < 400 and "timeout" in (expired.message or "")

    asyncio.run(main())


def test_batch_usage_is_metered_once_per_record_as_batch(tmp_path: Path) -> None:
    async def main() -> Setup:
        async with running(tmp_path) as s:
            job = await s.runner.submit("lines", "m", ALICE, ECHO, s.input("m.txt", ["one", "two words"]))
            await s.wait(job.id)
            return s

    s = asyncio.run(main())
    with s.db.connect() as db:
        rows = db.execute(select(usage_records).where(usage_records.c.dialect == "batch")).all()
    assert sorted((r.operation, r.status, r.output_tokens) for r in rows) == [
        ("TestJob", "ok", 1),
        ("TestJob", "ok", 2),
    ]
    assert all(r.request_id.startswith("batch-") for r in rows)


def test_an_input_that_cannot_be_read_fails_the_job(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as s:
            job = await s.runner.submit(
                "lines", "m", ALICE, ECHO, {"input": "s3://bkt/missing.txt", "output": "s3://bkt/o"}
            )
            failed = await s.wait(job.id)
            assert failed.status == "failed" and "was not found" in (failed.message or "")

    asyncio.run(main())
