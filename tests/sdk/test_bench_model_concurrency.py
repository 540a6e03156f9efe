"""Concurrent streams on a model the size of a real small chat model: the Qwen2.5-0.5B-shaped Q8_0 GGUF of
scripts/build_bench_model.py (random weights; built on first use, ~30 s, into benchmarks/.models/), four
official clients at once against a real server. Each stream's whole text and usage must equal what the same
request gets alone (temperature 0)."""

from __future__ import annotations

import concurrent.futures
import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from outcrop.config import ModelSpec, Settings
from tests.conftest import client, serve

ROOT = Path(__file__).resolve().parents[2]
MODEL_FILE = ROOT / "benchmarks" / ".models" / "qwen2.5-0.5b-shape-q8_0.gguf"
M = "anthropic.qwen2-5-0-5b-shape-v1:0"
TOKENS = 24


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not MODEL_FILE.is_file():
        spec = importlib.util.spec_from_file_location("build_bench_model", ROOT / "scripts" / "build_bench_model.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.build(MODEL_FILE)
    model = ModelSpec(id=M, path=str(MODEL_FILE), n_ctx=512, parallel=4, prompt_cache_mib=0)
    settings = Settings(config_path=tmp_path_factory.mktemp("b") / "c.toml", builtin_model=False,
                        builtin_embedding_model=False, models=(model,))  # fmt: skip
    with serve(settings) as (base, _):
        yield base


def _bedrock(url: str, n: int) -> tuple[str, int, int]:
    out = client("bedrock-runtime", url).converse_stream(
        modelId=M, messages=[{"role": "user", "content": [{"text": f"Story {n}: a dog finds a key."}]}],
        inferenceConfig={"maxTokens": TOKENS, "temperature": 0}, additionalModelRequestFields={"ignore_eos": True},
    )  # fmt: skip
    text, usage = [], {}
    for event in out["stream"]:
        if "contentBlockDelta" in event:
            text.append(event["contentBlockDelta"]["delta"]["text"])
        if "metadata" in event:
            usage = event["metadata"]["usage"]
    prompt = usage["inputTokens"] + usage["cacheReadInputTokens"] + usage["cacheWriteInputTokens"]
    return "".join(text), prompt, usage["outputTokens"]


def _openai(url: str, n: int) -> tuple[str, int, int]:
    oc = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    stream = oc.chat.completions.create(model=M, messages=[{"role": "user", "content": f"Story {n}: a dog finds a key."}],
                                        max_tokens=TOKENS, temperature=0, stream=True, extra_body={"ignore_eos": True},
                                        stream_options={"include_usage": True})  # fmt: skip
    text, prompt, out = [], 0, 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text.append(chunk.choices[0].delta.content)
        if chunk.usage:
            prompt, out = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
    return "".join(text), prompt, out


def _anthropic(url: str, n: int) -> tuple[str, int, int]:
    """The Messages API has no way to ignore the end of sequence: the answer may end early, the same way alone."""
    ac = anthropic.Anthropic(base_url=url, api_key="x", max_retries=0)
    with ac.messages.stream(model=M, max_tokens=TOKENS, messages=[{"role": "user", "content": f"Story {n}: a dog finds a key."}],
                            extra_body={"temperature": 0}) as stream:  # fmt: skip
        text = "".join(stream.text_stream)
        u = stream.get_final_message().usage
    return (
        text,
        u.input_tokens + (u.cache_read_input_tokens or 0) + (u.cache_creation_input_tokens or 0),
        u.output_tokens,
    )


CALLS: list[Any] = [_bedrock, _openai, _anthropic, _bedrock]


def test_four_clients_at_once_get_what_each_gets_alone(url: str) -> None:
    alone = [call(url, n) for n, call in enumerate(CALLS)]
    go = threading.Barrier(len(CALLS))

    def together(n: int) -> tuple[str, int, int]:
        go.wait()
        return CALLS[n](url, n)  # type: ignore[no-any-return]

    with concurrent.futures.ThreadPoolExecutor(len(CALLS)) as pool:
        results = list(pool.map(together, range(len(CALLS))))
    assert results == alone
    for (text, prompt, out), call in zip(results, CALLS, strict=True):
        assert text and prompt > 10
        if call is not _anthropic:
            assert out == TOKENS
