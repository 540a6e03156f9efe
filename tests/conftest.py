"""Shared fixtures: a real uvicorn server on 127.0.0.1 serving the built-in model (under Bedrock ids
of several provider families) and an echo model, and real boto3 clients pointed at it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import uvicorn
from botocore.config import Config

from outcrop.api.app import App, build_app
from outcrop.api.server import config as server_config
from outcrop.config import ModelSpec, Settings
from outcrop.engines.base import Embedder, Engine
from outcrop.engines.echo import EchoEngine
from outcrop.models import BUILTIN_GGUF, BUILTIN_MODEL_ID
from outcrop.registry import Registry

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
LLAMA = "meta.llama3-1-8b-instruct-v1:0"
MISTRAL = "mistral.mistral-7b-instruct-v0:2"
TITAN = "amazon.titan-text-express-v1"
ECHO = "test.echo-v1:0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """A real uvicorn server for `app` on a free 127.0.0.1 port, in a thread, for the block."""
    port = free_port()
    if isinstance(app, App):  # Outcrop's own server configuration (its protocol, limits and timeouts)
        cfg = server_config(app, "127.0.0.1", port, log_level="warning", lifespan="on")
    else:
        cfg = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(cfg)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextlib.contextmanager
def serve(settings: Settings, engines: dict[str, Engine | Embedder] | None = None) -> Iterator[tuple[str, Registry]]:
    registry = Registry(settings, engines)
    with serve_app(build_app(settings, registry)) as url:
        yield url, registry


def serve_process(config: Path, home: Path, **env: str) -> tuple[subprocess.Popen[str], str]:
    """A real `outcrop serve` process with `config` and OUTCROP_HOME=home (plus `env`), once /healthz answers:
    (the process, stdout and stderr as text in its pipe; its URL)."""
    port = free_port()
    cmd = [sys.executable, "-m", "outcrop.cli", "--config", str(config), "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OUTCROP_HOME": str(home), **env})  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(proc.stdout.read() if proc.stdout else "server did not start")


def test_settings(tmp: Path, **extra: object) -> Settings:
    models = (
        ModelSpec(
            id=BUILTIN_MODEL_ID,
            path=str(BUILTIN_GGUF),
            n_ctx=4096,
            aliases=(CLAUDE, LLAMA, MISTRAL, TITAN),
            max_queue=4,
        ),
        ModelSpec(id=ECHO, engine="echo", n_ctx=64, max_queue=1),
    )
    return Settings(config_path=tmp / "config.toml", models=models, **extra)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Registry]]:
    # The echo model is slow (50 ms a word) and has no queue: one request at a time, the next refused.
    echo = EchoEngine(context_length=64, max_queue=0, delay_s=0.05)
    with serve(test_settings(tmp_path_factory.mktemp("outcrop")), {ECHO: echo}) as running:
        yield running


@pytest.fixture(scope="session")
def base_url(server: tuple[str, Registry]) -> str:
    return server[0]


def client(service: str, base_url: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        service,
        endpoint_url=base_url,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=120),
    )


@pytest.fixture(scope="session")
def runtime(base_url: str):  # type: ignore[no-untyped-def]
    return client("bedrock-runtime", base_url)


@pytest.fixture(scope="session")
def control(base_url: str):  # type: ignore[no-untyped-def]
    return client("bedrock", base_url)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    from tests.postgres import postgres_server

    with postgres_server(free_port()) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'outcrop.db'}"
    from tests.postgres import fresh_database

    admin = request.getfixturevalue("postgres_url")
    return fresh_database(admin, f"t_{abs(hash(request.node.nodeid)) % 10**12}")
