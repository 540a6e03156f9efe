"""The Anthropic Messages format: request bodies, responses and stream events.

Spoken by two dialects: Bedrock's InvokeModel for `anthropic.*` models (with `anthropic_version`, no
`model`, chunks wrapped in event-stream frames) and the Anthropic API's `/v1/messages` (with `model`
and `stream`, server-sent events). Each adds its own envelope fields by subclassing `Body`.
"""

from __future__ import annotations

import secrets
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from outcrop import errors
from outcrop.conversation import (
    CACHE_TTLS,
    BlockStop,
    CachePoint,
    ChatRequest,
    ChatResult,
    Event,
    Json,
    Message,
    MessageStart,
    MessageStop,
    Part,
    Sampling,
    StopReason,
    Text,
    TextDelta,
    Tool,
    ToolChoice,
    ToolResult,
    ToolUse,
    ToolUseDelta,
    ToolUseStart,
    Usage,
)


class WireMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class Body(BaseModel):
    """The members both dialects share. Unknown members are refused."""

    model_config = ConfigDict(extra="forbid")
    max_tokens: int = Field(ge=1)
    messages: list[WireMessage] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    stop_sequences: list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


def parse(model: type[Body], raw: object, describe: Any) -> Any:
    if not isinstance(raw, dict):
        raise errors.InvalidRequest("The request body must be a JSON object.")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise errors.InvalidRequest(describe(exc)) from exc


def cache_ttl(raw: Any, where: str) -> int:
    """A cache_control's TTL in seconds: {"type": "ephemeral", "ttl": "5m" | "1h"}."""
    if not isinstance(raw, dict) or raw.get("type") != "ephemeral":
        raise errors.InvalidRequest(f"{where}.cache_control.type must be 'ephemeral'.")
    ttl = raw.get("ttl", "5m")
    if not isinstance(ttl, str) or ttl not in CACHE_TTLS:
        raise errors.InvalidRequest(f"{where}.cache_control.ttl must be one of {sorted(CACHE_TTLS)}, not {ttl!r}.")
    return CACHE_TTLS[ttl]


def _system(blocks: str | list[dict[str, Any]] | None, points: list[CachePoint]) -> str:
    if blocks is None or isinstance(blocks, str):
        return blocks or ""
    texts = []
    for i, b in enumerate(blocks):
        if b.get("type") != "text" or not isinstance(b.get("text"), str):
            raise errors.InvalidRequest(f"system.{i}: only text blocks are supported in the system prompt.")
        texts.append(b["text"])
        if b.get("cache_control") is not None:
            ttl = cache_ttl(b["cache_control"], f"system.{i}")
            points.append(CachePoint("system", part=len("\n\n".join(texts)), ttl_s=ttl))
    return "\n\n".join(texts)


def _tool_result_content(raw: Any, where: str) -> tuple[Text | Json, ...]:
    if isinstance(raw, str):
        return (Text(raw),)
    if not isinstance(raw, list | None):
        raise errors.InvalidRequest(f"{where}.content must be a string or a list of content blocks.")
    content: list[Text | Json] = []
    for i, item in enumerate(raw or []):
        if not isinstance(item, dict) or item.get("type") != "text" or not isinstance(item.get("text"), str):
            raise errors.InvalidRequest(f"{where}.content.{i}: only text tool results are supported by this model.")
        content.append(Text(item["text"]))
    return tuple(content)


def _part(block: dict[str, Any], where: str) -> list[Part]:
    kind = block.get("type")
    if kind == "text" and isinstance(block.get("text"), str):
        return [Text(block["text"])]
    if kind == "tool_use" and isinstance(block.get("name"), str) and isinstance(block.get("input"), dict):
        return [ToolUse(str(block.get("id", "")), block["name"], block["input"])]
    if kind == "tool_result" and isinstance(block.get("tool_use_id"), str):
        content = _tool_result_content(block.get("content", ""), where)
        return [ToolResult(block["tool_use_id"], content, bool(block.get("is_error")))]
    if kind in ("thinking", "redacted_thinking"):
        return []  # past reasoning is not replayed to the model
    if kind in ("image", "document"):
        raise errors.InvalidRequest(f"{where}: this model doesn't support {kind} content; send text.")
    raise errors.InvalidRequest(f"{where} is not a valid content block (type {kind!r}).")


def _tools(body: Body, points: list[CachePoint]) -> tuple[tuple[Tool, ...], ToolChoice]:
    tools = []
    for i, t in enumerate(body.tools or []):
        if not isinstance(t.get("name"), str) or not isinstance(t.get("input_schema"), dict):
            raise errors.InvalidRequest(f"tools.{i}: a tool needs a name and an input_schema object.")
        tools.append(Tool(t["name"], t.get("description", ""), t["input_schema"]))
        if t.get("cache_control") is not None:
            points.append(CachePoint("tools", ttl_s=cache_ttl(t["cache_control"], f"tools.{i}")))
    tc = body.tool_choice or {}
    kind = tc.get("type", "auto")
    if kind not in ("auto", "any", "tool", "none"):
        raise errors.InvalidRequest("tool_choice.type must be one of auto, any, tool, none.")
    if kind == "tool":
        if tc.get("name") not in [t.name for t in tools]:
            raise errors.InvalidRequest(f"tool_choice.name '{tc.get('name')}' is not one of the tools.")
        return tuple(tools), ToolChoice("tool", tc["name"])
    return tuple(tools), ToolChoice(kind)


