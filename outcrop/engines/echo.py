"""A deterministic test double: answers with the last user text, one word per token.

For dialect and contract tests only; the real engine is tested end to end on the built-in model.
A user text that contains a `<tool_call>...</tool_call>` comes back as that tool call, so tool paths
can be exercised too. `delay_s` slows each token, so queue and disconnect paths can be seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from outcrop import errors
from outcrop.conversation import ChatRequest, Event, MessageStart, MessageStop, Usage
from outcrop.engines import chat_template
from outcrop.engines.base import Admission, Capabilities, EngineStats, Queued
from outcrop.engines.textevents import TextEventBuilder


class EchoEngine(Queued):
    def __init__(self, *, context_length: int = 2048, max_queue: int = 8, delay_s: float = 0.0) -> None:
        self.capabilities = Capabilities(context_length=context_length, tools=True, grammar=False)
        self.delay_s = delay_s
        self._admission = Admission("echo", max_queue)
        self._running = 0
        self.cancelled = 0
        self.completed = 0

    def _prompt_words(self, request: ChatRequest) -> list[str]:
        if request.prompt is not None:
            return request.prompt.split()
        text = chat_template.render(
            chat_template.CHATML_TOOLS_TEMPLATE,
            chat_template.template_messages(request),
            chat_template.template_tools(request) or None,
        )
        return text.split()

    async def count_tokens(self, request: ChatRequest) -> int:
        return len(self._prompt_words(request))

    def stats(self) -> EngineStats:
        return EngineStats(
            in_flight=self._running,
            queued=self._admission.waiting,
            max_queue=self.max_queue,
            completed=self.completed,
            cancelled=self.cancelled,
        )

    def _answer(self, request: ChatRequest) -> str:
        if request.prompt is not None:
            return request.prompt
        users = [m for m in request.messages if m.role == "user"]
        return users[-1].text if users else ""

    async def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        n_in = len(self._prompt_words(request))
        if n_in >= self.capabilities.context_length:
            raise errors.ContextWindowExceeded(
                f"The input is {n_in} tokens, longer than this model's context window of "
                f"{self.capabilities.context_length} tokens."
            )
        async with self._admission.turn():
            self._running += 1
            finished = False
            try:
                async for event in self._generate(request, n_in):
                    yield event
                finished = True
            finally:
                self._running -= 1
                if finished:
                    self.completed += 1
                else:
                    self.cancelled += 1

    async def _generate(self, request: ChatRequest, n_in: int) -> AsyncIterator[Event]:
        yield MessageStart(input_tokens=n_in)
        builder = TextEventBuilder({t.name for t in request.tools} if request.tools else None)
        words = self._answer(request).split(" ")
        limit = request.sampling.max_tokens or len(words)
        reason, stop_seq, out, n = "eos", None, "", 0
        for i, word in enumerate(words):
            if n >= limit:
                reason = "length"
                break
            piece = word if i == 0 else " " + word
            hit = next((s for s in request.sampling.stop if s and s in out + piece), None)
            if hit is not None:
                cut = (out + piece).index(hit) - len(out)
                piece, reason, stop_seq = piece[: max(cut, 0)], "stop", hit
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if piece:
                for event in builder.text(piece):
                    yield event
            out += piece
            n += 1
            if hit is not None:
                break
        for event in builder.finish():
            yield event
        yield MessageStop(builder.stop_reason(reason), Usage(n_in, n), stop_seq)

    async def close(self) -> None:
        return None
