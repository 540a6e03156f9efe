"""Faults on real `outcrop serve` processes (the built-in model), on SQLite and PostgreSQL: kill -9 in the middle of
a stream, and PostgreSQL stopped (as by a crash) in the middle of a run.

- After kill -9, a new process on the same database lets the dead one's caller stream again at once (its lease
  of concurrent_streams = 1 died with it), and every request answered in full before the kill has exactly one
  usage record.
- While PostgreSQL is down, each API refuses in its own envelope (Bedrock ServiceUnavailableException 503, OpenAI
  503 service_unavailable, Anthropic 503 api_error; no traceback anywhere); once it is back the same process
  answers again, and the stream that finished during the outage is recorded once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config
from sqlalchemy import func, select

from outcrop import store
from outcrop.auth.keys import Keyring
from outcrop.models import BUILTIN_MODEL_ID
from outcrop.store.schema import active_streams, usage_records
from tests.conftest import free_port, serve_process

M = BUILTIN_MODEL_ID.replace(":", "%3A")
CONFIG = """[server]
auth = "keys"
builtin_embedding_model = false

[[quotas]]
principal = "carol"
concurrent_streams = 1
"""


def _serve(home: Path, db: str) -> tuple[subprocess.Popen[str], str]:
    return serve_process(home / "config.toml", home, OUTCROP_DATABASE_URL=db)


def _output(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.terminate()
    proc.wait(timeout=30)
    return proc.stdout.read() if proc.stdout else ""


def _calls(key: str) -> dict[str, Callable[[bool], tuple[str, dict[str, object], dict[str, str]]]]:
    """Per dialect: (stream?) -> (path, body, headers) of a short call."""
    bearer = {"Authorization": f"Bearer {key}"}
    chat = [{"role": "user", "content": "Hello"}]
    return {
        "bedrock": lambda stream: (
            f"/model/{M}/converse-stream" if stream else f"/model/{M}/converse",
            {"messages": [{"role": "user", "content": [{"text": "Hello"}]}], "inferenceConfig": {"maxTokens": 5}},
            bearer,
        ),
        "openai": lambda stream: (
            "/v1/chat/completions",
            {"model": BUILTIN_MODEL_ID, "messages": chat, "max_tokens": 5, "stream": stream},
            bearer,
        ),
        "anthropic": lambda stream: (
            "/v1/messages",
            {"model": BUILTIN_MODEL_ID, "messages": chat, "max_tokens": 5, "stream": stream},
            {"x-api-key": key, "anthropic-version": "2023-06-01"},
        ),
    }


def _call(url: str, spec: tuple[str, dict[str, object], dict[str, str]]) -> httpx.Response:
    """One call, its whole answer read (a stream to its last frame)."""
    path, body, headers = spec
    with httpx.stream("POST", url + path, json=body, headers=headers, timeout=60) as r:
        r.read()
    return r


def _complete(url: str, key: str) -> int:
    """Each dialect, whole and streamed, answered in full: how many."""
    last = {"bedrock": b"metadata", "openai": b"data: [DONE]", "anthropic": b"event: message_stop"}
    done = 0
    for dialect, call in _calls(key).items():
        for stream in (False, True):
            r = _call(url, call(stream))
            assert r.status_code == 200, r.text
            assert not stream or last[dialect] in r.content  # the last frame arrived
            done += 1
    return done


def _long_stream(url: str, key: str, tokens: int, on_first: Callable[[], None]) -> tuple[int, bool]:
    """A long OpenAI stream; `on_first` runs when its first token arrives: (tokens received, finished)."""
    body = {"model": BUILTIN_MODEL_ID, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": tokens,
            "stream": True, "ignore_eos": True}  # fmt: skip
    got, finished = 0, False
    try:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"},
                          timeout=60) as r:  # fmt: skip
            assert r.status_code == 200, r.read()
            for line in r.iter_lines():
                if line == "data: [DONE]":
                    finished = True
                if not line.startswith("data: {"):
                    continue
                if any(c["delta"].get("content") for c in json.loads(line[6:]).get("choices") or []):
                    got += 1
                    if got == 1:
                        on_first()
    except httpx.HTTPError:
        pass  # the server died
    return got, finished


def _usage(db: str) -> tuple[int, int, int]:
    """(rows, rows with status ok, distinct request ids) of carol's usage records."""
    engine = store.connect(db)
    try:
        with engine.connect() as c:
            mine = usage_records.c.principal == "carol"
            rows = c.execute(select(func.count()).select_from(usage_records).where(mine)).scalar_one()
            ok = c.execute(
                select(func.count()).select_from(usage_records).where(mine, usage_records.c.status == "ok")
            ).scalar_one()
            ids = c.execute(select(func.count(func.distinct(usage_records.c.request_id))).where(mine)).scalar_one()
        return rows, ok, ids
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'outcrop.db'}"
        return
    from tests.postgres import fresh_database

    yield fresh_database(request.getfixturevalue("postgres_url"), "faults_kill9")


