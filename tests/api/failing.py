"""An engine that fails after its first event, to see errors that happen mid-stream."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from outcrop.config import ModelSpec, Settings
from outcrop.conversation import ChatRequest, Event, MessageStart, TextDelta
from outcrop.engines.base import Capabilities, EngineStats

FAILING = "test.failing-v1:0"


class FailingEngine:
    capabilities = Capabilities(context_length=100)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        yield MessageStart(input_tokens=1)
        yield TextDelta(0, "partial")
        raise RuntimeError("simulated engine crash")

    async def count_tokens(self, request: ChatRequest) -> int:
        return 1

    def stats(self) -> EngineStats:
        return EngineStats(0, 0, 0)

    async def close(self) -> None:
        return None


@contextlib.contextmanager
def failing_server() -> Iterator[tuple[str, str]]:
    from tests.conftest import serve

    settings = Settings(
        config_path=Path(tempfile.gettempdir()) / "unused.toml",
        builtin_model=False,
        models=(ModelSpec(id=FAILING, engine="echo"),),
    )
    with serve(settings, {FAILING: FailingEngine()}) as (url, _):
        yield url, FAILING
