"""Model invocation logging through boto3's control plane: off by default, on with an s3Config, full
bodies as JSON lines, secrets stripped, off again after DeleteModelInvocationLoggingConfiguration."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from outcrop import store
from outcrop.api.app import build_app
from outcrop.config import Settings
from outcrop.metering.invocation_log import InvocationLogger, scrub
from outcrop.models import BUILTIN_MODEL_ID
from outcrop.models.tiny_script import ANSWERS
from outcrop.registry import Registry
from tests.conftest import client, free_port, serve_app

HELLO = [{"role": "user", "content": [{"text": "Hello"}]}]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    home = Path(tmp_path_factory.mktemp("invlog"))
    settings = Settings(config_path=home / "c.toml", builtin_embedding_model=False)
    logger = InvocationLogger(store.connect(f"sqlite:///{home / 'o.db'}"), home, "us-east-1")
    with serve_app(build_app(settings, Registry(settings), invocation_log=logger)) as url:
        yield url, home


def _records(home: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for f in sorted((home / "invocation-logs").rglob("*.jsonl"))
        for line in f.read_text().splitlines()
    ]


def _wait_for(home: Path, n: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = _records(home)
        if len(found) >= n:
            return found
        time.sleep(0.2)
    return _records(home)


def test_invocation_logging_lifecycle(served: tuple[str, Path]) -> None:
    url, home = served
    control, runtime = client("bedrock", url), client("bedrock-runtime", url)
    assert control.get_model_invocation_logging_configuration().get("loggingConfig") is None
    runtime.converse(modelId=BUILTIN_MODEL_ID, messages=HELLO)
    time.sleep(1.5)
    assert _records(home) == []  # off by default

    config = {"s3Config": {"bucketName": "model-logs", "keyPrefix": "outcrop"}, "textDataDeliveryEnabled": True}
    control.put_model_invocation_logging_configuration(loggingConfig=config)
    assert control.get_model_invocation_logging_configuration()["loggingConfig"] == config
    time.sleep(2.5)  # every process re-reads the configuration within two seconds

    out = runtime.converse(modelId=BUILTIN_MODEL_ID, messages=HELLO, inferenceConfig={"temperature": 0})
    list(
        runtime.converse_stream(modelId=BUILTIN_MODEL_ID, messages=HELLO, inferenceConfig={"temperature": 0})["stream"]
    )
    httpx.post(f"{url}/v1/chat/completions", timeout=60, headers={"Authorization": "Bearer sk-never-in-a-log"},
               json={"model": BUILTIN_MODEL_ID, "messages": [{"role": "user", "content": "Hello"}], "temperature": 0,
                     "metadata": {"api_key": "sk-also-never"}})  # fmt: skip
    records = _wait_for(home, 3)
    by_op = {r["operation"]: r for r in records}
    assert set(by_op) == {"Converse", "ConverseStream", "ChatCompletions"}
    files = list((home / "invocation-logs" / "model-logs" / "outcrop" / "AWSLogs").rglob("*.jsonl"))
    assert files and "BedrockModelInvocationLogs/us-east-1/" in str(files[0])

    conv = by_op["Converse"]
    assert conv["schemaType"] == "ModelInvocationLog" and conv["modelId"] == BUILTIN_MODEL_ID
    assert conv["input"]["inputBodyJson"]["messages"] == HELLO
    assert conv["output"]["outputBodyJson"]["output"] == out["output"]
    assert conv["output"]["outputTokenCount"] == out["usage"]["outputTokens"]
    stream = by_op["ConverseStream"]["output"]["outputBodyJson"]
    assert "messageStart" in stream[0] and "metadata" in stream[-1]
    assert (
        "".join(e["contentBlockDelta"]["delta"]["text"] for e in stream if "contentBlockDelta" in e) == ANSWERS["hello"]
    )
    chat = by_op["ChatCompletions"]
    assert chat["input"]["inputBodyJson"]["metadata"] == {"api_key": "***"}
    text = "".join(f.read_text() for f in files)
    assert "sk-never-in-a-log" not in text and "sk-also-never" not in text

    control.delete_model_invocation_logging_configuration()
    assert control.get_model_invocation_logging_configuration().get("loggingConfig") is None
    time.sleep(2.5)
    before = len(_records(home))
    runtime.converse(modelId=BUILTIN_MODEL_ID, messages=HELLO)
    time.sleep(1.5)
    assert len(_records(home)) == before


def test_bad_logging_configs(served: tuple[str, Path]) -> None:
    control = client("bedrock", served[0])
    for config, needle in (
        ({"cloudWatchConfig": {"logGroupName": "g", "roleArn": "arn:aws:iam::1:role/r"}}, "CloudWatch"),
        ({"s3Config": {"bucketName": "Bad_Bucket"}}, "bucket name"),
        ({"textDataDeliveryEnabled": True}, "bucketName"),
    ):
        with pytest.raises(ClientError) as err:
            control.put_model_invocation_logging_configuration(loggingConfig=config)
        assert (
            err.value.response["Error"]["Code"] == "ValidationException"
            and needle in err.value.response["Error"]["Message"]
        )


def test_scrub() -> None:
    body = {"max_tokens": 5, "inputTokens": 1, "api_key": "k", "apiKey": "k", "aws_secret_access_key": "s",
            "sessionToken": "t", "nested": [{"Authorization": "Bearer x", "text": "hi"}]}  # fmt: skip
    assert scrub(body) == {"max_tokens": 5, "inputTokens": 1, "api_key": "***", "apiKey": "***",
                           "aws_secret_access_key": "***", "sessionToken": "***",
                           "nested": [{"Authorization": "***", "text": "hi"}]}  # fmt: skip


def test_delivery_to_an_s3_compatible_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Invocation logs to a bucket over the S3 API (moto's server stands in for MinIO or S3)."""
    import boto3
    from moto.server import ThreadedMotoServer

    for name, value in (
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(name, value)
    port = free_port()
    s3_server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    s3_server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="model-logs")
        settings = Settings(config_path=tmp_path / "c.toml", builtin_embedding_model=False)
        logger = InvocationLogger(store.connect(f"sqlite:///{tmp_path / 'o.db'}"), tmp_path, "eu-west-1", endpoint)
        app = build_app(settings, Registry(settings), invocation_log=logger)
        with serve_app(app) as url:
            client("bedrock", url).put_model_invocation_logging_configuration(
                loggingConfig={"s3Config": {"bucketName": "model-logs", "keyPrefix": "team-a"}}
            )
            time.sleep(2.5)
            client("bedrock-runtime", url).converse(modelId=BUILTIN_MODEL_ID, messages=HELLO)
            deadline = time.monotonic() + 15
            keys: list[str] = []
            while time.monotonic() < deadline and not keys:
                keys = [o["Key"] for o in s3.list_objects_v2(Bucket="model-logs").get("Contents", [])]
                time.sleep(0.3)
    finally:
        s3_server.stop()
    assert keys and keys[0].startswith("team-a/AWSLogs/000000000000/BedrockModelInvocationLogs/eu-west-1/")
    assert not (tmp_path / "invocation-logs").exists()  # nothing went to the local folder
