"""Find tool calls in the text an open model writes, as it streams.

Formats real models emit:
- Hermes / Qwen / many fine-tunes: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`,
  any number of them, possibly after some text.
- Llama 3.x: the whole answer is a JSON object `{"name": ..., "parameters": {...}}`, optionally
  after `<|python_tag|>`; several calls may be separated by `;` or newlines.

The parser holds back only what could still turn into a call (a partial `<tool_call>` tag, or an
answer that starts with `{`); everything else is passed on as text at once.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OPEN = "<tool_call>"
CLOSE = "</tool_call>"
PYTHON_TAG = "<|python_tag|>"


@dataclass(frozen=True)
class TextOut:
    text: str


@dataclass(frozen=True)
class CallOut:
    id: str
    name: str
    arguments: Mapping[str, Any]


Out = TextOut | CallOut


def new_tool_id() -> str:
    return "tooluse_" + secrets.token_urlsafe(16).replace("-", "a").replace("_", "b")


def _as_call(obj: Any, known: set[str] | None) -> CallOut | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):  # some models JSON-encode the arguments twice
        try:
            args = json.loads(args)
        except ValueError:
            return None
    if not isinstance(args, dict):
        return None
    if known is not None and obj["name"] not in known:
        return None
    return CallOut(new_tool_id(), obj["name"], args)


def parse_json_calls(text: str, known: set[str] | None = None) -> list[CallOut] | None:
    """Llama-3 style: the whole text is one or more JSON call objects. None if it is not."""
    body = text.strip()
    if body.startswith(PYTHON_TAG):
        body = body[len(PYTHON_TAG) :].strip()
    decoder = json.JSONDecoder()
    calls: list[CallOut] = []
    pos = 0
    while pos < len(body):
        try:
            obj, end = decoder.raw_decode(body, pos)
        except ValueError:
            return None
        call = _as_call(obj, known)
        if call is None:
            return None
        calls.append(call)
        pos = end
        while pos < len(body) and body[pos] in " \t\r\n;":
            pos += 1
    return calls or None


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `marker`."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-n:]):
            return n
    return 0


class ToolCallParser:
    def __init__(self, tool_names: set[str] | None = None) -> None:
        self._known = tool_names
        self._buf = ""
        self._mode = "start"  # start | text | call | json
        self.calls = 0

    def feed(self, text: str) -> list[Out]:
        self._buf += text
        out: list[Out] = []
        while True:
            if self._mode == "start":
                stripped = self._buf.lstrip()
                if not stripped:
                    return out
                if stripped.startswith("{") or stripped.startswith(PYTHON_TAG):
                    self._mode = "json"
                elif PYTHON_TAG.startswith(stripped):
                    return out
                else:
                    self._mode = "text"
            if self._mode == "json":
                return out  # decided at finish()
            if self._mode == "text":
                at = self._buf.find(OPEN)
                if at < 0:
                    keep = _partial_suffix(self._buf, OPEN)
                    emit = self._buf[: len(self._buf) - keep]
                    self._buf = self._buf[len(emit) :]
                    if emit:
                        out.append(TextOut(emit))
                    return out
                if at:
                    out.append(TextOut(self._buf[:at]))
                self._buf = self._buf[at + len(OPEN) :]
                self._mode = "call"
            if self._mode == "call":
                end = self._buf.find(CLOSE)
                if end < 0:
                    return out
                raw, self._buf = self._buf[:end], self._buf[end + len(CLOSE) :]
                out.extend(self._call_or_text(raw, closed=True))
                self._mode = "text"

    def _call_or_text(self, raw: str, closed: bool) -> list[Out]:
        try:
            call = _as_call(json.loads(raw), self._known)
        except ValueError:
            call = None
        if call is None:
            return [TextOut(OPEN + raw + (CLOSE if closed else ""))]
        self.calls += 1
        return [call]

    def finish(self) -> list[Out]:
        buf, self._buf = self._buf, ""
        if self._mode == "json":
            calls = parse_json_calls(buf, self._known)
            if calls:
                self.calls += len(calls)
                return list(calls)
            return [TextOut(buf)] if buf else []
        if self._mode == "call":
            return self._call_or_text(buf, closed=False)
        return [TextOut(buf)] if buf else []
