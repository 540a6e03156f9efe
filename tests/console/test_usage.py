"""The Usage page (views/usage.py): each member their own usage, administrators everyone's (readable_owner)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.console.conftest import ECHO, Served, signed_in


def test_a_member_sees_only_their_own_usage(keyed: Served, console: Any) -> None:
    alice = signed_in(console, keyed, "alice")
    bob = signed_in(console, keyed, "bob")
    r = bob.post_json("/console/playground/chat", {"model": ECHO, "messages": [{"role": "user", "text": "hi bob"}]})
    assert r.status_code == 200
    page = alice.http.get("/console/usage").text
    assert "Your calls" in page and '<th scope="col">Principal</th>' not in page
    assert 'id="principal"' not in page  # no way to ask for another's
    assert signed_in(console, keyed, "bob").http.get("/console/usage").text.count(f"<code>{ECHO}</code>") >= 1


def test_a_members_cookie_cannot_read_another_keys_usage(keyed: Served, console: Any) -> None:
    alice = signed_in(console, keyed, "alice")
    for who in ("bob", "root"):
        r = alice.http.get("/console/usage", params={"principal": who})
        assert r.status_code == 403 and "another principal" in r.text
    assert alice.http.get("/console/usage", params={"principal": "alice"}).status_code == 200


def test_an_administrator_sees_everyone_or_one_principal(keyed: Served, console: Any) -> None:
    root = signed_in(console, keyed, "root")
    bob = signed_in(console, keyed, "bob")
    bob.post_json("/console/playground/chat", {"model": ECHO, "messages": [{"role": "user", "text": "again"}]})
    everyone = root.http.get("/console/usage").text
    assert "Everyone's calls" in everyone and "<td>bob</td>" in everyone
    one = root.http.get("/console/usage", params={"principal": "bob"}).text
    assert "bob's calls" in one and '<th scope="col">Principal</th>' not in one
    assert root.http.get("/console/usage", params={"since": "yesterday"}).status_code == 400


def test_local_mode_is_the_administrator(base_url: str) -> None:
    page = httpx.get(f"{base_url}/console/usage")
    assert page.status_code == 200 and 'id="principal"' in page.text
