"""The AWS CLI, unchanged, against a real server: `aws bedrock-runtime converse --endpoint-url ...`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from outcrop.models import BUILTIN_MODEL_ID
from outcrop.models.tiny_script import ANSWERS
from tests.conftest import CLAUDE


def _aws(base_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("aws")
    cmd = [exe] if exe else [sys.executable, "-m", "awscli"]
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_MAX_ATTEMPTS": "1",
    }
    return subprocess.run(
        [*cmd, *args, "--endpoint-url", base_url, "--output", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_cli_converse(base_url: str) -> None:
    messages = json.dumps([{"role": "user", "content": [{"text": "What is the capital of France?"}]}])
    r = _aws(
        base_url,
        "bedrock-runtime",
        "converse",
        "--model-id",
        CLAUDE,
        "--messages",
        messages,
        "--inference-config",
        '{"temperature": 0}',
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["output"]["message"]["content"] == [{"text": ANSWERS["capital"]}]
    assert out["stopReason"] == "end_turn"


def test_cli_invoke_model_and_list(base_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"inputText": "Hello", "textGenerationConfig": {"temperature": 0}})
    outfile = tmp_path / "out.json"
    r = _aws(
        base_url,
        "bedrock-runtime",
        "invoke-model",
        "--model-id",
        "amazon.titan-text-express-v1",
        "--body",
        body,
        "--cli-binary-format",
        "raw-in-base64-out",
        str(outfile),
    )
    if r.returncode != 0 and "cli-binary-format" in r.stderr:  # AWS CLI v1 has no such option
        r = _aws(base_url, "bedrock-runtime", "invoke-model", "--model-id", "amazon.titan-text-express-v1",
                 "--body", body, str(outfile))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(outfile.read_text())["results"][0]["outputText"] == ANSWERS["hello"]

    r = _aws(base_url, "bedrock", "list-foundation-models")
    assert r.returncode == 0, r.stderr
    assert BUILTIN_MODEL_ID in {m["modelId"] for m in json.loads(r.stdout)["modelSummaries"]}


def test_cli_unknown_model_error(base_url: str) -> None:
    messages = json.dumps([{"role": "user", "content": [{"text": "hi"}]}])
    r = _aws(base_url, "bedrock-runtime", "converse", "--model-id", "nope.model-v1", "--messages", messages)
    assert r.returncode != 0
    assert "ResourceNotFoundException" in r.stderr


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
