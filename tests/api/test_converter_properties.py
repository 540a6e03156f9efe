"""Property tests of every dialect's request decoders: whatever JSON a caller sends, the decoder returns a
canonical request or raises an OutcropError that its dialect answers with a 4xx in its own envelope.
Never another exception (a 500 and a traceback in the log).

Two kinds of input: arbitrary JSON values, and valid bodies with members replaced by JSON of another
type, dropped, or joined by extra ones (the valid seeds reach far deeper than random JSON does).
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from outcrop import errors
from outcrop.api.anthropic import convert as anthropic_convert
from outcrop.api.anthropic import errors as anthropic_errors
from outcrop.api.bedrock import converse, embed, invoke
from outcrop.api.bedrock import errors as bedrock_errors
from outcrop.api.bedrock import routes as bedrock_routes
from outcrop.api.openai import convert as openai_convert
from outcrop.api.openai import errors as openai_errors
from outcrop.conversation import ChatRequest, EmbedRequest

SETTINGS = settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
MUTATIONS = settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# --- JSON as the HTTP layer hands it over (orjson: no NaN or infinity, 64-bit integers, no lone surrogates) ---

# The member names the decoders look for, so random objects hit them often.
NAMES = sorted(
    {"messages", "role", "content", "text", "type", "model", "max_tokens", "system", "tools", "tool_choice",
     "toolConfig", "toolSpec", "toolUse", "toolResult", "toolUseId", "input", "json", "name", "function",
     "arguments", "tool_calls", "tool_call_id", "cache_control", "cachePoint", "ttl", "inputSchema",
     "parameters", "response_format", "json_schema", "schema", "output_config", "outputConfig", "textFormat",
     "structure", "jsonSchema", "format", "tool_use_id", "is_error", "id", "prompt", "stop", "inputText",
     "anthropic_version", "inferenceConfig", "additionalModelRequestFields", "guardContent", "invokeModel",
     "converse", "body", "texts", "input_type", "stream", "stream_options", "include_usage", "status",
     "amazon-bedrock-guardrailConfig", "tagSuffix", "streamProcessingMode", "any", "tool", "auto"}
)  # fmt: skip

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["user", "assistant", "text", "tool_use", "tool_result", "function", "default", "5m", "1h",
                       "ephemeral", "json_schema", "json_object", "auto", "any", "tool", "none", "required"])
)  # fmt: skip
KEYS = st.sampled_from(NAMES) | st.text(max_size=8)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=24,
)


def _paths(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [at]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*at, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*at, i))
    return out


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


@st.composite
def mutated(draw: st.DrawFn, seed: Any) -> Any:
    """`seed` with one to three of its members replaced by random JSON, dropped, or joined by an extra one."""
    body = copy.deepcopy(seed)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(body)))
        op = draw(st.sampled_from(["replace", "drop", "extra"]))
        target = _get(body, path)
        if op == "extra" and isinstance(target, dict):
            target[draw(KEYS)] = draw(JSON)
        elif op == "extra" and isinstance(target, list):
            target.insert(draw(st.integers(0, len(target))), draw(JSON))
        elif op == "drop" and path:
            del _get(body, path[:-1])[path[-1]]
        elif path:
            _get(body, path[:-1])[path[-1]] = draw(JSON)
        else:
            body = draw(JSON)
    return body


# --- valid seeds, one or more per decoder, using the features each decoder reads --------------------------

CONVERSE = {
    "messages": [
        {"role": "user", "content": [{"text": "hi"}, {"cachePoint": {"type": "default", "ttl": "1h"}}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "get", "input": {"a": 1}}}]},
        {"role": "user", "content": [
            {"toolResult": {"toolUseId": "t1", "content": [{"json": {"x": 1}}, {"text": "ok"}], "status": "error"}},
            {"guardContent": {"text": {"text": "g", "qualifiers": ["query"]}}},
        ]},
    ],
    "system": [{"text": "be brief"}, {"cachePoint": {"type": "default"}}, {"guardContent": {"text": {"text": "s"}}}],
    "inferenceConfig": {"maxTokens": 10, "temperature": 0.5, "topP": 0.9, "stopSequences": ["x"]},
    "toolConfig": {
        "tools": [{"toolSpec": {"name": "get", "description": "d", "inputSchema": {"json": {"type": "object"}}}},
                  {"cachePoint": {"type": "default"}}],
        "toolChoice": {"tool": {"name": "get"}},
    },
    "guardrailConfig": {"guardrailIdentifier": "g", "guardrailVersion": "1", "trace": "enabled"},
    "additionalModelRequestFields": {"top_k": 5, "seed": 1, "ignore_eos": False},
    "outputConfig": {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {"schema": '{"type": "object"}'}}}},
}  # fmt: skip

ANTHROPIC_BODY = {
    "max_tokens": 10,
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm"},
                                          {"type": "tool_use", "id": "t1", "name": "get", "input": {"a": 1}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "ok"}], "is_error": True},
        ]},
    ],
    "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
    "temperature": 0.5,
    "top_p": 0.9,
    "top_k": 3,
    "stop_sequences": ["x"],
    "tools": [{"name": "get", "description": "d", "input_schema": {"type": "object"},
               "cache_control": {"type": "ephemeral"}}],
    "tool_choice": {"type": "tool", "name": "get"},
    "metadata": {"user_id": "u"},
}  # fmt: skip

MESSAGES = {
    **ANTHROPIC_BODY,
    "model": "m",
    "stream": True,
    "cache_control": {"type": "ephemeral", "ttl": "5m"},
    "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
}

CHAT = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "developer", "content": [{"type": "text", "text": "really"}]},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get", "arguments": '{"a": 1}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ],
    "tools": [{"type": "function", "function": {"name": "get", "description": "d", "parameters": {"type": "object"}}}],
    "tool_choice": {"type": "function", "function": {"name": "get"}},
    "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
    "stop": ["x"],
    "temperature": 0.5,
    "top_p": 0.9,
    "max_completion_tokens": 10,
    "stream": True,
    "stream_options": {"include_usage": True},
    "seed": 1,
}  # fmt: skip

COUNT_CONVERSE = {"input": {"converse": {"messages": CONVERSE["messages"], "system": CONVERSE["system"],
                                         "toolConfig": CONVERSE["toolConfig"]}}}  # fmt: skip


def _request(headers: dict[str, str] | None = None) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw})


def _invoke(model_id: str) -> Callable[[object], Any]:
    """What InvokeModel does with a parsed body before inference: guardrail config, family, tags."""
    guarded = _request({"X-Amzn-Bedrock-GuardrailIdentifier": "g", "X-Amzn-Bedrock-GuardrailVersion": "1"})
    return lambda raw: bedrock_routes._invoke_chat(guarded, model_id, raw)[1]


# name -> (decoder, its dialect's error encoder, valid seed)
Decoder = tuple[Callable[[object], Any], Callable[[errors.OutcropError], Any], Any]
DECODERS: dict[str, Decoder] = {
    "bedrock.converse": (lambda raw: converse.decode_request("m", raw), bedrock_errors.encode_error, CONVERSE),
    "bedrock.count_tokens": (
        lambda raw: converse.decode_count_tokens("m", raw, invoke.decode_for_count),
        bedrock_errors.encode_error,
        COUNT_CONVERSE,
    ),
    "bedrock.invoke.anthropic": (
        _invoke("anthropic.claude-3-haiku-20240307-v1:0"),
        bedrock_errors.encode_error,
        {
            **ANTHROPIC_BODY,
            "anthropic_version": "bedrock-2023-05-31",
            "anthropic_beta": ["x"],
            "amazon-bedrock-guardrailConfig": {"tagSuffix": "abc", "streamProcessingMode": "ASYNCHRONOUS"},
        },
    ),
    "bedrock.invoke.llama": (
        _invoke("meta.llama3-8b-instruct-v1:0"),
        bedrock_errors.encode_error,
        {
            "prompt": "hi <amazon-bedrock-guardrails-guardContent_abc>x</amazon-bedrock-guardrails-guardContent_abc>",
            "temperature": 0.5,
            "top_p": 0.9,
            "max_gen_len": 10,
            "amazon-bedrock-guardrailConfig": {"tagSuffix": "abc"},
        },
    ),
    "bedrock.invoke.mistral": (
        _invoke("mistral.mistral-7b-instruct-v0:2"),
        bedrock_errors.encode_error,
        {"prompt": "hi", "max_tokens": 10, "stop": ["x"], "temperature": 0.5, "top_p": 0.9, "top_k": 3},
    ),
    "bedrock.invoke.titan": (
        _invoke("amazon.titan-text-express-v1"),
        bedrock_errors.encode_error,
        {
            "inputText": "hi",
            "textGenerationConfig": {"temperature": 0.5, "topP": 0.9, "maxTokenCount": 10, "stopSequences": ["x"]},
        },
    ),
    "bedrock.invoke.local": (_invoke("local-model"), bedrock_errors.encode_error, {"prompt": "hi", "max_gen_len": 5}),
    "bedrock.embed.titan": (
        lambda raw: embed.decode("amazon.titan-embed-text-v2:0", raw)[1],
        bedrock_errors.encode_error,
        {"inputText": "hi", "dimensions": 256, "normalize": True, "embeddingTypes": ["float", "binary"]},
    ),
    "bedrock.embed.cohere": (
        lambda raw: embed.decode("cohere.embed-english-v3", raw)[1],
        bedrock_errors.encode_error,
        {"texts": ["hi"], "input_type": "search_query", "truncate": "END", "embedding_types": ["int8"]},
    ),
    "openai.chat": (lambda raw: openai_convert.decode_chat(raw)[0], openai_errors.encode_error, CHAT),
    "openai.completion": (
        lambda raw: openai_convert.decode_completion(raw)[0],
        openai_errors.encode_error,
        {"model": "m", "prompt": ["hi"], "max_tokens": 5, "stop": "x", "top_k": 2, "stream": False},
    ),
    "openai.embeddings": (
        lambda raw: openai_convert.decode_embeddings(raw)[0],
        openai_errors.encode_error,
        {"model": "m", "input": ["a", "b"], "encoding_format": "base64", "dimensions": 8},
    ),
    "openai.moderation": (
        lambda raw: openai_convert.decode_moderation(raw, ("omni-moderation-latest",)),
        openai_errors.encode_error,
        {"model": "omni-moderation-latest", "input": ["a", {"type": "text", "text": "b"}]},
    ),
    "anthropic.messages": (
        lambda raw: anthropic_convert.decode_request(raw)[0],
        anthropic_errors.encode_error,
        MESSAGES,
    ),
    "anthropic.count_tokens": (
        anthropic_convert.decode_count_tokens,
        anthropic_errors.encode_error,
        {k: MESSAGES[k] for k in ("model", "messages", "system", "tools", "tool_choice")},
    ),
}


def _envelope(encode: Callable[[errors.OutcropError], Any], exc: errors.OutcropError) -> None:
    """The dialect's answer to `exc`: a 400 in its own envelope, carrying the decoder's message."""
    response = encode(exc)
    assert response.status_code == 400, (response.status_code, exc)
    body = json.loads(response.body)
    if encode is bedrock_errors.encode_error:
        assert set(body) == {"message"} and response.headers["x-amzn-errortype"] == "ValidationException"
    elif encode is openai_errors.encode_error:
        assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
        assert body["error"]["type"] == "invalid_request_error"
    else:
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
        assert body["error"]["type"] == "invalid_request_error"
    message = body["message"] if "message" in body else body["error"]["message"]
    assert message == exc.message and message.strip()
    assert "Traceback" not in message


def _with(seed: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(seed)
    _get(body, path[:-1])[path[-1]] = value
    return body


DEEP = "[" * 5000 + "]" * 5000  # JSON inside a string member, deeper than the standard library's parser can go

# Bodies that were a 500 before: each decoder named gets its own; the others see them as arbitrary JSON.
REGRESSIONS = [
    _with(MESSAGES, ("cache_control", "ttl"), []),  # an unhashable ttl (formats/anthropic_messages.py cache_ttl)
    _with(CONVERSE, ("messages", 0, "content", 1, "cachePoint", "ttl"), {}),  # the same in converse._cache_ttl
    _with(CONVERSE, ("outputConfig", "textFormat", "structure", "jsonSchema", "schema"), DEEP),  # RecursionError
    {"input": {"invokeModel": {"body": base64.b64encode(DEEP.encode()).decode()}}},  # RecursionError
    _with(MESSAGES, ("messages", 2, "content", 0, "content"), 5),  # tool_result content neither str nor list
    _with(MESSAGES, ("output_config", "format"), "x"),  # output_config.format not an object
    _with(CHAT, ("messages", 3, "tool_calls", 0, "function"), "x"),  # tool_calls[].function not an object
    _with(CHAT, ("messages", 3, "tool_calls", 0, "function", "arguments"), DEEP),  # RecursionError
    _with(CHAT, ("tools", 0, "function"), [1]),  # tools[].function not an object
    _with(CHAT, ("tool_choice", "function"), [1]),  # tool_choice.function not an object
    _with(CHAT, ("response_format", "json_schema"), [1]),  # response_format.json_schema not an object
]


def _check(name: str, raw: object) -> None:
    decode, encode, _ = DECODERS[name]
    try:
        out = decode(copy.deepcopy(raw))
    except errors.OutcropError as exc:
        _envelope(encode, exc)
    else:
        assert isinstance(out, ChatRequest | EmbedRequest | tuple), out


def test_seeds_are_valid() -> None:
    """The mutations start from bodies each decoder accepts (else they only test the first refusal)."""
    for name, (decode, _, seed) in DECODERS.items():
        assert decode(copy.deepcopy(seed)) is not None, name


@pytest.mark.parametrize("name", sorted(DECODERS))
@SETTINGS
@example(raw=REGRESSIONS[0])
@example(raw=REGRESSIONS[1])
@example(raw=REGRESSIONS[2])
@example(raw=REGRESSIONS[3])
@example(raw=REGRESSIONS[4])
@example(raw=REGRESSIONS[5])
@example(raw=REGRESSIONS[6])
@example(raw=REGRESSIONS[7])
@example(raw=REGRESSIONS[8])
@example(raw=REGRESSIONS[9])
@example(raw=REGRESSIONS[10])
@given(raw=JSON)
def test_any_json_is_decoded_or_refused_in_the_dialect(name: str, raw: object) -> None:
    _check(name, raw)


@pytest.mark.parametrize("name", sorted(DECODERS))
@MUTATIONS
@given(data=st.data())
def test_mutated_bodies_are_decoded_or_refused_in_the_dialect(name: str, data: st.DataObject) -> None:
    _check(name, data.draw(mutated(DECODERS[name][2]), label="body"))
