"""Model ids in every Bedrock form, CountTokens, the control plane, and every error in Bedrock's shape."""

from __future__ import annotations

import base64
import json
import threading
import time

import httpx
import pytest
from botocore.exceptions import ClientError

from outcrop.models import BUILTIN_MODEL_ID
from outcrop.models.tiny_script import ANSWERS
from tests.conftest import CLAUDE, ECHO, LLAMA

HELLO = [{"role": "user", "content": [{"text": "Hello"}]}]
GREEDY = {"temperature": 0, "maxTokens": 50}


@pytest.mark.parametrize(
    "model_id",
    [
        CLAUDE,
        "us.anthropic.claude-3-haiku-20240307-v1:0",
        "global.anthropic.claude-3-haiku-20240307-v1:0",
        "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0",
        "arn:aws:bedrock:eu-west-1::foundation-model/meta.llama3-1-8b-instruct-v1:0",
    ],
)
def test_every_bedrock_id_form_routes(runtime, model_id: str) -> None:  # type: ignore[no-untyped-def]
    # botocore percent-encodes `:` and `/` in the path label; the server must route on the raw path.
    out = runtime.converse(modelId=model_id, messages=HELLO, inferenceConfig=GREEDY)
    assert out["output"]["message"]["content"][0]["text"] == ANSWERS["hello"]


def test_count_tokens_converse_and_invoke(runtime) -> None:  # type: ignore[no-untyped-def]
    conv = runtime.count_tokens(modelId=BUILTIN_MODEL_ID, input={"converse": {"messages": HELLO}})
    usage = runtime.converse(modelId=BUILTIN_MODEL_ID, messages=HELLO)["usage"]
    assert conv["inputTokens"] == usage["inputTokens"] + usage["cacheReadInputTokens"] + usage["cacheWriteInputTokens"]
    body = json.dumps(
        {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "Hello"}],
        }
    )
    inv = runtime.count_tokens(modelId=CLAUDE, input={"invokeModel": {"body": body.encode()}})
    assert inv["inputTokens"] == conv["inputTokens"]
    longer = runtime.count_tokens(
        modelId=BUILTIN_MODEL_ID, input={"converse": {"messages": HELLO, "system": [{"text": "You are terse."}]}}
    )
    assert longer["inputTokens"] > conv["inputTokens"]


def test_list_and_get_foundation_models(control) -> None:  # type: ignore[no-untyped-def]
    summaries = control.list_foundation_models()["modelSummaries"]
    ids = {s["modelId"] for s in summaries}
    assert {BUILTIN_MODEL_ID, CLAUDE, LLAMA} <= ids
    claude = next(s for s in summaries if s["modelId"] == CLAUDE)
    assert claude["providerName"] == "Anthropic"
    assert claude["modelArn"] == f"arn:aws:bedrock:us-east-1::foundation-model/{CLAUDE}"
    assert claude["responseStreamingSupported"] is True and claude["outputModalities"] == ["TEXT"]

    meta_only = control.list_foundation_models(byProvider="meta")["modelSummaries"]
    assert [s["modelId"] for s in meta_only] == [LLAMA]
    assert control.list_foundation_models(byCustomizationType="FINE_TUNING")["modelSummaries"] == []

    details = control.get_foundation_model(modelIdentifier=CLAUDE)["modelDetails"]
    assert details["modelId"] == CLAUDE and details["modelLifecycle"]["status"] == "ACTIVE"
    arn = control.get_foundation_model(modelIdentifier=claude["modelArn"])["modelDetails"]
    assert arn["modelId"] == CLAUDE


def _error(call) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as err:
        call()
    r = err.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"], r["Error"]["Message"]


