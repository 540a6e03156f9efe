"""The durable job runner: runs every batch job's records on the engines, inside the server, below interactive traffic.

A job is driven by one task of this process (`_drive`): it validates the inputs (the codec splits them into
records, all stored at once), runs the records, then writes the outputs and its final status. Records run on one
`_Lane` per model: as many workers as the model has slots, each taking the next record from the lane's jobs in
turn (round robin, so jobs on one model share it fairly). Each record is a call through `Inference`, as the
job's owner (their access, guardrails and quotas), marked `engines.base.background` so that the engine admits
it below interactive requests and takes its slot back when one waits (the record is then run again later), and
metered as dialect "batch" under the record's own request id (`inference.Call`), so a record run twice after a
crash is metered once.

Checkpoints: every record's output line is committed with the job's counters (`JobStore.finish`); the outputs are
assembled from those rows and written atomically (objects.py) when the job ends. A server killed mid-job leaves
its jobs owned by a dead process; the next server to start (or a running one's sweep, every `sweep_s`) takes
them over and runs only the records still pending, so the output holds every record exactly once.

Stop (`stop`): the job is marked stopping in the store, its records in flight are cancelled at once (their slots
free at the engine's next step), and its outputs are written with the records done so far. A process running a
job notices a stop or the job's expiry (timeoutDurationInHours) made elsewhere within `poll_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from outcrop import errors
from outcrop.conversation import EmbedRequest
from outcrop.engines.base import Background, background
from outcrop.inference import Call, Inference, current_call
from outcrop.jobs.codec import Codec
from outcrop.jobs.store import ACTIVE, FINISHED, RUNNABLE, Job, JobStore, Parsed, Record, now
from outcrop.objects import Objects
from outcrop.store.processes import ProcessRegistry
from outcrop.store.schema import batch_jobs, processes

log = logging.getLogger("outcrop.jobs")

SWEEP_S = 10.0  # how often a server looks for jobs whose process died
POLL_S = 1.0  # how often it looks for stops and expiries of the jobs it runs
RETRIES = 8  # a busy model or a spent quota is waited out this often (backing off) before the record fails
DIALECT = "batch"  # usage records of batch records


@dataclass
class _Outcome:
    ok: bool
    line: str
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(eq=False)
class _Running:
    """A job whose records this process is running."""

    job: Job
    codec: Codec
    queue: deque[int]  # seq of the records still to start
    lane: _Lane | None = None
    in_flight: int = 0
    calls: set[asyncio.Task[_Outcome]] = field(default_factory=set)
    stopping: bool = False
    started: bool = False  # moved to in_progress
    drained: asyncio.Event = field(default_factory=asyncio.Event)

    def check_drained(self) -> None:
        if self.in_flight == 0 and (self.stopping or not self.queue):
            self.drained.set()

    def stop(self) -> None:
        self.stopping = True
        self.queue.clear()
        for call in list(self.calls):
            call.cancel()
        self.check_drained()


class _Lane:
    """One model's workers and the jobs that share them."""

    def __init__(self, model_id: str, width: int) -> None:
        self.model_id = model_id
        self.width = width
        self.jobs: list[_Running] = []
        self.turn = 0
        self.ready = asyncio.Event()
        self.workers: list[asyncio.Task[None]] = []

    def add(self, job: _Running) -> None:
        self.jobs.append(job)
        self.ready.set()

    def remove(self, job: _Running) -> None:
        if job in self.jobs:
            self.jobs.remove(job)

    def pick(self) -> tuple[_Running, int] | None:
        """The next record, from the next job in turn that has one."""
        n = len(self.jobs)
        for i in range(n):
            job = self.jobs[(self.turn + i) % n]
            if job.queue and not job.stopping:
                self.turn = (self.turn + i + 1) % n
                return job, job.queue.popleft()
        return None


