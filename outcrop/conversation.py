"""Canonical conversation types: the one shape every dialect decodes to and encodes from.

Plain frozen values. No I/O, no wire field names, no validation beyond what the types say: the
dialects validate their own JSON, engines consume these.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["user", "assistant"]


# --- content parts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    text: str
    # Bedrock guardContent qualifiers (guard_content, grounding_source, query): set only on text the
    # caller marked for a guardrail; engines see plain text either way.
    qualifiers: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Image:
    format: str  # png | jpeg | gif | webp
    data: bytes


@dataclass(frozen=True)
class ToolUse:
    id: str
    name: str
    input: Mapping[str, Any]


@dataclass(frozen=True)
class ToolResult:
    tool_use_id: str
    # Text and JSON results; JSON values are kept as values and rendered by the engine.
    content: tuple[Text | Json, ...]
    is_error: bool = False


@dataclass(frozen=True)
class Json:
    value: Any


Part = Text | Image | ToolUse | ToolResult


@dataclass(frozen=True)
class Message:
    role: Role
    parts: tuple[Part, ...]

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.parts if isinstance(p, Text))


# --- tools and sampling --------------------------------------------------------------------------


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    input_schema: Mapping[str, Any]


@dataclass(frozen=True)
class ToolChoice:
    """auto: model decides; any: must call some tool; tool: must call `name`; none: must not call."""

    kind: Literal["auto", "any", "tool", "none"] = "auto"
    name: str | None = None


@dataclass(frozen=True)
class Sampling:
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    ignore_eos: bool = False
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0


@dataclass(frozen=True)
class ResponseFormat:
    """Constrain the output: `json_object` (any JSON object) or `json_schema` (this schema)."""

    kind: Literal["json_object", "json_schema"]
    schema: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class CachePoint:
    """A caller's prompt-cache breakpoint (Bedrock `cachePoint`, Anthropic `cache_control`): the prompt up to
    here is worth keeping for later requests. It lies after the tools, after the system prompt, or after
    part `part` of message `message`."""

    after: Literal["tools", "system", "message"]
    message: int = -1  # "message": the message's index
    part: int = -1  # "message": the index of the part it follows; "system": the characters of `system` it follows
    ttl_s: int = 300  # 5 minutes, or 3600 (Bedrock ttl "1h", Anthropic ttl "1h")


@dataclass(frozen=True)
class ChatRequest:
    """One generation. Either a chat (`messages`, templated by the engine) or a raw `prompt`
    (already templated by the caller, as Bedrock's Llama/Mistral bodies and OpenAI completions are)."""

    model: str
    messages: tuple[Message, ...] = ()
    system: str = ""
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    sampling: Sampling = field(default_factory=Sampling)
    response_format: ResponseFormat | None = None
    prompt: str | None = None
    guardrails: tuple[GuardrailRef, ...] = ()
    # System guardContent blocks (their text is also in `system`); only a guardrail looks at these.
    guarded_system: tuple[Text, ...] = ()
    # The (start, end) spans of `prompt` a guardrail checks when InvokeModel input tags marked some
    # (empty: all of it).
    guarded_prompt: tuple[tuple[int, int], ...] = ()
    cache_points: tuple[CachePoint, ...] = ()


@dataclass(frozen=True)
class GuardrailRef:
    """A guardrail to apply to one call. `enforced` ones come from the account, the caller's key or the
    model and cannot be switched off by the request. `system` and `messages` say what of the input it
    reads: SELECTIVE, only what the caller marked (guardContent, input tags; a request's own guardrail),
    or COMPREHENSIVE, everything (enforced ones, unless the account configuration says otherwise)."""

    identifier: str
    version: str = "DRAFT"
    trace: Literal["disabled", "enabled", "enabled_full"] = "disabled"
    stream_mode: Literal["sync", "async"] = "sync"
    enforced: bool = False
    system: str = "SELECTIVE"
    messages: str = "SELECTIVE"


# --- results and events --------------------------------------------------------------------------


class StopReason(enum.StrEnum):
    END_TURN = "end_turn"
    MAX_TOKENS = "max_tokens"
    STOP_SEQUENCE = "stop_sequence"
    TOOL_USE = "tool_use"
    GUARDRAIL_INTERVENED = "guardrail_intervened"


@dataclass(frozen=True)
class Usage:
    """Tokens of one call. `input_tokens` counts the whole prompt; of it, `cache_read_tokens` were taken from
    the prompt cache and `cache_write_tokens` were computed up to the caller's last cache point (each dialect
    reports them its own way: Bedrock and Anthropic count input tokens apart from both, OpenAI counts all
    prompt tokens and the cached ones among them)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_ttl_s: int = 300  # how long the written prefix is kept (the caller's longest cache point TTL)

    @property
    def uncached_input_tokens(self) -> int:
        """Prompt tokens neither read from the cache nor written to it (Bedrock's and Anthropic's input count)."""
        return max(0, self.input_tokens - self.cache_read_tokens - self.cache_write_tokens)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class MessageStart:
    input_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_ttl_s: int = 300


@dataclass(frozen=True)
class TextDelta:
    index: int
    text: str


@dataclass(frozen=True)
class ToolUseStart:
    index: int
    id: str
    name: str


@dataclass(frozen=True)
class ToolUseDelta:
    index: int
    partial_json: str


@dataclass(frozen=True)
class BlockStop:
    index: int


@dataclass(frozen=True)
class MessageStop:
    stop_reason: StopReason
    usage: Usage
    stop_sequence: str | None = None
    guardrail: GuardrailTrace | None = None


@dataclass(frozen=True)
class GuardrailTrace:
    """What the guardrails decided for one call, in Bedrock's assessment shape (the richest of the
    dialects'): assessments keyed by guardrail id, the texts the model produced before any masking."""

    intervened: bool
    input_assessment: Mapping[str, Any] = field(default_factory=dict)
    output_assessments: Mapping[str, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)
    model_output: tuple[str, ...] = ()
    action_reason: str | None = None
    trace: Literal["disabled", "enabled", "enabled_full"] = "disabled"


Event = MessageStart | TextDelta | ToolUseStart | ToolUseDelta | BlockStop | MessageStop


@dataclass(frozen=True)
class ChatResult:
    """A whole answer: what a non-streaming call returns, folded from the event stream."""

    parts: tuple[Text | ToolUse, ...]
    stop_reason: StopReason
    usage: Usage
    stop_sequence: str | None = None
    latency_ms: int = 0
    first_token_ms: int | None = None
    guardrail: GuardrailTrace | None = None

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.parts if isinstance(p, Text))


# --- embeddings ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbedRequest:
    """Texts to embed. `dimensions` truncates (then re-normalizes) when the caller asks for fewer
    dimensions than the model has; `purpose` is Cohere's input_type, kept for models that use it.
    `reduced_precision`: the engine may compute in bfloat16 where the CPU does it in hardware (Outcrop's own
    calls, the guardrails: vectors within cosine 0.9999 of float32's, faster); callers of the APIs get float32."""

    model: str
    texts: tuple[str, ...]
    dimensions: int | None = None
    normalize: bool = True
    purpose: str | None = None
    reduced_precision: bool = False


@dataclass(frozen=True)
class EmbedResult:
    """`vectors` is a float32 matrix (numpy), one row a text: dialects turn it into JSON or base64."""

    vectors: Any
    input_tokens: int


CACHE_TTLS = {"5m": 300, "1h": 3600}


def ttl_name(seconds: int) -> str:
    """Bedrock's and Anthropic's name for a cache TTL."""
    return "1h" if seconds >= 3600 else "5m"
