"""The upstream engine against a real OpenAI-compatible server: another Outcrop's /v1 on the built-in model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from outcrop.config import ModelSpec, Settings
from outcrop.models import BUILTIN_MODEL_ID
from outcrop.models.tiny_script import ANSWERS, WEATHER_TOOL
from tests.conftest import client, free_port, serve

UP = "meta.llama3-1-70b-instruct-v1:0"
GREEDY = {"temperature": 0, "maxTokens": 100}
TOOLS = {"tools": [{"toolSpec": {"name": WEATHER_TOOL["name"], "description": WEATHER_TOOL["description"],
                                 "inputSchema": {"json": WEATHER_TOOL["input_schema"]}}}]}  # fmt: skip


@pytest.fixture(scope="module")
def gateway(base_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("gw")
    models = (
        ModelSpec(id=UP, engine="openai", url=f"{base_url}/v1", upstream_model=BUILTIN_MODEL_ID),
        ModelSpec(id="x.missing-v1", engine="openai", url=f"{base_url}/v1", upstream_model="no-such-model"),
        ModelSpec(id="x.down-v1", engine="openai", url=f"http://127.0.0.1:{free_port()}/v1"),
    )
    settings = Settings(
        config_path=Path(tmp) / "c.toml", builtin_model=False, builtin_embedding_model=False, models=models
    )
    with serve(settings) as (url, _):
        yield url


def test_converse_through_the_upstream(gateway: str) -> None:
    rt = client("bedrock-runtime", gateway)
    out = rt.converse(modelId=UP, messages=[{"role": "user", "content": [{"text": "Hello"}]}], inferenceConfig=GREEDY)
    assert out["output"]["message"]["content"] == [{"text": ANSWERS["hello"]}]
    assert out["stopReason"] == "end_turn" and out["usage"]["inputTokens"] > 0 and out["usage"]["outputTokens"] > 0


def test_tool_round_trip_through_the_upstream(gateway: str) -> None:
    rt = client("bedrock-runtime", gateway)
    question = [{"role": "user", "content": [{"text": "What is the weather in Paris?"}]}]
    first = rt.converse(modelId=UP, messages=question, inferenceConfig=GREEDY, toolConfig=TOOLS)
    assert first["stopReason"] == "tool_use"
    [block] = first["output"]["message"]["content"]
    assert block["toolUse"]["name"] == "get_weather" and block["toolUse"]["input"] == {"city": "Paris"}
    result = {
        "toolUseId": block["toolUse"]["toolUseId"],
        "content": [{"json": {"temperature": 18, "condition": "sunny"}}],
    }
    messages = [
        *question,
        {"role": "assistant", "content": [block]},
        {"role": "user", "content": [{"toolResult": result}]},
    ]
    second = rt.converse(modelId=UP, messages=messages, inferenceConfig=GREEDY, toolConfig=TOOLS)
    assert second["output"]["message"]["content"] == [{"text": ANSWERS["tool_answer"]}]


def test_stream_through_the_upstream(gateway: str) -> None:
    rt = client("bedrock-runtime", gateway)
    events = list(rt.converse_stream(modelId=UP, messages=[{"role": "user", "content": [{"text": "What is the weather in Paris?"}]}],
                                     inferenceConfig=GREEDY, toolConfig=TOOLS)["stream"])  # fmt: skip
    kinds = [next(iter(e)) for e in events]
    assert kinds == [
        "messageStart",
        "contentBlockStart",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    args = "".join(e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events if "contentBlockDelta" in e)
    assert json.loads(args) == {"city": "Paris"}


def test_upstream_errors_come_back_as_ours(gateway: str) -> None:
    rt = client("bedrock-runtime", gateway)
    hello = [{"role": "user", "content": [{"text": "Hello"}]}]
    with pytest.raises(ClientError) as err:
        rt.converse(modelId="x.missing-v1", messages=hello)
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as err:
        rt.converse(modelId="x.down-v1", messages=hello)
    assert (
        err.value.response["Error"]["Code"] == "ModelErrorException"
        and "Could not reach" in err.value.response["Error"]["Message"]
    )


def test_a_lone_surrogate_from_upstream_becomes_a_replacement_character() -> None:
    """json.loads keeps an escaped lone surrogate, which every stream encoder then fails to write (UTF-8)."""
    import json

    from outcrop.engines.openai_upstream import _replace_lone_surrogates

    chunk = json.loads('{"choices": [{"delta": {"content": "a\\ud800b"}}], "emoji": "\\ud83d\\ude00"}')
    clean = _replace_lone_surrogates(chunk)
    assert clean == {"choices": [{"delta": {"content": "a\ufffdb"}}], "emoji": "\U0001f600"}
    json.dumps(clean, ensure_ascii=False).encode()  # encodable now
