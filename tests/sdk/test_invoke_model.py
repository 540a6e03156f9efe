"""InvokeModel / InvokeModelWithResponseStream in each provider family's body, through real boto3."""

from __future__ import annotations

import json
from typing import Any

import pytest

from outcrop.engines.chat_template import CHATML_TOOLS_TEMPLATE, render
from outcrop.models import BUILTIN_MODEL_ID
from outcrop.models.tiny_script import ANSWERS, WEATHER_TOOL
from tests.conftest import CLAUDE, LLAMA, MISTRAL, TITAN


def _invoke(runtime, model: str, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:  # type: ignore[no-untyped-def]
    out = runtime.invoke_model(modelId=model, body=json.dumps(body))
    return json.loads(out["body"].read()), out["ResponseMetadata"]["HTTPHeaders"]


def _stream(runtime, model: str, body: dict[str, Any]) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    out = runtime.invoke_model_with_response_stream(modelId=model, body=json.dumps(body))
    assert out["contentType"] == "application/json"
    return [json.loads(event["chunk"]["bytes"]) for event in out["body"]]


def _anthropic(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 100,
        "temperature": 0,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


def _raw_prompt(text: str) -> str:
    """A prompt the caller templated itself, as Llama and Mistral bodies are on Bedrock."""
    return render(CHATML_TOOLS_TEMPLATE, [{"role": "user", "content": text}])


def test_anthropic_messages_body(runtime) -> None:  # type: ignore[no-untyped-def]
    body, headers = _invoke(runtime, CLAUDE, _anthropic("What is the capital of France?"))
    assert body["type"] == "message" and body["role"] == "assistant"
    assert body["content"] == [{"type": "text", "text": ANSWERS["capital"]}]
    assert body["stop_reason"] == "end_turn" and body["stop_sequence"] is None
    assert body["usage"]["output_tokens"] > 0
    assert headers["x-amzn-bedrock-input-token-count"] == str(body["usage"]["input_tokens"])
    assert headers["x-amzn-bedrock-output-token-count"] == str(body["usage"]["output_tokens"])
    assert headers["x-amzn-bedrock-cache-read-input-token-count"] == str(body["usage"]["cache_read_input_tokens"])
    assert headers["x-amzn-bedrock-cache-write-input-token-count"] == str(body["usage"]["cache_creation_input_tokens"])
    assert int(headers["x-amzn-bedrock-invocation-latency"]) >= 0
    assert headers["content-type"] == "application/json"


def test_anthropic_messages_body_with_tools(runtime) -> None:  # type: ignore[no-untyped-def]
    body, _ = _invoke(runtime, CLAUDE, _anthropic("What is the weather in Paris?", tools=[WEATHER_TOOL]))
    assert body["stop_reason"] == "tool_use"
    [use] = body["content"]
    assert use["type"] == "tool_use" and use["name"] == "get_weather" and use["input"] == {"city": "Paris"}

    followup = _anthropic("What is the weather in Paris?", tools=[WEATHER_TOOL])
    followup["messages"] += [
        {"role": "assistant", "content": [use]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": use["id"],
                    "content": '{"temperature": 18, "condition": "sunny"}',
                }
            ],
        },
    ]
    body, _ = _invoke(runtime, CLAUDE, followup)
    assert body["content"] == [{"type": "text", "text": ANSWERS["tool_answer"]}]


def test_anthropic_stream(runtime) -> None:  # type: ignore[no-untyped-def]
    chunks = _stream(runtime, CLAUDE, _anthropic("Hello"))
    types = [c["type"] for c in chunks]
    assert types[0] == "message_start" and types[1] == "content_block_start"
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    text = "".join(c["delta"]["text"] for c in chunks if c["type"] == "content_block_delta")
    assert text == ANSWERS["hello"]
    assert chunks[-2]["delta"]["stop_reason"] == "end_turn"
    metrics = chunks[-1]["amazon-bedrock-invocationMetrics"]
    assert metrics["inputTokenCount"] > 0 and metrics["outputTokenCount"] == chunks[-2]["usage"]["output_tokens"]
    assert isinstance(metrics["invocationLatency"], int) and isinstance(metrics["firstByteLatency"], int)


def test_anthropic_stream_tool_use(runtime) -> None:  # type: ignore[no-untyped-def]
    chunks = _stream(runtime, CLAUDE, _anthropic("What is the weather in Paris?", tools=[WEATHER_TOOL]))
    start = next(c for c in chunks if c["type"] == "content_block_start")
    assert start["content_block"]["type"] == "tool_use" and start["content_block"]["name"] == "get_weather"
    partial = "".join(c["delta"]["partial_json"] for c in chunks if c["type"] == "content_block_delta")
    assert json.loads(partial) == {"city": "Paris"}
    assert chunks[-2]["delta"]["stop_reason"] == "tool_use"


