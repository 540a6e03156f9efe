"""The console's plumbing (web.py, nav.py, views/__init__.py, render.py): administrators' pages, placeholders,
security headers, static files, and its place in the app (OpenAPI documents, unknown paths)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest

from outcrop.console import nav, views
from outcrop.console.render import CSP
from tests.console.conftest import Served, signed_in


def test_a_members_cookie_cannot_open_administrators_pages(keyed: Served, console: Any) -> None:
    alice = signed_in(console, keyed, "alice")
    r = alice.http.get("/console/keys")
    assert r.status_code == 403 and "Only an administrator" in r.text
    assert 'href="/console/keys"' not in alice.http.get("/console/models").text  # not in the menu either
    root = signed_in(console, keyed, "root")
    assert root.http.get("/console/keys").status_code == 200
    assert 'href="/console/keys"' in root.http.get("/console/models").text


def test_every_menu_entry_answers_and_marks_the_current_page(keyed: Served, console: Any) -> None:
    root = signed_in(console, keyed, "root")
    for item in nav.NAV:
        page = root.http.get(item.path)
        assert page.status_code == 200, item
        assert f'href="{item.path}" aria-current="page"' in page.text, item
        assert '<main id="main"' in page.text and 'href="#main"' in page.text  # landmark + skip link


def test_pages_and_errors_carry_the_security_headers(keyed: Served, console: Any) -> None:
    alice = signed_in(console, keyed, "alice")
    for r in (alice.http.get("/console/models"), alice.http.get("/console/keys"), alice.http.get("/console/nope"),
              httpx.get(f"{keyed.url}/console/signin")):  # fmt: skip
        assert r.headers["content-security-policy"] == CSP
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["cache-control"] == "no-store"
    assert "<script>" not in alice.http.get("/console/playground").text  # the CSP allows no inline script


def test_static_files_are_served_with_long_caching_under_their_hash(keyed: Served) -> None:
    page = httpx.get(f"{keyed.url}/console/signin").text
    css = re.search(r'href="(/console/static/console\.css\?v=\w+)"', page)
    assert css
    r = httpx.get(keyed.url + css.group(1))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")
    assert "immutable" in r.headers["cache-control"]
    for bad in ("..%2Fsession.py", "%2E%2E%2Fweb.py", "nope.css", "session.py", ".hidden.js"):
        assert httpx.get(f"{keyed.url}/console/static/{bad}").status_code == 404, bad


def test_unknown_console_paths_are_pages_and_api_paths_keep_their_envelopes(keyed: Served) -> None:
    r = httpx.get(f"{keyed.url}/console/nope")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    r = httpx.get(f"{keyed.url}/v1/nope", headers={"Authorization": f"Bearer {keyed.keys['root']}"})
    assert r.status_code == 404 and "error" in r.json()


def test_the_console_is_not_in_the_openapi_documents(keyed: Served) -> None:
    paths = httpx.get(f"{keyed.url}/openapi.json").json()["paths"]
    assert not [p for p in paths if p == "/" or p.startswith("/console")]


def test_admin_only_covers_every_path_under_an_administrators_entry() -> None:
    assert nav.admin_only("/console/keys") and nav.admin_only("/console/keys/key_1/revoke")
    assert not nav.admin_only("/console/keysmith") and not nav.admin_only("/console/usage")


def test_unbuilt_menu_entries_are_placeholders_and_unknown_pages_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    built = {getattr(m, "PAGE", None) for m in views.modules()}
    served = {r.pattern.pattern for r in views.routes()}
    for item in nav.NAV:
        assert f"^{item.path}$" in served, item
    assert {"models", "playground", "usage"} <= built

    class Stray:
        PAGE = "no-such-page"
        ROUTES: list[Any] = []

    monkeypatch.setattr(views, "modules", lambda: [Stray])
    with pytest.raises(LookupError, match="no-such-page"):
        views.routes()


def test_the_session_cookie_is_secure_over_https(keyed: Served) -> None:
    """In process, as behind a proxy that ends TLS (uvicorn --proxy-headers sets the scheme)."""
    asyncio.run(_secure_over_https(keyed))


async def _secure_over_https(keyed: Served) -> None:
    transport = httpx.ASGITransport(app=keyed.app)
    async with httpx.AsyncClient(transport=transport, base_url="https://console.example") as c:
        form = await c.get("/console/signin")
        assert "secure" in form.headers["set-cookie"].lower()
        token = re.search(r'name="csrf_token" value="([^"]*)"', form.text)
        assert token
        r = await c.post("/console/signin", data={"csrf_token": token.group(1), "key": keyed.keys["alice"]},
                         headers={"Origin": "https://console.example"})  # fmt: skip
        assert r.status_code == 303
        cookie = r.headers["set-cookie"].lower()
        assert "outcrop_session=" in cookie and "secure" in cookie and "samesite=strict" in cookie
