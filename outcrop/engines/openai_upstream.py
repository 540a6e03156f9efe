"""Forward to any OpenAI-compatible server already running (vLLM, Ollama, llama-server, another Outcrop).

The canonical request becomes a streamed `POST {base_url}/chat/completions` (or `/completions` for a raw
prompt); the upstream's chunks become typed events. The upstream does its own templating, sampling and
tool-call parsing; its errors come back as ours (4xx -> InvalidRequest / NotFound, 429 or 503 ->
Overloaded, anything else -> ModelFailure). Like the local engine, `parallel` requests may be in flight
at once and `max_queue` more wait their turn (engines.base.Admission), so a slow upstream cannot pile up
work without limit. Closing the event stream (a caller that went away) closes the upstream connection,
which vLLM and llama-server take as a cancellation. Usage passes through, cached prompt tokens
(`prompt_tokens_details.cached_tokens`, vLLM's prefix cache) included.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

from outcrop import errors
from outcrop.conversation import (
    BlockStop,
    ChatRequest,
    Event,
    MessageStart,
    MessageStop,
    StopReason,
    Text,
    TextDelta,
    ToolResult,
    ToolUse,
    ToolUseDelta,
    ToolUseStart,
    Usage,
)
from outcrop.engines.base import Admission, Capabilities, EngineStats, Queued
from outcrop.engines.chat_template import tool_result_text
from outcrop.engines.upstream_http import UpstreamClient, UpstreamError

log = logging.getLogger("outcrop.engines.openai_upstream")

_FINISH = {"stop": StopReason.END_TURN, "length": StopReason.MAX_TOKENS, "tool_calls": StopReason.TOOL_USE}


def _messages(request: ChatRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"role": "system", "content": request.system}] if request.system else []
    for m in request.messages:
        if m.role == "assistant":
            entry: dict[str, Any] = {"role": "assistant", "content": m.text or None}
            calls = [
                {"id": p.id, "type": "function", "function": {"name": p.name, "arguments": json.dumps(dict(p.input))}}
                for p in m.parts
                if isinstance(p, ToolUse)
            ]
            if calls:
                entry["tool_calls"] = calls
            out.append(entry)
            continue
        for p in m.parts:
            if isinstance(p, ToolResult):
                out.append({"role": "tool", "tool_call_id": p.tool_use_id, "content": tool_result_text(p)})
        if any(isinstance(p, Text) for p in m.parts):
            out.append({"role": "user", "content": m.text})
    return out


def _tool_choice(request: ChatRequest) -> Any:
    kind = request.tool_choice.kind
    if kind == "tool":
        return {"type": "function", "function": {"name": request.tool_choice.name}}
    return {"auto": "auto", "any": "required", "none": "none"}[kind]


DEFAULT_PARALLEL = 64  # requests in flight to the upstream at once (vLLM batches up to 256 by default)
DEFAULT_MAX_TOKENS = 4096


def build_body(
    request: ChatRequest, upstream_model: str, default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> tuple[str, dict[str, Any]]:
    """The upstream path and JSON body for one canonical request."""
    s = request.sampling
    body: dict[str, Any] = {"model": upstream_model, "stream": True, "stream_options": {"include_usage": True}}
    for key, value in (
        ("max_tokens", s.max_tokens or default_max_tokens),
        ("temperature", s.temperature),
        ("top_p", s.top_p),
        ("seed", s.seed),
    ):
        if value is not None:
            body[key] = value
    if s.stop:
        body["stop"] = list(s.stop)
    if s.frequency_penalty:
        body["frequency_penalty"] = s.frequency_penalty
    if s.presence_penalty:
        body["presence_penalty"] = s.presence_penalty
    if request.prompt is not None:
        return "/completions", {**body, "prompt": request.prompt}
    body["messages"] = _messages(request)
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": dict(t.input_schema)},
            }
            for t in request.tools
        ]
        body["tool_choice"] = _tool_choice(request)
    fmt = request.response_format
    if fmt is not None:
        body["response_format"] = (
            {"type": "json_schema", "json_schema": {"name": "response", "schema": dict(fmt.schema)}}
            if fmt.kind == "json_schema" and fmt.schema is not None
            else {"type": "json_object"}
        )
    return "/chat/completions", body


def _upstream_error(status: int, text: str) -> errors.OutcropError:
    try:
        message = json.loads(text)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = text[:500] or f"HTTP {status}"
    if status in (429, 503):
        return errors.Overloaded(f"The upstream server is busy: {message}")
    if status == 404:
        return errors.NotFound(f"The upstream server does not know this model: {message}")
    if 400 <= status < 500:
        return errors.InvalidRequest(f"The upstream server refused the request: {message}")
    return errors.ModelFailure(f"The upstream server failed (HTTP {status}): {message}")


class OpenAIUpstreamEngine(Queued):
    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str | None = None,
        context_length: int = 8192,
        max_queue: int = 8,
        parallel: int | None = None,
        max_tokens: int | None = None,
        timeout_s: float = 600.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.capabilities = Capabilities(context_length=context_length, tools=True, grammar=True)
        self.parallel = parallel or DEFAULT_PARALLEL
        self.default_max_tokens = max_tokens or DEFAULT_MAX_TOKENS
        self._admission = Admission(model, max_queue, slots=self.parallel, reserve=1)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = UpstreamClient(self.base_url, headers=headers, timeout_s=timeout_s)
        self.completed = 0
        self.cancelled = 0

    def stats(self) -> EngineStats:
        return EngineStats(self._admission.running, self._admission.waiting, self.max_queue, self.completed,
                           self.cancelled, slots=self.parallel)  # fmt: skip

    async def count_tokens(self, request: ChatRequest) -> int:
        """Upstreams have no standard token-count call: estimate ~4 characters a token."""
        _, body = build_body(request, self.model)
        return max(1, len(json.dumps(body.get("messages") or body.get("prompt"))) // 4)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        path, body = build_body(request, self.model, self.default_max_tokens)
        async with self._admission.turn():
            finished = False
            try:
                async for event in self._events(path, body):
                    yield event
                finished = True
            finally:
                if finished:
                    self.completed += 1
                else:
                    self.cancelled += 1

    async def _events(self, path: str, body: dict[str, Any]) -> AsyncIterator[Event]:
        try:
            async with self._client.post_json(path, body) as r:
                if r.status != 200:
                    raise _upstream_error(r.status, (await r.read()).decode(errors="replace"))
                async for event in _parse(r.lines()):
                    yield event
        except (UpstreamError, TimeoutError) as exc:
            # the upstream's address and what failed go to the log, not to callers
            raise errors.model_failure("Could not reach the upstream model server", exc, log) from exc

    async def close(self) -> None:
        await self._admission.drain()
        await self._client.aclose()


def _usage(raw: dict[str, Any]) -> Usage:
    details = raw.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0),
                 cache_read_tokens=int(cached or 0))  # fmt: skip


async def _parse(lines: AsyncIterator[str]) -> AsyncIterator[Event]:
    """OpenAI stream chunks -> canonical events (text block 0, then one block per tool call)."""
    started = text_open = False
    index = 0
    calls: dict[int, int] = {}  # upstream tool_calls index -> our block index
    finish: str | None = None
    usage = Usage()
    done = False
    async for line in lines:
        # read on to the end of the body after [DONE]: a response left unread closes its connection instead of
        # going back to the pool, and every request would then open a new one
        if done or not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            done = True
            continue
        chunk = json.loads(data)
        if "\\ud" in data.lower():  # an escaped surrogate: a lone one cannot be encoded again (UTF-8)
            chunk = _replace_lone_surrogates(chunk)
        if "error" in chunk:
            raise errors.ModelFailure(f"The upstream server failed mid-stream: {chunk['error']}")
        if chunk.get("usage"):
            usage = _usage(chunk["usage"])
        if not started:
            started = True
            yield MessageStart(input_tokens=0)
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            text = delta.get("content") if "delta" in choice else choice.get("text")
            if text:
                if not text_open and not calls:
                    text_open = True
                yield TextDelta(index, text)
            for call in delta.get("tool_calls") or []:
                k = call.get("index", 0)
                if k not in calls:
                    if text_open:
                        yield BlockStop(index)
                        text_open = False
                        index += 1
                    elif calls:
                        yield BlockStop(calls[max(calls)])
                    calls[k] = index + len(calls)
                    fn = call.get("function") or {}
                    yield ToolUseStart(calls[k], call.get("id") or f"call_{k}", fn.get("name", ""))
                arguments = (call.get("function") or {}).get("arguments")
                if arguments:
                    yield ToolUseDelta(calls[k], arguments)
            finish = choice.get("finish_reason") or finish
    if not started:
        raise errors.ModelFailure("The upstream server ended the stream without an answer.")
    if calls:
        yield BlockStop(max(calls.values()))
    elif text_open:
        yield BlockStop(index)
    reason = _FINISH.get(finish or "stop", StopReason.END_TURN)
    yield MessageStop(reason, usage)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _replace_lone_surrogates(value: Any) -> Any:
    """json.loads joins escaped surrogate pairs into one character and leaves a lone escaped surrogate as it is,
    which no encoder can write out again: it becomes U+FFFD, as a decoder does with a bad byte."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {k: _replace_lone_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_lone_surrogates(v) for v in value]
    return value
