"""The engine seam: small, async, stream-only.

An engine turns one canonical ChatRequest into a stream of typed events. A non-streaming answer is a
fold over that stream (`inference.collect`), never a second code path. Whatever else an engine can
do is declared on its `Capabilities`, not added as abstract methods.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from outcrop import errors
from outcrop.conversation import ChatRequest, EmbedRequest, EmbedResult, Event


@dataclass(frozen=True)
class Capabilities:
    context_length: int
    tools: bool = True
    grammar: bool = False  # can constrain decoding to a JSON schema


@dataclass(frozen=True)
class EngineStats:
    in_flight: int
    queued: int
    max_queue: int
    completed: int = 0
    cancelled: int = 0  # generations stopped because their caller went away


class Admission:
    """A model's bounded queue: one request at a time, up to `max_queue` more waiting their turn (in
    order), and past that Overloaded at once rather than a pile-up."""

    def __init__(self, name: str, max_queue: int) -> None:
        self.name = name
        self.max_queue = max_queue
        self.pending = 0  # running + waiting
        self.lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        if self.pending >= 1 + self.max_queue:
            raise errors.Overloaded(
                f"Model '{self.name}' is busy: {self.pending} requests are running or queued "
                f"(queue limit {self.max_queue}). Retry later."
            )
        self.pending += 1
        try:
            async with self.lock:
                yield
        finally:
            self.pending -= 1


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
