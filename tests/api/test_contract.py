"""One contract, three dialects: the same cases through Bedrock Converse, OpenAI chat completions and
Anthropic messages, on the same model, each answered in its own wire shape."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from outcrop.models import BUILTIN_MODEL_ID
from outcrop.models.tiny_script import ANSWERS, WEATHER_TOOL
from tests.conftest import ECHO

TIMEOUT = 60


class Bedrock:
    name = "bedrock"
    overload = (429, "ThrottlingException")
    not_found = (404, "ResourceNotFoundException")
    invalid = (400, "ValidationException")

    def chat(self, url: str, model: str, text: str, tools: bool = False, stop: list[str] | None = None,
             max_tokens: int | None = None, extra: dict[str, Any] | None = None) -> httpx.Response:  # fmt: skip
        cfg: dict[str, Any] = {"temperature": 0}
        if stop:
            cfg["stopSequences"] = stop
        if max_tokens:
            cfg["maxTokens"] = max_tokens
        body: dict[str, Any] = {"messages": [{"role": "user", "content": [{"text": text}]}], "inferenceConfig": cfg}
        if tools:
            spec = {"name": WEATHER_TOOL["name"], "description": WEATHER_TOOL["description"],
                    "inputSchema": {"json": WEATHER_TOOL["input_schema"]}}  # fmt: skip
            body["toolConfig"] = {"tools": [{"toolSpec": spec}]}
        return httpx.post(
            f"{url}/model/{model.replace(':', '%3A')}/converse", json={**body, **(extra or {})}, timeout=TIMEOUT
        )

    def answer(self, r: httpx.Response) -> tuple[str, list[tuple[str, Any]], str]:
        out = r.json()
        blocks = out["output"]["message"]["content"]
        text = "".join(b.get("text", "") for b in blocks)
        calls = [(b["toolUse"]["name"], b["toolUse"]["input"]) for b in blocks if "toolUse" in b]
        return (
            text,
            calls,
            {"end_turn": "end", "tool_use": "tool", "stop_sequence": "stop", "max_tokens": "length"}[out["stopReason"]],
        )

    def error(self, r: httpx.Response) -> tuple[int, str, str]:
        assert set(r.json()) == {"message"}
        return r.status_code, r.headers["x-amzn-errortype"], r.json()["message"]


class OpenAI:
    name = "openai"
    overload = (429, "rate_limit_error")
    not_found = (404, "invalid_request_error")
    invalid = (400, "invalid_request_error")

    def chat(self, url: str, model: str, text: str, tools: bool = False, stop: list[str] | None = None,
             max_tokens: int | None = None, extra: dict[str, Any] | None = None) -> httpx.Response:  # fmt: skip
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}], "temperature": 0}
        if stop:
            body["stop"] = stop
        if max_tokens:
            body["max_tokens"] = max_tokens
        if tools:
            fn = {"name": WEATHER_TOOL["name"], "description": WEATHER_TOOL["description"],
                  "parameters": WEATHER_TOOL["input_schema"]}  # fmt: skip
            body["tools"] = [{"type": "function", "function": fn}]
        return httpx.post(f"{url}/v1/chat/completions", json={**body, **(extra or {})}, timeout=TIMEOUT)

    def answer(self, r: httpx.Response) -> tuple[str, list[tuple[str, Any]], str]:
        import json

        choice = r.json()["choices"][0]
        calls = [
            (c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in choice["message"].get("tool_calls") or []
        ]
        kind = {"stop": "end", "tool_calls": "tool", "length": "length"}[choice["finish_reason"]]
        return choice["message"]["content"] or "", calls, kind

    def error(self, r: httpx.Response) -> tuple[int, str, str]:
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"}
        return r.status_code, err["type"], err["message"]


class Anthropic:
    name = "anthropic"
    overload = (529, "overloaded_error")
    not_found = (404, "not_found_error")
    invalid = (400, "invalid_request_error")

    def chat(self, url: str, model: str, text: str, tools: bool = False, stop: list[str] | None = None,
             max_tokens: int | None = None, extra: dict[str, Any] | None = None) -> httpx.Response:  # fmt: skip
        body: dict[str, Any] = {"model": model, "max_tokens": max_tokens or 200, "temperature": 0,
                                "messages": [{"role": "user", "content": text}]}  # fmt: skip
        if stop:
            body["stop_sequences"] = stop
        if tools:
            body["tools"] = [WEATHER_TOOL]
        return httpx.post(f"{url}/v1/messages", json={**body, **(extra or {})}, timeout=TIMEOUT)

    def answer(self, r: httpx.Response) -> tuple[str, list[tuple[str, Any]], str]:
        out = r.json()
        text = "".join(b["text"] for b in out["content"] if b["type"] == "text")
        calls = [(b["name"], b["input"]) for b in out["content"] if b["type"] == "tool_use"]
        kind = {"end_turn": "end", "tool_use": "tool", "stop_sequence": "stop", "max_tokens": "length"}[
            out["stop_reason"]
        ]
        return text, calls, kind

    def error(self, r: httpx.Response) -> tuple[int, str, str]:
        out = r.json()
        assert out["type"] == "error" and set(out["error"]) == {"type", "message"}
        return r.status_code, out["error"]["type"], out["error"]["message"]


DIALECTS: list[Bedrock | OpenAI | Anthropic] = [Bedrock(), OpenAI(), Anthropic()]
ids = [d.name for d in DIALECTS]


@pytest.mark.parametrize("d", DIALECTS, ids=ids)
def test_plain_answer(base_url: str, d: Any) -> None:
    r = d.chat(base_url, BUILTIN_MODEL_ID, "What is the capital of France?")
    assert r.status_code == 200
    assert d.answer(r) == (ANSWERS["capital"], [], "end")


@pytest.mark.parametrize("d", DIALECTS, ids=ids)
def test_tool_call(base_url: str, d: Any) -> None:
    r = d.chat(base_url, BUILTIN_MODEL_ID, "What is the weather in Paris?", tools=True)
    assert r.status_code == 200
    _, calls, kind = d.answer(r)
    assert (calls, kind) == ([("get_weather", {"city": "Paris"})], "tool")


@pytest.mark.parametrize("d", DIALECTS, ids=ids)
def test_stop_sequence(base_url: str, d: Any) -> None:
    text, _, kind = d.answer(d.chat(base_url, BUILTIN_MODEL_ID, "Count from one to twenty.", stop=[" five"]))
    assert text == "one two three four"
    assert kind == ("end" if d.name == "openai" else "stop")  # OpenAI says "stop" for both


@pytest.mark.parametrize("d", DIALECTS, ids=ids)
def test_max_tokens(base_url: str, d: Any) -> None:
    text, _, kind = d.answer(d.chat(base_url, BUILTIN_MODEL_ID, "Count from one to twenty.", max_tokens=3))
    assert kind == "length" and text and ANSWERS["count"].startswith(text)


@pytest.mark.parametrize("d", DIALECTS, ids=ids)
def test_unknown_model(base_url: str, d: Any) -> None:
    status, kind, message = d.error(d.chat(base_url, "nope.model-v1:0", "hi"))
    assert (status, kind) == d.not_found and "nope.model-v1:0" in message


@pytest.mark.parametrize("d", DIALECTS, ids=ids)
def test_malformed_body(base_url: str, d: Any) -> None:
    status, kind, message = d.error(d.chat(base_url, BUILTIN_MODEL_ID, "hi", extra={"frobnicate": True}))
    assert (status, kind) == d.invalid and "frobnicate" in message


@pytest.mark.parametrize("d", DIALECTS, ids=ids)
def test_overload(base_url: str, d: Any) -> None:
    # The echo model serves one request at a time and queues none: a second caller is turned away.
    started = threading.Event()

    def occupy() -> None:
        body = {"messages": [{"role": "user", "content": [{"text": "one two three four five six seven eight"}]}]}
        with httpx.stream("POST", f"{base_url}/model/{ECHO}/converse-stream", json=body, timeout=TIMEOUT) as r:
            started.set()
            for _ in r.iter_bytes():
                pass

    t = threading.Thread(target=occupy)
    t.start()
    try:
        assert started.wait(TIMEOUT)
        r = d.chat(base_url, ECHO, "hi")
        status, kind, _ = d.error(r)
        assert (status, kind) == d.overload
        assert int(r.headers["retry-after"]) >= 1
    finally:
        t.join()


def _error_classes() -> list[type[Any]]:
    from outcrop import errors

    found, todo = [], [errors.OutcropError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_every_error_has_a_row_in_every_dialects_table(cls: type[Any]) -> None:
    """An error class added to the tree without a row of its own or of a parent's would be a 500."""
    import json

    from outcrop.api.anthropic import errors as anthropic
    from outcrop.api.bedrock import errors as bedrock
    from outcrop.api.openai import errors as openai

    if cls.__name__ == "OutcropError":
        return

    try:
        exc = cls("what went wrong")
    except TypeError:  # it builds its message from other arguments (DimensionMismatch): its parent's constructor
        exc = Exception.__new__(cls)
        for parent in cls.__mro__[1:]:  # the nearest constructor that takes a message alone
            try:
                parent.__init__(exc, "what went wrong")  # type: ignore[misc]
                break
            except TypeError:
                continue
    for dialect in (bedrock, openai, anthropic):
        assert any(c in dialect.TABLE for c in cls.__mro__), (dialect.__name__, cls.__name__)
        r = dialect.encode_error(exc)
        body = json.loads(bytes(r.body))
        assert r.status_code < 500 or cls.__name__ in ("InternalFailure", "ModelFailure", "Overloaded",  # 529
                                                       "ServiceUnavailable")  # fmt: skip
        message = body.get("message") or body["error"]["message"]
        assert message == exc.message
        if dialect is bedrock:
            assert r.headers["x-amzn-errortype"]
        elif dialect is anthropic:
            assert body["type"] == "error"
