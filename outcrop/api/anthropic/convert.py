"""Anthropic API bodies (`/v1/messages`, `/v1/messages/count_tokens`) <-> canonical types."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from outcrop.api.anthropic.errors import error_body
from outcrop.api.validation import describe
from outcrop.conversation import ChatRequest, ChatResult, Event, ResponseFormat
from outcrop.errors import InvalidRequest, OutcropError
from outcrop.formats import anthropic_messages
from outcrop.formats.anthropic_messages import WireMessage

ID_PREFIX = "msg_"


class MessagesBody(anthropic_messages.Body):
    model: str = Field(min_length=1)
    stream: bool = False
    # accepted, and change nothing here: there is one tier and one place
    service_tier: str | None = None
    cache_control: dict[str, Any] | None = None  # automatic caching: a cache point after the last block
    inference_geo: str | None = None
    speed: str | None = None
    output_config: dict[str, Any] | None = None


class CountTokensBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1)
    messages: list[WireMessage] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None


def _output_format(config: dict[str, Any] | None) -> ResponseFormat | None:
    fmt = (config or {}).get("format")
    if not fmt:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise InvalidRequest("output_config.format must be {type: json_schema, schema: {...}}.")
    return ResponseFormat("json_schema", fmt["schema"])


def decode_request(raw: object) -> tuple[ChatRequest, bool]:
    body: MessagesBody = anthropic_messages.parse(MessagesBody, raw, describe)
    request = anthropic_messages.decode(body.model, body, body.cache_control)
    return replace(request, response_format=_output_format(body.output_config)), body.stream


def decode_count_tokens(raw: object) -> ChatRequest:
    body: CountTokensBody = anthropic_messages.parse(CountTokensBody, raw, describe)  # type: ignore[arg-type]
    full = anthropic_messages.Body(max_tokens=1, **body.model_dump(exclude={"model"}, exclude_none=True))
    return anthropic_messages.decode(body.model, full)


def encode_response(model: str, result: ChatResult) -> dict[str, Any]:
    return anthropic_messages.encode(model, result, ID_PREFIX)


def sse(obj: dict[str, Any]) -> bytes:
    return f"event: {obj['type']}\ndata: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()


class StreamEncoder:
    """Events -> server-sent events, Anthropic's sequence (ping after the first block start)."""

    def __init__(self, model: str) -> None:
        self._encode = anthropic_messages.StreamEncoder(model, ID_PREFIX, ping=True)

    def __call__(self, event: Event) -> list[bytes]:
        return [sse(obj) for obj in self._encode(event)]


def encode_stream_error(exc: OutcropError) -> bytes:
    return sse(error_body(exc))
