"""llama.cpp in-process (llama-cpp-python): the standard CPU engine for GGUF models.

One llama.cpp context per model, so one generation at a time per model: requests wait their turn in
a bounded queue (past `max_queue` they are refused with Overloaded, not piled up). Generation runs on
the model's own worker thread and hands each piece of text to the event loop; closing the event
stream (a client that went away) stops generation at the next token and frees the slot.

The prompt is rendered with the model's own chat template (GGUF `tokenizer.chat_template`); tool
calls are found in the generated text by engines.toolcalls.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ctypes
import json
import os
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from outcrop import errors
from outcrop.conversation import (
    ChatRequest,
    Event,
    MessageStart,
    MessageStop,
    Usage,
)
from outcrop.engines import chat_template
from outcrop.engines.base import Admission, Capabilities, EngineStats
from outcrop.engines.textevents import TextEventBuilder

DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_P = 0.95
DEFAULT_TOP_K = 40


@dataclass
class _Done:
    generated: int
    reason: str  # eos | length | stop | cancelled
    stop_sequence: str | None = None


@dataclass
class _Failed:
    error: BaseException


@lru_cache(maxsize=64)
def _grammar(gbnf: str) -> Any:
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_string(gbnf, verbose=False)


def _schema_gbnf(schema: Any) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        return json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # the converter raises bare Exceptions for what it cannot express
        raise errors.InvalidRequest(f"The JSON schema cannot be enforced: {exc}") from exc


def _tool_call_gbnf(request: ChatRequest) -> str:
    tools = request.tools
    if request.tool_choice.kind == "tool":
        tools = tuple(t for t in tools if t.name == request.tool_choice.name)
        if not tools:
            raise errors.InvalidRequest(
                f"toolChoice names the tool '{request.tool_choice.name}', which is not among the tools given."
            )
    schema = {
        "anyOf": [
            {
                "type": "object",
                "properties": {"name": {"const": t.name}, "arguments": dict(t.input_schema) or {"type": "object"}},
                "required": ["name", "arguments"],
            }
            for t in tools
        ]
    }
    body = _schema_gbnf(schema).replace("root ::=", "call ::=", 1)
    return 'root ::= "<tool_call>" "\\n"? call "\\n"? "</tool_call>"\n' + body


def _json_gbnf(request: ChatRequest) -> str | None:
    fmt = request.response_format
    if fmt is None:
        return None
    if fmt.kind == "json_schema" and fmt.schema is not None:
        return _schema_gbnf(fmt.schema)
    from llama_cpp.llama_grammar import JSON_GBNF

    return str(JSON_GBNF)


class LlamaCppEngine:
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
    ) -> None:
        from llama_cpp import Llama

        path = Path(model_path)
        if not path.is_file():
            raise errors.NotFound(f"Model file {path} does not exist.")
        self.name = name
        # llama-cpp-python defaults to half the cores; decoding on a CPU wants all of them.
        threads = n_threads or os.cpu_count() or 1
        self._llm = Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            n_batch=n_batch,
            verbose=False,
        )
        self._vocab = self._llm._model.vocab
        meta = self._llm.metadata
        self.template = chat_template or meta.get("tokenizer.chat_template") or chat_template_default()
        self._add_bos = bool(self._llm._model.add_bos_token())
        self._bos = self._llm.token_bos()
        self._bos_text = self._piece(self._bos, special=True).decode(errors="replace") if self._bos >= 0 else ""
        eos = self._llm.token_eos()
        self._eos_text = self._piece(eos, special=True).decode(errors="replace") if eos >= 0 else ""
        self.capabilities = Capabilities(context_length=self._llm.n_ctx(), tools=True, grammar=True)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"llama-{name}")
        self._admission = Admission(name, max_queue)
        self._running = 0
        self.completed = 0
        self.cancelled = 0
        self._pieces: dict[int, bytes] = {}

    # --- tokens ----------------------------------------------------------------------------------

    def _piece(self, token: int, special: bool = False) -> bytes:
        import llama_cpp

        buf = ctypes.create_string_buffer(256)
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, 256, 0, special)
        return buf.raw[: max(n, 0)]

    def _is_eog(self, token: int) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def tokenize(self, text: str) -> list[int]:
        tokens = self._llm.tokenize(text.encode(), add_bos=False, special=True)
        if self._add_bos and self._bos >= 0 and (not tokens or tokens[0] != self._bos):
            tokens.insert(0, self._bos)
        return tokens

    def render(self, request: ChatRequest) -> str:
        if request.prompt is not None:
            return request.prompt
        return chat_template.render(
            self.template,
            chat_template.template_messages(request),
            chat_template.template_tools(request) or None,
            bos_token=self._bos_text,
            eos_token=self._eos_text,
        )

    async def count_tokens(self, request: ChatRequest) -> int:
        return len(self.tokenize(self.render(request)))

    @property
    def max_queue(self) -> int:
        return self._admission.max_queue

    @max_queue.setter
    def max_queue(self, value: int) -> None:
        self._admission.max_queue = value

    def stats(self) -> EngineStats:
        return EngineStats(
            in_flight=self._running,
            queued=self._admission.pending - self._running,
            max_queue=self.max_queue,
            completed=self.completed,
            cancelled=self.cancelled,
        )

    # --- generation ------------------------------------------------------------------------------

    def _grammar_for(self, request: ChatRequest) -> Any:
        if request.tools and request.tool_choice.kind in ("any", "tool"):
            return _grammar(_tool_call_gbnf(request))
        gbnf = _json_gbnf(request)
        return _grammar(gbnf) if gbnf else None

    def _generate(
        self,
        tokens: list[int],
        request: ChatRequest,
        max_tokens: int,
        grammar: Any,
        emit: Callable[[object], None],
        cancel: threading.Event,
    ) -> None:
        """Runs on the model's worker thread."""
        import llama_cpp

        s = request.sampling
        temp = DEFAULT_TEMPERATURE if s.temperature is None else s.temperature
        self._llm.set_seed(s.seed if s.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED)
        stops = [x for x in s.stop if x]
        hold = max((len(x) for x in stops), default=1) - 1
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pending = ""  # decoded text not yet emitted (could be the start of a stop sequence)
        generated = 0
        reason = "length"
        gen = self._llm.generate(
            tokens,
            temp=temp,
            top_p=DEFAULT_TOP_P if s.top_p is None else s.top_p,
            top_k=DEFAULT_TOP_K if s.top_k is None else s.top_k,
            min_p=0.0 if temp == 0 else 0.05,
            repeat_penalty=1.0,
            frequency_penalty=s.frequency_penalty,
            presence_penalty=s.presence_penalty,
            grammar=grammar,
        )
        try:
            for token in gen:
                if cancel.is_set():
                    reason = "cancelled"
                    break
                if self._is_eog(token) and not s.ignore_eos:
                    reason = "eos"
                    break
                generated += 1
                piece = self._pieces.get(token)
                if piece is None:
                    piece = self._pieces.setdefault(token, self._piece(token))
                pending += decoder.decode(piece)
                if stops:
                    hit = min(((pending.find(x), x) for x in stops if x in pending), default=None)
                    if hit is not None:
                        if hit[0]:
                            emit(pending[: hit[0]])
                        emit(_Done(generated, "stop", hit[1]))
                        return
                    cut = max(0, len(pending) - hold)
                    if cut:
                        emit(pending[:cut])
                        pending = pending[cut:]
                elif pending:
                    emit(pending)
                    pending = ""
                if generated >= max_tokens:
                    break
            pending += decoder.decode(b"", final=True)
            if pending:
                emit(pending)
            emit(_Done(generated, reason))
        except Exception as exc:
            emit(_Failed(exc))
        finally:
            gen.close()

    async def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        prompt = self.tokenize(self.render(request))
        n_ctx = self.capabilities.context_length
        if len(prompt) >= n_ctx:
            raise errors.ContextWindowExceeded(
                f"The input is {len(prompt)} tokens, longer than this model's context window of "
                f"{n_ctx} tokens. Shorten the input."
            )
        room = n_ctx - len(prompt)
        max_tokens = min(request.sampling.max_tokens or room, room)
        grammar = self._grammar_for(request)
        async with self._admission.turn():
            async for event in self._run(prompt, request, max_tokens, grammar):
                yield event

    async def _run(
        self, prompt: list[int], request: ChatRequest, max_tokens: int, grammar: Any
    ) -> AsyncIterator[Event]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancel = threading.Event()

        def emit(item: object) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        self._running += 1
        job = loop.run_in_executor(self._executor, self._generate, prompt, request, max_tokens, grammar, emit, cancel)
        finished = False
        try:
            yield MessageStart(input_tokens=len(prompt))
            calls_allowed = request.tools and request.tool_choice.kind != "none"
            builder = TextEventBuilder({t.name for t in request.tools} if calls_allowed else None)
            while True:
                item = await queue.get()
                if isinstance(item, str):
                    for event in builder.text(item):
                        yield event
                    continue
                if isinstance(item, _Failed):
                    raise errors.ModelFailure(f"The model failed while generating: {item.error}")
                assert isinstance(item, _Done)
                finished = True
                for event in builder.finish():
                    yield event
                yield MessageStop(
                    stop_reason=builder.stop_reason(item.reason),
                    usage=Usage(input_tokens=len(prompt), output_tokens=item.generated),
                    stop_sequence=item.stop_sequence,
                )
                return
        finally:
            if finished:
                self.completed += 1
            else:
                self.cancelled += 1
            cancel.set()
            # The worker reports its own failures through the queue; here we only wait for it to stop.
            with contextlib.suppress(BaseException):
                await asyncio.shield(job)
            self._running -= 1

    async def close(self) -> None:
        async with self._admission.lock:
            self._executor.shutdown(wait=True)
            self._llm.close()


def chat_template_default() -> str:
    return chat_template.CHATML_TOOLS_TEMPLATE
