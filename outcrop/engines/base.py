"""The engine seam: small, async, stream-only.

An engine turns one canonical ChatRequest into a stream of typed events. A non-streaming answer is a
fold over that stream (`inference.collect`), never a second code path. Whatever else an engine can
do is declared on its `Capabilities`, not added as abstract methods.

`Admission` is the one bounded, fair queue every engine puts in front of its work: `slots` requests run
at once, up to `max_queue` more wait their turn in arrival order, and past that a request is refused
with Overloaded at once rather than piling up. A call Outcrop makes on behalf of another request on the
same server (a constitution's judge, marked by `on_behalf`) goes ahead of the queue, is never refused
for a full queue, and may use `reserve` extra slots, so it never waits on the very request it serves.

Batch records (marked by `background`, set by the job runner around each record's model call) are a third,
lower class: one takes a free slot only while no interactive or nested call waits, never the reserve, and is
never refused for a full queue (the runner bounds how many it sends). An interactive or nested call that finds
every slot taken while batch records hold some does not wait for them to finish: it runs at once on the reserve
when that is free (else it waits at the head of the queue), and the youngest batch record is told to give its
slot up (its `Background.preempted` is set; the runner closes its stream, which frees the slot at the engine's
next step, and runs the record again later), which gives the reserve back. So an interactive request is never
queued behind a batch record.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from outcrop import errors
from outcrop.conversation import ChatRequest, EmbedRequest, EmbedResult, Event

on_behalf: ContextVar[bool] = ContextVar("outcrop_on_behalf", default=False)
"""True while Outcrop runs a model call for another request (set by `Inference.complete(guard=False)`)."""


class Background:
    """A batch record's claim on a model slot (see Admission): `preempted` is set when an interactive or nested
    call needs the slot; the holder should then close its stream and try the record again later."""

    __slots__ = ("preempted",)

    def __init__(self) -> None:
        self.preempted = asyncio.Event()


background: ContextVar[Background | None] = ContextVar("outcrop_background", default=None)
"""Set by the job runner while a batch record's model call runs: engines admit it below interactive traffic."""


@dataclass(frozen=True)
class Capabilities:
    context_length: int  # the longest prompt + answer one request may have
    tools: bool = True
    grammar: bool = False  # can constrain decoding to a JSON schema


@dataclass(frozen=True)
class EngineStats:
    in_flight: int
    queued: int
    max_queue: int
    completed: int = 0
    cancelled: int = 0  # generations stopped because their caller went away
    slots: int = 1  # requests that can run at once
    kv_cells: int = 0  # KV-cache capacity in tokens (engines that hold one)
    kv_cells_used: int = 0  # tokens held in the KV cache now, idle slots' cached prompts included
    prompt_tokens: int = 0  # prompt tokens of the requests run so far
    prompt_cache_hit_tokens: int = 0  # of those, tokens taken from the prompt cache instead of computed


class Ticket:
    """One admitted request's hold on a slot; `release()` (idempotent) hands it to the next in line."""

    __slots__ = ("_admission", "batch", "nested", "released")

    def __init__(self, admission: Admission, nested: bool, batch: Background | None = None) -> None:
        self._admission = admission
        self.nested = nested
        self.batch = batch  # a batch record's claim (None: an interactive or nested call)
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._admission._release(self)


