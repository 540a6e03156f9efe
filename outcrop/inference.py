"""The only place that orders the steps of one invocation: resolve the model, check access, admit it
under the caller's quotas, run the engine, hand typed events back to the dialect, and, when the stream
closes, settle the quota. Usage is recorded once per invocation: a completed one (its MessageStop reached)
is committed to the store before that last event goes on to the dialect, so before the final frame reaches
the client (metering.usage); one that fails or is cancelled is recorded when it closes. Guardrails (the
request's own, the caller key's and the model's, the last two not switchable off) check the input before
the engine runs and the output on the event stream.

A non-streaming answer is `collect()`: a fold over the same event stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from outcrop import errors
from outcrop.auth.access import AccessControl
from outcrop.auth.principal import Principal
from outcrop.conversation import (
    BlockStop,
    ChatRequest,
    ChatResult,
    EmbedRequest,
    EmbedResult,
    Event,
    GuardrailRef,
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
from outcrop.engines.base import on_behalf
from outcrop.metering.metrics import Metrics
from outcrop.metering.quotas import Quotas
from outcrop.metering.usage import UsageRecord, UsageRecorder
from outcrop.registry import Registry

if TYPE_CHECKING:
    from outcrop.guardrails.runtime import Guardrails

log = logging.getLogger("outcrop.inference")


@dataclass(frozen=True)
class Call:
    """What a dialect is answering, for usage records (set per request by the app; by the job runner for a batch
    record, whose `request_id` is the record's own, so a record run again after a crash is metered once)."""

    dialect: str = "bedrock"
    operation: str = "-"
    request_id: str | None = None  # a completed invocation's usage record takes this id (unique in the store)


current_call: ContextVar[Call | None] = ContextVar("current_call", default=None)


@dataclass
class Stream:
    """An engine's event stream whose first event has already arrived, so that every error that
    can happen before generation (unknown model, queue full, prompt too long) is raised by
    `Inference.stream` itself, while the caller can still answer with a plain HTTP error.
    Closing it (always done by the dialect) settles quotas and records usage, once."""

    model_id: str
    started: float
    first: Event
    rest: AsyncIterator[Event]
    first_token_at: float | None = None
    usage: Usage | None = None
    status: str = "cancelled"  # until the stream ends: ok, or the failure's class
    on_close: Callable[[Stream], Awaitable[None]] | None = None
    on_complete: Callable[[Stream], Awaitable[None]] | None = None  # at MessageStop, before it is passed on
    recorded: bool = False  # its usage record is made (on_complete did it)

    async def _complete(self) -> None:
        on_complete, self.on_complete = self.on_complete, None
        if on_complete is not None:
            await on_complete(self)

    async def __aiter__(self) -> AsyncIterator[Event]:
        if isinstance(self.first, MessageStop):
            self.usage, self.status = self.first.usage, "ok"
            await self._complete()
        yield self.first
        try:
            async for event in self.rest:
                if self.first_token_at is None and isinstance(event, TextDelta | ToolUseStart):
                    self.first_token_at = time.perf_counter()
                if isinstance(event, MessageStop):
                    self.usage, self.status = event.usage, "ok"
                    await self._complete()  # the usage record is in the store before the last frame is sent
                yield event
        except errors.OutcropError as exc:
            self.status = type(exc).__name__
            raise
        except Exception as exc:
            self.status = "ModelFailure"
            raise errors.model_failure(f"The model {self.model_id} failed while generating", exc, log) from exc

    async def aclose(self) -> None:
        aclose = getattr(self.rest, "aclose", None)
        if aclose is not None:
            await aclose()
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            await on_close(self)

    @property
    def latency_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)

    @property
    def ttft_ms(self) -> int | None:
        return None if self.first_token_at is None else int((self.first_token_at - self.started) * 1000)


def _widest(a: str, b: str) -> str:
    """Of two guarding modes, the one that reads more: COMPREHENSIVE over SELECTIVE."""
    return "COMPREHENSIVE" if "COMPREHENSIVE" in (a, b) else "SELECTIVE"


