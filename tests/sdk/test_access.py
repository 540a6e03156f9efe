"""Early access through the real server, in every dialect: denied, requested, approved, used."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import boto3
import httpx
import openai
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from outcrop import store
from outcrop.api.app import build_app
from outcrop.auth.access import AccessControl
from outcrop.auth.authenticate import Authenticator
from outcrop.auth.keys import Keyring
from outcrop.config import ModelSpec, Settings
from outcrop.models import BUILTIN_GGUF, BUILTIN_MODEL_ID
from outcrop.models.tiny_script import ANSWERS
from outcrop.registry import Registry
from tests.conftest import serve_app

EARLY = "anthropic.claude-early-v1:0"
OFF = "meta.llama-off-v1:0"
HELLO = [{"role": "user", "content": [{"text": "Hello"}]}]


class Env:
    url: str
    keys: dict[str, str]
    home: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = Path(tmp_path_factory.mktemp("access"))
    engine = store.connect(f"sqlite:///{tmp / 'outcrop.db'}")
    keyring = Keyring(engine, tmp / "secret.key")
    keyring.ensure_principal("root", admin=True)
    keyring.ensure_principal("bob", group_names=("beta",))
    e = Env()
    e.home = tmp
    e.keys = {name: keyring.create_api_key(name)[1] for name in ("alice", "bob", "carol", "root")}
    models = (
        ModelSpec(id=EARLY, path=str(BUILTIN_GGUF), n_ctx=4096, access="early"),
        ModelSpec(id=OFF, path=str(BUILTIN_GGUF), n_ctx=4096, access="disabled"),
    )
    settings = Settings(config_path=tmp / "config.toml", builtin_embedding_model=False, auth="keys", models=models)
    registry = Registry(settings)
    access = AccessControl(engine, {s.id: s.access for s in registry.specs()})
    access.grant(EARLY, "group:beta", "root")
    with serve_app(build_app(settings, registry, Authenticator("keys", keyring), access)) as e.url:
        yield e


def _bedrock(env: Env, who: str, service: str = "bedrock-runtime", monkeypatch: Any = None) -> Any:
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", env.keys[who])
    return boto3.client(service, endpoint_url=env.url, region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x", config=Config(retries={"total_max_attempts": 1}))  # fmt: skip


def _admin(env: Env, method: str, path: str, who: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.request(
        method, env.url + path, json=body, headers={"Authorization": f"Bearer {env.keys[who]}"}, timeout=60
    )


def test_denied_in_every_dialect(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = _bedrock(env, "alice", monkeypatch=monkeypatch)
    with pytest.raises(ClientError) as err:
        rt.converse(modelId=EARLY, messages=HELLO)
    assert err.value.response["Error"]["Code"] == "AccessDeniedException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "access request" in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as err:
        rt.invoke_model(modelId=EARLY, body=b'{"inputText": "Hello"}')
    assert err.value.response["Error"]["Code"] == "AccessDeniedException"

    oc = openai.OpenAI(base_url=env.url + "/v1", api_key=env.keys["alice"], max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as oerr:
        oc.chat.completions.create(model=EARLY, messages=[{"role": "user", "content": "Hello"}])
    assert oerr.value.body["type"] == "permission_error"  # type: ignore[index]

    ac = anthropic.Anthropic(base_url=env.url, api_key=env.keys["alice"], max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as aerr:
        ac.messages.create(model=EARLY, max_tokens=5, messages=[{"role": "user", "content": "Hello"}])
    assert aerr.value.body["error"]["type"] == "permission_error"  # type: ignore[index]


def test_group_member_uses_it_and_sees_it(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = _bedrock(env, "bob", monkeypatch=monkeypatch)
    out = rt.converse(modelId=EARLY, messages=HELLO, inferenceConfig={"temperature": 0})
    assert out["output"]["message"]["content"][0]["text"] == ANSWERS["hello"]
    control = _bedrock(env, "bob", "bedrock", monkeypatch)
    assert EARLY in {s["modelId"] for s in control.list_foundation_models()["modelSummaries"]}
    # boto3 drops members it doesn't model; raw clients also get each model's access state
    raw = _admin(env, "GET", "/foundation-models", "bob").json()["modelSummaries"]
    listed = {s["modelId"]: s["accessState"] for s in raw}
    assert listed[EARLY] == "EARLY_ACCESS" and listed[BUILTIN_MODEL_ID] == "GENERALLY_AVAILABLE" and OFF not in listed
    availability = control.get_foundation_model_availability(modelId=EARLY)
    assert availability["authorizationStatus"] == "AUTHORIZED"


def test_listings_show_only_what_the_caller_may_use(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = {
        s["modelId"] for s in _bedrock(env, "carol", "bedrock", monkeypatch).list_foundation_models()["modelSummaries"]
    }
    assert BUILTIN_MODEL_ID in ids and EARLY not in ids and OFF not in ids
    oc = openai.OpenAI(base_url=env.url + "/v1", api_key=env.keys["carol"], max_retries=0)
    assert {m.id for m in oc.models.list()} == ids
    with pytest.raises(openai.PermissionDeniedError):
        oc.models.retrieve(EARLY)


def test_request_and_approval(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    made = _admin(env, "POST", "/outcrop/v1/access-requests", "alice", {"modelId": EARLY, "reason": "demo"})
    assert made.status_code == 201 and made.json()["status"] == "PENDING"
    rid = made.json()["requestId"]
    pending = _bedrock(env, "alice", "bedrock", monkeypatch).get_foundation_model_availability(modelId=EARLY)
    assert (
        pending["authorizationStatus"] == "NOT_AUTHORIZED" and pending["agreementAvailability"]["status"] == "PENDING"
    )
    # alice may not decide her own request
    nope = _admin(env, "POST", f"/outcrop/v1/access-requests/{rid}/approve", "alice")
    assert nope.status_code == 403 and nope.headers["x-amzn-errortype"] == "AccessDeniedException"
    assert [
        r["requestId"]
        for r in _admin(env, "GET", "/outcrop/v1/access-requests?status=pending", "root").json()["accessRequests"]
    ] == [rid]
    decided = _admin(env, "POST", f"/outcrop/v1/access-requests/{rid}/approve", "root", {"note": "ok"}).json()
    assert decided["status"] == "APPROVED" and decided["decidedBy"] == "root" and decided["decidedAt"]
    rt = _bedrock(env, "alice", monkeypatch=monkeypatch)
    out = rt.converse(modelId=EARLY, messages=HELLO, inferenceConfig={"temperature": 0})
    assert out["output"]["message"]["content"][0]["text"] == ANSWERS["hello"]

    denied = _admin(env, "POST", "/outcrop/v1/access-requests", "carol", {"modelId": EARLY})
    rid = denied.json()["requestId"]
    assert (
        _admin(env, "POST", f"/outcrop/v1/access-requests/{rid}/deny", "root", {"note": "later"}).json()["status"]
        == "DENIED"
    )
    mine = _admin(env, "GET", "/outcrop/v1/access-requests", "carol").json()["accessRequests"]
    assert [(r["status"], r["decisionNote"]) for r in mine] == [("DENIED", "later")]
    bad = _admin(env, "POST", "/outcrop/v1/access-requests", "carol", {"modelId": OFF})
    assert bad.status_code == 400 and "disabled" in bad.json()["message"]


def test_disabled_model_refused_even_to_admins(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ClientError) as err:
        _bedrock(env, "root", monkeypatch=monkeypatch).converse(modelId=OFF, messages=HELLO)
    assert err.value.response["Error"]["Code"] == "AccessDeniedException"


def test_access_cli(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[[models]]\nid = "{EARLY}"\npath = "{BUILTIN_GGUF}"\naccess = "early"\n')
    env = {"OUTCROP_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "outcrop.cli", "--config", str(cfg), *args], capture_output=True,
                              text=True, env=env, timeout=60, check=False)  # fmt: skip

    made = run("access", "request", f"us.{EARLY}", "--as", "dave", "--reason", "testing")
    assert made.returncode == 0, made.stderr
    rid = made.stdout.split()[2].rstrip(":")
    assert "pending" in run("access", "list", "--status", "pending").stdout
    approved = run("access", "approve", rid, "--by", "ops", "--note", "fine")
    assert approved.returncode == 0 and "approved by ops" in approved.stdout
    assert "approved" in run("access", "list").stdout
    assert run("access", "grant", EARLY, "--group", "beta").returncode == 0
    again = run("access", "approve", rid)
    assert again.returncode == 2 and "already approved" in again.stderr
