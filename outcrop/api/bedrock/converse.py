"""Converse / ConverseStream / CountTokens(converse): pure decode and encode, no I/O.

Stream order is Bedrock's exactly: messageStart, (contentBlockStart only for toolUse),
contentBlockDelta..., contentBlockStop, messageStop, metadata. Text blocks get no contentBlockStart.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

from outcrop import errors
from outcrop.api.bedrock import eventstream, schema
from outcrop.api.http import parse_json
from outcrop.conversation import (
    CACHE_TTLS,
    BlockStop,
    CachePoint,
    ChatRequest,
    ChatResult,
    Event,
    GuardrailRef,
    GuardrailTrace,
    Json,
    Message,
    MessageStart,
    MessageStop,
    Part,
    ResponseFormat,
    Sampling,
    Text,
    TextDelta,
    Tool,
    ToolChoice,
    ToolResult,
    ToolUse,
    ToolUseDelta,
    ToolUseStart,
    Usage,
    ttl_name,
)

# additionalModelRequestFields we pass to the engine; anything else is refused, not ignored.
EXTRA_FIELDS = {"top_k", "seed", "ignore_eos"}


def _parts(block: schema.ContentBlock, where: str) -> list[Part]:
    if block.text is not None:
        return [Text(block.text)]
    if block.guardContent is not None:
        if block.guardContent.text is None:
            raise errors.InvalidRequest(f"{where}: image guard content is not supported by this model.")
        return [Text(block.guardContent.text.text, tuple(block.guardContent.text.qualifiers or ()))]
    if block.toolUse is not None:
        tool_input = block.toolUse.input
        if not isinstance(tool_input, dict):
            raise errors.InvalidRequest(f"{where}.toolUse.input must be a JSON object.")
        return [ToolUse(block.toolUse.toolUseId, block.toolUse.name, tool_input)]
    if block.toolResult is not None:
        content: list[Text | Json] = []
        for i, item in enumerate(block.toolResult.content):
            if item.text is not None:
                content.append(Text(item.text))
            elif item.json_ is not None:
                content.append(Json(item.json_))
            else:
                raise errors.InvalidRequest(
                    f"{where}.toolResult.content.{i}: only text and json tool results are supported by this model."
                )
        return [ToolResult(block.toolResult.toolUseId, tuple(content), block.toolResult.status == "error")]
    if block.cachePoint is not None or block.reasoningContent is not None:
        return []  # cache points are read by _messages; past reasoning is not replayed
    kind = next(k for k in type(block).model_fields if getattr(block, k) is not None)
    raise errors.InvalidRequest(f"{where}: this model doesn't support the {kind} content block; send text.")


def _cache_ttl(raw: dict[str, Any], where: str) -> int:
    """A cachePoint block's TTL in seconds (botocore's CachePointBlock: type default, ttl 5m or 1h)."""
    if raw.get("type") != "default":
        raise errors.InvalidRequest(f"{where}.cachePoint.type must be 'default', not {raw.get('type')!r}.")
    unknown = sorted(set(raw) - {"type", "ttl"})
    if unknown:
        raise errors.InvalidRequest(f"{where}.cachePoint: unknown member(s) {unknown}.")
    ttl = raw.get("ttl", "5m")
    if not isinstance(ttl, str) or ttl not in CACHE_TTLS:
        raise errors.InvalidRequest(f"{where}.cachePoint.ttl must be one of {sorted(CACHE_TTLS)}, not {ttl!r}.")
    return CACHE_TTLS[ttl]


def _messages(wire: list[schema.Message] | None, points: list[CachePoint] | None = None) -> tuple[Message, ...]:
    if not wire:
        raise errors.InvalidRequest("A conversation must have at least one message (messages is empty).")
    out: list[Message] = []
    for i, m in enumerate(wire):
        if i == 0 and m.role != "user":
            raise errors.InvalidRequest("A conversation must start with a user message. Try again with a user message.")
        if out and out[-1].role == m.role:
            raise errors.InvalidRequest(
                "A conversation must alternate between user and assistant roles. "
                f"messages.{i - 1} and messages.{i} are both '{m.role}'."
            )
        parts: list[Part] = []
        for j, b in enumerate(m.content):
            if b.cachePoint is not None:
                ttl = _cache_ttl(b.cachePoint, f"messages.{i}.content.{j}")
                if points is not None and parts:
                    points.append(CachePoint("message", i, len(parts) - 1, ttl))
            parts += _parts(b, f"messages.{i}.content.{j}")
        if not parts:
            raise errors.InvalidRequest(f"messages.{i}.content must not be empty.")
        out.append(Message(m.role, tuple(parts)))
    return tuple(out)


def _system(
    wire: list[schema.SystemBlock] | None, points: list[CachePoint] | None = None
) -> tuple[str, tuple[Text, ...]]:
    texts: list[str] = []
    guarded = []
    for i, block in enumerate(wire or []):
        if block.cachePoint is not None:
            ttl = _cache_ttl(block.cachePoint, f"system.{i}")
            if points is not None and texts:
                points.append(CachePoint("system", part=len("\n\n".join(texts)), ttl_s=ttl))
        elif block.text is not None:
            texts.append(block.text)
        elif block.guardContent is not None and block.guardContent.text is not None:
            texts.append(block.guardContent.text.text)
            guarded.append(Text(block.guardContent.text.text, tuple(block.guardContent.text.qualifiers or ())))
    return "\n\n".join(texts), tuple(guarded)


def guardrail_ref(wire: schema.GuardrailConfig | None) -> tuple[GuardrailRef, ...]:
    if wire is None:
        return ()
    return (GuardrailRef(wire.guardrailIdentifier, wire.guardrailVersion, wire.trace or "disabled",
                         wire.streamProcessingMode or "sync"),)  # fmt: skip


def _tools(
    wire: schema.ToolConfig | None, points: list[CachePoint] | None = None
) -> tuple[tuple[Tool, ...], ToolChoice]:
    if wire is None:
        return (), ToolChoice()
    tools: list[Tool] = []
    for i, t in enumerate(wire.tools):
        if t.toolSpec is None:
            if t.cachePoint is not None:
                ttl = _cache_ttl(t.cachePoint, f"toolConfig.tools.{i}")
                if points is not None and tools:
                    points.append(CachePoint("tools", ttl_s=ttl))
                continue
            raise errors.InvalidRequest(f"toolConfig.tools.{i}: only toolSpec tools are supported.")
        spec = t.toolSpec.inputSchema.json_
        if not isinstance(spec, dict):
            raise errors.InvalidRequest(f"toolConfig.tools.{i}.toolSpec.inputSchema.json must be a JSON schema object.")
        tools.append(Tool(t.toolSpec.name, t.toolSpec.description or "", spec))
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise errors.InvalidRequest("toolConfig.tools: tool names must be unique.")
    choice = ToolChoice()
    if wire.toolChoice is not None:
        if wire.toolChoice.any is not None:
            choice = ToolChoice("any")
        elif wire.toolChoice.tool is not None:
            if wire.toolChoice.tool.name not in names:
                raise errors.InvalidRequest(
                    f"toolConfig.toolChoice.tool.name '{wire.toolChoice.tool.name}' is not one of the tools: {names}."
                )
            choice = ToolChoice("tool", wire.toolChoice.tool.name)
    return tuple(tools), choice


def _extra(fields: dict[str, Any] | None) -> dict[str, Any]:
    fields = fields or {}
    unknown = sorted(set(fields) - EXTRA_FIELDS)
    if unknown:
        raise errors.InvalidRequest(
            f"additionalModelRequestFields: unsupported key(s) {unknown}; supported: {sorted(EXTRA_FIELDS)}."
        )
    if "top_k" in fields and (not isinstance(fields["top_k"], int) or fields["top_k"] < 0):
        raise errors.InvalidRequest("additionalModelRequestFields.top_k must be a non-negative integer.")
    if "seed" in fields and not isinstance(fields["seed"], int):
        raise errors.InvalidRequest("additionalModelRequestFields.seed must be an integer.")
    if "ignore_eos" in fields and not isinstance(fields["ignore_eos"], bool):
        raise errors.InvalidRequest("additionalModelRequestFields.ignore_eos must be a boolean.")
    return fields


def _output_format(config: dict[str, Any] | None) -> ResponseFormat | None:
    fmt = (config or {}).get("textFormat")
    if not fmt:
        return None
    try:
        raw = fmt["structure"]["jsonSchema"]["schema"]
        parsed = parse_json(raw) if isinstance(raw, str) else raw
    except (KeyError, TypeError, ValueError) as exc:
        raise errors.InvalidRequest(
            "outputConfig.textFormat must be {type: json_schema, structure: {jsonSchema: {schema: '<JSON schema>'}}}."
        ) from exc
    if fmt.get("type") != "json_schema" or not isinstance(parsed, dict):
        raise errors.InvalidRequest("outputConfig.textFormat.type must be json_schema with an object schema.")
    return ResponseFormat("json_schema", parsed)


def decode_request(model: str, body: object) -> ChatRequest:
    wire: schema.ConverseRequest = schema.parse(schema.ConverseRequest, body)
    points: list[CachePoint] = []
    tools, choice = _tools(wire.toolConfig, points)
    cfg = wire.inferenceConfig or schema.InferenceConfig()
    extra = _extra(wire.additionalModelRequestFields)
    system, guarded_system = _system(wire.system, points)
    messages = _messages(wire.messages, points)
    return ChatRequest(
        model=model,
        messages=messages,
        cache_points=tuple(points),
        system=system,
        guarded_system=guarded_system,
        guardrails=guardrail_ref(wire.guardrailConfig),
        tools=tools,
        tool_choice=choice,
        sampling=Sampling(
            max_tokens=cfg.maxTokens,
            temperature=cfg.temperature,
            top_p=cfg.topP,
            top_k=extra.get("top_k"),
            stop=tuple(cfg.stopSequences or ()),
            seed=extra.get("seed"),
            ignore_eos=extra.get("ignore_eos", False),
        ),
        response_format=_output_format(wire.outputConfig),
    )


def decode_count_tokens(model: str, body: object, invoke_decoder: Any) -> ChatRequest:
    """CountTokens: `input.converse` is a Converse body; `input.invokeModel.body` is a base64 native body."""
    wire: schema.CountTokensRequest = schema.parse(schema.CountTokensRequest, body)
    if wire.input.invokeModel is not None:
        try:
            native = parse_json(base64.b64decode(wire.input.invokeModel.body, validate=True))
        except ValueError as exc:
            raise errors.InvalidRequest("input.invokeModel.body must be base64 of a JSON body.") from exc
        return invoke_decoder(model, native)
    conv = wire.input.converse
    assert conv is not None
    tools, choice = _tools(conv.toolConfig)
    return ChatRequest(
        model=model, messages=_messages(conv.messages), system=_system(conv.system)[0], tools=tools, tool_choice=choice
    )


def _block(part: Text | ToolUse) -> dict[str, Any]:
    if isinstance(part, Text):
        return {"text": part.text}
    return {"toolUse": {"toolUseId": part.id, "name": part.name, "input": dict(part.input)}}


def usage(u: Usage) -> dict[str, Any]:
    """Bedrock's TokenUsage: inputTokens counts the prompt tokens neither read from the prompt cache nor written
    to it; totalTokens counts them all, and the answer's."""
    out: dict[str, Any] = {
        "inputTokens": u.uncached_input_tokens,
        "outputTokens": u.output_tokens,
        "totalTokens": u.input_tokens + u.output_tokens,
        "cacheReadInputTokens": u.cache_read_tokens,
        "cacheWriteInputTokens": u.cache_write_tokens,
    }
    if u.cache_write_tokens:
        out["cacheDetails"] = [{"ttl": ttl_name(u.cache_write_ttl_s), "inputTokens": u.cache_write_tokens}]
    return out