@dataclass(frozen=True)
class RequestLimits:
    """How large one conversation may be, whatever its bytes: a body under the size limit can still hold a
    million one-character messages, each costing the template, the guardrails and the store a little."""

    messages: int = 2000
    tools: int = 512
    content_blocks: int = 10000  # parts of all messages together

    def check(self, request: ChatRequest) -> None:
        def over(what: str, n: int, limit: int, key: str) -> errors.InvalidRequest:
            return errors.InvalidRequest(
                f"The request has {n} {what}; this server takes at most {limit} ({key} under [server] sets it)."
            )

        if len(request.messages) > self.messages:
            raise over("messages", len(request.messages), self.messages, "max_messages")
        if len(request.tools) > self.tools:
            raise over("tools", len(request.tools), self.tools, "max_tools")
        blocks = sum(len(m.parts) for m in request.messages)
        if blocks > self.content_blocks:
            raise over("content blocks", blocks, self.content_blocks, "max_content_blocks")


class Inference:
    def __init__(
        self,
        registry: Registry,
        access: AccessControl | None = None,
        quotas: Quotas | None = None,
        usage: UsageRecorder | None = None,
        guardrails: Guardrails | None = None,
        limits: RequestLimits | None = None,
    ) -> None:
        self.registry = registry
        self.limits = limits or RequestLimits()
        self.guardrails = guardrails
        self.access = access or AccessControl(None, {})
        self.quotas = quotas or Quotas(None, ())
        self.usage = usage
        self._background: set[asyncio.Task[None]] = set()
        self.metrics = Metrics(lambda: {k: e.stats() for k, e in registry.loaded().items()})

    async def _admit(self, principal: Principal, model_id: str, limits: Any) -> Any:
        """The quota's admission (it writes a concurrency lease): if the caller goes away meanwhile, the lease
        it was given is settled anyway."""
        admit = asyncio.ensure_future(asyncio.to_thread(self.quotas.admit, principal, model_id, limits))
        try:
            return await asyncio.shield(admit)
        except asyncio.CancelledError:

            def release(done: asyncio.Future[Any]) -> None:
                if not done.cancelled() and done.exception() is None and done.result() is not None:
                    self._settle_later(principal, model_id, 0, done.result())

            admit.add_done_callback(release)
            raise

    async def _admitted(self, principal: Principal, model_id: str, started: float) -> Any:
        """The quota's ticket (None without limits). A call the quota refuses is recorded as usage with the
        refusal as its status (QuotaExceeded, no tokens), so the usage views count throttled calls."""
        limits = self.quotas.limits(principal, model_id)
        if not limits:
            return None
        try:
            return await self._admit(principal, model_id, limits)
        except errors.OutcropError as exc:
            latency_ms = int((time.perf_counter() - started) * 1000)
            self._record(principal, model_id, type(exc).__name__, None, latency_ms, None)
            raise

    def _settle_later(self, principal: Principal, model_id: str, tokens: int, ticket: Any) -> None:
        task = asyncio.get_running_loop().create_task(
            asyncio.to_thread(self.quotas.settle, principal, model_id, tokens, ticket)
        )
        self._background.add(task)
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("could not settle a quota: %s", task.exception())

    async def authorize(self, identifier: str, principal: Principal) -> str:
        """The model id `identifier` names, if `principal` may use it: NotFound / AccessDenied otherwise.
        Dialects call it before looking at the body, so a caller learns nothing from validation errors
        about a model it may not use."""
        model_id = self.registry.resolve(identifier)
        allowed = self.access.cached(principal, model_id)  # no store read for GA models or recent decisions
        if allowed is None:
            await asyncio.to_thread(self.access.check, principal, model_id)
        elif not allowed:
            self.access.check(principal, model_id)  # raises the right AccessDenied
        return model_id

    def _usage_record(
        self,
        principal: Principal,
        model_id: str,
        status: str,
        usage: Usage | None,
        latency_ms: int,
        ttft_ms: int | None,
    ) -> UsageRecord | None:
        """Count the invocation in the metrics; its usage record, if usage is recorded."""
        call = current_call.get() or Call()
        u = usage or Usage()
        self.metrics.observe(call.dialect, call.operation, model_id, status, latency_ms, ttft_ms, u.input_tokens,
                             u.output_tokens)  # fmt: skip
        if self.usage is None:
            return None
        rec = UsageRecord(datetime.now(UTC), principal.name, model_id, call.dialect, call.operation, u.input_tokens,
                          u.output_tokens, u.cache_read_tokens, u.cache_write_tokens, latency_ms, ttft_ms,
                          status, credential_id=principal.credential_id)  # fmt: skip
        if call.request_id is not None and status == "ok":  # (a failed or cut-off try is a record of its own)
            rec = replace(rec, request_id=call.request_id)
        return rec

    def _record(self, principal: Principal, model_id: str, status: str, usage: Usage | None, latency_ms: int,
                ttft_ms: int | None) -> None:  # fmt: skip
        """A failed or cancelled invocation: buffered, written within a second."""
        rec = self._usage_record(principal, model_id, status, usage, latency_ms, ttft_ms)
        if rec is not None and self.usage is not None:
            self.usage.record(rec)

    async def _commit(self, principal: Principal, model_id: str, status: str, usage: Usage | None, latency_ms: int,
                      ttft_ms: int | None) -> None:  # fmt: skip
        """A completed invocation: in the store before the caller has all of its answer (metering.usage)."""
        rec = self._usage_record(principal, model_id, status, usage, latency_ms, ttft_ms)
        if rec is not None and self.usage is not None:
            await self.usage.commit(rec)

    def _completed(self, principal: Principal, model_id: str, status: str | None = None,
                   ttft: bool = True) -> Callable[[Stream], Awaitable[None]]:  # fmt: skip
        async def complete(stream: Stream) -> None:
            stream.recorded = True
            await self._commit(principal, model_id, status or stream.status, stream.usage, stream.latency_ms,
                               stream.ttft_ms if ttft else None)  # fmt: skip

        return complete

    async def guardrail_refs(
        self, request: ChatRequest, principal: Principal, model_id: str
    ) -> tuple[GuardrailRef, ...]:
        """The request's guardrails plus those the caller's key, the model and the account enforce; enforced
        ones read the whole input (COMPREHENSIVE) unless the account's configuration says otherwise."""
        from outcrop.guardrails.runtime import parse_ref
        from outcrop.guardrails.store import GuardrailStore

        refs = list(request.guardrails)
        enforced: list[GuardrailRef] = []
        for default in (principal.guardrail, self.registry.spec(model_id).guardrail):
            if default:
                ident, version = parse_ref(default)
                enforced.append(GuardrailRef(ident, version, enforced=True, system="COMPREHENSIVE",
                                             messages="COMPREHENSIVE"))  # fmt: skip
        if self.guardrails is not None:
            account = await self.guardrails.store.enforced.current()
            enforced += [e.ref() for e in account if e.applies_to(request.model, model_id)]
        for ref in enforced:
            key = (GuardrailStore.parse_id(ref.identifier), ref.version)
            same = [i for i, r in enumerate(refs) if (GuardrailStore.parse_id(r.identifier), r.version) == key]
            if not same:
                refs.append(ref)
                continue
            # named already (by the request, by ID or ARN, or enforced twice): run once, reading the most either
            # asks for, and holding a stream back (sync) if the enforcement does; the request's trace setting stays
            r = refs[same[0]]
            mode: Literal["sync", "async"] = "sync" if "sync" in (r.stream_mode, ref.stream_mode) else "async"
            refs[same[0]] = replace(r, system=_widest(r.system, ref.system),
                                    messages=_widest(r.messages, ref.messages), stream_mode=mode)  # fmt: skip
        return tuple(refs)

    async def stream(self, request: ChatRequest, principal: Principal, *, whole: bool = False,
                     guard: bool = True) -> Stream:  # fmt: skip
        """`whole`: the caller folds the stream (guardrails check whole text blocks); `guard=False`
        only for Outcrop's own calls (a constitution's judge), never for a caller's."""
        started = time.perf_counter()
        model_id = await self.authorize(request.model, principal)
        self.limits.check(request)
        refs = await self.guardrail_refs(request, principal, model_id) if guard else ()
        guards = check = None
        if refs:
            from outcrop.guardrails.runtime import require

            rails = require(self.guardrails)
            guards = await rails.resolve(refs)  # an unknown guardrail fails before anything runs
            check = await rails.check_input(guards, refs, request)
            request = check.request
            if check.blocking is not None:
                blocked = rails.blocked_stream(check, refs)
                first_event = await anext(blocked)

                async def finish_blocked(stream: Stream) -> None:
                    if not stream.recorded:
                        self._record(principal, model_id, "GuardrailIntervened", stream.usage, stream.latency_ms, None)

                done = self._completed(principal, model_id, "GuardrailIntervened", ttft=False)
                return Stream(model_id, started, first_event, blocked, on_close=finish_blocked, on_complete=done)
        ticket = await self._admitted(principal, model_id, started)

        async def settle(tokens: int) -> None:
            # Off the request's path: the answer does not wait for the store.
            if ticket is not None:
                self._settle_later(principal, model_id, tokens, ticket)

        try:
            _, engine = await self.registry.engine(model_id)
            events = engine.stream(replace(request, model=model_id))
            if guards and check is not None and self.guardrails is not None:
                events = self.guardrails.guard_output(guards, refs, check, events, whole=whole)
            first = await anext(events)
        except StopAsyncIteration:
            failure: errors.OutcropError = errors.ModelFailure("The engine ended without producing a message.")
        except errors.OutcropError as exc:
            failure = exc
        except Exception as exc:
            failure = errors.model_failure(f"The model {model_id} failed", exc, log)
        except BaseException:  # cancelled (the caller went away) while waiting for a slot: no lease left behind
            await settle(0)
            self._record(principal, model_id, "cancelled", None, int((time.perf_counter() - started) * 1000), None)
            raise
        else:

            async def finish(stream: Stream) -> None:
                u = stream.usage
                await settle(u.total_tokens if u else 0)
                if not stream.recorded:
                    self._record(principal, model_id, stream.status, u, stream.latency_ms, stream.ttft_ms)

            return Stream(model_id, started, first, events, on_close=finish,
                          on_complete=self._completed(principal, model_id))  # fmt: skip
        await settle(0)
        self._record(
            principal, model_id, type(failure).__name__, None, int((time.perf_counter() - started) * 1000), None
        )
        raise failure

    async def complete(self, request: ChatRequest, principal: Principal, *, guard: bool = True) -> ChatResult:
        """A whole answer. `guard=False` marks Outcrop's own calls made for another request (a constitution's
        judge): engines let them ahead of the queue, onto a slot kept for them (engines.base.on_behalf)."""
        marked = on_behalf.set(True) if not guard else None
        try:
            stream = await self.stream(request, principal, whole=True, guard=guard)
            try:
                return await collect(stream)
            finally:
                await stream.aclose()
        finally:
            if marked is not None:
                on_behalf.reset(marked)

    async def embed(self, request: EmbedRequest, principal: Principal) -> EmbedResult:
        """Embeddings: access and quotas as for chat; usage records count input tokens."""
        started = time.perf_counter()
        model_id = await self.authorize(request.model, principal)
        ticket = await self._admitted(principal, model_id, started)
        result: EmbedResult | None = None
        status = "ok"
        try:
            _, embedder = await self.registry.embedder(model_id)
            result = await embedder.embed(replace(request, model=model_id))
            return result
        except errors.OutcropError as exc:
            status = type(exc).__name__
            raise
        except Exception as exc:
            status = "ModelFailure"
            raise errors.model_failure(f"The embedding model {model_id} failed", exc, log) from exc
        finally:
            tokens = result.input_tokens if result is not None else 0
            if ticket is not None:
                await asyncio.to_thread(self.quotas.settle, principal, model_id, tokens, ticket)
            latency_ms = int((time.perf_counter() - started) * 1000)
            if status == "ok":  # recorded in the store before the embeddings go out
                await self._commit(principal, model_id, status, Usage(tokens, 0), latency_ms, None)
            else:
                self._record(principal, model_id, status, Usage(tokens, 0), latency_ms, None)

    async def count_tokens(self, request: ChatRequest, principal: Principal) -> int:
        model_id = await self.authorize(request.model, principal)
        self.limits.check(request)
        _, engine = await self.registry.engine(model_id)
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
            try:
                arguments = json.loads("".join(chunks) or "{}")
            except ValueError:
                arguments = None
            if not isinstance(arguments, dict):  # an upstream's tool call whose arguments are no JSON object
                raise errors.ModelFailure(
                    f"The model called the tool '{name}' with arguments that are not a JSON object: "
                    f"{''.join(chunks)[:200]!r}."
                )
            parts.append(ToolUse(tid, name, arguments))
    first_ms = None if stream.first_token_at is None else int((stream.first_token_at - stream.started) * 1000)
    return ChatResult(
        parts=tuple(parts),
        stop_reason=stop.stop_reason,
        usage=replace(stop.usage, input_tokens=stop.usage.input_tokens or input_tokens),
        stop_sequence=stop.stop_sequence,
        latency_ms=stream.latency_ms,
        first_token_ms=first_ms,
        guardrail=stop.guardrail,
    )


__all__ = ["Inference", "StopReason", "Stream", "collect"]
