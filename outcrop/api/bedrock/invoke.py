"""InvokeModel / InvokeModelWithResponseStream bodies, per provider family as Bedrock has them.

The family follows the model id the caller used (`anthropic.…` -> Anthropic Messages, `meta.…` ->
Llama, `mistral.…` -> Mistral, `amazon.titan-text…` -> Titan Text). An id of another provider (a
local model under its own name) is served in whichever of these formats the body is written in.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from outcrop import errors
from outcrop.api.bedrock.schema import describe
from outcrop.conversation import (
    BlockStop,
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
)
from outcrop.registry import provider_of


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _parse(model: type[_Body], body: object) -> Any:
    if not isinstance(body, dict):
        raise errors.InvalidRequest("Malformed input request: the body must be a JSON object.")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise errors.InvalidRequest(
            f"Malformed input request: {describe(exc)}, please reformat your input and try again."
        ) from exc


# --- Anthropic Messages ----------------------------------------------------------------------------


class AnthropicMessage(_Body):
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class AnthropicBody(_Body):
    anthropic_version: str
    anthropic_beta: list[str] | None = None
    max_tokens: int = Field(ge=1)
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    stop_sequences: list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


def _anthropic_text_blocks(blocks: str | list[dict[str, Any]] | None, where: str) -> str:
    if blocks is None or isinstance(blocks, str):
        return blocks or ""
    texts = []
    for i, b in enumerate(blocks):
        if b.get("type") != "text" or not isinstance(b.get("text"), str):
            raise errors.InvalidRequest(f"Malformed input request: {where}.{i} must be a text block.")
        texts.append(b["text"])
    return "\n\n".join(texts)


def _anthropic_part(block: dict[str, Any], where: str) -> list[Part]:
    kind = block.get("type")
    if kind == "text" and isinstance(block.get("text"), str):
        return [Text(block["text"])]
    if kind == "tool_use" and isinstance(block.get("name"), str) and isinstance(block.get("input"), dict):
        return [ToolUse(str(block.get("id", "")), block["name"], block["input"])]
    if kind == "tool_result" and isinstance(block.get("tool_use_id"), str):
        raw = block.get("content", "")
        content: list[Text | Json] = []
        if isinstance(raw, str):
            content.append(Text(raw))
        else:
            for item in raw:
                if item.get("type") != "text":
                    raise errors.InvalidRequest(f"{where}.content: only text tool results are supported.")
                content.append(Text(item.get("text", "")))
        return [ToolResult(block["tool_use_id"], tuple(content), bool(block.get("is_error")))]
    if kind in ("thinking", "redacted_thinking"):
        return []
    if kind in ("image", "document"):
        raise errors.InvalidRequest(f"{where}: this model doesn't support {kind} content; send text.")
    raise errors.InvalidRequest(f"Malformed input request: {where} is not a valid content block: {block!r}")


def _anthropic_tools(body: AnthropicBody) -> tuple[tuple[Tool, ...], ToolChoice]:
    tools = []
    for i, t in enumerate(body.tools or []):
        if not isinstance(t.get("name"), str) or not isinstance(t.get("input_schema"), dict):
            raise errors.InvalidRequest(f"Malformed input request: tools.{i} needs a name and an input_schema object.")
        tools.append(Tool(t["name"], t.get("description", ""), t["input_schema"]))
    choice = ToolChoice()
    tc = body.tool_choice or {}
    kind = tc.get("type", "auto")
    if kind not in ("auto", "any", "tool", "none"):
        raise errors.InvalidRequest("Malformed input request: tool_choice.type must be auto, any, tool or none.")
    if kind == "tool":
        if tc.get("name") not in [t.name for t in tools]:
            raise errors.InvalidRequest(f"tool_choice names '{tc.get('name')}', which is not one of the tools.")
        choice = ToolChoice("tool", tc["name"])
    elif kind in ("any", "none"):
        choice = ToolChoice(kind)
    return tuple(tools), choice


def decode_anthropic(model: str, raw: object) -> ChatRequest:
    body: AnthropicBody = _parse(AnthropicBody, raw)
    if body.anthropic_version != "bedrock-2023-05-31":
        raise errors.InvalidRequest("Malformed input request: anthropic_version must be 'bedrock-2023-05-31'.")
    messages: list[Message] = []
    for i, m in enumerate(body.messages):
        if (i == 0 and m.role != "user") or (messages and messages[-1].role == m.role):
            raise errors.InvalidRequest(
                "messages: roles must alternate between user and assistant, starting with user."
            )
        blocks = [{"type": "text", "text": m.content}] if isinstance(m.content, str) else m.content
        parts = [p for j, b in enumerate(blocks) for p in _anthropic_part(b, f"messages.{i}.content.{j}")]
        messages.append(Message(m.role, tuple(parts)))
    tools, choice = _anthropic_tools(body)
    return ChatRequest(
        model=model,
        messages=tuple(messages),
        system=_anthropic_text_blocks(body.system, "system"),
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


_ANTHROPIC_STOP = {
    StopReason.END_TURN: "end_turn",
    StopReason.MAX_TOKENS: "max_tokens",
    StopReason.STOP_SEQUENCE: "stop_sequence",
    StopReason.TOOL_USE: "tool_use",
}


def _message_id() -> str:
    return "msg_bdrk_" + secrets.token_hex(12)


def encode_anthropic(model: str, result: ChatResult) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for p in result.parts:
        if isinstance(p, Text):
            content.append({"type": "text", "text": p.text})
        else:
            content.append({"type": "tool_use", "id": p.id, "name": p.name, "input": dict(p.input)})
    return {
        "id": _message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _ANTHROPIC_STOP[result.stop_reason],
        "stop_sequence": result.stop_sequence,
        "usage": {"input_tokens": result.usage.input_tokens, "output_tokens": result.usage.output_tokens},
    }


class AnthropicChunks:
    """Events -> the Anthropic SSE objects Bedrock wraps, one per `chunk`."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._open: set[int] = set()

    def __call__(self, event: Event) -> list[dict[str, Any]]:
        match event:
            case MessageStart(input_tokens=n):
                message: dict[str, Any] = {
                    "id": _message_id(), "type": "message", "role": "assistant", "model": self.model,
                    "content": [], "stop_reason": None, "stop_sequence": None,
                    "usage": {"input_tokens": n, "output_tokens": 0},
                }  # fmt: skip
                return [{"type": "message_start", "message": message}]
            case TextDelta(index=i, text=t):
                out: list[dict[str, Any]] = []
                if i not in self._open:
                    self._open.add(i)
                    block: dict[str, Any] = {"type": "text", "text": ""}
                    out.append({"type": "content_block_start", "index": i, "content_block": block})
                out.append({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": t}})
                return out
            case ToolUseStart(index=i, id=tid, name=name):
                self._open.add(i)
                tool_block: dict[str, Any] = {"type": "tool_use", "id": tid, "name": name, "input": {}}
                return [{"type": "content_block_start", "index": i, "content_block": tool_block}]
            case ToolUseDelta(index=i, partial_json=j):
                delta: dict[str, Any] = {"type": "input_json_delta", "partial_json": j}
                return [{"type": "content_block_delta", "index": i, "delta": delta}]
            case BlockStop(index=i):
                return [{"type": "content_block_stop", "index": i}]
            case MessageStop(stop_reason=reason, usage=u, stop_sequence=seq):
                stop: dict[str, Any] = {"stop_reason": _ANTHROPIC_STOP[reason], "stop_sequence": seq}
                return [
                    {"type": "message_delta", "delta": stop, "usage": {"output_tokens": u.output_tokens}},
                    {"type": "message_stop"},
                ]
        return []


# --- prompt-completion families (the caller templates the prompt) ----------------------------------


class LlamaBody(_Body):
    prompt: str
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_gen_len: int | None = Field(default=None, ge=1)
    images: list[str] | None = None


class MistralBody(_Body):
    prompt: str
    max_tokens: int | None = Field(default=None, ge=1)
    stop: list[str] | None = Field(default=None, max_length=10)
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)


class TitanConfig(_Body):
    temperature: float | None = Field(default=None, ge=0, le=1)
    topP: float | None = Field(default=None, ge=0, le=1)
    maxTokenCount: int | None = Field(default=None, ge=1)
    stopSequences: list[str] | None = None


class TitanBody(_Body):
    inputText: str
    textGenerationConfig: TitanConfig | None = None


def decode_llama(model: str, raw: object) -> ChatRequest:
    body: LlamaBody = _parse(LlamaBody, raw)
    if body.images:
        raise errors.InvalidRequest("This model doesn't support images.")
    return ChatRequest(
        model=model,
        prompt=body.prompt,
        sampling=Sampling(max_tokens=body.max_gen_len or 512, temperature=body.temperature, top_p=body.top_p),
    )


def decode_mistral(model: str, raw: object) -> ChatRequest:
    body: MistralBody = _parse(MistralBody, raw)
    return ChatRequest(
        model=model,
        prompt=body.prompt,
        sampling=Sampling(
            max_tokens=body.max_tokens or 512,
            temperature=body.temperature,
            top_p=body.top_p,
            top_k=body.top_k,
            stop=tuple(body.stop or ()),
        ),
    )


def decode_titan(model: str, raw: object) -> ChatRequest:
    """Titan Text is an instruct model: its inputText is one user turn."""
    body: TitanBody = _parse(TitanBody, raw)
    cfg = body.textGenerationConfig or TitanConfig()
    return ChatRequest(
        model=model,
        messages=(Message("user", (Text(body.inputText),)),),
        sampling=Sampling(
            max_tokens=cfg.maxTokenCount or 512,
            temperature=cfg.temperature,
            top_p=cfg.topP,
            stop=tuple(cfg.stopSequences or ()),
        ),
    )


def _finish(reason: StopReason, *, stop: str, length: str) -> str:
    return length if reason == StopReason.MAX_TOKENS else stop


def encode_llama(model: str, result: ChatResult) -> dict[str, Any]:
    return {
        "generation": result.text,
        "prompt_token_count": result.usage.input_tokens,
        "generation_token_count": result.usage.output_tokens,
        "stop_reason": _finish(result.stop_reason, stop="stop", length="length"),
    }


def encode_mistral(model: str, result: ChatResult) -> dict[str, Any]:
    return {
        "outputs": [{"text": result.text, "stop_reason": _finish(result.stop_reason, stop="stop", length="length")}]
    }


def _titan_reason(reason: StopReason) -> str:
    if reason == StopReason.STOP_SEQUENCE:
        return "STOP_CRITERIA_MET"
    return _finish(reason, stop="FINISH", length="LENGTH")


def encode_titan(model: str, result: ChatResult) -> dict[str, Any]:
    return {
        "inputTextTokenCount": result.usage.input_tokens,
        "results": [
            {
                "tokenCount": result.usage.output_tokens,
                "outputText": result.text,
                "completionReason": _titan_reason(result.stop_reason),
            }
        ],
    }


class TextChunks:
    """Events -> stream chunks for the prompt-completion families (text only)."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._input = 0
        self._count = 0
        self._first = True

    def _chunk(self, text: str, reason: StopReason | None, count: int) -> dict[str, Any]:
        if self.family == "meta":
            first, self._first = self._first, False
            return {
                "generation": text,
                "prompt_token_count": self._input if first else None,
                "generation_token_count": count,
                "stop_reason": None if reason is None else _finish(reason, stop="stop", length="length"),
            }
        if self.family == "mistral":
            stop = None if reason is None else _finish(reason, stop="stop", length="length")
            return {"outputs": [{"text": text, "stop_reason": stop}]}
        return {
            "outputText": text,
            "index": 0,
            "totalOutputTextTokenCount": count,
            "completionReason": None if reason is None else _titan_reason(reason),
            "inputTextTokenCount": self._input,
        }

    def __call__(self, event: Event) -> list[dict[str, Any]]:
        match event:
            case MessageStart(input_tokens=n):
                self._input = n
            case TextDelta(text=t):
                self._count += 1
                return [self._chunk(t, None, self._count)]
            case MessageStop(stop_reason=reason, usage=u):
                return [self._chunk("", reason, u.output_tokens)]
        return []


# --- choosing the family ---------------------------------------------------------------------------

DECODERS = {"anthropic": decode_anthropic, "meta": decode_llama, "mistral": decode_mistral, "titan": decode_titan}
ENCODERS = {"anthropic": encode_anthropic, "meta": encode_llama, "mistral": encode_mistral, "titan": encode_titan}


def family(model_id: str, body: object) -> str:
    provider = provider_of(model_id)
    if provider == "amazon":
        base = model_id.split("amazon.", 1)[-1]
        if base.startswith("titan-text") or base.startswith("titan-tg1"):
            return "titan"
        raise errors.InvalidRequest(f"The model '{model_id}' is not a text model InvokeModel can serve here.")
    if provider in DECODERS:
        return provider
    if isinstance(body, dict):
        if "anthropic_version" in body:
            return "anthropic"
        if "inputText" in body:
            return "titan"
        if "prompt" in body:
            return "meta" if "max_gen_len" in body else "mistral"
    raise errors.InvalidRequest(
        "Malformed input request: the body is in no format this model accepts. Send an Anthropic Messages "
        "body (anthropic_version, max_tokens, messages), a Llama or Mistral body (prompt) or a Titan Text "
        "body (inputText)."
    )


def decode_request(model_id: str, body: object) -> tuple[str, ChatRequest]:
    fam = family(model_id, body)
    return fam, DECODERS[fam](model_id, body)


def decode_for_count(model_id: str, body: object) -> ChatRequest:
    return decode_request(model_id, body)[1]


def encode_response(fam: str, model_id: str, result: ChatResult) -> dict[str, Any]:
    return ENCODERS[fam](model_id, result)


def chunk_encoder(fam: str, model_id: str) -> Any:
    return AnthropicChunks(model_id) if fam == "anthropic" else TextChunks(fam)


def parse_json_body(raw: bytes) -> object:
    """InvokeModel bodies are opaque blobs to botocore; a missing Content-Type still means JSON."""
    try:
        return json.loads(raw or b"null")
    except ValueError as exc:
        raise errors.InvalidRequest(f"Malformed input request: the body is not valid JSON ({exc}).") from exc