class JobRunner:
    def __init__(self, store: JobStore, inference: Inference, objects: Objects, codecs: Mapping[str, Codec], *,
                 sweep_s: float = SWEEP_S, poll_s: float = POLL_S, retries: int = RETRIES) -> None:  # fmt: skip
        self.store = store
        self.inference = inference
        self.objects = objects
        self.codecs = dict(codecs)
        self.sweep_s = sweep_s
        self.poll_s = poll_s
        self.retries = retries
        self._registry: ProcessRegistry | None = None
        self._drivers: dict[str, asyncio.Task[None]] = {}
        self._running: dict[str, _Running] = {}
        self._lanes: dict[str, _Lane] = {}
        self._lane_lock = asyncio.Lock()
        self._closing = False
        self._watcher: asyncio.Task[None] | None = None

    # --- this process and the others ---------------------------------------------------------------

    @property
    def owner(self) -> str:
        """This process's id in the store (registers, and starts its heartbeat, on first use: blocking)."""
        if self._registry is None:
            self._registry = ProcessRegistry(self.store.engine)
        return self._registry.id

    def _alive(self) -> Callable[[str | None], bool]:
        owner = self.owner
        assert self._registry is not None
        registry = self._registry
        with self.store.engine.connect() as db:
            rows = {r.id: r for r in db.execute(select(processes))}
        at = time.time()
        return lambda pid: pid == owner or (pid is not None and registry.alive(rows.get(pid), at))

    # --- the server's lifespan ---------------------------------------------------------------------

    async def start(self) -> None:
        """At server start: resume what dead processes left, then keep watching."""
        self._closing = False
        self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="jobs watcher")

    async def close(self) -> None:
        """At shutdown: cancel the records in flight (they stay pending) and let the jobs go, for the next server."""
        self._closing = True
        tasks = [t for t in (self._watcher, *self._drivers.values()) if t is not None]
        tasks += [w for lane in self._lanes.values() for w in lane.workers]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._lanes.clear()
        if self._registry is not None:
            owner = self.owner
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._release, owner)
            self._registry.stop()

    def _release(self, owner: str) -> None:
        """This process's unfinished jobs belong to nobody now: the next server takes them at once."""
        c = batch_jobs.c
        with self.store.engine.begin() as db:
            db.execute(update(batch_jobs).where(c.owner == owner, c.status.in_(list(ACTIVE))).values(owner=None))

    async def _watch(self) -> None:
        last_sweep = 0.0
        while not self._closing:
            try:
                if time.monotonic() - last_sweep >= self.sweep_s:
                    last_sweep = time.monotonic()
                    await self.sweep()
                await self._poll()
            except errors.ServiceUnavailable:
                pass  # the store said why; try again
            except Exception:
                log.exception("the job watcher failed; trying again")
            await asyncio.sleep(self.poll_s)

    async def sweep(self) -> None:
        """Take over and resume the jobs whose process is dead."""
        alive = await asyncio.to_thread(self._alive)
        for job in await asyncio.to_thread(self.store.orphans, alive):
            if job.id in self._drivers or job.codec not in self.codecs:
                continue
            if await asyncio.to_thread(self.store.take_over, job, self.owner):
                log.info("resuming batch job %s (%s, %d of %d records done)", job.id, job.status, job.processed,
                         job.total)  # fmt: skip
                self._spawn(job.id)

    async def _poll(self) -> None:
        """Stops asked of another process, and expiries, of the jobs running here."""
        if not self._running:
            return
        statuses = await asyncio.to_thread(self.store.statuses, list(self._running))
        at = now()
        for job_id, running in list(self._running.items()):
            expired = running.job.expires_at is not None and at >= running.job.expires_at
            if (statuses.get(job_id) == "stopping" or expired) and not running.stopping:
                running.stop()

    def _spawn(self, job_id: str) -> None:
        if self._closing:
            return
        task = asyncio.get_running_loop().create_task(self._drive(job_id), name=f"batch job {job_id}")
        self._drivers[job_id] = task
        task.add_done_callback(lambda t: self._drivers.pop(job_id, None) if self._drivers.get(job_id) is t else None)

    # --- the API's side ----------------------------------------------------------------------------

    async def submit(self, codec: str, name: str, principal: Any, model_id: str, spec: dict[str, Any], *,
                     client_token: str | None = None, request_hash: str | None = None,
                     expires_at: datetime | None = None) -> Job:  # fmt: skip
        """A new job (or, for a retried client token, the job it made), started at once."""
        owner = await asyncio.to_thread(lambda: self.owner)
        job, made = await asyncio.to_thread(self.store.create, codec, name, principal, model_id, spec,
                                            client_token=client_token, request_hash=request_hash,
                                            expires_at=expires_at, owner=owner)  # fmt: skip
        if made:
            self._spawn(job.id)
        return job

    async def stop(self, job_id: str) -> Job:
        """Ask the job to stop: at once here, within poll_s where another process runs it."""
        job = await asyncio.to_thread(self.store.get, job_id)
        if job is None:
            raise errors.NotFound(f"The job '{job_id}' was not found.")
        stoppable = ("submitted", "validating", "scheduled", "in_progress")
        if not await asyncio.to_thread(self.store.set_status, job_id, "stopping", only_from=stoppable):
            current = await asyncio.to_thread(self.store.get, job_id)
            if current is not None and current.status == "stopping":
                return current
            raise errors.Conflict(f"The job '{job_id}' is {current.status if current else 'gone'}: only a job that "
                                  "has not finished can be stopped.")  # fmt: skip
        running = self._running.get(job_id)
        if running is not None:
            running.stop()
        elif job_id not in self._drivers:
            alive = await asyncio.to_thread(self._alive)
            if not alive(job.owner) and await asyncio.to_thread(self.store.take_over, job, self.owner):
                self._spawn(job_id)  # nobody runs it: finish it here
        found = await asyncio.to_thread(self.store.get, job_id)
        assert found is not None
        return found

    # --- one job -----------------------------------------------------------------------------------

    async def _drive(self, job_id: str) -> None:
        try:
            job = await asyncio.to_thread(self.store.get, job_id)
            if job is None or job.status in FINISHED:
                return
            codec = self.codecs[job.codec]
            if job.status in ("submitted", "validating"):
                job = await self._validate(job, codec)
            while job.status in RUNNABLE and not _expired(job):
                if not await self._run_records(job, codec):
                    break  # nothing was left to run
                job = await self._reload(job_id)  # (a record put back after a failure runs in the next round)
            await self._finish(job_id, codec)
        except asyncio.CancelledError:
            raise
        except errors.OutcropError as exc:
            log.info("batch job %s failed: %s", job_id, exc.message)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.store.fail, job_id, exc.message)
        except Exception as exc:
            log.exception("batch job %s failed", job_id)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.store.fail, job_id, f"Internal error: {type(exc).__name__}: {exc}")

    async def _validate(self, job: Job, codec: Codec) -> Job:
        """Read the inputs and store every record (a job whose inputs cannot be read fails, saying why)."""
        if not await asyncio.to_thread(self.store.set_status, job.id, "validating",
                                       only_from=("submitted", "validating")):  # fmt: skip
            return await self._reload(job.id)
        try:
            inputs = await asyncio.to_thread(codec.inputs, job, self.objects)
            files = [await asyncio.to_thread(self.objects.read, uri) for uri in inputs]
            records: list[Parsed] = await asyncio.to_thread(codec.parse, job, files)
        except errors.OutcropError as exc:
            await asyncio.to_thread(self.store.fail, job.id, exc.message)
            return await self._reload(job.id)
        await asyncio.to_thread(self.store.validated, job.id, inputs, records)
        return await self._reload(job.id)

    async def _reload(self, job_id: str) -> Job:
        job = await asyncio.to_thread(self.store.get, job_id)
        if job is None:
            raise errors.NotFound(f"The job '{job_id}' was deleted.")
        return job

    async def _run_records(self, job: Job, codec: Codec) -> int:
        """Run the job's pending records until none is left or it stops; how many were pending."""
        try:
            model_id = await self.inference.authorize(job.model_id, job.principal)
        except (errors.NotFound, errors.AccessDenied) as exc:
            raise errors.InvalidRequest(f"The job's owner can no longer use the model: {exc.message}") from exc
        seqs = await asyncio.to_thread(self.store.pending, job.id)
        running = _Running(job, codec, deque(seqs), started=job.status == "in_progress")
        running.check_drained()
        if running.drained.is_set():
            return 0
        lane = await self._lane(model_id)
        running.lane = lane
        self._running[job.id] = running
        if await asyncio.to_thread(self.store.statuses, [job.id]) != {job.id: job.status}:
            running.stop()  # stopped while it was being set up
        lane.add(running)
        try:
            await running.drained.wait()
        finally:
            lane.remove(running)
            self._running.pop(job.id, None)
            if not running.drained.is_set():  # this driver was cancelled (shutdown): cut its records off too
                running.stop()
        return len(seqs)

    async def _finish(self, job_id: str, codec: Codec) -> None:
        """Write the outputs and the final status: stopped, expired or completed."""
        job = await self._reload(job_id)
        if job.status in FINISHED:
            return
        if job.status == "stopping":
            final, message = "stopped", None
        elif _expired(job) and job.processed < job.total:
            final = "expired"
            message = f"The job ran past its timeout; {job.processed} of {job.total} records were processed."
        else:
            final, message = "completed", None
            await asyncio.to_thread(self.store.set_status, job_id, "finalizing", only_from=("scheduled", "in_progress"))
        if job.inputs:
            outputs = await asyncio.to_thread(lambda: codec.outputs(job, self.store.outputs(job_id)))
            try:
                for uri, data in outputs:
                    await asyncio.to_thread(self.objects.write, uri, data)
            except errors.OutcropError as exc:
                await asyncio.to_thread(self.store.fail, job_id, f"The outputs could not be written: {exc.message}")
                return
        await asyncio.to_thread(self.store.set_status, job_id, final, message=message)
        log.info("batch job %s %s: %d records, %d succeeded, %d failed", job_id, final, job.total, job.succeeded,
                 job.errored)  # fmt: skip

    # --- records -----------------------------------------------------------------------------------

    async def _lane(self, model_id: str) -> _Lane:
        async with self._lane_lock:
            lane = self._lanes.get(model_id)
            if lane is None:
                registry = self.inference.registry
                if registry.kind(model_id) == "embedding":
                    _, embedder = await registry.embedder(model_id)
                    width = embedder.stats().slots
                else:
                    _, engine = await registry.engine(model_id)
                    width = engine.stats().slots
                lane = _Lane(model_id, max(1, width))
                loop = asyncio.get_running_loop()
                lane.workers = [loop.create_task(self._worker(lane), name=f"batch {model_id} #{i}")
                                for i in range(lane.width)]  # fmt: skip
                self._lanes[model_id] = lane
            return lane

    async def _worker(self, lane: _Lane) -> None:
        while True:
            picked = lane.pick()
            if picked is None:
                lane.ready.clear()
                await lane.ready.wait()
                continue
            running, seq = picked
            running.in_flight += 1
            again = False
            try:
                await self._record(running, seq)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store cannot answer (or a bug): the record stays pending, tried again
                if not isinstance(exc, errors.ServiceUnavailable):
                    log.exception("batch job %s: record %d could not be run; trying again", running.job.id, seq)
                again = not running.stopping
            finally:
                running.in_flight -= 1
                if again:
                    running.queue.append(seq)
                running.check_drained()
            if again:
                await asyncio.sleep(self.poll_s)

    async def _record(self, running: _Running, seq: int) -> None:
        job = running.job
        record = await asyncio.to_thread(self.store.record, job.id, seq)
        if record is None or record.state != "pending" or running.stopping:
            return
        if not running.started:
            running.started = True
            await asyncio.to_thread(self.store.set_status, job.id, "in_progress", only_from=("scheduled",))
        holder = Background()
        call = asyncio.get_running_loop().create_task(self._call(job, running.codec, record, holder))
        running.calls.add(call)
        preempted = asyncio.get_running_loop().create_task(holder.preempted.wait())
        try:
            await asyncio.wait({call, preempted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            preempted.cancel()
            if not call.done():  # an interactive request wants the slot (or the server is closing)
                call.cancel()
                await asyncio.wait({call})
            running.calls.discard(call)
        if call.cancelled():
            if not running.stopping and not self._closing:
                running.queue.appendleft(seq)  # again, once the slot is free
                if running.lane is not None:
                    running.lane.ready.set()
            return
        outcome = call.result()
        await asyncio.to_thread(self.store.finish, job.id, seq, outcome.ok, outcome.line, outcome.input_tokens,
                                outcome.output_tokens)  # fmt: skip

    async def _call(self, job: Job, codec: Codec, record: Record, holder: Background) -> _Outcome:
        """The record's model call, below interactive traffic, as the job's owner; its outcome."""
        background.set(holder)
        current_call.set(Call(DIALECT, codec.operation, request_id=f"batch-{job.id}-{record.seq}"))
        try:
            work = codec.decode(job, record)
        except errors.OutcropError as exc:
            return _Outcome(False, codec.error(job, record, exc))
        attempt = 0
        while True:
            try:
                if isinstance(work.request, EmbedRequest):
                    embedded = await self.inference.embed(work.request, job.principal)
                    return _Outcome(True, work.encode(embedded), embedded.input_tokens, 0)
                result = await self.inference.complete(work.request, job.principal)
                return _Outcome(True, work.encode(result), result.usage.input_tokens, result.usage.output_tokens)
            except (errors.Overloaded, errors.QuotaExceeded) as exc:  # busy, or the owner's quota spent for now
                if attempt >= self.retries:
                    return _Outcome(False, codec.error(job, record, exc))
                await asyncio.sleep(min(30.0, 0.5 * 2**attempt))
                attempt += 1
            except errors.OutcropError as exc:
                return _Outcome(False, codec.error(job, record, exc))
            except Exception as exc:
                log.exception("batch job %s: record %d failed", job.id, record.seq)
                failure = errors.InternalFailure(f"The record could not be run: {type(exc).__name__}.")
                return _Outcome(False, codec.error(job, record, failure))

    def progress(self) -> dict[str, Any]:
        """What runs here now, for metrics: jobs by model, records in flight and waiting to start."""
        return {
            lane.model_id: {"jobs": len(lane.jobs), "in_flight": sum(j.in_flight for j in lane.jobs),
                            "queued": sum(len(j.queue) for j in lane.jobs)}
            for lane in self._lanes.values()
        }  # fmt: skip


def _expired(job: Job) -> bool:
    return job.expires_at is not None and now() >= job.expires_at
