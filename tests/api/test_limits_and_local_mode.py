"""What the app refuses before it reads a request: bodies over the size limit (413, in each dialect's
envelope), and in local mode a foreign Host (DNS rebinding) or a foreign web page's Origin; CORS only for
configured origins. In process over ASGI, with the echo engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from outcrop.api.app import build_app
from outcrop.auth.authenticate import Authenticator
from outcrop.config import ModelSpec, Settings
from outcrop.engines.echo import EchoEngine
from outcrop.registry import Registry

ECHO = "test.echo-v1:0"
BIG = b"x" * (1024 * 1024 + 1)


def app(tmp_path: Path, **server: Any) -> Any:
    settings = Settings(config_path=tmp_path / "c.toml", builtin_model=False, builtin_embedding_model=False,
                        models=(ModelSpec(id=ECHO, engine="echo"),), max_request_mib=1, **server)  # fmt: skip
    registry = Registry(settings, {ECHO: EchoEngine()})
    return build_app(settings, registry, Authenticator(server.pop("auth", "local"), None))


def call(application: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8300") as c:
            return await c.request(method, path, **kwargs)

    return asyncio.run(main())


def test_a_body_over_the_limit_is_413_in_each_dialect(tmp_path: Path) -> None:
    a = app(tmp_path)
    r = call(a, "POST", f"/model/{ECHO}/converse", content=BIG)
    assert (r.status_code, r.headers["x-amzn-errortype"]) == (413, "ValidationException")
    assert "1 MiB" in r.json()["message"]
    r = call(a, "POST", "/v1/chat/completions", content=BIG)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    r = call(a, "POST", "/v1/messages", content=BIG)
    assert r.status_code == 413 and r.json() == {"type": "error", "error": {"type": "request_too_large",
                                                                             "message": r.json()["error"]["message"]}}  # fmt: skip


def test_a_body_without_a_length_is_counted_as_it_arrives(tmp_path: Path) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"y" * (300 * 1024)

    r = call(app(tmp_path), "POST", "/v1/chat/completions", content=chunks())
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_a_body_under_the_limit_is_served(tmp_path: Path) -> None:
    body = {"model": ECHO, "messages": [{"role": "user", "content": "hello " * 1000}]}
    r = call(app(tmp_path), "POST", "/v1/chat/completions", json=body)
    assert r.status_code == 200


def test_local_mode_refuses_a_foreign_host_and_a_foreign_page(tmp_path: Path) -> None:
    a = app(tmp_path)
    body = {"model": ECHO, "messages": [{"role": "user", "content": "hi"}]}
    ok = call(a, "POST", "/v1/chat/completions", json=body, headers={"Origin": "http://localhost:8300"})
    assert ok.status_code == 200 and "access-control-allow-origin" not in ok.headers
    rebinding = call(a, "POST", "/v1/chat/completions", json=body, headers={"Host": "attacker.example:8300"})
    assert rebinding.status_code == 403 and "DNS rebinding" in rebinding.json()["error"]["message"]
    page = call(a, "POST", f"/model/{ECHO}/converse", content=b'{"messages": []}',
                headers={"Origin": "https://evil.example", "Content-Type": "text/plain"})  # fmt: skip
    assert page.status_code == 403 and page.headers["x-amzn-errortype"] == "AccessDeniedException"
    assert call(a, "POST", "/v1/messages", json={}, headers={"Origin": "null"}).status_code == 403
    for host in ("127.0.0.1:8300", "localhost", "[::1]:8300"):
        assert call(a, "GET", "/healthz", headers={"Host": host}).status_code == 200


def test_keys_mode_leaves_hosts_to_the_keys(tmp_path: Path) -> None:
    a = app(tmp_path, auth="keys")
    r = call(a, "GET", "/healthz", headers={"Host": "outcrop.example.com", "Origin": "https://evil.example"})
    assert r.status_code == 200


def test_cors_only_for_configured_origins(tmp_path: Path) -> None:
    a = app(tmp_path, allowed_origins=("https://app.example.com",))
    body = {"model": ECHO, "messages": [{"role": "user", "content": "hi"}]}
    r = call(a, "POST", "/v1/chat/completions", json=body, headers={"Origin": "https://app.example.com"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example.com"
    pre = call(a, "OPTIONS", "/v1/chat/completions", headers={"Origin": "https://app.example.com"})
    assert pre.status_code == 204 and "authorization" in pre.headers["access-control-allow-headers"]
    other = call(a, "POST", "/v1/chat/completions", json=body, headers={"Origin": "https://other.example.com"})
    assert other.status_code == 403 and "access-control-allow-origin" not in other.headers


def test_json_nested_too_deep_is_refused_in_each_dialect(tmp_path: Path) -> None:
    """The standard library's parser ran out of stack on deep nesting: a 500 with a traceback in the log."""
    a = app(tmp_path)
    deep = b"[" * 50_000 + b"]" * 50_000
    for path in ("/v1/chat/completions", f"/model/{ECHO}/converse", f"/model/{ECHO}/invoke", "/v1/messages"):
        r = call(a, "POST", path, content=deep, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (path, r.text)
        assert "JSON" in r.text
    nested: Any = {"type": "string"}
    for _ in range(200):
        nested = {"type": "object", "properties": {"a": nested}}
    body = {"model": ECHO, "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": nested}}]}  # fmt: skip
    r = call(a, "POST", "/v1/chat/completions", json=body)
    assert r.status_code == 400 and "more than 128 levels" in r.json()["error"]["message"]
    r = call(a, "POST", "/outcrop/v1/access-requests", json=[1, 2])
    assert r.status_code == 400 and "JSON object" in r.json()["message"]
