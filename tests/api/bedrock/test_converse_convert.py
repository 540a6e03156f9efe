"""Converse wire JSON <-> canonical types, as tables (no server, no engine)."""

from __future__ import annotations

from typing import Any

import pytest

from outcrop import errors
from outcrop.api.bedrock import converse
from outcrop.conversation import (
    CachePoint,
    ChatResult,
    Json,
    Message,
    ResponseFormat,
    StopReason,
    Text,
    ToolChoice,
    ToolResult,
    ToolUse,
    Usage,
)

USER = {"role": "user", "content": [{"text": "hi"}]}
TOOL = {"toolSpec": {"name": "f", "description": "d", "inputSchema": {"json": {"type": "object"}}}}

DECODE: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("plain", {"messages": [USER]}, {"messages": (Message("user", (Text("hi"),)),), "system": ""}),
    ("system joined", {"messages": [USER], "system": [{"text": "a"}, {"cachePoint": {"type": "default"}}, {"text": "b"}]},
     {"system": "a\n\nb", "cache_points": (CachePoint("system", part=1),)}),
    ("cache points", {"messages": [{"role": "user", "content": [{"text": "x"}, {"cachePoint": {"type": "default", "ttl": "1h"}},
                                                                  {"text": "y"}]}],
                      "system": [{"text": "abc"}, {"cachePoint": {"type": "default"}}],
                      "toolConfig": {"tools": [TOOL, {"cachePoint": {"type": "default"}}]}},
     {"cache_points": (CachePoint("tools"), CachePoint("system", part=3), CachePoint("message", 0, 0, 3600))}),
    ("sampling", {"messages": [USER], "inferenceConfig": {"maxTokens": 7, "temperature": 0.5, "topP": 0.9, "stopSequences": ["x"]},
                  "additionalModelRequestFields": {"top_k": 5, "seed": 3}},
     {"sampling.max_tokens": 7, "sampling.temperature": 0.5, "sampling.top_p": 0.9, "sampling.stop": ("x",),
      "sampling.top_k": 5, "sampling.seed": 3}),
    ("tool choice any", {"messages": [USER], "toolConfig": {"tools": [TOOL], "toolChoice": {"any": {}}}},
     {"tool_choice": ToolChoice("any")}),
    ("tool choice named", {"messages": [USER], "toolConfig": {"tools": [TOOL], "toolChoice": {"tool": {"name": "f"}}}},
     {"tool_choice": ToolChoice("tool", "f")}),
    ("tool history", {"messages": [
        USER,
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "f", "input": {"a": 1}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"json": {"r": 2}}, {"text": "ok"}],
                                                      "status": "error"}}]},
    ]}, {"messages": (
        Message("user", (Text("hi"),)),
        Message("assistant", (ToolUse("t1", "f", {"a": 1}),)),
        Message("user", (ToolResult("t1", (Json({"r": 2}), Text("ok")), is_error=True),)),
    )}),
    ("json schema output", {"messages": [USER], "outputConfig": {"textFormat": {"type": "json_schema", "structure": {
        "jsonSchema": {"schema": '{"type": "object"}', "name": "x"}}}}},
     {"response_format": ResponseFormat("json_schema", {"type": "object"})}),
]  # fmt: skip


def _get(obj: object, dotted: str) -> object:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize(("name", "body", "expected"), DECODE, ids=[d[0] for d in DECODE])
def test_decode(name: str, body: dict[str, Any], expected: dict[str, Any]) -> None:
    request = converse.decode_request("m", body)
    for key, value in expected.items():
        assert _get(request, key) == value


REJECT = [
    (
        {"messages": [USER], "toolConfig": {"tools": [TOOL], "toolChoice": {"tool": {"name": "g"}}}},
        "not one of the tools",
    ),
    ({"messages": [USER, USER]}, "alternate"),
    ({"messages": [{"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": "AA=="}}}]}]}, "image"),
    ({"messages": [USER], "inferenceConfig": {"temperature": 3}}, "temperature"),
    ({"messages": [USER], "toolConfig": {"tools": [TOOL, TOOL]}}, "unique"),
    ("not an object", "JSON object"),
    ({"messages": [USER], "system": [{"cachePoint": {"type": "default", "ttl": "2h"}}]}, "cachePoint.ttl must be"),
    (
        {"messages": [{"role": "user", "content": [{"text": "x"}, {"cachePoint": {"type": "other"}}]}]},
        "messages.0.content.1.cachePoint.type",
    ),
]


@pytest.mark.parametrize(("body", "needle"), REJECT)
def test_reject(body: object, needle: str) -> None:
    with pytest.raises(errors.OutcropError) as err:
        converse.decode_request("m", body)
    assert needle in err.value.message


def test_encode_response() -> None:
    result = ChatResult(
        parts=(Text("a"), ToolUse("t", "f", {"x": 1})),
        stop_reason=StopReason.TOOL_USE,
        usage=Usage(3, 4),
        latency_ms=12,
    )
    assert converse.encode_response(result) == {
        "output": {"message": {"role": "assistant", "content": [
            {"text": "a"}, {"toolUse": {"toolUseId": "t", "name": "f", "input": {"x": 1}}}]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7, "cacheReadInputTokens": 0,
                  "cacheWriteInputTokens": 0},
        "metrics": {"latencyMs": 12},
    }  # fmt: skip


def test_usage_counts_cached_tokens_apart() -> None:
    """inputTokens leaves out what was read from or written to the prompt cache; totalTokens counts it all."""
    assert converse.usage(Usage(100, 7, cache_read_tokens=60, cache_write_tokens=30, cache_write_ttl_s=3600)) == {
        "inputTokens": 10, "outputTokens": 7, "totalTokens": 107, "cacheReadInputTokens": 60,
        "cacheWriteInputTokens": 30, "cacheDetails": [{"ttl": "1h", "inputTokens": 30}],
    }  # fmt: skip
