"""Authentication in every dialect, against a real server that requires keys."""

from __future__ import annotations

import datetime as dt
import json
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
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from outcrop import store
from outcrop.api.app import build_app
from outcrop.auth.authenticate import Authenticator, effective_mode
from outcrop.auth.keys import Keyring
from outcrop.config import Settings
from outcrop.models import BUILTIN_MODEL_ID
from outcrop.models.tiny_script import ANSWERS
from outcrop.registry import Registry
from tests.conftest import free_port, serve_app

HELLO = [{"role": "user", "content": [{"text": "Hello"}]}]
PATH = f"/model/{BUILTIN_MODEL_ID.replace(':', '%3A')}/converse"


class Keys:
    url: str
    api_key: str
    revoked_key: str
    akid: str
    secret: str
    admin_key: str


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    tmp = Path(tmp_path_factory.mktemp("auth"))
    keyring = Keyring(store.connect(f"sqlite:///{tmp / 'o.db'}"), tmp / "secret.key")
    k = Keys()
    _, k.api_key = keyring.create_api_key("alice")
    revoked_id, k.revoked_key = keyring.create_api_key("mallory")
    keyring.revoke(revoked_id)
    k.akid, k.secret = keyring.create_aws_key("app")
    keyring.ensure_principal("ops", admin=True)
    k.admin_key = keyring.create_api_key("ops")[1]
    settings = Settings(config_path=tmp / "c.toml", builtin_embedding_model=False, auth="keys")
    with serve_app(build_app(settings, Registry(settings), Authenticator("keys", keyring))) as k.url:
        yield k


def _runtime(url: str, akid: str, secret: str, token: str | None = None) -> Any:
    return boto3.client("bedrock-runtime", endpoint_url=url, region_name="us-east-1", aws_access_key_id=akid,
                        aws_secret_access_key=secret, aws_session_token=token,
                        config=Config(retries={"total_max_attempts": 1}))  # fmt: skip


def _code(call: Any) -> tuple[int, str]:
    with pytest.raises(ClientError) as err:
        call()
    return err.value.response["ResponseMetadata"]["HTTPStatusCode"], err.value.response["Error"]["Code"]


def test_sigv4_key_works(keyed: Keys) -> None:
    out = _runtime(keyed.url, keyed.akid, keyed.secret).converse(
        modelId=BUILTIN_MODEL_ID, messages=HELLO, inferenceConfig={"temperature": 0}
    )
    assert out["output"]["message"]["content"][0]["text"] == ANSWERS["hello"]
    # the control plane and ARN ids sign the same way
    control = boto3.client("bedrock", endpoint_url=keyed.url, region_name="eu-west-1", aws_access_key_id=keyed.akid,
                           aws_secret_access_key=keyed.secret)  # fmt: skip
    assert control.list_foundation_models(byProvider="outcrop")["modelSummaries"]


def test_sigv4_failures(keyed: Keys) -> None:
    wrong = _runtime(keyed.url, keyed.akid, "not-the-secret")
    assert _code(lambda: wrong.converse(modelId=BUILTIN_MODEL_ID, messages=HELLO)) == (403, "InvalidSignatureException")
    unknown = _runtime(keyed.url, "OCAKNOSUCHKEY0000000", keyed.secret)
    assert _code(lambda: unknown.converse(modelId=BUILTIN_MODEL_ID, messages=HELLO)) == (
        403,
        "UnrecognizedClientException",
    )


def _signed(keyed: Keys, body: bytes) -> dict[str, str]:
    request = AWSRequest(method="POST", url=keyed.url + PATH, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(keyed.akid, keyed.secret), "bedrock", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def test_tampered_body(keyed: Keys) -> None:
    body = json.dumps({"messages": HELLO}).encode()
    headers = _signed(keyed, body)
    ok = httpx.post(keyed.url + PATH, content=body, headers=headers, timeout=60)
    assert ok.status_code == 200
    bad = httpx.post(keyed.url + PATH, content=body.replace(b"Hello", b"Hellp"), headers=headers, timeout=60)
    assert bad.status_code == 403 and bad.headers["x-amzn-errortype"] == "InvalidSignatureException"
    assert set(bad.json()) == {"message"}


def test_expired_date(keyed: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.auth

    past = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=20)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: past)
    body = json.dumps({"messages": HELLO}).encode()
    r = httpx.post(keyed.url + PATH, content=body, headers=_signed(keyed, body), timeout=60)
    assert r.status_code == 403 and r.headers["x-amzn-errortype"] == "InvalidSignatureException"
    assert "expired" in r.json()["message"]


