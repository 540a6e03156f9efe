"""The server's limits on a real uvicorn on 127.0.0.1 (outcrop.api.server), over raw sockets where a client
library would not misbehave on purpose: slowloris heads, stalled bodies, idle keep-alive connections, oversized
headers and garbage instead of HTTP, each refused in the envelope of the API its path names; and the size of a
conversation (messages, tools, content blocks) in each dialect."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from outcrop.api.app import build_app
from outcrop.config import ModelSpec, Settings
from outcrop.engines.echo import EchoEngine
from outcrop.registry import Registry
from tests.conftest import serve_app

ECHO = "test.echo-v1:0"
CONVERSE = f"/model/{ECHO}/converse"


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(config_path=tmp_path_factory.mktemp("limits") / "c.toml", builtin_model=False,
                        builtin_embedding_model=False, models=(ModelSpec(id=ECHO, engine="echo", parallel=1),),
                        header_timeout_s=1.0, body_timeout_s=1.0, keep_alive_s=1.0, max_header_kib=8,
                        max_messages=10, max_tools=3, max_content_blocks=12)  # fmt: skip
    with serve_app(build_app(settings, Registry(settings, {ECHO: EchoEngine()}))) as base:
        yield base


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    return s


def _read_all(s: socket.socket) -> bytes:
    """Everything until the server closes the connection."""
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def _split(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)


def _turns(n: int) -> list[dict[str, Any]]:
    return [{"role": "assistant" if i % 2 else "user", "content": "hi"} for i in range(n)]


def _chat(n: int = 1) -> dict[str, Any]:
    return {"model": ECHO, "max_tokens": 4, "messages": _turns(n)}


def test_a_slowloris_head_is_dropped_and_others_are_served(url: str) -> None:
    s = _connect(url)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    started = time.monotonic()
    closed = False
    for i in range(40):  # one header byte every 0.1 s: never a whole head
        try:
            s.sendall(b"X-Slow-%d: y\r\n" % i if i % 5 == 0 else b"")
            if s.recv(1, socket.MSG_DONTWAIT) == b"":
                closed = True
                break
        except BlockingIOError:
            pass
        except OSError:
            closed = True
            break
        time.sleep(0.1)
    took = time.monotonic() - started
    assert closed and took < 3.5, took  # header_timeout_s = 1
    # the one model slot (parallel=1) was never taken: a normal request is served at once
    assert httpx.post(f"{url}/v1/chat/completions", json=_chat(), timeout=10).status_code == 200


def test_a_connection_that_sends_nothing_is_closed(url: str) -> None:
    s = _connect(url)
    started = time.monotonic()
    assert _read_all(s) == b""
    assert time.monotonic() - started < 5


def test_a_stalled_body_is_408_in_each_dialect_and_holds_no_slot(url: str) -> None:
    for path, check in [
        (CONVERSE, lambda h, b: h["x-amzn-errortype"] == "RequestTimeoutException" and "stalled" in b["message"]),
        ("/v1/chat/completions", lambda h, b: b["error"]["code"] == "request_timeout"),
        ("/v1/messages", lambda h, b: b["type"] == "error" and b["error"]["type"] == "timeout_error"),
    ]:
        s = _connect(url)
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  "Content-Length: 1000\r\n\r\n{\"model\": ".encode())  # fmt: skip
        status, headers, body = _split(_read_all(s))
        assert status == 408 and check(headers, body), (path, headers, body)
    assert httpx.post(f"{url}/v1/chat/completions", json=_chat(), timeout=10).status_code == 200


def test_an_idle_keep_alive_connection_is_closed(url: str) -> None:
    s = _connect(url)
    body = json.dumps(_chat()).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
    started = time.monotonic()
    raw = _read_all(s)  # the answer, then the close after keep_alive_s (1 s) of idleness
    assert raw.startswith(b"HTTP/1.1 200") and time.monotonic() - started < 5


def test_oversized_headers_are_431_in_each_dialect(url: str) -> None:
    big = {"X-Big": "z" * 10_000}
    r = httpx.post(f"{url}{CONVERSE}", json={}, headers=big, timeout=10)
    assert (r.status_code, r.headers["x-amzn-errortype"]) == (431, "ValidationException")
    assert "8 KiB" in r.json()["message"]
    r = httpx.post(f"{url}/v1/chat/completions", json={}, headers=big, timeout=10)
    assert r.status_code == 431 and r.json()["error"]["code"] == "headers_too_large"
    r = httpx.post(f"{url}/v1/messages", json={}, headers=big, timeout=10)
    assert r.status_code == 431 and r.json()["type"] == "error"
    assert httpx.post(f"{url}/v1/chat/completions", json=_chat(), timeout=10).status_code == 200


def test_garbage_instead_of_http_is_400_in_the_dialect_of_its_path(url: str) -> None:
    s = _connect(url)
    s.sendall(b"POST /v1/messages HTTP/1.1\r\nHost 127.0.0.1 no colon\r\n\r\n")
    status, _, body = _split(_read_all(s))
    assert status == 400 and body["type"] == "error" and "not valid HTTP" in body["error"]["message"]
    s = _connect(url)
    s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 a TLS hello\r\n\r\n")
    status, headers, body = _split(_read_all(s))
    assert status == 400 and headers["x-amzn-errortype"] == "ValidationException"


def test_too_many_messages_tools_or_blocks_in_each_dialect(url: str) -> None:
    r = httpx.post(f"{url}/v1/chat/completions", json=_chat(11), timeout=10)
    assert r.status_code == 400 and "11 messages" in r.json()["error"]["message"]
    assert "max_messages" in r.json()["error"]["message"]
    tools = [{"type": "function", "function": {"name": f"f{i}", "parameters": {"type": "object"}}} for i in range(4)]
    r = httpx.post(f"{url}/v1/chat/completions", json={**_chat(), "tools": tools}, timeout=10)
    assert r.status_code == 400 and "4 tools" in r.json()["error"]["message"]
    blocks = [{"text": "a"}] * 13
    r = httpx.post(f"{url}{CONVERSE}", json={"messages": [{"role": "user", "content": blocks}]}, timeout=10)
    assert (r.status_code, r.headers["x-amzn-errortype"]) == (400, "ValidationException")
    assert "13 content blocks" in r.json()["message"]
    anthropic = {"model": ECHO, "max_tokens": 4, "messages": _turns(11)}
    r = httpx.post(f"{url}/v1/messages", json=anthropic, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    # within the limits: served
    assert httpx.post(f"{url}/v1/chat/completions", json=_chat(9), timeout=10).status_code == 200


def test_limits_are_read_from_the_config_file(tmp_path: Path) -> None:
    from outcrop.config import load
    from outcrop.errors import InvalidRequest

    cfg = tmp_path / "c.toml"
    cfg.write_text("[server]\nmax_header_kib = 64\nheader_timeout_s = 2.5\nmax_tools = 8\n")
    s = load(cfg)
    assert (s.max_header_kib, s.header_timeout_s, s.max_tools) == (64, 2.5, 8)
    cfg.write_text("[server]\nbody_timeout_s = 0\n")
    with pytest.raises(InvalidRequest, match="body_timeout_s"):
        load(cfg)