def guardrail_trace(trace: GuardrailTrace | None) -> dict[str, Any] | None:
    """Bedrock's `trace.guardrail`, when the caller turned tracing on."""
    if trace is None or trace.trace == "disabled":
        return None
    out: dict[str, Any] = {}
    if trace.model_output:
        out["modelOutput"] = ["".join(trace.model_output)]
    if trace.input_assessment:
        out["inputAssessment"] = dict(trace.input_assessment)
    if trace.output_assessments:
        out["outputAssessments"] = {k: list(v) for k, v in trace.output_assessments.items()}
    if trace.action_reason:
        out["actionReason"] = trace.action_reason
    return out


def encode_response(result: ChatResult) -> dict[str, Any]:
    content = [_block(p) for p in result.parts] or [{"text": ""}]
    out = {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": str(result.stop_reason),
        "usage": usage(result.usage),
        "metrics": {"latencyMs": int(result.latency_ms)},
    }
    trace = guardrail_trace(result.guardrail)
    if trace is not None:
        out["trace"] = {"guardrail": trace}
    return out


def encode_event(event: Event, latency_ms: int) -> list[bytes]:
    match event:
        case MessageStart():
            return [eventstream.event("messageStart", {"role": "assistant"})]
        case TextDelta(index=i, text=t):
            return [eventstream.event("contentBlockDelta", {"contentBlockIndex": i, "delta": {"text": t}})]
        case ToolUseStart(index=i, id=tid, name=name):
            start = {"toolUse": {"toolUseId": tid, "name": name}}
            return [eventstream.event("contentBlockStart", {"contentBlockIndex": i, "start": start})]
        case ToolUseDelta(index=i, partial_json=j):
            delta = {"toolUse": {"input": j}}
            return [eventstream.event("contentBlockDelta", {"contentBlockIndex": i, "delta": delta})]
        case BlockStop(index=i):
            return [eventstream.event("contentBlockStop", {"contentBlockIndex": i})]
        case MessageStop(stop_reason=reason, usage=u, guardrail=g):
            metadata: dict[str, Any] = {
                "usage": usage(u),
                "metrics": {"latencyMs": int(latency_ms)},
            }
            trace = guardrail_trace(g)
            if trace is not None:
                metadata["trace"] = {"guardrail": trace}
            return [
                eventstream.event("messageStop", {"stopReason": str(reason)}),
                eventstream.event("metadata", metadata),
            ]
    return []


async def encode_stream(events: AsyncIterator[Event], started_ms: Any) -> AsyncIterator[bytes]:
    async for event in events:
        for frame in encode_event(event, started_ms()):
            yield frame
