"""llama.cpp in-process (llama-cpp-python): the standard CPU engine for GGUF models.

One model serves `parallel` requests at once, decoded together in one batch per step (continuous
batching, scheduler.py); beyond them a bounded, fair queue (engines.base.Admission), then Overloaded.
Every slot keeps its KV state for the prompt cache (prompt_cache.py), so the next turn of a conversation
pays only for its new tokens. One more slot than `parallel` is held back for calls Outcrop makes on behalf
of a request (a constitution's judge), so such a call never waits on the request it serves.

The prompt is rendered with the model's own chat template (GGUF `tokenizer.chat_template`) and tokenized
off the event loop; tool calls are found in the generated text by engines.toolcalls. Closing the event
stream (a caller that went away) frees the slot at the next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from outcrop import errors
from outcrop.conversation import ChatRequest, Event, Message, MessageStart, MessageStop, Usage
from outcrop.engines import chat_template
from outcrop.engines.base import Admission, Capabilities, EngineStats, Queued, background, on_behalf
from outcrop.engines.llamacpp.grammar import _json_gbnf, _tool_call_gbnf, grammar_for
from outcrop.engines.llamacpp.native import Model, SamplerSettings
from outcrop.engines.llamacpp.prompt_cache import common_prefix
from outcrop.engines.llamacpp.scheduler import Done, Failed, Job, Scheduler, Started
from outcrop.engines.textevents import TextEventBuilder

log = logging.getLogger("outcrop.engines.llamacpp")
T = TypeVar("T")

DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_P = 0.95
DEFAULT_TOP_K = 40
DEFAULT_MAX_TOKENS = 4096  # a request that names no limit gets the model's max_tokens, else this
DEFAULT_PROMPT_CACHE_MIB = 256
KV_CELLS_BUDGET = 32768  # the default `parallel` keeps parallel x n_ctx within this many tokens


def default_parallel(n_ctx: int, cores: int | None = None) -> int:
    """Slots for a model: up to 8 (4 per core: decoding on a CPU is bound by memory bandwidth, so a step
    for several sequences costs little more than for one), fewer when the context is long."""
    cores = cores or os.cpu_count() or 1
    return max(1, min(8, 4 * cores, KV_CELLS_BUDGET // max(n_ctx, 1)))


@dataclass(frozen=True)
class _Prepared:
    prompt: list[int]
    max_tokens: int
    grammar: str | None
    cache_mark: int
    cache_ttl_s: float


class LlamaCppEngine(Queued):
    def __init__(
        self,
        model_path: str | Path,
        *,
        name: str = "model",
        n_ctx: int = 8192,
        n_threads: int | None = None,
        n_batch: int = 512,
        max_queue: int = 8,
        chat_template: str | None = None,
        parallel: int | None = None,
        max_tokens: int | None = None,
        prefill_chunk: int = 0,
        prompt_cache_mib: int = DEFAULT_PROMPT_CACHE_MIB,
        repack: bool | None = None,
        flash_attn: bool = False,
    ) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise errors.NotFound(f"Model file {path} does not exist.")
        self.name = name
        self.parallel = parallel or default_parallel(n_ctx)
        if n_batch < self.parallel + 1:
            raise errors.InvalidRequest(
                f"Model '{name}': n_batch ({n_batch}) must be at least parallel + 1 ({self.parallel + 1}): every "
                "slot's next token goes into one batch."
            )
        self._model = Model(
            path,
            n_ctx_seq=n_ctx,
            n_seq=self.parallel + 1,
            n_threads=n_threads,
            n_batch=n_batch,
            repack=repack,
            flash_attn=flash_attn,
        )
        model = self._model
        self.template = chat_template or model.metadata.get("tokenizer.chat_template") or chat_template_default()
        self._bos_text = model.piece(model.bos, special=True).decode(errors="replace") if model.bos >= 0 else ""
        self._eos_text = model.piece(model.eos, special=True).decode(errors="replace") if model.eos >= 0 else ""
        self.n_ctx = min(n_ctx, model.n_ctx_seq)
        self.default_max_tokens = max_tokens or DEFAULT_MAX_TOKENS
        self.capabilities = Capabilities(context_length=self.n_ctx, tools=True, grammar=True)
        self._admission = Admission(name, max_queue, slots=self.parallel, reserve=1)
        self._scheduler = Scheduler(
            model, name=name, prefill_chunk=prefill_chunk, host_cache_bytes=prompt_cache_mib * 1024 * 1024
        )
        self.completed = 0
        self.cancelled = 0
        self._closing = False
        self._threads = 0
        self._threads_idle = asyncio.Event()

    # --- prompts ------------------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        return self._model.tokenize(text)

    def render(self, request: ChatRequest, *, add_generation_prompt: bool = True) -> str:
        if request.prompt is not None:
            return request.prompt
        return chat_template.render(
            self.template,
            chat_template.template_messages(request),
            chat_template.template_tools(request) or None,
            add_generation_prompt=add_generation_prompt,
            bos_token=self._bos_text,
            eos_token=self._eos_text,
        )

    def _cache_mark(self, request: ChatRequest, prompt: list[int]) -> tuple[int, float]:
        """How many prompt tokens lie before the caller's last cache point, and the longest TTL asked for.
        A point's position is where the conversation cut off there, rendered on its own, stops agreeing
        with the whole prompt."""
        if not request.cache_points or request.prompt is not None:
            return 0, 0.0
        mark, ttl = 0, 0.0
        for point in request.cache_points:
            if point.after == "tools":
                cut = replace(request, system="", messages=())
            elif point.after == "system":
                system = request.system if point.part < 0 else request.system[: point.part]
                cut = replace(request, system=system, messages=())
            else:
                m = request.messages[point.message]
                head = Message(m.role, m.parts[: point.part + 1])
                cut = replace(request, messages=(*request.messages[: point.message], head))
            try:
                tokens = self.tokenize(self.render(cut, add_generation_prompt=False))
            except errors.InvalidRequest:  # a template that wants a whole conversation
                continue
            mark = max(mark, common_prefix(tokens, prompt))
            ttl = max(ttl, float(point.ttl_s))
        return min(mark, len(prompt)), ttl

    def _prepare(self, request: ChatRequest) -> _Prepared:
        prompt = self.tokenize(self.render(request))
        if not prompt:
            raise errors.InvalidRequest("The prompt is empty: there is nothing for the model to continue.")
        if len(prompt) >= self.n_ctx:
            raise errors.ContextWindowExceeded(
                f"The input is {len(prompt)} tokens, longer than this model's context window of "
                f"{self.n_ctx} tokens. Shorten the input."
            )
        room = self.n_ctx - len(prompt)
        max_tokens = min(request.sampling.max_tokens or self.default_max_tokens, room)
        mark, ttl = self._cache_mark(request, prompt)
        return _Prepared(prompt, max_tokens, grammar_for(request), mark, ttl)

    async def count_tokens(self, request: ChatRequest) -> int:
        return len(await self._in_thread(lambda: self.tokenize(self.render(request))))

    async def _in_thread(self, work: Callable[[], T]) -> T:
        """Tokenizing reads the model: off the event loop, and counted, so close() frees the model only after."""
        if self._closing:
            raise errors.Overloaded(f"Model '{self.name}' is shutting down. Retry later.")
        self._threads += 1
        try:
            return await asyncio.to_thread(work)
        finally:
            self._threads -= 1
            if self._threads == 0:
                self._threads_idle.set()

    # --- state ----------------------------------------------------------------------------------------

    def stats(self) -> EngineStats:
        s = self._scheduler
        return EngineStats(
            in_flight=self._admission.running,
            queued=self._admission.waiting,
            max_queue=self.max_queue,
            completed=self.completed,
            cancelled=self.cancelled,
            slots=self.parallel,
            kv_cells=self._model.n_ctx_seq * self._model.n_seq,
            kv_cells_used=s.kv_used(),
            prompt_tokens=s.prompt_tokens,
            prompt_cache_hit_tokens=s.cache_hit_tokens,
        )

    # --- generation ---------------------------------------------------------------------------------

    def _settings(self, request: ChatRequest) -> SamplerSettings:
        s = request.sampling
        temperature = DEFAULT_TEMPERATURE if s.temperature is None else s.temperature
        return SamplerSettings(
            temperature=temperature,
            top_p=DEFAULT_TOP_P if s.top_p is None else s.top_p,
            top_k=DEFAULT_TOP_K if s.top_k is None else s.top_k,
            min_p=0.0 if temperature == 0 else 0.05,
            seed=s.seed,
            frequency_penalty=s.frequency_penalty,
            presence_penalty=s.presence_penalty,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        prepared = await self._in_thread(lambda: self._prepare(request))
        nested = on_behalf.get()
        ticket = await self._admission.acquire(nested=nested)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()

        def deliver(item: object) -> None:  # on the event loop
            if isinstance(item, Done | Failed):
                ticket.release()  # the slot is free: the next in line may have it
                if isinstance(item, Done) and item.reason == "cancelled":
                    self.cancelled += 1
                elif isinstance(item, Done):
                    self.completed += 1
            queue.put_nowait(item)

        def emit(item: object) -> None:  # on the worker thread
            with contextlib.suppress(RuntimeError):  # the event loop is gone (shutdown): nobody is listening
                loop.call_soon_threadsafe(deliver, item)

        job = Job(
            prompt=prepared.prompt,
            settings=self._settings(request),
            grammar=prepared.grammar,
            max_tokens=prepared.max_tokens,
            stops=request.sampling.stop,
            ignore_eos=request.sampling.ignore_eos,
            emit=emit,
            nested=nested,
            background=not nested and background.get() is not None,
            cache_mark=prepared.cache_mark,
            cache_ttl_s=prepared.cache_ttl_s,
        )
        try:
            self._scheduler.submit(job)
        except BaseException:
            ticket.release()
            raise
        ended = False
        try:
            item = await queue.get()
            if isinstance(item, Failed):
                ended = True
                raise _error(item.error)
            assert isinstance(item, Started), item
            n_in = len(prepared.prompt)
            ttl = int(prepared.cache_ttl_s or 300)
            yield MessageStart(n_in, item.reused, item.written, ttl)
            usage = Usage(n_in, 0, item.reused, item.written, ttl)
            calls_allowed = request.tools and request.tool_choice.kind != "none"
            builder = TextEventBuilder({t.name for t in request.tools} if calls_allowed else None)
            while True:
                item = await queue.get()
                if isinstance(item, str):
                    for event in builder.text(item):
                        yield event
                    continue
                ended = True
                if isinstance(item, Failed):
                    raise _error(item.error)
                assert isinstance(item, Done), item
                for event in builder.finish():
                    yield event
                yield MessageStop(
                    stop_reason=builder.stop_reason(item.reason),
                    usage=replace(usage, output_tokens=item.generated),
                    stop_sequence=item.stop_sequence,
                )
                return
        finally:
            if not ended:  # the caller went away: the worker drops the job at its next step, then frees the slot
                job.cancel.set()
                self._scheduler.wake()

    async def close(self) -> None:
        self._closing = True
        if self._threads:
            self._threads_idle.clear()
            await self._threads_idle.wait()
        await self._admission.drain()
        await asyncio.to_thread(self._scheduler.stop)
        self._model.close()


def _error(error: BaseException) -> errors.OutcropError:
    if isinstance(error, errors.OutcropError):
        return error
    return errors.model_failure("The model failed while generating", error, log)


def chat_template_default() -> str:
    return chat_template.CHATML_TOOLS_TEMPLATE


__all__ = ["LlamaCppEngine", "_json_gbnf", "_tool_call_gbnf", "chat_template_default", "default_parallel"]
