"""The official anthropic SDK against a real server: the Messages API, and AnthropicBedrock on InvokeModel."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import pytest

from outcrop.models import BUILTIN_MODEL_ID
from outcrop.models.tiny_script import ANSWERS, WEATHER_TOOL
from tests.conftest import CLAUDE

M = BUILTIN_MODEL_ID
GREEDY = {"temperature": 0}  # the SDK no longer takes temperature as an argument; the API still does
WEATHER_Q = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def ac(base_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base_url, api_key="unused", max_retries=0)


def _ask(ac: anthropic.Anthropic, text: str, **kw: Any) -> Any:
    return ac.messages.create(
        model=M, max_tokens=100, messages=[{"role": "user", "content": text}], extra_body=GREEDY, **kw
    )


def test_message(ac: anthropic.Anthropic) -> None:
    m = _ask(ac, "What is the capital of France?")
    assert m.type == "message" and m.role == "assistant" and m.id.startswith("msg_")
    assert [b.text for b in m.content] == [ANSWERS["capital"]]
    assert m.stop_reason == "end_turn" and m.usage.output_tokens > 0


def test_system_and_multi_turn(ac: anthropic.Anthropic) -> None:
    m = _ask(ac, "Greet me.", system="You are a pirate.")
    assert m.content[0].text == ANSWERS["system"]
    m = ac.messages.create(
        model=M,
        max_tokens=50,
        messages=[
            {"role": "user", "content": "My name is Ada."},
            {"role": "assistant", "content": "Nice to meet you, Ada."},
            {"role": "user", "content": [{"type": "text", "text": "What is my name?"}]},
        ],
        extra_body=GREEDY,
    )
    assert m.content[0].text == ANSWERS["multi_turn"]


def test_tools_round_trip(ac: anthropic.Anthropic) -> None:
    m = ac.messages.create(model=M, max_tokens=100, messages=WEATHER_Q, tools=[WEATHER_TOOL], extra_body=GREEDY)  # type: ignore[arg-type,list-item]
    assert m.stop_reason == "tool_use"
    [use] = m.content
    assert use.type == "tool_use" and use.name == "get_weather" and use.input == {"city": "Paris"}
    follow = ac.messages.create(
        model=M,
        max_tokens=100,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        messages=[
            *WEATHER_Q,  # type: ignore[list-item]
            {"role": "assistant", "content": [use.model_dump()]},  # type: ignore[list-item]
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": use.id,
                        "content": '{"temperature": 18, "condition": "sunny"}',
                    }
                ],
            },
        ],
        extra_body=GREEDY,
    )
    assert follow.content[0].text == ANSWERS["tool_answer"]


def test_tool_choice_tool(ac: anthropic.Anthropic) -> None:
    m = _ask(ac, "Hello", tools=[WEATHER_TOOL], tool_choice={"type": "tool", "name": "get_weather"})
    assert m.stop_reason == "tool_use" and m.content[0].name == "get_weather"


def test_stop_sequences_and_max_tokens(ac: anthropic.Anthropic) -> None:
    m = _ask(ac, "Count from one to twenty.", stop_sequences=[" four"])
    assert m.content[0].text == "one two three"
    assert m.stop_reason == "stop_sequence" and m.stop_sequence == " four"
    m = ac.messages.create(
        model=M, max_tokens=2, messages=[{"role": "user", "content": "Count from one to twenty."}], extra_body=GREEDY
    )
    assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 2


def _sse(base_url: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    events = []
    with httpx.stream(
        "POST", f"{base_url}/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"}, timeout=120
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        name = ""
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                assert data["type"] == name
                events.append((name, data))
    return events


def test_stream_exact_event_sequence(base_url: str) -> None:
    events = _sse(
        base_url,
        {
            "model": M,
            "max_tokens": 50,
            "stream": True,
            "temperature": 0,
            "messages": [{"role": "user", "content": "Hello"}],
        },
    )
    names = [n for n, _ in events]
    n_deltas = names.count("content_block_delta")
    assert names == ["message_start", "content_block_start", "ping", *["content_block_delta"] * n_deltas,
                     "content_block_stop", "message_delta", "message_stop"]  # fmt: skip
    assert all(d["delta"]["type"] == "text_delta" for n, d in events if n == "content_block_delta")
    assert "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta") == ANSWERS["hello"]
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn" and events[-2][1]["usage"]["output_tokens"] > 0


def test_stream_tool_use_input_json_delta(base_url: str) -> None:
    events = _sse(
        base_url,
        {
            "model": M,
            "max_tokens": 80,
            "stream": True,
            "temperature": 0,
            "messages": WEATHER_Q,
            "tools": [WEATHER_TOOL],
        },
    )
    start = next(d for n, d in events if n == "content_block_start")
    assert start["content_block"]["type"] == "tool_use" and start["content_block"]["name"] == "get_weather"
    partial = "".join(d["delta"]["partial_json"] for n, d in events if n == "content_block_delta")
    assert json.loads(partial) == {"city": "Paris"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_sdk_stream_helper(ac: anthropic.Anthropic) -> None:
    with ac.messages.stream(
        model=M, max_tokens=50, messages=[{"role": "user", "content": "Hello"}], extra_body=GREEDY
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == ANSWERS["hello"] and final.stop_reason == "end_turn"


def test_count_tokens(ac: anthropic.Anthropic) -> None:
    n = ac.messages.count_tokens(model=M, messages=[{"role": "user", "content": "Hello"}]).input_tokens
    u = _ask(ac, "Hello").usage  # its input_tokens leaves out what the prompt cache supplied
    assert n == u.input_tokens + (u.cache_read_input_tokens or 0) + (u.cache_creation_input_tokens or 0)
    more = ac.messages.count_tokens(model=M, messages=WEATHER_Q, tools=[WEATHER_TOOL]).input_tokens  # type: ignore[arg-type,list-item]
    assert more > n


def test_errors_in_anthropic_shape(ac: anthropic.Anthropic, base_url: str) -> None:
    with pytest.raises(anthropic.NotFoundError) as nf:
        ac.messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert nf.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as bad:
        ac.messages.create(
            model=M, max_tokens=5, messages=[{"role": "user", "content": "x"}], extra_body={"frobnicate": 1}
        )
    assert "frobnicate" in str(bad.value.body)
    r = httpx.post(
        f"{base_url}/v1/messages", json={"model": M, "messages": [{"role": "user", "content": "x"}]}, timeout=60
    )
    assert r.status_code == 400 and r.json()["type"] == "error" and "max_tokens" in r.json()["error"]["message"]


def test_anthropic_bedrock_client(base_url: str) -> None:
    # AnthropicBedrock speaks InvokeModel (raw `:` in the path) with a SigV4 signature.
    client = anthropic.AnthropicBedrock(
        base_url=base_url, aws_access_key="AKIDEXAMPLE", aws_secret_key="secret", aws_region="us-east-1", max_retries=0
    )
    m = client.messages.create(
        model=f"us.{CLAUDE}", max_tokens=50, messages=[{"role": "user", "content": "Hello"}], extra_body=GREEDY
    )
    assert m.content[0].text == ANSWERS["hello"]
    with client.messages.stream(
        model=CLAUDE, max_tokens=50, messages=[{"role": "user", "content": "Hello"}], extra_body=GREEDY
    ) as stream:
        assert "".join(stream.text_stream) == ANSWERS["hello"]
