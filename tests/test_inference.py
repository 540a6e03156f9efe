"""inference: a non-streaming answer is a fold over the events; what an engine's unexpected failure tells
the caller."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from outcrop import errors
from outcrop.conversation import (
    BlockStop,
    Event,
    MessageStart,
    MessageStop,
    StopReason,
    ToolUseDelta,
    ToolUseStart,
    Usage,
)
from outcrop.inference import Stream, collect


async def _events(*events: Event, fail: BaseException | None = None) -> AsyncIterator[Event]:
    for event in events:
        yield event
    if fail is not None:
        raise fail


def _collect(*events: Event, fail: BaseException | None = None) -> object:
    async def main() -> object:
        rest = _events(*events[1:], fail=fail)
        return await collect(Stream("m", time.perf_counter(), events[0], rest))

    return asyncio.run(main())


def test_tool_call_arguments_that_are_not_a_json_object_are_a_model_failure() -> None:
    for bad in ('{"city": ', "[1, 2]", "null"):
        with pytest.raises(errors.ModelFailure, match="not a JSON object"):
            _collect(MessageStart(3), ToolUseStart(0, "t1", "get_weather"), ToolUseDelta(0, bad), BlockStop(0),
                     MessageStop(StopReason.TOOL_USE, Usage(3, 4)))  # fmt: skip


def test_an_unexpected_engine_error_reaches_the_caller_without_its_internals(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR), pytest.raises(errors.ModelFailure) as failure:
        _collect(MessageStart(3), fail=RuntimeError("cannot open /srv/secret/model.gguf at 10.0.0.7"))
    assert "secret" not in failure.value.message and "10.0.0.7" not in failure.value.message
    ref = failure.value.message.split("failure ")[1].split(";")[0]
    assert any(ref in r.getMessage() and "secret" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_a_caller_that_goes_away_while_queued_leaves_no_concurrency_lease(tmp_path: object) -> None:
    """The stream's lease is settled when the caller is cancelled waiting for a slot, not 15 minutes later."""
    from pathlib import Path

    from outcrop import store
    from outcrop.auth.principal import Principal
    from outcrop.config import ModelSpec, Settings
    from outcrop.conversation import ChatRequest, Message, Text
    from outcrop.engines.echo import EchoEngine
    from outcrop.inference import Inference
    from outcrop.metering.quotas import QuotaRule, Quotas
    from outcrop.registry import Registry

    echo = "test.echo-v1:0"
    tmp = Path(str(tmp_path))
    settings = Settings(config_path=tmp / "c.toml", builtin_model=False, builtin_embedding_model=False,
                        models=(ModelSpec(id=echo, engine="echo"),))  # fmt: skip
    engine = EchoEngine(max_queue=4, delay_s=0.05)
    quotas = Quotas(store.connect(f"sqlite:///{tmp / 'o.db'}"), (QuotaRule(principal="bob", concurrent_streams=1),))
    inference = Inference(Registry(settings, {echo: engine}), quotas=quotas)
    alice, bob = Principal("p1", "alice"), Principal("p2", "bob")
    ask = ChatRequest(model=echo, messages=(Message("user", (Text("one two three four five"),)),))

    async def main() -> None:
        first = await inference.stream(ask, alice)  # holds the echo model's one slot
        waiting = asyncio.ensure_future(inference.stream(ask, bob))
        await asyncio.sleep(0.1)
        assert engine.stats().queued == 1
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        async for _ in first:
            pass
        await first.aclose()
        await asyncio.sleep(0.2)  # the lease is settled off the request's path
        again = await asyncio.wait_for(inference.stream(ask, bob), 5)  # refused if the lease had stayed
        async for _ in again:
            pass
        await again.aclose()

    asyncio.run(main())
