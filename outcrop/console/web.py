"""What every console view is built with: `view()` makes a route of the app's table from a view function, and
the view gets a `Visit` (the app's Context, the request, the signed-in session) to render templates with.

    async def index(visit: Visit) -> Response:
        rows = await asyncio.to_thread(visit.ctx.guardrails.list)       # the services the APIs use
        return visit.render("guardrails.html", title="Guardrails", rows=rows)

    ROUTES = [view("GET", "/console/guardrails", index)]

view() checks, before the view runs: a session (a page asked for without one redirects to the sign-in page, any
other request is refused with 401); for POST, PUT, PATCH and DELETE, the origin and the session's CSRF token
(csrf.py); and administrators' paths (nav.py, or admin=True) for administrators only. `json=True` marks what the
pages' scripts fetch: errors come back as {"message"} instead of a page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from outcrop import errors
from outcrop.api.http import Context, Route, read_json, route
from outcrop.auth.principal import Principal
from outcrop.console import csrf, nav
from outcrop.console.render import render, secure
from outcrop.console.session import Session, Sessions

SIGNIN = "/console/signin"


@dataclass
class Visit:
    ctx: Context
    request: Request
    session: Session | None  # None only in views made with signed_in=False

    @property
    def principal(self) -> Principal:
        if self.session is None:
            raise errors.AuthenticationFailed("Sign in to the console first.")
        return self.session.principal

    @property
    def sessions(self) -> Sessions:
        return Sessions.of(self.ctx)

    @property
    def base_url(self) -> str:
        """This server as the browser reaches it (for code snippets that call the APIs)."""
        return f"{self.request.url.scheme}://{self.request.headers.get('host', 'localhost')}"

    def render(self, template: str, *, status: int = 200, **values: Any) -> HTMLResponse:
        """A page: `values` plus what the layout needs (the principal, the CSRF token, the menu)."""
        session = self.session
        path = self.request.url.path
        values.setdefault("title", "Outcrop")
        html = render(template, **values, principal=session.principal if session else None,
                      csrf=session.csrf if session else "", local=bool(session and session.local),
                      nav=nav.visible(session.principal) if session else [], current=nav.current(path))  # fmt: skip
        return HTMLResponse(html, status_code=status)

    async def form(self) -> dict[str, str]:
        return await csrf.read_form(self.request)

    async def json(self) -> dict[str, Any]:
        body = await read_json(self.request, {})
        if not isinstance(body, dict):
            raise errors.InvalidRequest("The request body must be a JSON object.")
        return body

    def redirect(self, path: str, **query: str) -> Response:
        """303 See Other: after a form's POST, the browser GETs the page (reloading it posts nothing twice)."""
        if not path.startswith("/") or path.startswith("//"):
            path = nav.HOME
        return RedirectResponse(path + (f"?{urlencode(query)}" if query else ""), status_code=303)


View = Callable[..., Awaitable[Response]]


def view(method: str, template: str, handler: View, *, json: bool = False, signed_in: bool = True,
         admin: bool = False) -> Route:  # fmt: skip
    """A console route. `signed_in=False`: open to anyone (the sign-in page, static files); such a view checks
    tokens of its own on POST (the origin is checked here all the same)."""

    @wraps(handler)
    async def run(ctx: Context, request: Request, **params: str) -> Response:
        session = await Sessions.of(ctx).current(request)
        path = request.url.path
        unsafe = request.method not in csrf.SAFE_METHODS
        if session is None and signed_in:
            if not json and not unsafe:
                target = path + (f"?{request.url.query}" if request.url.query else "")
                return secure(RedirectResponse(f"{SIGNIN}?{urlencode({'next': target})}", status_code=303))
            raise errors.AuthenticationFailed("Sign in to the console first (your session may have ended).")
        if unsafe:
            if session is not None and signed_in:
                await csrf.check(request, session.csrf)
            else:
                csrf.check_origin(request)
        if session is not None and (admin or nav.admin_only(path)) and not session.principal.is_admin:
            raise errors.AccessDenied("Only an administrator may open this page.")
        return secure(await handler(Visit(ctx, request, session), **params))

    return route(method, template, run, "console" if json else "console-page", public=True)
