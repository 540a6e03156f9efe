"""The console's fixtures: a whole server as `outcrop serve` assembles it, with keys (an administrator, two members,
an AWS access key, an early-access model, a guardrail), on a real uvicorn on 127.0.0.1; and `Console`, an HTTP
client that signs in through the sign-in form as a browser does (tests/console/browser/ drives a real Chromium)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from outcrop.auth.roles import Role
from outcrop.cli import assemble
from outcrop.config import ModelSpec, Settings
from outcrop.engines.echo import EchoEngine
from outcrop.models import BUILTIN_GGUF, BUILTIN_MODEL_ID
from tests.conftest import serve_app

ECHO = "test.echo-v1:0"  # 50 ms a word: its answers arrive in visibly separate pieces
EARLY = "test.early-v1:0"  # early access: members must ask for it
OFF = "test.off-v1:0"  # disabled: administrators see it, nobody may use it
BLOCKED_IN = "Blocked: the console's test guardrail."
BLOCKED_OUT = "That answer is blocked by the console's test guardrail."


@dataclass
class Served:
    url: str
    keys: dict[str, str]  # principal -> API key
    aws: tuple[str, str]  # root's AWS access key id and secret
    guardrail: str = ""
    keyring: Any = None
    app: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def env() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def keyed_settings(home: Path) -> Settings:
    models = (
        ModelSpec(id=BUILTIN_MODEL_ID, path=str(BUILTIN_GGUF), n_ctx=4096, max_queue=4),
        ModelSpec(id=ECHO, engine="echo", n_ctx=4096, max_queue=4),
        ModelSpec(id=EARLY, engine="echo", n_ctx=4096, access="early"),
        ModelSpec(id=OFF, engine="echo", n_ctx=4096, access="disabled"),
    )
    # a declared service role no member may pass: batch jobs submitted on the page use the server's own files folder
    # and are not held to roles (a CreateModelInvocationJob by a member would be refused)
    nobody = Role("arn:aws:iam::000000000000:role/nobody", ("s3://elsewhere/",))
    return Settings(config_path=home / "config.toml", auth="keys", builtin_model=False, builtin_embedding_model=False,
                    models=models, roles=(nobody,))  # fmt: skip


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, env: pytest.MonkeyPatch) -> Iterator[Served]:
    """The server with keys: root (administrator), alice and bob (members)."""
    home = tmp_path_factory.mktemp("console")
    env.setenv("OUTCROP_HOME", str(home))
    engines = {ECHO: EchoEngine(context_length=4096, max_queue=4, delay_s=0.05), EARLY: EchoEngine(context_length=4096)}
    app, keyring = assemble(keyed_settings(home), "keys", engines)  # type: ignore[arg-type]
    keyring.ensure_principal("root", admin=True)
    keys = {name: keyring.create_api_key(name)[1] for name in ("root", "alice", "bob")}
    aws = keyring.create_aws_key("root", "console test")
    with serve_app(app) as url:
        control = boto3.client("bedrock", endpoint_url=url, region_name="us-east-1", aws_access_key_id=aws[0],
                               aws_secret_access_key=aws[1], config=Config(retries={"total_max_attempts": 1}))  # fmt: skip
        gid = control.create_guardrail(
            name="console-test", blockedInputMessaging=BLOCKED_IN, blockedOutputsMessaging=BLOCKED_OUT,
            wordPolicyConfig={"wordsConfig": [{"text": "frobnicator"}, {"text": "Paris", "inputEnabled": False}]},
        )["guardrailId"]  # fmt: skip
        control.create_guardrail_version(guardrailIdentifier=gid)
        yield Served(url, keys, aws, gid, keyring, app)


CSRF = re.compile(r'name="csrf-token" content="([^"]*)"')
FORM_TOKEN = re.compile(r'name="csrf_token" value="([^"]*)"')


class Console:
    """A browser-like client: cookies kept, the console's own Origin on every POST, tokens read from pages."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, follow_redirects=False, timeout=60)

    def close(self) -> None:
        self.http.close()

    def sign_in(self, key: str, secret: str = "", next: str = "/console/models") -> httpx.Response:
        form = self.http.get("/console/signin", params={"next": next})
        token = FORM_TOKEN.search(form.text)
        assert token, form.text
        return self.http.post("/console/signin", data={"csrf_token": token.group(1), "key": key, "secret": secret,
                                                       "next": next}, headers={"Origin": self.url})  # fmt: skip

    def csrf(self, page: str = "/console/models") -> str:
        found = CSRF.search(self.http.get(page).text)
        assert found and found.group(1), "no CSRF token on the page (signed out?)"
        return found.group(1)

    def post_form(self, path: str, data: dict[str, str], token: str | None = None) -> httpx.Response:
        data = {"csrf_token": token if token is not None else self.csrf(), **data}
        return self.http.post(path, data=data, headers={"Origin": self.url})

    def post_json(self, path: str, body: dict[str, Any], token: str | None = None) -> httpx.Response:
        headers = {"Origin": self.url, "X-CSRF-Token": token if token is not None else self.csrf()}
        return self.http.post(path, json=body, headers=headers)


@pytest.fixture
def console() -> Iterator[Any]:
    """console(url) -> a Console, closed after the test."""
    made: list[Console] = []

    def make(url: str) -> Console:
        made.append(Console(url))
        return made[-1]

    yield make
    for c in made:
        c.close()


def signed_in(make: Any, served: Served, who: str) -> Console:
    c: Console = make(served.url)
    r = c.sign_in(served.keys[who])
    assert r.status_code == 303, r.text
    return c