def decode(model: str, body: Body, cache_control: Any = None) -> ChatRequest:
    """`cache_control`: the Anthropic API's top-level one, a cache point after the last block."""
    points: list[CachePoint] = []
    tools, choice = _tools(body, points)
    system = _system(body.system, points)
    messages: list[Message] = []
    for i, m in enumerate(body.messages):
        if (i == 0 and m.role != "user") or (messages and messages[-1].role == m.role):
            raise errors.InvalidRequest(
                f"messages.{i}: roles must alternate between user and assistant, starting with user."
            )
        blocks = [{"type": "text", "text": m.content}] if isinstance(m.content, str) else m.content
        parts: list[Part] = []
        for j, b in enumerate(blocks):
            parts += _part(b, f"messages.{i}.content.{j}")
            if b.get("cache_control") is not None:
                ttl = cache_ttl(b["cache_control"], f"messages.{i}.content.{j}")
                if parts:
                    points.append(CachePoint("message", i, len(parts) - 1, ttl))
        messages.append(Message(m.role, tuple(parts)))
    if cache_control is not None and messages and messages[-1].parts:
        ttl = cache_ttl(cache_control, "body")
        points.append(CachePoint("message", len(messages) - 1, len(messages[-1].parts) - 1, ttl))
    return ChatRequest(
        model=model,
        messages=tuple(messages),
        cache_points=tuple(points),
        system=system,
        tools=tools,
        tool_choice=choice,
        sampling=Sampling(
            max_tokens=body.max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            top_k=body.top_k,
            stop=tuple(body.stop_sequences or ()),
        ),
    )


STOP_REASONS = {
    StopReason.END_TURN: "end_turn",
    StopReason.MAX_TOKENS: "max_tokens",
    StopReason.STOP_SEQUENCE: "stop_sequence",
    StopReason.TOOL_USE: "tool_use",
    StopReason.GUARDRAIL_INTERVENED: "refusal",  # Anthropic's own stop reason for a safety intervention
}


def message_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def encode(model: str, result: ChatResult, id_prefix: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for p in result.parts:
        if isinstance(p, Text):
            content.append({"type": "text", "text": p.text})
        else:
            content.append({"type": "tool_use", "id": p.id, "name": p.name, "input": dict(p.input)})
    return {
        "id": message_id(id_prefix),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS[result.stop_reason],
        "stop_sequence": result.stop_sequence,
        "usage": {**usage(result.usage), "output_tokens": result.usage.output_tokens},
    }


def usage(u: Usage | MessageStart) -> dict[str, Any]:
    """Anthropic's usage: input_tokens counts the prompt tokens neither read from the cache nor written to it."""
    total, read, write = u.input_tokens, u.cache_read_tokens, u.cache_write_tokens
    long_ttl = u.cache_write_ttl_s >= 3600
    return {
        "input_tokens": max(0, total - read - write),
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": 0 if long_ttl else write,
            "ephemeral_1h_input_tokens": write if long_ttl else 0,
        },
        "output_tokens": 0,
    }


class StreamEncoder:
    """Events -> Anthropic stream event objects, in Anthropic's order. With `ping`, a ping event
    follows the first content_block_start, as the Anthropic API sends it."""

    def __init__(self, model: str, id_prefix: str, ping: bool = False) -> None:
        self.model = model
        self.id_prefix = id_prefix
        self._ping = ping
        self._open: set[int] = set()

    def _start(self, index: int, block: dict[str, Any]) -> list[dict[str, Any]]:
        self._open.add(index)
        out = [{"type": "content_block_start", "index": index, "content_block": block}]
        if self._ping:
            self._ping = False
            out.append({"type": "ping"})
        return out

    def __call__(self, event: Event) -> list[dict[str, Any]]:
        match event:
            case MessageStart():
                message: dict[str, Any] = {
                    "id": message_id(self.id_prefix),
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": usage(event),
                }
                return [{"type": "message_start", "message": message}]
            case TextDelta(index=i, text=t):
                out = [] if i in self._open else self._start(i, {"type": "text", "text": ""})
                out.append({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": t}})
                return out
            case ToolUseStart(index=i, id=tid, name=name):
                return self._start(i, {"type": "tool_use", "id": tid, "name": name, "input": {}})
            case ToolUseDelta(index=i, partial_json=j):
                delta = {"type": "input_json_delta", "partial_json": j}
                return [{"type": "content_block_delta", "index": i, "delta": delta}]
            case BlockStop(index=i):
                return [{"type": "content_block_stop", "index": i}]
            case MessageStop(stop_reason=reason, usage=u, stop_sequence=seq):
                out = [{"type": "ping"}] if self._ping else []  # an empty answer still gets its ping
                self._ping = False
                stop = {"stop_reason": STOP_REASONS[reason], "stop_sequence": seq}
                out.append({"type": "message_delta", "delta": stop, "usage": {"output_tokens": u.output_tokens}})
                out.append({"type": "message_stop"})
                return out
        return []