def test_unknown_model(runtime, control) -> None:  # type: ignore[no-untyped-def]
    status, code, message = _error(lambda: runtime.converse(modelId="anthropic.claude-v9", messages=HELLO))
    assert (status, code) == (404, "ResourceNotFoundException") and "anthropic.claude-v9" in message
    status, code, _ = _error(lambda: runtime.invoke_model(modelId="nope.model-v1", body=b"{}"))
    assert (status, code) == (404, "ResourceNotFoundException")
    status, code, _ = _error(lambda: control.get_foundation_model(modelIdentifier="nope.model-v1"))
    assert (status, code) == (404, "ResourceNotFoundException")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"anthropic_version": "bedrock-2023-05-31", "messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
        (
            {
                "anthropic_version": "bedrock-2023-05-31",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "hi"}],
                "foo": 1,
            },
            "foo",
        ),
        (
            {
                "anthropic_version": "bedrock-2023-05-31",
                "max_tokens": "many",
                "messages": [{"role": "user", "content": "hi"}],
            },
            "max_tokens",
        ),
        (
            {"anthropic_version": "2020", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
            "anthropic_version",
        ),
    ],
    ids=["missing", "unknown-field", "bad-type", "bad-version"],
)
def test_malformed_invoke_body(runtime, body, needle: str) -> None:  # type: ignore[no-untyped-def]
    status, code, message = _error(lambda: runtime.invoke_model(modelId=CLAUDE, body=json.dumps(body)))
    assert (status, code) == (400, "ValidationException")
    assert needle in message


def test_invalid_json_body(runtime) -> None:  # type: ignore[no-untyped-def]
    status, code, message = _error(lambda: runtime.invoke_model(modelId=CLAUDE, body=b"{not json"))
    assert (status, code) == (400, "ValidationException") and "not valid JSON" in message


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"messages": HELLO, "inferenceConfig": {"maxTokenz": 5}}, "maxTokenz"),
        ({"messages": HELLO, "inferenceConfig": {"maxTokens": "five"}}, "maxTokens"),
        (
            {"messages": [{"role": "user", "content": [{"text": "a", "cachePoint": {"type": "default"}}]}]},
            "exactly one",
        ),
        ({"messages": [{"role": "assistant", "content": [{"text": "a"}]}]}, "start with a user message"),
        ({"messages": []}, "at least one message"),
        ({"messages": HELLO, "additionalModelRequestFields": {"frobnicate": 1}}, "frobnicate"),
    ],
    ids=["unknown-field", "bad-type", "union", "first-role", "empty", "extra-field"],
)
def test_malformed_converse_body(base_url, body, needle: str) -> None:  # type: ignore[no-untyped-def]
    # boto3 validates parameters client-side, so send what a hand-written client might.
    r = httpx.post(f"{base_url}/model/{BUILTIN_MODEL_ID}/converse", json=body, timeout=60)
    assert r.status_code == 400
    assert r.headers["x-amzn-errortype"] == "ValidationException"
    assert needle in r.json()["message"]
    assert set(r.json()) == {"message"}


def test_prompt_longer_than_context(runtime) -> None:  # type: ignore[no-untyped-def]
    long = [{"role": "user", "content": [{"text": "word " * 5000}]}]
    status, code, message = _error(lambda: runtime.converse(modelId=BUILTIN_MODEL_ID, messages=long))
    assert (status, code) == (400, "ValidationException") and "context window" in message


def test_unknown_route_and_method(base_url) -> None:  # type: ignore[no-untyped-def]
    r = httpx.get(f"{base_url}/no/such/thing", timeout=60)
    assert r.status_code == 404 and r.headers["x-amzn-errortype"] == "UnknownOperationException"
    r = httpx.get(f"{base_url}/model/{BUILTIN_MODEL_ID}/converse", timeout=60)
    assert r.status_code == 404 and "not allowed" in r.json()["message"]


def test_model_that_fails_to_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from outcrop.config import ModelSpec, Settings
    from tests.conftest import client, serve

    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF but not really")
    settings = Settings(
        config_path=tmp_path / "c.toml", builtin_model=False, models=(ModelSpec(id="x.broken-v1", path=str(bad)),)
    )
    with serve(settings) as (url, _):
        status, code, message = _error(
            lambda: client("bedrock-runtime", url).converse(modelId="x.broken-v1", messages=HELLO)
        )
    assert (status, code) == (424, "ModelErrorException") and "could not be loaded" in message


