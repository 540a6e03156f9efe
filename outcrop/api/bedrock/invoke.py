"""InvokeModel / InvokeModelWithResponseStream bodies, per provider family as Bedrock has them.

The family follows the model id the caller used (`anthropic.…` -> Anthropic Messages, `meta.…` ->
Llama, `mistral.…` -> Mistral, `amazon.titan-text…` -> Titan Text). An id of another provider (a
local model under its own name) is served in whichever of these formats the body is written in.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from outcrop import errors
from outcrop.api.bedrock.schema import NativeBody, malformed, parse_native
from outcrop.api.http import parse_json
from outcrop.conversation import (
    ChatRequest,
    ChatResult,
    Event,
    Message,
    MessageStart,
    MessageStop,
    Sampling,
    StopReason,
    Text,
    TextDelta,
    Usage,
)
from outcrop.formats import anthropic_messages
from outcrop.registry import provider_of

# --- Anthropic Messages (the format lives in outcrop.formats; Bedrock adds anthropic_version) ----------


class AnthropicBody(anthropic_messages.Body):
    anthropic_version: str
    anthropic_beta: list[str] | None = None


def decode_anthropic(model: str, raw: object) -> ChatRequest:
    body: AnthropicBody = anthropic_messages.parse(AnthropicBody, raw, malformed)
    # Bedrock documents bedrock-2023-05-31; newer Anthropic SDKs send their own dated API version.
    if not re.fullmatch(r"(bedrock-)?\d{4}-\d{2}-\d{2}", body.anthropic_version):
        raise errors.InvalidRequest(
            "Malformed input request: anthropic_version must be a version such as 'bedrock-2023-05-31'."
        )
    return anthropic_messages.decode(model, body)


def encode_anthropic(model: str, result: ChatResult) -> dict[str, Any]:
    return anthropic_messages.encode(model, result, "msg_bdrk_")


# --- prompt-completion families (the caller templates the prompt) ----------------------------------


class LlamaBody(NativeBody):
    prompt: str
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_gen_len: int | None = Field(default=None, ge=1)
    images: list[str] | None = None


class MistralBody(NativeBody):
    prompt: str
    max_tokens: int | None = Field(default=None, ge=1)
    stop: list[str] | None = Field(default=None, max_length=10)
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)


class TitanConfig(NativeBody):
    temperature: float | None = Field(default=None, ge=0, le=1)
    topP: float | None = Field(default=None, ge=0, le=1)
    maxTokenCount: int | None = Field(default=None, ge=1)
    stopSequences: list[str] | None = None


class TitanBody(NativeBody):
    inputText: str
    textGenerationConfig: TitanConfig | None = None


def decode_llama(model: str, raw: object) -> ChatRequest:
    body: LlamaBody = parse_native(LlamaBody, raw)
    if body.images:
        raise errors.InvalidRequest("This model doesn't support images.")
    return ChatRequest(
        model=model,
        prompt=body.prompt,
        sampling=Sampling(max_tokens=body.max_gen_len or 512, temperature=body.temperature, top_p=body.top_p),
    )


def decode_mistral(model: str, raw: object) -> ChatRequest:
    body: MistralBody = parse_native(MistralBody, raw)
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
    body: TitanBody = parse_native(TitanBody, raw)
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
    if reason == StopReason.GUARDRAIL_INTERVENED:
        return "CONTENT_FILTERED"
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


def reported_input_tokens(fam: str, usage: Usage) -> int:
    """The input token count InvokeModel reports (body, X-Amzn-Bedrock-Input-Token-Count, invocation metrics):
    Anthropic bodies count only the tokens neither read from the prompt cache nor written to it, the other
    families, which Bedrock serves without prompt caching, the whole prompt."""
    return usage.uncached_input_tokens if fam == "anthropic" else usage.input_tokens


def cache_headers(fam: str, usage: Usage) -> dict[str, str]:
    """The prompt-cache counts for Anthropic bodies, whose input count leaves them out; the other families
    count the whole prompt as input, so a cache count beside it would count those tokens twice."""
    if fam != "anthropic":
        return {}
    return {"X-Amzn-Bedrock-Cache-Read-Input-Token-Count": str(usage.cache_read_tokens),
            "X-Amzn-Bedrock-Cache-Write-Input-Token-Count": str(usage.cache_write_tokens)}  # fmt: skip


def cache_metrics(fam: str, usage: Usage) -> dict[str, int]:
    """The same in a stream's `amazon-bedrock-invocationMetrics`."""
    if fam != "anthropic":
        return {}
    return {"cacheReadInputTokenCount": usage.cache_read_tokens, "cacheWriteInputTokenCount": usage.cache_write_tokens}


def decode_request(model_id: str, body: object) -> tuple[str, ChatRequest]:
    fam = family(model_id, body)
    return fam, DECODERS[fam](model_id, body)


def decode_for_count(model_id: str, body: object) -> ChatRequest:
    return decode_request(model_id, body)[1]


def encode_response(fam: str, model_id: str, result: ChatResult) -> dict[str, Any]:
    return ENCODERS[fam](model_id, result)


def chunk_encoder(fam: str, model_id: str) -> Any:
    return anthropic_messages.StreamEncoder(model_id, "msg_bdrk_") if fam == "anthropic" else TextChunks(fam)


def parse_json_body(raw: bytes) -> object:
    """InvokeModel bodies are opaque blobs to botocore; a missing Content-Type still means JSON."""
    try:
        return parse_json(raw or b"null")
    except ValueError as exc:
        raise errors.InvalidRequest(f"Malformed input request: the body is not valid JSON ({exc}).") from exc
