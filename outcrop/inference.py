"""The only place that orders the steps of one invocation: resolve the model, (later: check access,
quota and guardrails), run the engine, and hand typed events back to the dialect.

A non-streaming answer is `collect()`: a fold over the same event stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from outcrop import errors
from outcrop.auth.access import AccessControl
from outcrop.auth.principal import Principal
from outcrop.conversation import (
    BlockStop,
    ChatRequest,
    ChatResult,
    Event,
    MessageStart,
    MessageStop,
    StopReason,
    Text,
    TextDelta,
    ToolUse,
    ToolUseDelta,
    ToolUseStart,
    Usage,
)
from outcrop.registry import Registry

log = logging.getLogger("outcrop.inference")


@dataclass
class Stream:
    """An engine's event stream whose first event has already arrived, so that every error that
    can happen before generation (unknown model, queue full, prompt too long) is raised by
    `Inference.stream` itself, while the caller can still answer with a plain HTTP error."""

    model_id: str
    started: float
    first: Event
    rest: AsyncIterator[Event]
    first_token_at: float | None = None

    async def __aiter__(self) -> AsyncIterator[Event]:
        yield self.first
        try:
            async for event in self.rest:
                if self.first_token_at is None and isinstance(event, TextDelta | ToolUseStart):
                    self.first_token_at = time.perf_counter()
                yield event
        except errors.OutcropError:
            raise
        except Exception as exc:
            log.exception("engine failure on %s", self.model_id)
            raise errors.ModelFailure(f"The model failed while generating: {exc}") from exc

    async def aclose(self) -> None:
        aclose = getattr(self.rest, "aclose", None)
        if aclose is not None:
            await aclose()

    @property
    def latency_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)


class Inference:
    def __init__(self, registry: Registry, access: AccessControl | None = None) -> None:
        self.registry = registry
        self.access = access or AccessControl(None, {})

    async def authorize(self, identifier: str, principal: Principal) -> str:
        """The model id `identifier` names, if `principal` may use it: NotFound / AccessDenied otherwise.
        Dialects call it before looking at the body, so a caller learns nothing from validation errors
        about a model it may not use."""
        model_id = self.registry.resolve(identifier)
        if self.access.state(model_id) != "ga":  # only early access needs the store
            await asyncio.to_thread(self.access.check, principal, model_id)
        return model_id

    async def _check(self, principal: Principal, identifier: str) -> None:
        await self.authorize(identifier, principal)

    async def stream(self, request: ChatRequest, principal: Principal) -> Stream:
        started = time.perf_counter()
        await self._check(principal, request.model)
        model_id, engine = await self.registry.engine(request.model)
        events = engine.stream(replace(request, model=model_id))
        try:
            first = await anext(events)
        except StopAsyncIteration as exc:
            raise errors.ModelFailure("The engine ended without producing a message.") from exc
        except errors.OutcropError:
            raise
        except Exception as exc:
            log.exception("engine failure on %s", model_id)
            raise errors.ModelFailure(f"The model failed: {exc}") from exc
        return Stream(model_id, started, first, events)

    async def complete(self, request: ChatRequest, principal: Principal) -> ChatResult:
        stream = await self.stream(request, principal)
        try:
            return await collect(stream)
        finally:
            await stream.aclose()

    async def count_tokens(self, request: ChatRequest, principal: Principal) -> int:
        await self._check(principal, request.model)
        model_id, engine = await self.registry.engine(request.model)
        return await engine.count_tokens(replace(request, model=model_id))


async def collect(stream: Stream) -> ChatResult:
    texts: dict[int, list[str]] = {}
    tools: dict[int, tuple[str, str, list[str]]] = {}
    order: list[int] = []
    stop: MessageStop | None = None
    input_tokens = 0
    async for event in stream:
        match event:
            case MessageStart(input_tokens=n):
                input_tokens = n
            case TextDelta(index=i, text=t):
                if i not in texts:
                    texts[i] = []
                    order.append(i)
                texts[i].append(t)
            case ToolUseStart(index=i, id=tid, name=name):
                tools[i] = (tid, name, [])
                order.append(i)
            case ToolUseDelta(index=i, partial_json=j):
                tools[i][2].append(j)
            case BlockStop():
                pass
            case MessageStop():
                stop = event
    if stop is None:
        raise errors.ModelFailure("The engine ended without a stop reason.")
    parts: list[Text | ToolUse] = []
    for i in order:
        if i in texts:
            parts.append(Text("".join(texts[i])))
        else:
            tid, name, chunks = tools[i]
            parts.append(ToolUse(tid, name, json.loads("".join(chunks) or "{}")))
    first_ms = None if stream.first_token_at is None else int((stream.first_token_at - stream.started) * 1000)
    return ChatResult(
        parts=tuple(parts),
        stop_reason=stop.stop_reason,
        usage=Usage(stop.usage.input_tokens or input_tokens, stop.usage.output_tokens),
        stop_sequence=stop.stop_sequence,
        latency_ms=stream.latency_ms,
        first_token_ms=first_ms,
    )


__all__ = ["Inference", "StopReason", "Stream", "collect"]