def test_bedrock_api_key(keyed: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    # boto3 sends `Authorization: Bearer` whenever AWS_BEARER_TOKEN_BEDROCK is set.
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", keyed.api_key)
    rt = _runtime(keyed.url, "ignored", "ignored")
    out = rt.converse(modelId=BUILTIN_MODEL_ID, messages=HELLO, inferenceConfig={"temperature": 0})
    assert out["output"]["message"]["content"][0]["text"] == ANSWERS["hello"]
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", keyed.revoked_key)
    rt = _runtime(keyed.url, "ignored", "ignored")
    assert _code(lambda: rt.converse(modelId=BUILTIN_MODEL_ID, messages=HELLO)) == (403, "UnrecognizedClientException")


def test_no_credentials(keyed: Keys) -> None:
    r = httpx.post(keyed.url + PATH, json={"messages": HELLO}, timeout=60)
    assert r.status_code == 403 and r.headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
    assert httpx.get(keyed.url + "/healthz", timeout=60).status_code == 200  # health checks need no key


def test_openai_keys(keyed: Keys) -> None:
    good = openai.OpenAI(base_url=keyed.url + "/v1", api_key=keyed.api_key, max_retries=0)
    r = good.chat.completions.create(
        model=BUILTIN_MODEL_ID, messages=[{"role": "user", "content": "Hello"}], temperature=0
    )
    assert r.choices[0].message.content == ANSWERS["hello"]
    for key in ("wrong", keyed.revoked_key):
        bad = openai.OpenAI(base_url=keyed.url + "/v1", api_key=key, max_retries=0)
        with pytest.raises(openai.AuthenticationError) as err:
            bad.models.list()
        assert err.value.status_code == 401 and err.value.body["code"] == "invalid_api_key"  # type: ignore[index]


def test_anthropic_keys(keyed: Keys) -> None:
    good = anthropic.Anthropic(base_url=keyed.url, api_key=keyed.api_key, max_retries=0)
    m = good.messages.create(
        model=BUILTIN_MODEL_ID,
        max_tokens=40,
        messages=[{"role": "user", "content": "Hello"}],
        extra_body={"temperature": 0},
    )
    assert m.content[0].text == ANSWERS["hello"]  # type: ignore[union-attr]
    for key in ("wrong", keyed.revoked_key):
        bad = anthropic.Anthropic(base_url=keyed.url, api_key=key, max_retries=0)
        with pytest.raises(anthropic.AuthenticationError) as err:
            bad.messages.create(model=BUILTIN_MODEL_ID, max_tokens=5, messages=[{"role": "user", "content": "x"}])
        assert err.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


def test_modes() -> None:
    assert effective_mode("auto", "127.0.0.1") == "local"
    assert effective_mode("auto", "::1") == "local"
    assert effective_mode("auto", "0.0.0.0") == "keys"
    assert effective_mode("keys", "127.0.0.1") == "keys"
    with pytest.raises(Exception, match="outcrop keys create"):
        effective_mode("local", "0.0.0.0")


def test_serve_refuses_open_bind_without_auth(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "outcrop.cli", "serve", "--host", "0.0.0.0", "--auth", "local", "--port", str(free_port())],
        capture_output=True, text=True, timeout=60, check=False,
        env={"OUTCROP_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert r.returncode == 2 and "refusing to serve on 0.0.0.0" in r.stderr and "outcrop keys create" in r.stderr


def test_keys_cli(tmp_path: Path) -> None:
    env = {"OUTCROP_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "outcrop.cli", *args], capture_output=True, text=True, env=env,
                              timeout=60, check=False)  # fmt: skip

    made = run("keys", "create", "alice", "--label", "ci", "--group", "beta")
    assert made.returncode == 0, made.stderr
    token = next(line.strip() for line in made.stdout.splitlines() if line.strip().startswith("ocp_"))
    aws = run("keys", "create", "app", "--aws")
    assert "AWS_ACCESS_KEY_ID=OCAK" in aws.stdout and "AWS_SECRET_ACCESS_KEY=" in aws.stdout
    listing = run("keys", "list").stdout
    assert "alice" in listing and "app" in listing and token not in listing
    key_id = next(line.split()[0] for line in listing.splitlines() if " alice " in f" {line} ")
    assert run("keys", "revoke", key_id).returncode == 0
    assert "revoked" in run("keys", "list").stdout
    assert run("keys", "revoke", key_id).returncode == 2
    # groups: in and out again; a principal that does not exist, or a group it is not in, is an error
    assert run("keys", "group", "alice", "night-shift").stdout.strip() == "alice added to night-shift"
    assert run("keys", "group", "nobody", "night-shift").returncode == 2
    left = run("keys", "group", "alice", "beta", "--remove")
    assert left.returncode == 0 and left.stdout.strip() == "alice taken out of beta"
    again = run("keys", "group", "alice", "beta", "--remove")
    assert again.returncode == 2 and "alice is not in a group beta" in again.stderr
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600


def test_keys_admin_api(keyed: Keys) -> None:
    alice = {"Authorization": f"Bearer {keyed.api_key}"}
    r = httpx.post(keyed.url + "/outcrop/v1/keys", json={"principal": "x"}, headers=alice, timeout=60)
    assert r.status_code == 403 and r.headers["x-amzn-errortype"] == "AccessDeniedException"
    ops = {"Authorization": f"Bearer {keyed.admin_key}"}
    made = httpx.post(keyed.url + "/outcrop/v1/keys", json={"principal": "svc", "label": "ci", "groups": ["beta"]},
                      headers=ops, timeout=60).json()  # fmt: skip
    new = {"Authorization": f"Bearer {made['apiKey']}"}
    assert httpx.get(keyed.url + "/v1/models", headers=new, timeout=60).status_code == 200
    aws = httpx.post(
        keyed.url + "/outcrop/v1/keys", json={"principal": "svc", "kind": "aws"}, headers=ops, timeout=60
    ).json()
    out = _runtime(keyed.url, aws["accessKeyId"], aws["secretAccessKey"]).converse(
        modelId=BUILTIN_MODEL_ID, messages=HELLO
    )
    assert out["stopReason"]
    listed = httpx.get(keyed.url + "/outcrop/v1/keys", headers=ops, timeout=60).text
    assert made["keyId"] in listed and made["apiKey"] not in listed and aws["secretAccessKey"] not in listed
    assert httpx.delete(f"{keyed.url}/outcrop/v1/keys/{made['keyId']}", headers=ops, timeout=60).status_code == 200
    assert httpx.get(keyed.url + "/v1/models", headers=new, timeout=60).status_code == 401
    assert httpx.delete(f"{keyed.url}/outcrop/v1/keys/{made['keyId']}", headers=ops, timeout=60).status_code == 404