def _slow_echo_stream(base_url: str, started: threading.Event, result: list[object]) -> None:
    body = {"messages": [{"role": "user", "content": [{"text": "one two three four five six seven eight"}]}]}
    with httpx.stream("POST", f"{base_url}/model/{ECHO}/converse-stream", json=body, timeout=30) as r:
        started.set()
        result.append(r.status_code)
        for _ in r.iter_bytes():
            pass


def test_queue_full_is_throttling(runtime, base_url) -> None:  # type: ignore[no-untyped-def]
    # The echo model runs one request at a time with no queue; a second one is refused at once.
    started, result = threading.Event(), []  # type: ignore[var-annotated]
    t = threading.Thread(target=_slow_echo_stream, args=(base_url, started, result))
    t.start()
    assert started.wait(10)
    status, code, _ = _error(lambda: runtime.converse(modelId=ECHO, messages=HELLO))
    assert (status, code) == (429, "ThrottlingException")
    r = httpx.post(f"{base_url}/model/{ECHO}/converse-stream", json={"messages": HELLO}, timeout=60)
    assert r.status_code == 429 and r.headers["x-amzn-errortype"] == "ThrottlingException"
    assert r.headers["retry-after"]
    t.join()
    assert result == [200]
    assert runtime.converse(modelId=ECHO, messages=HELLO)["output"]["message"]["content"] == [{"text": "Hello"}]


def test_queue_full_on_the_real_engine(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from outcrop.config import ModelSpec, Settings
    from outcrop.models import BUILTIN_GGUF
    from tests.conftest import client, serve

    spec = ModelSpec(id="x.tiny-v1", path=str(BUILTIN_GGUF), n_ctx=4096, parallel=1, max_queue=0)
    settings = Settings(config_path=tmp_path / "c.toml", builtin_model=False, models=(spec,))
    with serve(settings) as (url, _):
        rt = client("bedrock-runtime", url)
        long = rt.converse_stream(
            modelId="x.tiny-v1",
            messages=HELLO,
            inferenceConfig={"maxTokens": 3000},
            additionalModelRequestFields={"ignore_eos": True},
        )
        events = iter(long["stream"])
        next(events)
        status, code, _ = _error(lambda: rt.converse(modelId="x.tiny-v1", messages=HELLO))
        assert (status, code) == (429, "ThrottlingException")
        long["stream"].close()


def _status(base_url: str, model: str) -> dict:  # type: ignore[type-arg]
    return httpx.get(f"{base_url}/outcrop/status", timeout=60).json()["models"][model]  # type: ignore[no-any-return]


def test_disconnect_mid_stream_frees_the_slot(runtime, base_url) -> None:  # type: ignore[no-untyped-def]
    before = _status(base_url, BUILTIN_MODEL_ID)
    out = runtime.converse_stream(
        modelId=BUILTIN_MODEL_ID,
        messages=HELLO,
        inferenceConfig={"maxTokens": 4000},
        additionalModelRequestFields={"ignore_eos": True},
    )
    events = iter(out["stream"])
    for _ in range(3):
        next(events)
    out["stream"].close()  # the client goes away mid-generation
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = _status(base_url, BUILTIN_MODEL_ID)
        if now["in_flight"] == 0 and now["cancelled"] > before["cancelled"]:
            break
        time.sleep(0.05)
    assert now["in_flight"] == 0 and now["queued"] == 0
    assert now["cancelled"] == before["cancelled"] + 1
    assert now["completed"] == before["completed"]
    # ...and the model answers the next caller.
    again = runtime.converse(modelId=BUILTIN_MODEL_ID, messages=HELLO, inferenceConfig=GREEDY)
    assert again["output"]["message"]["content"][0]["text"] == ANSWERS["hello"]


def test_count_tokens_bad_body(runtime) -> None:  # type: ignore[no-untyped-def]
    status, code, _ = _error(
        lambda: runtime.count_tokens(modelId=CLAUDE, input={"invokeModel": {"body": base64.b64encode(b"{}")}})
    )
    assert (status, code) == (400, "ValidationException")
