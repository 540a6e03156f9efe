"""The playground's own small wire format, decoded to the canonical ChatRequest, and the typed events of
Inference.stream encoded as one JSON object a line (application/x-ndjson) for the page's script.

    request  {"model", "messages": [{"role": "user"|"assistant", "text"}], "system"?, "temperature"?, "topP"?,
              "maxTokens"?, "guardrail"?: {"id", "version"?}}
    answer   {"type": "start", "model", "inputTokens"}
             {"type": "text", "index", "text"}                           as the model writes
             {"type": "tool", "index", "name"} / {"type": "toolInput", "index", "json"}
             {"type": "stop", "stopReason", "usage": {"inputTokens", "outputTokens"}, "latencyMs", "ttftMs",
              "tokensPerSecond", "guardrail": {"action", "reason", "findings": [...]} | null}
             {"type": "error", "message", "errorType"}                 a failure after the answer began
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from outcrop import errors
from outcrop.api.validation import describe
from outcrop.conversation import (
    ChatRequest,
    Event,
    GuardrailRef,
    GuardrailTrace,
    Message,
    MessageStart,
    MessageStop,
    Sampling,
    Text,
    TextDelta,
    ToolUseDelta,
    ToolUseStart,
)
from outcrop.inference import Stream

MEDIA_TYPE = "application/x-ndjson"


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Turn(_Wire):
    role: Literal["user", "assistant"]
    text: str = Field(max_length=1_000_000)


class GuardrailChoice(_Wire):
    id: str = Field(min_length=1, max_length=2048)
    version: str = Field("DRAFT", pattern=r"^(DRAFT|[0-9]{1,8})$")


class PlaygroundBody(_Wire):
    model: str = Field(min_length=1, max_length=2048)
    messages: list[Turn] = Field(min_length=1)
    system: str = Field("", max_length=1_000_000)
    temperature: float | None = Field(None, ge=0, le=2)
    topP: float | None = Field(None, ge=0, le=1)
    maxTokens: int | None = Field(None, ge=1, le=1_000_000)
    guardrail: GuardrailChoice | None = None


def decode(raw: Mapping[str, Any]) -> PlaygroundBody:
    try:
        body = PlaygroundBody.model_validate(raw)
    except ValidationError as exc:
        raise errors.InvalidRequest(describe(exc)) from None
    if body.messages[-1].role != "user":
        raise errors.InvalidRequest("messages: the last message must be the user's.")
    return body


def chat_request(body: PlaygroundBody) -> ChatRequest:
    """The canonical request: a guardrail named here traces its assessments, so the page can say which policy
    intervened and why."""
    guardrails: tuple[GuardrailRef, ...] = ()
    if body.guardrail is not None:
        guardrails = (GuardrailRef(body.guardrail.id, body.guardrail.version, trace="enabled"),)
    return ChatRequest(
        model=body.model,
        messages=tuple(Message(t.role, (Text(t.text),)) for t in body.messages),
        system=body.system,
        sampling=Sampling(max_tokens=body.maxTokens, temperature=body.temperature, top_p=body.topP),
        guardrails=guardrails,
    )


# --- the answer --------------------------------------------------------------------------------------


def _line(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data) + b"\n"


def _entries(where: str, guardrail: str, assessment: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The entries of one assessment that did something (their action is not NONE), whatever the policy:
    {policy: {list: [{..., "action"}]}}, or {policy: {..., "action"}} (the constitution's verdict)."""
    for policy, body in assessment.items():
        if not isinstance(body, Mapping):
            continue
        lists = {"": [body]} if "action" in body else body
        for kind, found in lists.items():
            for entry in found if isinstance(found, list) else ():
                if not isinstance(entry, Mapping) or entry.get("action", "NONE") == "NONE":
                    continue
                item = entry.get("name") or entry.get("type") or entry.get("rule") or entry.get("match") or policy
                yield {"where": where, "guardrail": guardrail, "policy": policy, "kind": kind, "item": str(item),
                       "match": entry.get("match"), "reason": entry.get("reason"),
                       "action": entry["action"]}  # fmt: skip


def guardrail_summary(trace: GuardrailTrace | None) -> dict[str, Any] | None:
    """Whether a guardrail intervened, and each policy entry that acted, input and output."""
    if trace is None:
        return None
    found = [e for gid, a in trace.input_assessment.items() for e in _entries("input", gid, a)]
    found += [e for gid, each in trace.output_assessments.items() for a in each for e in _entries("output", gid, a)]
    return {"action": "INTERVENED" if trace.intervened else "NONE", "reason": trace.action_reason, "findings": found}


def frames(stream: Stream) -> Any:
    """The encoder of one stream's events (Stream's timings are read when its last event goes out)."""

    def encode(event: Event) -> list[bytes]:
        match event:
            case MessageStart(input_tokens=n):
                return [_line({"type": "start", "model": stream.model_id, "inputTokens": n})]
            case TextDelta(index=i, text=t):
                return [_line({"type": "text", "index": i, "text": t})]
            case ToolUseStart(index=i, name=name):
                return [_line({"type": "tool", "index": i, "name": name})]
            case ToolUseDelta(index=i, partial_json=j):
                return [_line({"type": "toolInput", "index": i, "json": j})]
            case MessageStop(stop_reason=reason, usage=u, guardrail=g):
                latency, ttft = stream.latency_ms, stream.ttft_ms
                generating = (latency - ttft) / 1000 if ttft is not None else 0
                rate = round(u.output_tokens / generating, 1) if generating > 0 and u.output_tokens else None
                return [_line({"type": "stop", "stopReason": str(reason), "latencyMs": latency, "ttftMs": ttft,
                               "usage": {"inputTokens": u.input_tokens, "outputTokens": u.output_tokens},
                               "tokensPerSecond": rate, "guardrail": guardrail_summary(g)})]  # fmt: skip
        return []

    return encode


def error_line(exc: errors.OutcropError) -> bytes:
    return _line({"type": "error", "message": exc.message, "errorType": type(exc).__name__})
