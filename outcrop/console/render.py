"""Templates (Jinja2, autoescaped, strict about undefined names) and the headers every console response carries."""

from __future__ import annotations

import functools
import hashlib
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.responses import Response

# No inline script or style anywhere: pages load /console/static/* only, and pass data in data-* attributes or
# <script type="application/json"> blocks, which are never run.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")  # fmt: skip
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def secure(response: Response, cache: str = "no-store") -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Cache-Control", cache)
    return response


@functools.cache
def static_file(name: str) -> bytes | None:
    """A file under static/, or None (names are plain file names: no folders, so nothing outside it)."""
    if "/" in name or "\\" in name or name.startswith("."):
        return None
    entry = resources.files("outcrop.console").joinpath("static", name)
    return entry.read_bytes() if entry.is_file() else None


@functools.cache
def static_url(name: str) -> str:
    """`/console/static/NAME?v=HASH`: cached for a year by browsers, since a new version has a new URL."""
    data = static_file(name)
    if data is None:
        raise LookupError(f"no static file {name!r}")
    return f"/console/static/{name}?v={hashlib.sha256(data).hexdigest()[:12]}"


@functools.cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("outcrop.console", "templates"),
        autoescape=select_autoescape(["html"], default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static"] = static_url
    return env


def render(template: str, **values: Any) -> str:
    return environment().get_template(template).render(**values)


def render_error(title: str, message: str, status: int) -> str:
    """An error page: the layout without the menu (the error may be that nobody is signed in)."""
    return render(
        "error.html",
        title=title,
        message=message,
        status=status,
        principal=None,
        csrf="",
        local=False,
        nav=[],
        current=None,
    )
