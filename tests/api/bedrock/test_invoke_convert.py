"""InvokeModel bodies per provider family <-> canonical types, as tables."""

from __future__ import annotations

from typing import Any

import pytest

from outcrop import errors
from outcrop.api.bedrock import invoke
from outcrop.conversation import ChatResult, StopReason, Text, ToolUse, Usage

ANTHROPIC = {
    "anthropic_version": "bedrock-2023-05-31",
    "max_tokens": 9,
    "messages": [{"role": "user", "content": "hi"}],
}


@pytest.mark.parametrize(
    ("model", "body", "family"),
    [
        ("anthropic.claude-3-haiku-20240307-v1:0", ANTHROPIC, "anthropic"),
        ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", ANTHROPIC, "anthropic"),
        ("meta.llama3-1-8b-instruct-v1:0", {"prompt": "x"}, "meta"),
        ("mistral.mistral-7b-instruct-v0:2", {"prompt": "x"}, "mistral"),
        ("amazon.titan-text-express-v1", {"inputText": "x"}, "titan"),
        ("local.any", ANTHROPIC, "anthropic"),
        ("local.any", {"prompt": "x", "max_gen_len": 5}, "meta"),
        ("local.any", {"prompt": "x"}, "mistral"),
        ("local.any", {"inputText": "x"}, "titan"),
    ],
)
def test_family(model: str, body: dict[str, Any], family: str) -> None:
    assert invoke.family(model, body) == family


def test_family_rejects_unknown_body() -> None:
    with pytest.raises(errors.InvalidRequest):
        invoke.family("local.any", {"foo": 1})
    with pytest.raises(errors.InvalidRequest):
        invoke.family("amazon.nova-pro-v1:0", {"inputText": "x"})


def test_anthropic_decode() -> None:
    body = {
        **ANTHROPIC,
        "system": [{"type": "text", "text": "be brief"}],
        "stop_sequences": ["END"],
        "top_k": 3,
        "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "f"},
    }
    _, request = invoke.decode_request("anthropic.claude-v2", body)
    assert request.system == "be brief" and request.sampling.max_tokens == 9 and request.sampling.top_k == 3
    assert request.sampling.stop == ("END",) and request.tool_choice.kind == "tool"
    assert request.messages[0].parts == (Text("hi"),)


RESULT = ChatResult(parts=(Text("hello"),), stop_reason=StopReason.MAX_TOKENS, usage=Usage(5, 2))


@pytest.mark.parametrize(
    ("family", "expected"),
    [
        (
            "meta",
            {"generation": "hello", "prompt_token_count": 5, "generation_token_count": 2, "stop_reason": "length"},
        ),
        ("mistral", {"outputs": [{"text": "hello", "stop_reason": "length"}]}),
        (
            "titan",
            {
                "inputTextTokenCount": 5,
                "results": [{"tokenCount": 2, "outputText": "hello", "completionReason": "LENGTH"}],
            },
        ),
    ],
)
def test_encode_prompt_families(family: str, expected: dict[str, Any]) -> None:
    assert invoke.encode_response(family, "m", RESULT) == expected


def test_encode_anthropic_tool_use() -> None:
    result = ChatResult(parts=(ToolUse("t", "f", {"a": 1}),), stop_reason=StopReason.TOOL_USE, usage=Usage(1, 1))
    out = invoke.encode_response("anthropic", "anthropic.claude-v2", result)
    assert out["content"] == [{"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}]
    assert out["stop_reason"] == "tool_use" and out["id"].startswith("msg_bdrk_")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"prompt": "x", "max_gen_len": 0}, "max_gen_len"),
        ({"prompt": "x", "temperature": 2}, "temperature"),
        ({"prompt": 5}, "prompt"),
        ({"prompt": "x", "images": ["AAAA"]}, "images"),
    ],
)
def test_llama_rejects(body: dict[str, Any], needle: str) -> None:
    with pytest.raises(errors.InvalidRequest) as err:
        invoke.decode_request("meta.llama3-1-8b-instruct-v1:0", body)
    assert needle in err.value.message
