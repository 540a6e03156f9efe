"""Wire types of the OpenAI API we serve, with OpenAI's member names.

Members OpenAI defines but we cannot honour are refused with a message (never silently ignored);
members that change nothing here (`user`, `store`, `metadata`, `parallel_tool_calls`) are accepted.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from outcrop.api.validation import describe, first_param
from outcrop.errors import InvalidRequest


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChatMessage(_Wire):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None


class StreamOptions(_Wire):
    include_usage: bool = False
    include_obfuscation: bool | None = None


class _Sampling(_Wire):
    model: str = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    user: str | None = None
    # extensions that llama.cpp and vLLM servers accept too
    top_k: int | None = Field(default=None, ge=0)
    ignore_eos: bool | None = None


class ChatBody(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, float] | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    reasoning_effort: str | None = None
    service_tier: str | None = None


class CompletionBody(_Sampling):
    prompt: str | list[str]
    max_tokens: int | None = Field(default=None, ge=1)
    echo: bool | None = None
    suffix: str | None = None
    logprobs: int | None = None
    best_of: int | None = Field(default=None, ge=1, le=1)
    logit_bias: dict[str, float] | None = None


class EmbeddingBody(_Wire):
    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


def parse(model: type[_Wire], body: object) -> Any:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise InvalidRequest(describe(exc), param=first_param(exc)) from exc
