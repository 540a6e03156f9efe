"""Signing in with a key and out again. In local mode there is nobody to sign in: the pages open directly."""

from __future__ import annotations

import hmac
import secrets

from starlette.responses import Response

from outcrop import errors
from outcrop.console import nav
from outcrop.console.session import COOKIE, LIFETIME_S, SIGNIN_COOKIE, SIGNIN_LIFETIME_S, clear_cookie, set_cookie
from outcrop.console.web import Visit, view


def _next(raw: str | None) -> str:
    """Where to go once signed in: a console path only (never another site: //evil.example is a host)."""
    if raw and raw.startswith("/console") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return nav.HOME


def _form(visit: Visit, message: str | None = None, status: int = 200, key: str = "") -> Response:
    nonce = visit.request.cookies.get(SIGNIN_COOKIE) or secrets.token_urlsafe(16)
    page = visit.render("signin.html", status=status, title="Sign in", message=message, key=key,
                        signin_token=visit.sessions.signin_token(nonce),
                        next=_next(visit.request.query_params.get("next")))  # fmt: skip
    set_cookie(page, visit.request, SIGNIN_COOKIE, nonce, SIGNIN_LIFETIME_S)
    return page


async def signin_page(visit: Visit) -> Response:
    if visit.sessions.local or visit.session is not None:
        return visit.redirect(_next(visit.request.query_params.get("next")))
    return _form(visit)


async def signin(visit: Visit) -> Response:
    if visit.sessions.local:
        return visit.redirect(nav.HOME)
    form = await visit.form()
    nonce = visit.request.cookies.get(SIGNIN_COOKIE, "")
    token = form.get("csrf_token", "")
    if not nonce or not hmac.compare_digest(token.encode(), visit.sessions.signin_token(nonce).encode()):
        raise errors.AccessDenied("The sign-in form is out of date (or was sent from another site): reload it.")
    key = form.get("key", "")
    try:
        principal = await visit.sessions.check_key(key, form.get("secret", ""))
    except errors.AuthenticationFailed as exc:
        return _form(visit, exc.message, status=401, key="" if key.startswith("ocp_") else key)
    done = visit.redirect(_next(form.get("next")))
    set_cookie(done, visit.request, COOKIE, visit.sessions.issue(principal), LIFETIME_S)
    clear_cookie(done, visit.request, SIGNIN_COOKIE)
    return done


async def signout(visit: Visit) -> Response:
    await visit.sessions.end(visit.request.cookies.get(COOKIE, ""))
    done = visit.redirect("/console/signin" if not visit.sessions.local else nav.HOME)
    clear_cookie(done, visit.request, COOKIE)
    return done


ROUTES = [
    view("GET", "/console/signin", signin_page, signed_in=False),
    view("POST", "/console/signin", signin, signed_in=False),
    view("POST", "/console/signout", signout),
]
