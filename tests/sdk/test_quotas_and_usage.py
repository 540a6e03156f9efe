"""Quotas and usage records through real servers: every dialect, two processes on one PostgreSQL, kill -9."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from outcrop import store
from outcrop.api.app import build_app
from outcrop.auth.access import AccessControl
from outcrop.auth.authenticate import Authenticator
from outcrop.auth.keys import Keyring
from outcrop.config import ModelSpec, Settings
from outcrop.engines.echo import EchoEngine
from outcrop.metering.quotas import QuotaRule, Quotas
from outcrop.metering.usage import UsageRecorder
from outcrop.models import BUILTIN_MODEL_ID
from outcrop.registry import Registry
from outcrop.store.schema import usage_records
from tests.conftest import ECHO, free_port, serve_app

M = BUILTIN_MODEL_ID.replace(":", "%3A")


class Env:
    url: str
    keys: dict[str, str]
    recorder: UsageRecorder


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = Path(tmp_path_factory.mktemp("quota"))
    engine = store.connect(f"sqlite:///{tmp / 'o.db'}")
    keyring = Keyring(engine, tmp / "secret.key")
    keyring.ensure_principal("root", admin=True)
    for name in ("b", "o", "a"):
        keyring.ensure_principal(name, group_names=("limited",))
    e = Env()
    e.keys = {n: keyring.create_api_key(n)[1] for n in ("b", "o", "a", "carol", "root", "loader")}
    rules = (
        QuotaRule(group="limited", requests_per_minute=1),
        QuotaRule(principal="carol", concurrent_streams=1),
    )
    specs = (ModelSpec(id=ECHO, engine="echo", n_ctx=64, max_queue=64),)
    settings = Settings(config_path=tmp / "c.toml", builtin_embedding_model=False, auth="keys", models=specs)
    registry = Registry(settings, {ECHO: EchoEngine(context_length=64, max_queue=64, delay_s=0.01)})
    e.recorder = UsageRecorder(engine, flush_interval_s=0.2)
    app = build_app(
        settings, registry, Authenticator("keys", keyring), AccessControl(engine, {}), Quotas(engine, rules), e.recorder
    )
    with serve_app(app) as e.url:
        yield e


def _auth(env: Env, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {env.keys[who]}", "x-api-key": env.keys[who]}


CALLS = {
    "bedrock": (
        "b",
        lambda: (f"/model/{M}/converse", {"messages": [{"role": "user", "content": [{"text": "Hello"}]}]}),
    ),
    "openai": (
        "o",
        lambda: (
            "/v1/chat/completions",
            {"model": BUILTIN_MODEL_ID, "messages": [{"role": "user", "content": "Hello"}]},
        ),
    ),
    "anthropic": (
        "a",
        lambda: (
            "/v1/messages",
            {"model": BUILTIN_MODEL_ID, "max_tokens": 20, "messages": [{"role": "user", "content": "Hello"}]},
        ),
    ),
}
EXPECTED = {
    "bedrock": lambda r: r.headers["x-amzn-errortype"] == "ThrottlingException",
    "openai": lambda r: r.json()["error"]["code"] == "rate_limit_exceeded",
    "anthropic": lambda r: r.json()["error"]["type"] == "rate_limit_error",
}


@pytest.mark.parametrize("dialect", list(CALLS))
def test_requests_per_minute_in_every_dialect(env: Env, dialect: str) -> None:
    who, call = CALLS[dialect]
    path, body = call()
    first = httpx.post(env.url + path, json=body, headers=_auth(env, who), timeout=60)
    assert first.status_code == 200, first.text
    second = httpx.post(env.url + path, json=body, headers=_auth(env, who), timeout=60)
    if second.status_code == 200:  # the minute turned between the two calls: one more try in the new window
        second = httpx.post(env.url + path, json=body, headers=_auth(env, who), timeout=60)
    assert second.status_code == 429 and EXPECTED[dialect](second)
    assert 1 <= int(second.headers["retry-after"]) <= 60
    # the throttled call is in the usage records, with the refusal as its status (QuotaExceeded: a 429 in every dialect) and no tokens
    r = httpx.get(f"{env.url}/outcrop/v1/usage?groupBy=principal,status", headers=_auth(env, "root"), timeout=60)
    mine = {row["status"]: row for row in r.json()["usage"] if row["principal"] == who}
    assert mine["QuotaExceeded"]["requests"] >= 1 and mine["QuotaExceeded"]["input_tokens"] == 0
    assert mine["ok"]["requests"] >= 1


def test_concurrent_streams(env: Env) -> None:
    started = threading.Event()
    body = {"messages": [{"role": "user", "content": [{"text": " ".join(["word"] * 30)}]}]}

    def occupy() -> None:
        with httpx.stream(
            "POST", f"{env.url}/model/{ECHO}/converse-stream", json=body, headers=_auth(env, "carol"), timeout=60
        ) as r:
            started.set()
            for _ in r.iter_bytes():
                pass

    t = threading.Thread(target=occupy)
    t.start()
    assert started.wait(30)
    r = httpx.post(f"{env.url}/model/{ECHO}/converse", json=body, headers=_auth(env, "carol"), timeout=60)
    t.join()
    assert r.status_code == 429 and "concurrent" in r.json()["message"]
    again = httpx.post(f"{env.url}/model/{ECHO}/converse", json=body, headers=_auth(env, "carol"), timeout=60)
    assert again.status_code == 200  # the finished stream gave its place back


def test_usage_under_concurrent_load_loses_nothing(env: Env) -> None:
    before = env.recorder.recorded
    body = {"messages": [{"role": "user", "content": [{"text": "one two three"}]}]}

    def one(_: int) -> int:
        return httpx.post(
            f"{env.url}/model/{ECHO}/converse", json=body, headers=_auth(env, "loader"), timeout=60
        ).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(one, range(200)))
    assert statuses.count(200) == 200
    r = httpx.get(f"{env.url}/outcrop/v1/usage?groupBy=principal,model,dialect", headers=_auth(env, "root"), timeout=60)
    assert r.status_code == 200
    rows = [row for row in r.json()["usage"] if row["principal"] == "loader"]
    assert rows == [
        {
            "principal": "loader",
            "model": ECHO,
            "dialect": "bedrock",
            "requests": 200,
            "input_tokens": rows[0]["input_tokens"],
            "output_tokens": 600,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "errors": 0,
            "avg_latency_ms": rows[0]["avg_latency_ms"],
        }
    ]
    assert env.recorder.recorded - before == 200 and env.recorder.dropped == 0
    denied = httpx.get(f"{env.url}/outcrop/v1/usage", headers=_auth(env, "loader"), timeout=60)
    assert denied.status_code == 403


def _serve(home: Path, cfg: Path, port: int, db_url: str | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "OUTCROP_HOME": str(home)}
    if db_url:
        env["OUTCROP_DATABASE_URL"] = db_url
    proc = subprocess.Popen([sys.executable, "-m", "outcrop.cli", "--config", str(cfg), "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(proc.stdout.read() if proc.stdout else "server did not start")


def test_two_processes_on_one_postgres_enforce_one_quota(tmp_path: Path, postgres_url: str) -> None:
    from tests.postgres import fresh_database

    db = fresh_database(postgres_url, "two_procs")
    cfg = tmp_path / "config.toml"
    cfg.write_text('[server]\nauth = "keys"\nbuiltin_embedding_model = false\n\n[[quotas]]\nrequests_per_minute = 5\n')
    keyring = Keyring(store.connect(db), tmp_path / "secret.key")
    _, key = keyring.create_api_key("shared")
    ports = [free_port(), free_port()]
    procs = [_serve(tmp_path, cfg, p, db) for p in ports]
    try:
        body = {"model": BUILTIN_MODEL_ID, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 5}
        if time.time() % 60 > 50:  # keep all eight calls inside one minute window
            time.sleep(61 - time.time() % 60)
        statuses = [
            httpx.post(
                f"http://127.0.0.1:{ports[i % 2]}/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {key}"},
                timeout=60,
            ).status_code
            for i in range(8)
        ]
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
    assert sorted(statuses) == [200] * 5 + [429] * 3


def test_kill_9_loses_no_answered_request(tmp_path: Path) -> None:
    """Every answer a client received in full was recorded before its last byte left: a kill -9 the moment
    after loses none of them (tests/sdk/test_faults.py kills in the middle of a stream)."""
    cfg = tmp_path / "config.toml"
    cfg.write_text("[server]\nbuiltin_embedding_model = false\n")
    port = free_port()
    proc = _serve(tmp_path, cfg, port)
    body = {"model": BUILTIN_MODEL_ID, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 3}
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        with httpx.Client(timeout=60) as c:
            answered = sum(c.post(url, json=body).status_code == 200 for _ in range(40))
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no periodic flush has had a chance since the last answer
        proc.wait(timeout=30)
    with store.connect(f"sqlite:///{tmp_path / 'outcrop.db'}").connect() as db:
        written = db.execute(select(func.count()).select_from(usage_records)).scalar_one()
    assert answered == 40 and written == 40


def test_prometheus_metrics(env: Env) -> None:
    body = {"messages": [{"role": "user", "content": [{"text": "one two"}]}]}
    assert (
        httpx.post(f"{env.url}/model/{ECHO}/converse", json=body, headers=_auth(env, "loader"), timeout=60).status_code
        == 200
    )
    assert httpx.get(f"{env.url}/metrics", headers=_auth(env, "loader"), timeout=60).status_code == 403
    text = httpx.get(f"{env.url}/metrics", headers=_auth(env, "root"), timeout=60).text
    assert f'outcrop_requests_total{{dialect="bedrock",model="{ECHO}",operation="converse_op",status="ok"}}' in text
    assert "outcrop_request_latency_seconds_bucket" in text and "outcrop_time_to_first_token_seconds_count" in text
    assert f'outcrop_tokens_total{{kind="output",model="{ECHO}"}}' in text
    assert f'outcrop_queue_depth{{model="{ECHO}"}} 0.0' in text


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_key_revoked_elsewhere_fails_on_the_next_request_in_every_process(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """Two `outcrop serve` processes have the key cached from a request each; a third process revokes it; the
    very next request to either is refused (no cache window), and so are early-access grants taken back."""
    db: str | None = None
    if backend == "postgresql":
        from tests.postgres import fresh_database

        db = fresh_database(request.getfixturevalue("postgres_url"), "revoke_procs")
    cfg = tmp_path / "config.toml"
    cfg.write_text('[server]\nauth = "keys"\nbuiltin_embedding_model = false\n\n'
                   f'[[models]]\nid = "{ECHO}"\nengine = "echo"\naccess = "early"\n')  # fmt: skip
    keyring = Keyring(store.connect(db or f"sqlite:///{tmp_path / 'outcrop.db'}"), tmp_path / "secret.key")
    key_id, key = keyring.create_api_key("visitor")
    access = AccessControl(keyring.engine, {ECHO: "early"})
    access.grant(ECHO, "principal:visitor", "test")
    ports = [free_port(), free_port()]
    procs = [_serve(tmp_path, cfg, p, db) for p in ports]
    body = {"model": ECHO, "messages": [{"role": "user", "content": "hello there"}]}

    def status(port: int) -> int:
        return httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {key}"}, timeout=60).status_code  # fmt: skip

    try:
        assert [status(p) for p in ports * 2] == [200] * 4  # key and grant now cached in both processes
        access.revoke(ECHO, "principal:visitor")
        assert [status(p) for p in ports] == [403, 403]  # the grant is gone at once
        access.grant(ECHO, "principal:visitor", "test")
        assert [status(p) for p in ports] == [200, 200]
        assert keyring.revoke(key_id)
        assert [status(p) for p in ports] == [401, 401]  # and so is the key
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
