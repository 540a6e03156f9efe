"""Generated text -> typed events: text blocks and tool-use blocks, indexed in order.

Shared by every engine that produces plain text (llama.cpp, the echo test engine).
"""

from __future__ import annotations

import json

from outcrop.conversation import BlockStop, Event, StopReason, TextDelta, ToolUseDelta, ToolUseStart
from outcrop.engines.toolcalls import CallOut, ToolCallParser


class TextEventBuilder:
    """Turns generated text into typed events: text blocks and tool-use blocks, indexed in order."""

    def __init__(self, tool_names: set[str] | None) -> None:
        self._parser = ToolCallParser(tool_names) if tool_names else None
        self._index = 0
        self._open_text = False
        self._space = ""  # whitespace held back: dropped if a tool call follows it
        self.calls = 0

    def text(self, text: str) -> list[Event]:
        if self._parser is None:
            return self._text(text)
        out: list[Event] = []
        for item in self._parser.feed(text):
            out.extend(self._call(item) if isinstance(item, CallOut) else self._text(item.text))
        return out

    def _text(self, text: str) -> list[Event]:
        if not self._open_text and not (self._space + text).strip():
            self._space += text
            return []
        text, self._space = self._space + text, ""
        if not self._open_text:
            self._open_text = True
        return [TextDelta(self._index, text)]

    def _call(self, call: CallOut) -> list[Event]:
        out: list[Event] = []
        self._space = ""
        if self._open_text:
            out.append(BlockStop(self._index))
            self._open_text = False
            self._index += 1
        self.calls += 1
        out += [
            ToolUseStart(self._index, call.id, call.name),
            ToolUseDelta(self._index, json.dumps(call.arguments, ensure_ascii=False)),
            BlockStop(self._index),
        ]
        self._index += 1
        return out

    def finish(self) -> list[Event]:
        out: list[Event] = []
        if self._parser is not None:
            for item in self._parser.finish():
                out.extend(self._call(item) if isinstance(item, CallOut) else self._text(item.text))
        if self._open_text:
            out.append(BlockStop(self._index))
            self._open_text = False
        return out

    def stop_reason(self, reason: str) -> StopReason:
        if self.calls and reason in ("eos", "stop"):
            return StopReason.TOOL_USE
        return {
            "eos": StopReason.END_TURN,
            "stop": StopReason.STOP_SEQUENCE,
        }.get(reason, StopReason.MAX_TOKENS)
