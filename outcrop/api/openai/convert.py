"""OpenAI chat completions, completions and embeddings <-> canonical types. Pure, no I/O."""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

from outcrop import errors
from outcrop.api.http import parse_json
from outcrop.api.openai import schema
from outcrop.api.openai.errors import error_body
from outcrop.conversation import (
    ChatRequest,
    ChatResult,
    EmbedRequest,
    EmbedResult,
    Event,
    Message,
    MessageStart,
    MessageStop,
    Part,
    ResponseFormat,
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

FINISH = {
    StopReason.END_TURN: "stop",
    StopReason.STOP_SEQUENCE: "stop",
    StopReason.MAX_TOKENS: "length",
    StopReason.TOOL_USE: "tool_calls",
    StopReason.GUARDRAIL_INTERVENED: "content_filter",
}


def _refuse_unsupported(body: schema.ChatBody | schema.CompletionBody) -> None:
    if body.logit_bias:
        raise errors.InvalidRequest("logit_bias is not supported by this server.", param="logit_bias")
    if body.logprobs:
        raise errors.InvalidRequest("logprobs are not supported by this server.", param="logprobs")


def _stops(stop: str | list[str] | None) -> tuple[str, ...]:
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    if len(stops) > 4:
        raise errors.InvalidRequest("stop may hold at most 4 sequences.", param="stop")
    return stops


def _sampling(body: schema.ChatBody | schema.CompletionBody, max_tokens: int | None) -> Sampling:
    return Sampling(
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        stop=_stops(body.stop),
        seed=body.seed,
        ignore_eos=bool(body.ignore_eos),
        frequency_penalty=body.frequency_penalty or 0.0,
        presence_penalty=body.presence_penalty or 0.0,
    )


def _text(content: str | list[dict[str, Any]] | None, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for i, part in enumerate(content):
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise errors.InvalidRequest(
                f"{where}.content.{i}: only text content parts are supported by this model (got {part.get('type')!r}).",
                param=f"{where}.content",
            )
        texts.append(part["text"])
    return "".join(texts)


def _tool_uses(calls: list[dict[str, Any]], where: str) -> list[ToolUse]:
    uses = []
    for i, call in enumerate(calls):
        fn = call.get("function")
        if not isinstance(fn, dict):
            raise errors.InvalidRequest(
                f"{where}.tool_calls.{i}.function must be an object with name and arguments.",
                param=f"{where}.tool_calls",
            )
        try:
            args = parse_json(fn.get("arguments") or "{}")
        except (TypeError, ValueError) as exc:
            raise errors.InvalidRequest(
                f"{where}.tool_calls.{i}.function.arguments is not valid JSON.", param=f"{where}.tool_calls"
            ) from exc
        if not isinstance(fn.get("name"), str) or not isinstance(args, dict):
            raise errors.InvalidRequest(
                f"{where}.tool_calls.{i} needs a function name and JSON-object arguments.", param=f"{where}.tool_calls"
            )
        uses.append(ToolUse(str(call.get("id", "")), fn["name"], args))
    return uses


def _messages(wire: list[schema.ChatMessage]) -> tuple[str, tuple[Message, ...]]:
    system: list[str] = []
    out: list[Message] = []

    def add(role: str, parts: list[Part]) -> None:
        # Tool results and the user text after them form one user turn, as Bedrock and Anthropic see it.
        if out and out[-1].role == role:
            out[-1] = Message(out[-1].role, out[-1].parts + tuple(parts))
        else:
            out.append(Message(role, tuple(parts)))  # type: ignore[arg-type]

    for i, m in enumerate(wire):
        where = f"messages.{i}"
        if m.role in ("system", "developer"):
            system.append(_text(m.content, where))
        elif m.role == "user":
            add("user", [Text(_text(m.content, where))])
        elif m.role == "tool":
            if not m.tool_call_id:
                raise errors.InvalidRequest(f"{where}: a tool message needs tool_call_id.", param=where)
            add("user", [ToolResult(m.tool_call_id, (Text(_text(m.content, where)),))])
        else:
            parts: list[Part] = []
            if text := _text(m.content, where):
                parts.append(Text(text))
            parts.extend(_tool_uses(m.tool_calls or [], where))
            add("assistant", parts)
    return "\n\n".join(system), tuple(out)


def _tools(body: schema.ChatBody) -> tuple[tuple[Tool, ...], ToolChoice]:
    tools = []
    for i, t in enumerate(body.tools or []):
        fn = t.get("function") or {}
        if t.get("type") != "function" or not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise errors.InvalidRequest(f"tools.{i}: only function tools with a name are supported.", param="tools")
        tools.append(Tool(fn["name"], fn.get("description", ""), fn.get("parameters") or {"type": "object"}))
    choice = body.tool_choice
    if choice is None or choice == "auto":
        return tuple(tools), ToolChoice()
    if choice in ("none", "required"):
        return tuple(tools), ToolChoice("none" if choice == "none" else "any")
    fn = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(fn, dict) and isinstance(fn.get("name"), str):
        name = fn["name"]
        if name not in [t.name for t in tools]:
            raise errors.InvalidRequest(
                f"tool_choice names '{name}', which is not one of the tools.", param="tool_choice"
            )
        return tuple(tools), ToolChoice("tool", name)
    raise errors.InvalidRequest(
        "tool_choice must be 'auto', 'none', 'required' or {type: function, function: {name}}.", param="tool_choice"
    )


def _response_format(fmt: dict[str, Any] | None) -> ResponseFormat | None:
    if not fmt or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return ResponseFormat("json_object")
    spec = fmt.get("json_schema")
    schema_ = spec.get("schema") if isinstance(spec, dict) else None
    if fmt.get("type") == "json_schema" and isinstance(schema_, dict):
        return ResponseFormat("json_schema", schema_)
    raise errors.InvalidRequest(
        "response_format must be {type: text}, {type: json_object} "
        "or {type: json_schema, json_schema: {name, schema}}.",
        param="response_format",
    )


def decode_chat(raw: object) -> tuple[ChatRequest, schema.ChatBody]:
    body: schema.ChatBody = schema.parse(schema.ChatBody, raw)
    _refuse_unsupported(body)
    system, messages = _messages(body.messages)
    if not messages:
        raise errors.InvalidRequest("messages must hold at least one user message.", param="messages")
    tools, choice = _tools(body)
    request = ChatRequest(
        model=body.model,
        messages=messages,
        system=system,
        tools=tools,
        tool_choice=choice,
        sampling=_sampling(body, body.max_completion_tokens or body.max_tokens),
        response_format=_response_format(body.response_format),
    )
    return request, body


def decode_completion(raw: object) -> tuple[ChatRequest, schema.CompletionBody]:
    body: schema.CompletionBody = schema.parse(schema.CompletionBody, raw)
    _refuse_unsupported(body)
    if body.echo or body.suffix:
        raise errors.InvalidRequest("echo and suffix are not supported by this server.", param="echo")
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if len(prompts) != 1:
        raise errors.InvalidRequest("prompt must be one string (batches of prompts are not supported).", param="prompt")
    # OpenAI's completions default to 16 tokens.
    return ChatRequest(model=body.model, prompt=prompts[0], sampling=_sampling(body, body.max_tokens or 16)), body


def _usage(result_usage: Any) -> dict[str, Any]:
    """OpenAI counts every prompt token in prompt_tokens and the ones taken from the prompt cache among them."""
    return {
        "prompt_tokens": result_usage.input_tokens,
        "completion_tokens": result_usage.output_tokens,
        "total_tokens": result_usage.input_tokens + result_usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": result_usage.cache_read_tokens},
    }


def new_id(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(18)


def _tool_call(use: ToolUse) -> dict[str, Any]:
    args = json.dumps(dict(use.input), ensure_ascii=False)
    return {"id": use.id, "type": "function", "function": {"name": use.name, "arguments": args}}


def encode_chat(model: str, result: ChatResult) -> dict[str, Any]:
    calls = [_tool_call(p) for p in result.parts if isinstance(p, ToolUse)]
    message: dict[str, Any] = {"role": "assistant", "content": result.text if result.text or not calls else None}
    if calls:
        message["tool_calls"] = calls
    message["refusal"] = None
    return {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": FINISH[result.stop_reason], "logprobs": None}],
        "usage": _usage(result.usage),
    }


def encode_completion(model: str, result: ChatResult) -> dict[str, Any]:
    return {
        "id": new_id("cmpl-"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"text": result.text, "index": 0, "logprobs": None, "finish_reason": FINISH[result.stop_reason]}],
        "usage": _usage(result.usage),
    }


def sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


class ChatStream:
    """Events -> chat.completion.chunk server-sent events."""

    def __init__(self, model: str, include_usage: bool) -> None:
        self._base = {
            "id": new_id("chatcmpl-"),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        self._include_usage = include_usage
        self._calls: dict[int, int] = {}  # event block index -> tool_calls index

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {**self._base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        if self._include_usage:
            chunk["usage"] = None
        return sse(chunk)

    def __call__(self, event: Event) -> list[bytes]:
        match event:
            case MessageStart():
                return [self._chunk({"role": "assistant", "content": "", "refusal": None})]
            case TextDelta(text=t):
                return [self._chunk({"content": t})]
            case ToolUseStart(index=i, id=tid, name=name):
                k = self._calls.setdefault(i, len(self._calls))
                call = {"index": k, "id": tid, "type": "function", "function": {"name": name, "arguments": ""}}
                return [self._chunk({"tool_calls": [call]})]
            case ToolUseDelta(index=i, partial_json=j):
                return [self._chunk({"tool_calls": [{"index": self._calls[i], "function": {"arguments": j}}]})]
            case MessageStop(stop_reason=reason, usage=u):
                out = [self._chunk({}, FINISH[reason])]
                if self._include_usage:
                    out.append(sse({**self._base, "choices": [], "usage": _usage(u)}))
                return out
        return []


class CompletionStream:
    """Events -> text_completion server-sent events."""

    def __init__(self, model: str, include_usage: bool) -> None:
        self._base = {"id": new_id("cmpl-"), "object": "text_completion", "created": int(time.time()), "model": model}
        self._include_usage = include_usage

    def _chunk(self, text: str, finish: str | None) -> bytes:
        return sse({**self._base, "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}]})

    def __call__(self, event: Event) -> list[bytes]:
        match event:
            case TextDelta(text=t):
                return [self._chunk(t, None)]
            case MessageStop(stop_reason=reason, usage=u):
                out = [self._chunk("", FINISH[reason])]
                if self._include_usage:
                    out.append(sse({**self._base, "choices": [], "usage": _usage(u)}))
                return out
        return []


def encode_stream_error(exc: errors.OutcropError) -> bytes:
    return sse(error_body(exc))


# --- embeddings ----------------------------------------------------------------------------------


def decode_embeddings(raw: object) -> tuple[EmbedRequest, schema.EmbeddingBody]:
    body: schema.EmbeddingBody = schema.parse(schema.EmbeddingBody, raw)
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or not all(isinstance(t, str) for t in texts):
        raise errors.InvalidRequest(
            "input must be a string or a non-empty list of strings (token arrays are not supported).", param="input"
        )
    if len(texts) > 2048:
        raise errors.InvalidRequest("input may hold at most 2048 strings.", param="input")
    return EmbedRequest(model=body.model, texts=tuple(texts), dimensions=body.dimensions), body  # type: ignore[arg-type]


def decode_moderation(raw: object, models: tuple[str, ...]) -> tuple[list[str], str]:
    """/v1/moderations: `input` as a string, a list of strings, or a list of {"type": "text", "text": ...}
    parts (images are refused); `model` one of OpenAI's moderation models (default omni-moderation-latest)."""
    if not isinstance(raw, dict):
        raise errors.InvalidRequest("The request body must be a JSON object.")
    unknown = sorted(set(raw) - {"input", "model"})
    if unknown:
        raise errors.InvalidRequest(f"Unrecognized request argument supplied: {unknown[0]}", param=unknown[0])
    model = raw.get("model", models[0])
    if model not in models:
        raise errors.InvalidRequest(f"model must be one of {', '.join(models)}, not {model!r}.", param="model")
    value = raw.get("input")
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise errors.InvalidRequest("input must be a string or a non-empty list.", param="input")
    texts: list[str] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, dict) and item.get("type") == "text" and isinstance(item.get("text"), str):
            texts.append(item["text"])
        elif isinstance(item, dict) and item.get("type") == "image_url":
            raise errors.InvalidRequest(f"input[{i}]: images are not supported by this server.", param="input")
        else:
            raise errors.InvalidRequest(
                f'input[{i}] must be a string or {{"type": "text", "text": "..."}}.', param="input"
            )
    if len(texts) > 2048:
        raise errors.InvalidRequest("input may hold at most 2048 items.", param="input")
    return texts, str(model)


def encode_embeddings(model: str, result: EmbedResult, encoding_format: str) -> dict[str, Any]:
    matrix = result.vectors.astype("<f4")
    if encoding_format == "base64":  # what the openai SDK asks for by default: little-endian float32
        rows: list[Any] = [base64.b64encode(row.tobytes()).decode() for row in matrix]
    else:
        rows = matrix.tolist()
    data = [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)]
    usage = {"prompt_tokens": result.input_tokens, "total_tokens": result.input_tokens}
    return {"object": "list", "data": data, "model": model, "usage": usage}
