"""The console's security in a real Chromium: the cookie's flags, a member's cookie against administrators' pages
and another key's usage, and a forged cross-site (and cross-origin, same-site) POST refused."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.console.browser.conftest import sign_in
from tests.console.conftest import EARLY, ECHO, Served


def test_the_session_cookie_is_httponly_and_samesite_strict(keyed: Served, context: Any, page: Any) -> None:
    sign_in(page, keyed.url, keyed.keys["alice"])
    cookies = {c["name"]: c for c in context.cookies(keyed.url)}
    session = cookies["outcrop_session"]
    assert session["httpOnly"] is True and session["sameSite"] == "Strict" and session["path"] == "/"
    assert session["secure"] is False  # http://127.0.0.1 here; over https it is Secure (tests/console/test_web.py)
    assert "outcrop_session" not in page.evaluate("document.cookie")  # no script can read it


def test_a_members_cookie_cannot_reach_administrators_pages_or_another_keys_usage(keyed: Served, page: Any) -> None:
    sign_in(page, keyed.url, keyed.keys["alice"])
    menu = page.get_by_role("navigation", name="Main")
    assert menu.get_by_role("link", name="Usage").count() == 1
    assert menu.get_by_role("link", name="Keys").count() == 0
    r = page.goto(f"{keyed.url}/console/keys")
    assert r is not None and r.status == 403 and page.get_by_text("Only an administrator").is_visible()
    r = page.goto(f"{keyed.url}/console/models/load")
    assert r is not None and r.status == 403
    for who in ("bob", "root"):
        r = page.goto(f"{keyed.url}/console/usage?principal={who}")
        assert r is not None and r.status == 403, who
    r = page.goto(f"{keyed.url}/console/usage")
    assert r is not None and r.status == 200 and "Your calls" in page.content()


@contextlib.contextmanager
def _site(html: str) -> Iterator[int]:
    """Another web site on this machine (its own port), serving one page."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


FORGED = """<!doctype html><title>win a prize</title>
<form id="f" method="post" action="{url}/console/models/access-requests">
  <input name="model" value="{model}"><input name="reason" value="forged">
</form>
<script>
  fetch("{url}/console/playground/chat", {{method: "POST", mode: "no-cors", credentials: "include",
    headers: {{"Content-Type": "text/plain"}},
    body: '{{"model": "{echo}", "messages": [{{"role": "user", "text": "forged"}}]}}'}})
    .catch(() => null).finally(() => document.getElementById("f").submit());
</script>"""


# From another site (localhost is not 127.0.0.1's site) SameSite=Strict keeps the cookie home: not signed in, 401.
# From the same site on another port the cookie goes along, and the origin check refuses it: 403.
@pytest.mark.parametrize(("host", "status"), [("localhost", 401), ("127.0.0.1", 403)])
def test_a_forged_post_from_another_page_is_refused(keyed: Served, page: Any, host: str, status: int) -> None:
    sign_in(page, keyed.url, keyed.keys["bob"])
    before = len(keyed.app.context.access.requests(None, "bob"))
    echo = keyed.app.context.registry.loaded()[ECHO].stats()
    with _site(FORGED.format(url=keyed.url, model=EARLY, echo=ECHO)) as port:
        with page.expect_navigation(url=f"{keyed.url}/console/models/access-requests") as landed:
            page.goto(f"http://{host}:{port}/")
        response = landed.value
        assert response is not None and response.status == status
    assert len(keyed.app.context.access.requests(None, "bob")) == before  # nothing was asked in bob's name
    after = keyed.app.context.registry.loaded()[ECHO].stats()
    assert (after.completed, after.cancelled, after.in_flight) == (echo.completed, echo.cancelled, 0)  # nor run
    page.goto(f"{keyed.url}/console/models")
    assert page.locator(".who .name").inner_text() == "bob"  # and bob is still signed in
