"""The official openai SDK against a real server on the built-in model."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from outcrop.engines.chat_template import CHATML_TOOLS_TEMPLATE, render
from outcrop.models import BUILTIN_MODEL_ID
from outcrop.models.tiny_script import ANSWERS, WEATHER_TOOL

M = BUILTIN_MODEL_ID
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": WEATHER_TOOL["name"],
            "description": WEATHER_TOOL["description"],
            "parameters": WEATHER_TOOL["input_schema"],
        },
    }
]
WEATHER_Q = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def oc(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)


def _ask(oc: openai.OpenAI, text: str, **kw: Any) -> Any:
    return oc.chat.completions.create(model=M, messages=[{"role": "user", "content": text}], temperature=0, **kw)


def test_chat_completion(oc: openai.OpenAI) -> None:
    r = _ask(oc, "What is the capital of France?")
    assert r.object == "chat.completion" and r.model == M
    assert r.choices[0].message.content == ANSWERS["capital"]
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_system_and_developer_messages(oc: openai.OpenAI) -> None:
    for role in ("system", "developer"):
        r = oc.chat.completions.create(
            model=M,
            messages=[{"role": role, "content": "You are a pirate."}, {"role": "user", "content": "Greet me."}],  # type: ignore[misc,list-item]
            temperature=0,
        )
        assert r.choices[0].message.content == ANSWERS["system"]


def test_multi_turn(oc: openai.OpenAI) -> None:
    r = oc.chat.completions.create(
        model=M,
        messages=[
            {"role": "user", "content": "My name is Ada."},
            {"role": "assistant", "content": "Nice to meet you, Ada."},
            {"role": "user", "content": [{"type": "text", "text": "What is my name?"}]},
        ],
        temperature=0,
    )
    assert r.choices[0].message.content == ANSWERS["multi_turn"]


def test_stream_with_usage(oc: openai.OpenAI) -> None:
    chunks = list(_ask(oc, "Hello", stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWERS["hello"]
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_tool_call_and_result(oc: openai.OpenAI) -> None:
    r = oc.chat.completions.create(model=M, messages=WEATHER_Q, tools=TOOLS, temperature=0)  # type: ignore[arg-type]
    assert r.choices[0].finish_reason == "tool_calls"
    [call] = r.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    follow = oc.chat.completions.create(
        model=M,
        messages=[
            *WEATHER_Q,
            r.choices[0].message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 18, "condition": "sunny"}'},
        ],
        tools=TOOLS,  # type: ignore[arg-type]
        temperature=0,
    )
    assert follow.choices[0].message.content == ANSWERS["tool_answer"]


def test_tool_call_stream(oc: openai.OpenAI) -> None:
    chunks = list(oc.chat.completions.create(model=M, messages=WEATHER_Q, tools=TOOLS, temperature=0, stream=True))  # type: ignore[arg-type]
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].id and calls[0].function and calls[0].function.name == "get_weather"
    args = "".join(tc.function.arguments or "" for tc in calls if tc.function)
    assert json.loads(args) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize(
    ("choice", "expect_call"),
    [("none", False), ("required", True), ({"type": "function", "function": {"name": "get_weather"}}, True)],
)
def test_tool_choice(oc: openai.OpenAI, choice: Any, expect_call: bool) -> None:
    question = "Hello" if expect_call else "What is the weather in Paris?"
    r = _ask(oc, question, tools=TOOLS, tool_choice=choice)
    calls = r.choices[0].message.tool_calls or []
    assert bool(calls) == expect_call
    if expect_call:
        assert calls[0].function.name == "get_weather"  # type: ignore[union-attr]
        assert isinstance(json.loads(calls[0].function.arguments)["city"], str)  # type: ignore[union-attr]


def test_stop_and_max_tokens(oc: openai.OpenAI) -> None:
    r = _ask(oc, "Count from one to twenty.", stop=[" four"])
    assert r.choices[0].message.content == "one two three" and r.choices[0].finish_reason == "stop"
    r = _ask(oc, "Count from one to twenty.", max_tokens=2)
    assert r.choices[0].finish_reason == "length" and r.usage is not None and r.usage.completion_tokens == 2
    r = _ask(oc, "Count from one to twenty.", max_completion_tokens=3)
    assert r.choices[0].finish_reason == "length" and r.usage is not None and r.usage.completion_tokens == 3


def test_seed_makes_sampling_repeatable(oc: openai.OpenAI) -> None:
    a = oc.chat.completions.create(
        model=M, messages=[{"role": "user", "content": "Tell me a story."}], temperature=1.5, seed=7, max_tokens=20
    )
    b = oc.chat.completions.create(
        model=M, messages=[{"role": "user", "content": "Tell me a story."}], temperature=1.5, seed=7, max_tokens=20
    )
    assert a.choices[0].message.content == b.choices[0].message.content


def test_json_schema_is_enforced_while_decoding(oc: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 12},
            "age": {"type": "integer"},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
        },
        "required": ["name", "age", "tags"],
        "additionalProperties": False,
    }
    r = _ask(
        oc,
        "Hello",
        max_tokens=80,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
    )
    value = json.loads(r.choices[0].message.content or "")
    assert set(value) == {"name", "age", "tags"} and isinstance(value["age"], int)
    assert all(t in ("a", "b") for t in value["tags"])


def test_json_object(oc: openai.OpenAI) -> None:
    r = _ask(oc, "Hello", max_tokens=60, response_format={"type": "json_object"})
    assert isinstance(json.loads(r.choices[0].message.content or ""), dict)


def test_completions(oc: openai.OpenAI) -> None:
    prompt = render(CHATML_TOOLS_TEMPLATE, [{"role": "user", "content": "Hello"}])
    r = oc.completions.create(model=M, prompt=prompt, temperature=0, max_tokens=40)
    assert r.choices[0].text == ANSWERS["hello"] and r.choices[0].finish_reason == "stop"
    default = oc.completions.create(model=M, prompt=prompt, temperature=0)
    assert default.usage is not None and default.usage.completion_tokens <= 16  # OpenAI's default max_tokens
    streamed = "".join(
        c.choices[0].text
        for c in oc.completions.create(model=M, prompt=prompt, temperature=0, max_tokens=40, stream=True)
        if c.choices
    )
    assert streamed == ANSWERS["hello"]


def test_models(oc: openai.OpenAI) -> None:
    ids = [m.id for m in oc.models.list()]
    assert M in ids and "anthropic.claude-3-haiku-20240307-v1:0" in ids
    assert oc.models.retrieve(M).id == M
    with pytest.raises(openai.NotFoundError):
        oc.models.retrieve("nope")


def test_errors_in_openai_shape(oc: openai.OpenAI, base_url: str) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        oc.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert nf.value.body["code"] == "model_not_found"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as bad:
        oc.chat.completions.create(model=M, messages=[{"role": "user", "content": "x"}], extra_body={"frobnicate": 1})
    assert "frobnicate" in bad.value.message and bad.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as long:
        oc.chat.completions.create(model=M, messages=[{"role": "user", "content": "word " * 5000}])
    assert long.value.body["code"] == "context_length_exceeded"  # type: ignore[index]
    r = httpx.post(f"{base_url}/v1/chat/completions", content=b"{nope", timeout=60)
    assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = httpx.post(
        f"{base_url}/v1/chat/completions", json={"model": M, "messages": [{"role": "user", "content": 5}]}, timeout=60
    )
    assert r.status_code == 400 and r.json()["error"]["param"].startswith("messages")
    r = httpx.get(f"{base_url}/v1/nothing-here", timeout=60)
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"


def test_embedding_model_refuses_chat(oc: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        oc.chat.completions.create(model="outcrop.all-minilm-l6-v2", messages=[{"role": "user", "content": "x"}])
    assert "embedding model" in err.value.message
