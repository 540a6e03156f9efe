"""Continuous batching for one llama.cpp model: the worker thread that runs every slot's sequence.

Each step builds one batch and makes one `llama_decode` call for all of it: the next token of every
sequence that is generating, plus a chunk of the prompts still being read. A prompt is read in chunks
sized so that a step takes about `STEP_TARGET_S` while other sequences are generating (measured as it
runs), so a long prompt arriving never freezes the streams already flowing; with nothing generating, a
prompt takes the whole batch. Then every sequence that got logits samples its next token with its own
sampler (its own temperature, top-k/p, seed, penalties and grammar), and its text goes to its caller.

Requests wait in arrival order for a free slot (calls made on behalf of another request first), though
admission (`engines.base.Admission`) lets in no more than there are slots. Interactive prompts are read first
and alone (batch records, `Job.background`, sit those steps out), and batch records' prompts are read in chunks
of about BACKGROUND_STEP_S, so an interactive request's first token waits for at most one short batch step. A
request whose caller went away is dropped at the next step, and its slot is free at once. The slot keeps the KV
state of what it processed, for the prompt cache (see prompt_cache.py).

Messages to the caller go through its `emit`, in order: `Started`, text pieces (str), then `Done` or
`Failed`; `Done` is sent once the slot is free again.
"""

from __future__ import annotations

import codecs
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from outcrop import errors
from outcrop.engines.llamacpp.native import Model, Sampler, SamplerSettings
from outcrop.engines.llamacpp.prompt_cache import HostCache, Plan, SlotState, plan

log = logging.getLogger("outcrop.engines.llamacpp")

STEP_TARGET_S = 1.0  # how long a step may take when it reads prompt tokens beside running generations
BACKGROUND_STEP_S = 0.25  # the same for batch records' prompts: an interactive request arriving waits for less
MIN_CHUNK = 16


@dataclass
class Job:
    prompt: list[int]
    settings: SamplerSettings
    grammar: str | None
    max_tokens: int
    stops: tuple[str, ...]
    ignore_eos: bool
    emit: Callable[[object], None]
    nested: bool = False
    background: bool = False  # a batch record: its prompt is read after interactive ones
    cache_mark: int = 0  # prompt tokens up to the caller's last cache point (0: none)
    cache_ttl_s: float = 0.0
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class Started:
    reused: int  # prompt tokens taken from the prompt cache
    written: int  # prompt tokens computed up to the caller's last cache point


@dataclass(frozen=True)
class Done:
    generated: int
    reason: str  # eos | length | stop | cancelled
    stop_sequence: str | None = None


@dataclass(frozen=True)
class Failed:
    error: BaseException


class _Active:
    """A job in a slot."""

    def __init__(self, job: Job, slot: SlotState, sampler: Sampler, done: int) -> None:
        self.job = job
        self.slot = slot
        self.sampler = sampler
        self.done = done  # prompt tokens in the KV cache
        self.next: int | None = None  # sampled, not yet decoded
        self.generated = 0
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.pending = ""  # decoded text held back: it could be the start of a stop sequence
        stops = [s for s in job.stops if s]
        self.stops = stops
        self.hold = max((len(s) for s in stops), default=1) - 1