def test_llama_body(runtime) -> None:  # type: ignore[no-untyped-def]
    body, headers = _invoke(runtime, LLAMA, {"prompt": _raw_prompt("Hello"), "temperature": 0, "max_gen_len": 64})
    assert body["generation"] == ANSWERS["hello"]
    assert body["stop_reason"] == "stop"
    assert body["prompt_token_count"] > 0 and body["generation_token_count"] > 0
    # the whole prompt is the input count here: no cache counts beside it to count those tokens twice
    assert headers["x-amzn-bedrock-input-token-count"] == str(body["prompt_token_count"])
    assert "x-amzn-bedrock-cache-read-input-token-count" not in headers


def test_llama_stream(runtime) -> None:  # type: ignore[no-untyped-def]
    chunks = _stream(runtime, LLAMA, {"prompt": _raw_prompt("Hello"), "temperature": 0, "max_gen_len": 64})
    assert "".join(c["generation"] for c in chunks) == ANSWERS["hello"]
    assert chunks[0]["prompt_token_count"] > 0 and all(c["prompt_token_count"] is None for c in chunks[1:])
    assert all(c["stop_reason"] is None for c in chunks[:-1]) and chunks[-1]["stop_reason"] == "stop"
    metrics = chunks[-1]["amazon-bedrock-invocationMetrics"]
    assert metrics["outputTokenCount"] == chunks[-1]["generation_token_count"]
    assert metrics["inputTokenCount"] == chunks[0]["prompt_token_count"] and "cacheReadInputTokenCount" not in metrics


def test_llama_length(runtime) -> None:  # type: ignore[no-untyped-def]
    body, _ = _invoke(runtime, LLAMA, {"prompt": _raw_prompt("Hello"), "temperature": 0, "max_gen_len": 2})
    assert body["stop_reason"] == "length" and body["generation_token_count"] == 2


def test_mistral_body_and_stream(runtime) -> None:  # type: ignore[no-untyped-def]
    request = {
        "prompt": _raw_prompt("Count from one to twenty."),
        "temperature": 0,
        "max_tokens": 100,
        "stop": [" four"],
    }
    body, _ = _invoke(runtime, MISTRAL, request)
    assert body == {"outputs": [{"text": "one two three", "stop_reason": "stop"}]}
    chunks = _stream(runtime, MISTRAL, request)
    assert "".join(c["outputs"][0]["text"] for c in chunks) == "one two three"
    assert chunks[-1]["outputs"][0]["stop_reason"] == "stop"


def test_titan_text_body_and_stream(runtime) -> None:  # type: ignore[no-untyped-def]
    request = {
        "inputText": "What is the capital of France?",
        "textGenerationConfig": {"temperature": 0, "maxTokenCount": 50},
    }
    body, _ = _invoke(runtime, TITAN, request)
    assert body["inputTextTokenCount"] > 0
    [result] = body["results"]
    assert result["outputText"] == ANSWERS["capital"] and result["completionReason"] == "FINISH"
    chunks = _stream(runtime, TITAN, request)
    assert "".join(c["outputText"] for c in chunks) == ANSWERS["capital"]
    assert chunks[-1]["completionReason"] == "FINISH"
    assert chunks[-1]["totalOutputTextTokenCount"] == result["tokenCount"]


@pytest.mark.parametrize(
    "body",
    [
        _anthropic("Hello"),
        {"prompt": _raw_prompt("Hello"), "max_gen_len": 50, "temperature": 0},
        {"inputText": "Hello"},
    ],
    ids=["anthropic", "llama", "titan"],
)
def test_local_model_id_accepts_any_family_body(runtime, body) -> None:  # type: ignore[no-untyped-def]
    out, _ = _invoke(runtime, BUILTIN_MODEL_ID, body)
    assert ANSWERS["hello"] in json.dumps(out)


def test_invoke_without_content_type_is_json(base_url) -> None:  # type: ignore[no-untyped-def]
    import httpx

    r = httpx.post(
        f"{base_url}/model/{CLAUDE.replace(':', '%3A')}/invoke", content=json.dumps(_anthropic("Hello")), timeout=60
    )
    assert r.status_code == 200 and r.json()["content"][0]["text"] == ANSWERS["hello"]
