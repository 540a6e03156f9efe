"""Signing in and out (outcrop/console/session.py, views/signin.py) on the whole server with keys."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from outcrop.cli import assemble
from outcrop.engines.echo import EchoEngine
from tests.conftest import serve_app
from tests.console.conftest import ECHO, Served, keyed_settings, signed_in


def _cookie_header(r: httpx.Response, name: str) -> str:
    found = [v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith(f"{name}=")]
    assert found, r.headers
    return found[-1]


def test_signing_in_with_an_api_key_sets_an_httponly_samesite_strict_cookie(keyed: Served, console: Any) -> None:
    c = console(keyed.url)
    r = c.sign_in(keyed.keys["alice"], next="/console/playground")
    assert r.status_code == 303 and r.headers["location"] == "/console/playground"
    cookie = _cookie_header(r, "outcrop_session").lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert "secure" not in cookie  # served over http here; over https the cookie is Secure (test_web.py)
    assert keyed.keys["alice"] not in r.headers.get("set-cookie", "")  # the key itself is never in a cookie
    page = c.http.get("/console/models")
    assert page.status_code == 200 and ">alice<" in page.text


def test_signing_in_with_an_aws_access_key_and_its_secret(keyed: Served, console: Any) -> None:
    c = console(keyed.url)
    assert c.sign_in(keyed.aws[0], keyed.aws[1]).status_code == 303
    assert ">root<" in c.http.get("/console/models").text


def test_a_wrong_key_or_secret_is_refused_on_the_form(keyed: Served, console: Any) -> None:
    c = console(keyed.url)
    for key, secret in ((keyed.aws[0], "wrong"), ("ocp_" + "x" * 43, ""), (keyed.aws[0], ""), ("nonsense", "x")):
        r = c.sign_in(key, secret)
        assert r.status_code == 401 and "outcrop_session=" not in r.headers.get("set-cookie", ""), (key, r.text)
        assert "not valid" in r.text or "Give an API key" in r.text
    assert c.http.get("/console/models").status_code == 303


def test_the_sign_in_form_needs_its_own_token_and_cookie(keyed: Served) -> None:
    """A page elsewhere cannot sign a browser in to an account of its choosing (login CSRF)."""
    r = httpx.post(f"{keyed.url}/console/signin", data={"key": keyed.keys["alice"], "csrf_token": "x"})
    assert r.status_code == 403 and "outcrop_session" not in r.headers.get("set-cookie", "")


def test_pages_without_a_session_go_to_the_sign_in_page_and_scripts_get_401(keyed: Served) -> None:
    r = httpx.get(f"{keyed.url}/console/usage?since=2020-01-01")
    assert r.status_code == 303
    assert r.headers["location"] == "/console/signin?next=%2Fconsole%2Fusage%3Fsince%3D2020-01-01"
    r = httpx.get(f"{keyed.url}/console/models/load")
    assert r.status_code == 401 and r.json()["type"] == "AuthenticationFailed"
    assert httpx.get(f"{keyed.url}/").headers["location"] == "/console/models"


def test_a_forged_or_altered_cookie_is_no_session(keyed: Served, console: Any) -> None:
    c = signed_in(console, keyed, "alice")
    value = c.http.cookies["outcrop_session"]
    payload, _, mac = value.partition(".")
    for forged in (payload + "." + mac[:-2] + "AA", "e30." + mac, "garbage", ""):
        r = httpx.get(f"{keyed.url}/console/models", cookies={"outcrop_session": forged})
        assert r.status_code == 303, forged


def test_sign_in_goes_back_to_console_pages_only(keyed: Served, console: Any) -> None:
    for target in ("//evil.example/console", "https://evil.example/", "/v1/models", "/console\\@evil"):
        r = console(keyed.url).sign_in(keyed.keys["bob"], next=target)
        assert r.headers["location"] == "/console/models", target


def test_signing_out_ends_the_session(keyed: Served, console: Any) -> None:
    c = signed_in(console, keyed, "bob")
    old = c.http.cookies["outcrop_session"]
    r = c.post_form("/console/signout", {})
    assert r.status_code == 303 and r.headers["location"] == "/console/signin"
    assert 'outcrop_session=""' in r.headers["set-cookie"] or "Max-Age=0" in r.headers["set-cookie"]
    again = httpx.get(f"{keyed.url}/console/models", cookies={"outcrop_session": old})
    assert again.status_code == 303  # the old cookie, replayed, is refused too


def test_a_signed_out_session_stays_out_in_another_process_and_after_a_restart(keyed: Served, console: Any) -> None:
    """A second server on the same home stands for another worker process, or the same server restarted."""
    kept, leaving = signed_in(console, keyed, "bob"), signed_in(console, keyed, "bob")
    old = leaving.http.cookies["outcrop_session"]
    assert leaving.post_form("/console/signout", {}).status_code == 303
    app, _ = assemble(keyed_settings(Path(os.environ["OUTCROP_HOME"])), "keys", {ECHO: EchoEngine()})
    with serve_app(app) as other:
        assert httpx.get(f"{other}/console/models", cookies={"outcrop_session": old}).status_code == 303
        still = httpx.get(f"{other}/console/models", cookies={"outcrop_session": kept.http.cookies["outcrop_session"]})
        assert still.status_code == 200 and ">bob<" in still.text


def test_revoking_the_key_ends_its_sessions(keyed: Served, console: Any) -> None:
    key_id, token = keyed.keyring.create_api_key("carol")
    c = console(keyed.url)
    assert c.sign_in(token).status_code == 303
    assert c.http.get("/console/models").status_code == 200
    keyed.keyring.revoke(key_id)
    assert c.http.get("/console/models").status_code == 303
    assert c.sign_in(token).status_code == 401