class Scheduler:
    def __init__(
        self,
        model: Model,
        *,
        name: str,
        prefill_chunk: int = 0,
        host_cache_bytes: int = 0,
    ) -> None:
        self.model = model
        self.slots = [SlotState(seq) for seq in range(model.n_seq)]
        self.host = HostCache(host_cache_bytes) if host_cache_bytes > 0 else None
        self.prefill_chunk = prefill_chunk  # 0: sized from the measured prompt rate
        self._rate = 0.0  # prompt tokens/s, measured
        self._cond = threading.Condition()
        self._inbox: list[Job] = []
        self._waiting: deque[Job] = deque()
        self._active: list[_Active] = []
        self._stopping = False
        # counters (written here, read by the engine's stats from the event loop)
        self.prompt_tokens = 0
        self.cache_hit_tokens = 0
        self.steps = 0
        self._thread = threading.Thread(target=self._run, name=f"llama-{name}", daemon=True)
        self._thread.start()

    # --- from the event loop ----------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._stopping:
                raise errors.Overloaded("The model is shutting down. Retry later.")
            self._inbox.append(job)
            self._cond.notify()

    def wake(self) -> None:
        """A caller went away: make sure the worker looks (it may be waiting for work)."""
        with self._cond:
            self._cond.notify()

    def busy(self) -> int:
        return sum(1 for s in self.slots if s.busy)

    def kv_used(self) -> int:
        return sum(len(s.tokens) for s in self.slots)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()

    # --- the worker ---------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._inbox and not self._active and not self._stopping:
                        self._cond.wait()
                    if self._stopping:
                        break
                    arrived, self._inbox = self._inbox, []
                for job in arrived:
                    if job.nested:  # ahead of the queue, behind other nested calls
                        at = sum(1 for j in self._waiting if j.nested)
                        self._waiting.insert(at, job)
                    else:
                        self._waiting.append(job)
                self._drop_cancelled()
                self._admit()
                if self._active:
                    self._step()
        except BaseException as exc:  # a bug here must not leave callers waiting forever
            log.exception("the llama.cpp scheduler stopped")
            for a in self._active:
                a.job.emit(Failed(exc))
            for job in self._waiting:
                job.emit(Failed(exc))
            raise
        finally:
            with self._cond:
                self._stopping = True
                left, self._inbox = self._inbox, []
            gone = errors.Overloaded("The model is shutting down. Retry later.")
            for job in [*left, *self._waiting]:
                job.emit(Failed(gone))
            for a in self._active:
                a.sampler.close()
                a.job.emit(Failed(gone))
            self._active.clear()
            self._waiting.clear()

    def _drop_cancelled(self) -> None:
        for job in [j for j in self._waiting if j.cancel.is_set()]:
            self._waiting.remove(job)
            job.emit(Done(0, "cancelled"))
        for a in [a for a in self._active if a.job.cancel.is_set()]:
            self._finish(a, "cancelled")

    def _admit(self) -> None:
        while self._waiting and any(not s.busy for s in self.slots):
            job = self._waiting.popleft()
            try:
                sampler = self.model.sampler(job.settings, job.grammar)  # before any slot is touched
            except errors.OutcropError as exc:
                job.emit(Failed(exc))
                continue
            now = time.monotonic()
            p = plan(job.prompt, self.slots, self.host, now)
            try:
                slot, reuse = self._place(job, p, now)
            except Exception as exc:  # one request's trouble must not stop the others
                sampler.close()
                self._forget(p.slot)
                job.emit(Failed(errors.model_failure("The model could not take the request", exc, log)))
                continue
            self.prompt_tokens += len(job.prompt)
            self.cache_hit_tokens += reuse
            job.emit(Started(reuse, max(0, job.cache_mark - reuse)))
            self._active.append(_Active(job, slot, sampler, reuse))

    def _place(self, job: Job, p: Plan, now: float) -> tuple[SlotState, int]:
        """Carry out the prompt cache's plan for `job`: the slot it runs in, and the prompt tokens reused."""
        model = self.model
        slot = p.slot
        if p.save_first and self.host is not None:
            size = model.state_size(slot.seq)
            if self.host.fits(size):  # never serialize what the cache would throw away
                data = model.save(slot.seq, size)
                if data is not None:
                    self.host.put(slot.tokens, data, slot.pinned_until if slot.pinned else 0.0, now)
        reuse = p.reuse
        pin_until, pinned = slot.pinned_until, slot.pinned
        if p.copy_from is not None:
            model.seq_copy(p.copy_from.seq, slot.seq)
            slot.tokens = p.copy_from.tokens[:reuse]
            pin_until, pinned = p.copy_from.pinned_until, p.copy_from.pinned
        elif p.restore is not None:
            if model.restore(slot.seq, p.restore.data):
                slot.tokens = p.restore.tokens[:reuse]
                assert self.host is not None
                self.host.touch(p.restore, now)
                pin_until, pinned = p.restore.pinned_until, len(p.restore.tokens)
            else:
                model.seq_clear(slot.seq)
                slot.tokens, reuse = [], 0
        else:
            slot.tokens = slot.tokens[:reuse]
        if not model.seq_rm(slot.seq, reuse, -1):  # some memory types cannot cut a sequence short
            model.seq_clear(slot.seq)
            slot.tokens, reuse = [], 0
        if reuse < pinned:  # the pinned prefix did not survive whole: its pin goes with it
            pin_until, pinned = 0.0, 0
        if job.cache_mark:
            pin_until, pinned = max(pin_until, now + job.cache_ttl_s), max(pinned, job.cache_mark)
        slot.pinned_until, slot.pinned = pin_until, pinned
        slot.busy = True
        slot.last_used = now
        return slot, reuse

    def _forget(self, slot: SlotState) -> None:
        """A slot whose state is unknown after a failure: empty it."""
        slot.busy = False
        slot.tokens, slot.pinned, slot.pinned_until = [], 0, 0.0
        self.model.seq_clear(slot.seq)

    def _chunk(self, target_s: float = STEP_TARGET_S) -> int:
        if self.prefill_chunk > 0:
            return self.prefill_chunk
        if self._rate <= 0:
            return 128
        return max(MIN_CHUNK, int(self._rate * target_s))

    def _step(self) -> None:
        model = self.model
        # (seq, position, token, wants logits, job): sorted by sequence below, because llama.cpp computes a batch
        # of several KV streams in one graph only over runs of consecutive sequence ids, taken in batch order
        entries: list[tuple[int, int, int, bool, _Active | None]] = []
        reads: list[tuple[_Active, int]] = []
        # While an interactive prompt is read, batch records sit the step out: its first token comes as on an idle
        # model. Their own prompts are read in smaller chunks, so the step an arriving request waits for is short.
        reading = any(a.next is None and not a.job.background for a in self._active)
        generating = [a for a in self._active if a.next is not None and not (reading and a.job.background)]
        for a in generating:
            assert a.next is not None
            entries.append((a.slot.seq, len(a.slot.tokens), a.next, True, a))
        room = model.n_batch - len(entries)
        if generating:
            room = min(room, self._chunk())
        background_room = 0 if reading else min(room, self._chunk(BACKGROUND_STEP_S))
        for a in sorted(self._active, key=lambda a: a.job.background):  # interactive prompts first
            if a.next is not None or room <= 0 or (a.job.background and background_room <= 0):
                continue
            prompt = a.job.prompt
            take = min(len(prompt) - a.done, room, background_room if a.job.background else room)
            if a.job.background:
                background_room -= take
            end = a.done + take
            for k in range(a.done, end):
                last = k == len(prompt) - 1
                entries.append((a.slot.seq, k, prompt[k], last, a if last else None))
            reads.append((a, take))
            room -= take
        if not entries:
            return
        entries.sort(key=lambda e: (e[0], e[1]))
        tokens = [e[2] for e in entries]
        positions = [e[1] for e in entries]
        seqs = [e[0] for e in entries]
        logits = [e[3] for e in entries]
        sample_at = [(e[4], i) for i, e in enumerate(entries) if e[4] is not None]
        model.set_batch(tokens, positions, seqs, logits)
        started = time.perf_counter()
        rc = model.decode()
        elapsed = time.perf_counter() - started
        self.steps += 1
        read = sum(n for _, n in reads)
        if read >= 32 and elapsed > 0:
            rate = read / elapsed
            self._rate = rate if self._rate <= 0 else 0.7 * self._rate + 0.3 * rate
        if rc != 0:
            self._failed_step(rc, {a for a, _ in sample_at} | {a for a, _ in reads})
            return
        for a in generating:
            assert a.next is not None
            a.slot.tokens.append(a.next)
            a.next = None
        for a, n in reads:
            a.slot.tokens.extend(a.job.prompt[a.done : a.done + n])
            a.done += n
        for a, index in sample_at:
            if a.job.cancel.is_set():
                self._finish(a, "cancelled")
                continue
            try:
                token = a.sampler.sample(model.ctx, index)
                self._accept(a, token)
            except Exception as exc:  # one request's trouble must not stop the others
                if a in self._active:
                    self._fail(a, errors.model_failure("The model failed while sampling", exc, log))

    def _failed_step(self, rc: int, batch: set[_Active]) -> None:
        what = {1: "no room left in the KV cache", 2: "aborted", -1: "invalid batch"}.get(rc, f"error {rc}")
        for a in batch:
            self.model.seq_clear(a.slot.seq)
            a.slot.tokens = []
            self._fail(a, errors.ModelFailure(f"llama.cpp could not decode the batch ({what})."))

    def _accept(self, a: _Active, token: int) -> None:
        model = self.model
        job = a.job
        if model.is_eog(token) and not job.ignore_eos:
            self._finish(a, "eos")
            return
        a.generated += 1
        a.pending += a.decoder.decode(model.piece(token))
        if a.stops:
            hit = min(((a.pending.find(s), s) for s in a.stops if s in a.pending), default=None)
            if hit is not None:
                if hit[0]:
                    job.emit(a.pending[: hit[0]])
                a.pending = ""
                self._finish(a, "stop", hit[1])
                return
            cut = max(0, len(a.pending) - a.hold)
            if cut:
                job.emit(a.pending[:cut])
                a.pending = a.pending[cut:]
        elif a.pending:
            job.emit(a.pending)
            a.pending = ""
        if a.generated >= job.max_tokens:
            self._finish(a, "length")
            return
        a.next = token

    def _release(self, a: _Active) -> None:
        a.sampler.close()
        a.slot.busy = False
        a.slot.last_used = time.monotonic()
        self._active.remove(a)

    def _finish(self, a: _Active, reason: str, stop_sequence: str | None = None) -> None:
        if reason in ("eos", "length"):  # a stop sequence ends the text where it starts
            a.pending += a.decoder.decode(b"", final=True)
            if a.pending:
                a.job.emit(a.pending)
        self._release(a)
        a.job.emit(Done(a.generated, reason, stop_sequence))

    def _fail(self, a: _Active, error: BaseException) -> None:
        self._release(a)
        a.job.emit(Failed(error))


__all__ = ["Done", "Failed", "Job", "Scheduler", "Started"]