class Admission:
    def __init__(self, name: str, max_queue: int, *, slots: int = 1, reserve: int = 0) -> None:
        self.name = name
        self.max_queue = max_queue
        self.slots = slots
        self.reserve = reserve  # extra slots only calls made on behalf of another request may use
        self.running = 0
        self._waiting: deque[asyncio.Future[Ticket]] = deque()
        self._nested: deque[asyncio.Future[Ticket]] = deque()
        self._batch: deque[tuple[asyncio.Future[Ticket], Background]] = deque()
        self._batch_running: list[Ticket] = []  # in the order they were granted
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def waiting(self) -> int:
        """Interactive and nested calls waiting (batch records waiting are `batch_waiting`)."""
        return len(self._waiting) + len(self._nested)

    @property
    def batch_waiting(self) -> int:
        return len(self._batch)

    @property
    def batch_running(self) -> int:
        return len(self._batch_running)

    @property
    def pending(self) -> int:
        """Running and waiting."""
        return self.running + self.waiting

    def _grant(self, nested: bool, batch: Background | None = None) -> Ticket:
        self.running += 1
        self._idle.clear()
        ticket = Ticket(self, nested, batch)
        if batch is not None:
            self._batch_running.append(ticket)
        return ticket

    async def acquire(self, *, nested: bool | None = None) -> Ticket:
        nested = on_behalf.get() if nested is None else nested
        batch = None if nested else background.get()  # a call on behalf of a batch record follows the nested rules
        if self._closed:
            raise errors.Overloaded(f"Model '{self.name}' is shutting down. Retry later.")
        queue: deque[Any]
        if nested:
            if self.running < self.slots + self.reserve and not self._nested:
                return self._grant(True)
            queue = self._nested
        elif batch is not None:
            if self.running < self.slots and not self._waiting and not self._nested and not self._batch:
                return self._grant(False, batch)
            queue = self._batch
        else:
            if self.running < self.slots and not self._waiting and not self._nested:
                return self._grant(False)
            if (self.running < self.slots + self.reserve and not self._waiting and not self._nested
                    and self._unasked_batch() > 0):  # fmt: skip
                ticket = self._grant(False)  # at once, on the reserve; a batch record gives its slot back for it
                self._preempt()
                return ticket
            if len(self._waiting) >= self.max_queue:
                raise errors.Overloaded(
                    f"Model '{self.name}' is busy: {self.running} requests are running and {self.waiting} "
                    f"are queued (queue limit {self.max_queue}). Retry later."
                )
            queue = self._waiting
        future: asyncio.Future[Ticket] = asyncio.get_running_loop().create_future()
        item: Any = (future, batch) if batch is not None else future
        queue.append(item)
        if batch is None:
            self._preempt()
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                future.result().release()  # granted just as the caller went away
            else:
                with contextlib.suppress(ValueError):
                    queue.remove(item)
            raise

    def _unasked_batch(self) -> int:
        return sum(1 for t in self._batch_running if t.batch is not None and not t.batch.preempted.is_set())

    def _preempt(self) -> None:
        """Ask batch records to give their slots up, youngest first (it has done the least work): as many as
        interactive and nested calls wait, plus those running beyond `slots` (on the reserve), beyond those already
        asked."""
        asked = sum(1 for t in self._batch_running if t.batch is not None and t.batch.preempted.is_set())
        needed = self.waiting + max(0, self.running - self.slots)
        for ticket in reversed(self._batch_running):
            if needed <= asked:
                return
            if ticket.batch is not None and not ticket.batch.preempted.is_set():
                ticket.batch.preempted.set()
                asked += 1

    def _release(self, ticket: Ticket) -> None:
        self.running -= 1
        if ticket.batch is not None:
            with contextlib.suppress(ValueError):
                self._batch_running.remove(ticket)
        self._wake()
        if self.running == 0:
            self._idle.set()

    def _wake(self) -> None:
        while self._nested and self.running < self.slots + self.reserve:
            future = self._nested.popleft()
            if not future.done():
                future.set_result(self._grant(True))
        while self._waiting and self.running < self.slots:
            future = self._waiting.popleft()
            if not future.done():
                future.set_result(self._grant(False))
        while self._batch and self.running < self.slots and not self._waiting and not self._nested:
            future, batch = self._batch.popleft()
            if not future.done():
                future.set_result(self._grant(False, batch))

    def resize(self, *, slots: int | None = None, max_queue: int | None = None) -> None:
        if slots is not None:
            self.slots = slots
        if max_queue is not None:
            self.max_queue = max_queue
        self._wake()

    @contextlib.asynccontextmanager
    async def turn(self, *, nested: bool | None = None) -> AsyncIterator[Ticket]:
        ticket = await self.acquire(nested=nested)
        try:
            yield ticket
        finally:
            ticket.release()

    async def drain(self) -> None:
        """Refuse new requests and wait for the admitted ones to finish (shutdown)."""
        self._closed = True
        for future in (*self._waiting, *self._nested, *(f for f, _ in self._batch)):
            if not future.done():
                future.set_exception(errors.Overloaded(f"Model '{self.name}' is shutting down. Retry later."))
        self._waiting.clear()
        self._nested.clear()
        self._batch.clear()
        await self._idle.wait()


class Queued:
    """For engines with an `Admission`: their queue limit, read and set through it."""

    _admission: Admission

    @property
    def max_queue(self) -> int:
        return self._admission.max_queue

    @max_queue.setter
    def max_queue(self, value: int) -> None:
        self._admission.resize(max_queue=value)


class Engine(Protocol):
    capabilities: Capabilities

    def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        """Generate. Raises errors from outcrop.errors before the first event when it can
        (bad request, context exceeded, queue full); closing the iterator stops generation."""
        ...

    async def count_tokens(self, request: ChatRequest) -> int:
        """Input tokens this request would use, prompt template included."""
        ...

    def stats(self) -> EngineStats: ...

    async def close(self) -> None: ...


class Embedder(Protocol):
    """The seam for embedding models: texts in, vectors out (no stream to speak of)."""

    dimensions: int
    max_tokens: int  # longest input the model reads; longer inputs are truncated by the model

    async def embed(self, request: EmbedRequest) -> EmbedResult:
        """Raises Overloaded when its queue is full, InvalidRequest for input it cannot take."""
        ...

    def stats(self) -> EngineStats: ...

    async def close(self) -> None: ...
