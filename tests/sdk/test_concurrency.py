"""Concurrent serving against a real server with the official clients: eight streams in three dialects at
once while half of them hang up, and prompt-cache counts reported exactly in every dialect."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from sqlalchemy import Engine

from outcrop import store
from outcrop.api.app import build_app
from outcrop.config import ModelSpec, Settings
from outcrop.conversation import ChatRequest
from outcrop.engines.llamacpp import LlamaCppEngine
from outcrop.engines.llamacpp.prompt_cache import common_prefix
from outcrop.metering.usage import UsageRecorder, summarize
from outcrop.models import BUILTIN_GGUF
from outcrop.models.tiny_script import ANSWERS
from outcrop.registry import Registry
from tests.conftest import client, serve, serve_app

M = "anthropic.claude-3-haiku-20240307-v1:0"  # the tiny model under a Bedrock id, so InvokeModel takes Anthropic bodies
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def eight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Registry]]:
    spec = ModelSpec(id=M, path=str(BUILTIN_GGUF), n_ctx=4096, parallel=8, max_queue=8)
    settings = Settings(config_path=tmp_path_factory.mktemp("c") / "c.toml", builtin_model=False,
                        builtin_embedding_model=False, models=(spec,))  # fmt: skip
    with serve(settings) as running:
        yield running


def _status(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/outcrop/status", timeout=30).json()["models"][M]  # type: ignore[no-any-return]


def test_eight_streams_in_three_dialects_while_half_hang_up(eight: tuple[str, Registry]) -> None:
    url, _ = eight
    rt = client("bedrock-runtime", url)
    oc = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    ac = anthropic.Anthropic(base_url=url, api_key="x", max_retries=0)
    before = _status(url) if _status(url)["loaded"] else {"cancelled": 0, "completed": 0}
    go = threading.Barrier(8)
    long_text = {"maxTokens": 2000, "temperature": 0}

    def bedrock_full() -> tuple[str, int]:
        go.wait()
        out = rt.converse_stream(modelId=M, messages=[{"role": "user", "content": [{"text": "Count from one to twenty."}]}],
                                 inferenceConfig={"temperature": 0})  # fmt: skip
        text, tokens = [], 0
        for event in out["stream"]:
            if "contentBlockDelta" in event:
                text.append(event["contentBlockDelta"]["delta"]["text"])
            if "metadata" in event:
                tokens = event["metadata"]["usage"]["outputTokens"]
        return "".join(text), tokens

    def openai_full() -> tuple[str, int]:
        go.wait()
        stream = oc.chat.completions.create(model=M, messages=[{"role": "user", "content": "What is the capital of France?"}],
                                            temperature=0, stream=True, stream_options={"include_usage": True})  # fmt: skip
        text, tokens = [], 0
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text.append(chunk.choices[0].delta.content)
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
        return "".join(text), tokens

    def anthropic_full() -> tuple[str, int]:
        go.wait()
        with ac.messages.stream(model=M, max_tokens=100, messages=[{"role": "user", "content": "Hello"}],
                                extra_body=GREEDY) as stream:  # fmt: skip
            text = "".join(stream.text_stream)
            return text, stream.get_final_message().usage.output_tokens

    def bedrock_hang_up() -> int:
        go.wait()
        out = rt.converse_stream(modelId=M, messages=[{"role": "user", "content": [{"text": "Hello"}]}],
                                 inferenceConfig=long_text, additionalModelRequestFields={"ignore_eos": True})  # fmt: skip
        seen = 0
        for event in out["stream"]:
            seen += "contentBlockDelta" in event
            if seen == 20:
                break
        out["stream"].close()
        return seen

    def openai_hang_up() -> int:
        go.wait()
        stream = oc.chat.completions.create(model=M, messages=[{"role": "user", "content": "Hello"}], temperature=0,
                                            max_tokens=2000, stream=True, extra_body={"ignore_eos": True})  # fmt: skip
        seen = 0
        for chunk in stream:
            seen += bool(chunk.choices and chunk.choices[0].delta.content)
            if seen == 20:
                break
        stream.close()
        return seen

    jobs = [bedrock_full, openai_full, anthropic_full, bedrock_full, bedrock_hang_up, openai_hang_up,
            bedrock_hang_up, openai_hang_up]  # fmt: skip
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = [f.result(timeout=120) for f in [pool.submit(j) for j in jobs]]
    assert results[0][0] == results[3][0] == ANSWERS["count"]
    assert results[1][0] == ANSWERS["capital"]
    assert results[2][0] == ANSWERS["hello"]
    assert all(n > 0 for _, n in results[:4])
    assert results[4:] == [20, 20, 20, 20]
    deadline = time.monotonic() + 10
    while _status(url)["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    after = _status(url)
    assert (after["in_flight"], after["queued"], after["slots"]) == (0, 0, 8)
    assert after["cancelled"] - before["cancelled"] == 4
    assert after["completed"] - before["completed"] == 4


def test_a_prompt_too_long_for_its_slot_fails_while_others_stream(eight: tuple[str, Registry]) -> None:
    url, _ = eight
    rt = client("bedrock-runtime", url)
    oc = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        ok = pool.submit(lambda: oc.chat.completions.create(
            model=M, messages=[{"role": "user", "content": "What is the capital of France?"}], temperature=0))  # fmt: skip
        with pytest.raises(openai.BadRequestError) as too_long:
            oc.chat.completions.create(model=M, messages=[{"role": "user", "content": "word " * 5000}])
        assert too_long.value.code == "context_length_exceeded"
        assert ok.result(timeout=60).choices[0].message.content == ANSWERS["capital"]
    with pytest.raises(rt.exceptions.ValidationException, match="context window of 4096 tokens"):
        rt.converse(modelId=M, messages=[{"role": "user", "content": [{"text": "word " * 5000}]}])


# --- prompt-cache counts, exact in every dialect ---------------------------------------------------------

SYSTEM = "You answer questions about geography, briefly and correctly. " * 15
TURN1 = "What is the capital of France?"
TURN2 = "And what is my name?"


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Registry, Engine]]:
    """One slot (and the one kept for nested calls), no host memory: which prefix a request finds is known.
    Usage is recorded in a SQLite store."""
    tmp = tmp_path_factory.mktemp("p")
    spec = ModelSpec(id=M, path=str(BUILTIN_GGUF), n_ctx=4096, parallel=1, prompt_cache_mib=0)
    settings = Settings(config_path=tmp / "c.toml", builtin_model=False, builtin_embedding_model=False,
                        models=(spec,))  # fmt: skip
    db = store.connect(f"sqlite:///{tmp / 'o.db'}")
    registry = Registry(settings)
    with serve_app(build_app(settings, registry, usage=UsageRecorder(db, flush_interval_s=0.2))) as url:
        yield url, registry, db


def _expected(engine: LlamaCppEngine, request: ChatRequest) -> tuple[int, int, int]:
    """(prompt tokens, tokens the request finds cached, tokens up to its cache point after the system prompt)."""
    prompt = engine.tokenize(engine.render(request))
    read = max(min(common_prefix(s.tokens, prompt), len(prompt) - 1) for s in engine._scheduler.slots)
    system = engine.tokenize(engine.render(ChatRequest(model=M, system=request.system), add_generation_prompt=False))
    return len(prompt), read, max(0, common_prefix(system, prompt) - read)


def _canonical(second: bool) -> ChatRequest:
    from outcrop.conversation import Message, Text

    messages = [Message("user", (Text(TURN1),))]
    if second:
        messages += [Message("assistant", (Text(ANSWERS["capital"]),)), Message("user", (Text(TURN2),))]
    return ChatRequest(model=M, system=SYSTEM, messages=tuple(messages))


def test_cached_tokens_are_exact_in_every_dialect(single: tuple[str, Registry, Engine]) -> None:
    url, registry, db = single
    rt = client("bedrock-runtime", url)
    oc = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    ac = anthropic.Anthropic(base_url=url, api_key="x", max_retries=0)
    second_turn = [{"role": "assistant", "content": ANSWERS["capital"]}, {"role": "user", "content": TURN2}]

    def bedrock(second: bool) -> dict[str, int]:
        messages = [{"role": "user", "content": [{"text": TURN1}]}]
        messages += [{"role": m["role"], "content": [{"text": m["content"]}]} for m in second_turn] if second else []
        out = rt.converse(modelId=M, system=[{"text": SYSTEM}, {"cachePoint": {"type": "default"}}], messages=messages,
                          inferenceConfig={"temperature": 0, "maxTokens": 20})  # fmt: skip
        u = out["usage"]
        return {"input": u["inputTokens"] + u["cacheReadInputTokens"] + u["cacheWriteInputTokens"],
                "read": u["cacheReadInputTokens"], "write": u["cacheWriteInputTokens"], "uncached": u["inputTokens"],
                "total": u["totalTokens"] - u["outputTokens"]}  # fmt: skip

    def bedrock_stream(second: bool) -> dict[str, int]:
        messages = [{"role": "user", "content": [{"text": TURN1}]}]
        messages += [{"role": m["role"], "content": [{"text": m["content"]}]} for m in second_turn] if second else []
        out = rt.converse_stream(modelId=M, system=[{"text": SYSTEM}, {"cachePoint": {"type": "default", "ttl": "1h"}}],
                                 messages=messages, inferenceConfig={"temperature": 0, "maxTokens": 20})  # fmt: skip
        u = next(e["metadata"]["usage"] for e in out["stream"] if "metadata" in e)
        if u["cacheWriteInputTokens"]:
            assert u["cacheDetails"] == [{"ttl": "1h", "inputTokens": u["cacheWriteInputTokens"]}]
        return {"input": u["inputTokens"] + u["cacheReadInputTokens"] + u["cacheWriteInputTokens"],
                "read": u["cacheReadInputTokens"], "write": u["cacheWriteInputTokens"], "uncached": u["inputTokens"],
                "total": u["totalTokens"] - u["outputTokens"]}  # fmt: skip

    def anthropic_api(second: bool) -> dict[str, int]:
        messages = [{"role": "user", "content": TURN1}, *(second_turn if second else [])]
        m = ac.messages.create(model=M, max_tokens=20, extra_body=GREEDY, messages=messages,  # type: ignore[arg-type]
                               system=[{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}])  # fmt: skip
        u = m.usage
        read, write = u.cache_read_input_tokens or 0, u.cache_creation_input_tokens or 0
        return {"input": u.input_tokens + read + write, "read": read, "write": write, "uncached": u.input_tokens,
                "total": u.input_tokens + read + write}  # fmt: skip

    def invoke_anthropic(second: bool) -> dict[str, int]:
        messages = [{"role": "user", "content": TURN1}, *(second_turn if second else [])]
        body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 20, "temperature": 0, "messages": messages,
                "system": [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]}  # fmt: skip
        r = httpx.post(f"{url}/model/{M}/invoke", json=body, timeout=60)
        assert r.status_code == 200, r.text
        h, u = r.headers, r.json()["usage"]
        read, write = (
            int(h["x-amzn-bedrock-cache-read-input-token-count"]),
            int(h["x-amzn-bedrock-cache-write-input-token-count"]),
        )
        assert (u["cache_read_input_tokens"], u["cache_creation_input_tokens"]) == (read, write)
        assert int(h["x-amzn-bedrock-input-token-count"]) == u["input_tokens"]
        return {"input": u["input_tokens"] + read + write, "read": read, "write": write, "uncached": u["input_tokens"],
                "total": u["input_tokens"] + read + write}  # fmt: skip

    def openai_api(second: bool) -> dict[str, int]:
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": TURN1},
            *(second_turn if second else []),
        ]
        r = oc.chat.completions.create(model=M, messages=messages, temperature=0, max_tokens=20)  # type: ignore[arg-type]
        assert r.usage is not None and r.usage.prompt_tokens_details is not None
        read = r.usage.prompt_tokens_details.cached_tokens or 0
        return {"input": r.usage.prompt_tokens, "read": read, "write": 0, "uncached": r.usage.prompt_tokens - read,
                "total": r.usage.prompt_tokens}  # fmt: skip

    dialects = {"converse": bedrock, "converse-stream": bedrock_stream, "anthropic": anthropic_api,
                "invoke-anthropic": invoke_anthropic, "openai": openai_api}  # fmt: skip
    reads = {}
    for name, call in dialects.items():
        for second in (False, True):
            call(second)  # load the model (first time), then put the slot in a known state:
            call(second)  # this very request's prompt and answer
            engine = registry.loaded()[M]
            assert isinstance(engine, LlamaCppEngine)
            nxt = _canonical(not second)
            total, read, write = _expected(engine, nxt)
            got = call(not second)
            if name == "openai":
                write = 0  # no cache points in OpenAI's API
            assert got == {"input": total, "read": read, "write": write, "uncached": total - read - write,
                           "total": total}, (name, second)  # fmt: skip
            reads[(name, second)] = read
    # the same conversation in every dialect renders the same prompt, so it finds the same prefix
    assert len({r for (_, s), r in reads.items() if s}) == 1 and len({r for (_, s), r in reads.items() if not s}) == 1
    assert all(r > 100 for r in reads.values())
    time.sleep(1)  # usage records are written every 0.2 s here
    [row] = summarize(db, ("model",))
    assert row["requests"] == 3 * len(dialects) * 2
    # two calls per dialect and turn read what `_expected` says; the others found less or wrote their prefix
    assert row["cache_read_tokens"] >= sum(reads.values()) and row["cache_write_tokens"] > 0


def test_a_non_streaming_caller_that_gives_up_frees_its_slot(eight: tuple[str, Registry]) -> None:
    url, _ = eight
    rt = client("bedrock-runtime", url)
    rt.converse(modelId=M, messages=[{"role": "user", "content": [{"text": "Hello"}]}])  # loaded
    before = _status(url)
    body = {"messages": [{"role": "user", "content": [{"text": "Hello"}]}], "inferenceConfig": {"maxTokens": 4000},
            "additionalModelRequestFields": {"ignore_eos": True}}  # fmt: skip
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/model/{M}/converse", json=body, timeout=httpx.Timeout(30, read=0.3))
    deadline = time.monotonic() + 5
    while (
        _status(url)["in_flight"] or _status(url)["cancelled"] == before["cancelled"]
    ) and time.monotonic() < deadline:
        time.sleep(0.02)
    after = _status(url)
    assert after["in_flight"] == 0 and after["cancelled"] == before["cancelled"] + 1
    assert after["completed"] == before["completed"]  # it was stopped, not run to the end


def test_prometheus_shows_slots_queue_kv_cells_and_cache_hits(eight: tuple[str, Registry]) -> None:
    url, registry = eight
    oc = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    for _ in range(2):  # the second finds the first's prompt in a slot
        oc.chat.completions.create(model=M, messages=[{"role": "user", "content": "What is the capital of France?"}],
                                   temperature=0)  # fmt: skip
    text = httpx.get(f"{url}/metrics", timeout=30).text
    stats = registry.loaded()[M].stats()
    label = f'{{model="{M}"}}'
    assert f"outcrop_slots{label} 8.0" in text and f"outcrop_queue_depth{label} 0.0" in text
    assert f"outcrop_requests_in_flight{label} 0.0" in text
    assert f"outcrop_kv_cells{label} {float(9 * 4096)}" in text  # 8 slots and the one kept for nested calls
    assert f"outcrop_kv_cells_used{label} {float(stats.kv_cells_used)}" in text and stats.kv_cells_used > 0
    assert f"outcrop_prompt_cache_hit_tokens_total{label} {float(stats.prompt_cache_hit_tokens)}" in text
    assert f"outcrop_prompt_tokens_total{label} {float(stats.prompt_tokens)}" in text
    assert stats.prompt_cache_hit_tokens > 0