def test_kill_9_mid_stream_frees_its_lease_at_once_and_loses_no_completed_usage(tmp_path: Path, database: str) -> None:
    (tmp_path / "config.toml").write_text(CONFIG)
    engine = store.connect(database)
    _, key = Keyring(engine, tmp_path / "secret.key").create_api_key("carol")
    first, url = _serve(tmp_path, database)
    try:
        completed = _complete(url, key)  # right before the kill: none of these has waited for a periodic flush
        got, finished = _long_stream(url, key, 4000, lambda: os.kill(first.pid, signal.SIGKILL))
    finally:
        first.kill()
        first.wait(timeout=30)
    assert got >= 1 and not finished
    with engine.connect() as c:  # the killed stream's lease is still there
        assert c.execute(select(func.count()).select_from(active_streams)).scalar_one() == 1

    second, url = _serve(tmp_path, database)
    try:
        t = time.monotonic()
        r = _call(url, _calls(key)["openai"](True))  # carol's only stream was the dead process's: she may stream
        assert r.status_code == 200, r.text
        assert time.monotonic() - t < 30
        completed += 1
    finally:
        output = _output(second)
    with engine.connect() as c:  # the dead process's lease is gone, and so is the finished stream's
        assert c.execute(select(func.count()).select_from(active_streams)).scalar_one() == 0
    engine.dispose()
    # every request answered in full has one record (the killed stream, never finished, has none)
    assert _usage(database) == (completed, completed, completed)
    assert "Traceback" not in output, output[-3000:]


def _unavailable(dialect: str, r: httpx.Response) -> bool:
    if r.status_code != 503:
        return False
    if dialect == "bedrock":
        return r.headers.get("x-amzn-errortype") == "ServiceUnavailableException" and "message" in r.json()
    if dialect == "openai":
        return r.json()["error"]["code"] == "service_unavailable" and r.json()["error"]["type"] == "server_error"
    return r.json()["type"] == "error" and r.json()["error"]["type"] == "api_error"


def test_postgres_stopped_mid_run_fails_cleanly_and_recovers(tmp_path: Path) -> None:
    from tests.postgres import restartable_postgres

    with restartable_postgres(free_port()) as pg:
        (tmp_path / "config.toml").write_text(CONFIG)
        keyring = Keyring(store.connect(pg.url), tmp_path / "secret.key")
        _, key = keyring.create_api_key("carol")
        akid, secret = keyring.create_aws_key("carol")
        keyring.engine.dispose()
        proc, url = _serve(tmp_path, pg.url)
        try:
            completed = _complete(url, key)
            # a stream in flight when PostgreSQL goes: it finishes (it needs nothing more from the store)
            stopped = threading.Event()
            streamed: list[tuple[int, bool]] = []

            def stop_postgres() -> None:
                pg.stop()
                stopped.set()

            flight = threading.Thread(target=lambda: streamed.append(_long_stream(url, key, 600, stop_postgres)))
            flight.start()
            assert stopped.wait(60)
            calls = _calls(key)
            for dialect, call in calls.items():
                for stream in (False, True):
                    r = _call(url, call(stream))
                    assert _unavailable(dialect, r), (dialect, stream, r.status_code, r.text)
            runtime = boto3.client("bedrock-runtime", endpoint_url=url, region_name="us-east-1",
                                   aws_access_key_id=akid, aws_secret_access_key=secret,
                                   config=Config(retries={"total_max_attempts": 1}))  # fmt: skip
            with pytest.raises(runtime.exceptions.ServiceUnavailableException):
                runtime.converse(modelId=BUILTIN_MODEL_ID, messages=[{"role": "user", "content": [{"text": "Hi"}]}])
            flight.join(60)
            assert streamed and streamed[0][1], streamed  # answered in full, the store down meanwhile
            completed += 1

            pg.start()
            completed += _complete(url, key)  # the same process, no restart: every dialect answers again
            r = runtime.converse(modelId=BUILTIN_MODEL_ID, messages=[{"role": "user", "content": [{"text": "Hi"}]}],
                                 inferenceConfig={"maxTokens": 5})  # fmt: skip
            assert r["stopReason"] in ("max_tokens", "end_turn")
            completed += 1
            # the stream that finished during the outage was recorded once the store was back (its lease, whose
            # release failed, did not keep carol from streaming: the streams above were hers)
            deadline = time.monotonic() + 20
            while _usage(pg.url)[0] < completed and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1.5)  # a flush more: nothing is written twice
            assert _usage(pg.url) == (completed, completed, completed)
        finally:
            output = _output(proc)
        assert "Traceback" not in output, output[-3000:]
        assert "the store cannot answer" in output  # one line in the log says why
