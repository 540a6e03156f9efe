"""Cross-site request forgery (outcrop/console/csrf.py): every state-changing request needs the session's token and
the console's own origin; in local mode the app's own host and origin checks hold for the console too."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from outcrop.auth.access import AccessControl
from tests.console.conftest import EARLY, Served, signed_in


def _pending(served: Served, who: str) -> list[str]:
    access: AccessControl = served.app.context.access
    return [r.model_id for r in access.requests("pending", who)]


def test_a_post_without_the_token_is_refused_and_changes_nothing(keyed: Served, console: Any) -> None:
    c = signed_in(console, keyed, "bob")
    for token in ("", "not-the-token"):
        r = c.post_form("/console/models/access-requests", {"model": EARLY}, token=token)
        assert r.status_code == 403 and "CSRF token" in r.text
    r = c.post_json("/console/playground/chat", {"model": EARLY, "messages": []}, token="wrong")
    assert r.status_code == 403 and r.json()["type"] == "AccessDenied"
    assert EARLY not in _pending(keyed, "bob")


def test_another_users_token_does_not_pass(keyed: Served, console: Any) -> None:
    alice, bob = signed_in(console, keyed, "alice"), signed_in(console, keyed, "bob")
    r = bob.post_form("/console/models/access-requests", {"model": EARLY}, token=alice.csrf())
    assert r.status_code == 403


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
     {"Sec-Fetch-Site": "same-site"}],  # another port of the same host is same-site, and still not the console
)  # fmt: skip
def test_a_post_from_another_origin_is_refused_even_with_the_token(keyed: Served, console: Any,
                                                                    headers: dict[str, str]) -> None:  # fmt: skip
    c = signed_in(console, keyed, "bob")
    data = {"csrf_token": c.csrf(), "model": EARLY}
    r = c.http.post("/console/models/access-requests", data=data, headers=headers)
    assert r.status_code == 403 and "own pages only" in r.text
    assert EARLY not in _pending(keyed, "bob")


def test_the_right_token_from_the_console_itself_passes(keyed: Served, console: Any) -> None:
    c = signed_in(console, keyed, "bob")
    r = c.http.post("/console/models/access-requests", data={"csrf_token": c.csrf(), "model": EARLY},
                    headers={"Origin": keyed.url, "Sec-Fetch-Site": "same-origin"})  # fmt: skip
    assert r.status_code == 303
    assert EARLY in _pending(keyed, "bob")


def test_local_mode_refuses_other_hosts_and_origins_for_the_console_too(base_url: str) -> None:
    """DNS rebinding (a foreign Host) and a foreign page's POST are refused before any console code runs."""
    r = httpx.get(f"{base_url}/console/models", headers={"Host": "evil.example"})
    assert r.status_code == 403 and "DNS rebinding" in r.text and r.headers["content-type"].startswith("text/html")
    r = httpx.post(f"{base_url}/console/playground/chat", json={}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    page = httpx.get(f"{base_url}/console/models")
    assert page.status_code == 200 and "local mode" in page.text  # straight in, as the local administrator
    r = httpx.post(f"{base_url}/console/playground/chat", json={"model": "x", "messages": []})
    assert r.status_code == 403 and "CSRF" in r.json()["message"]  # a token even in local mode
