"""Cross-site request forgery: every state-changing console request must come from the console's own origin
(Origin / Sec-Fetch-Site, when the browser sends them, which browsers do for every POST) and carry its session's
synchronizer token, as the X-CSRF-Token header (scripts) or a `csrf_token` form field (forms). SameSite=Strict
already keeps the cookie off requests from other sites; the origin check also covers another origin of the same
site (another port of the same host), and the token covers clients that send neither header."""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request

from outcrop import errors

SAFE_METHODS = ("GET", "HEAD")
FORM = "application/x-www-form-urlencoded"


def check_origin(request: Request) -> None:
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise errors.AccessDenied(f"The console takes changes from its own pages only, not from a {site} page.")
    origin = request.headers.get("origin")
    # host and port: the scheme may differ behind a proxy that ends TLS
    if origin is not None and urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower():
        raise errors.AccessDenied(f"The console takes changes from its own pages only, not from {origin}.")


async def read_form(request: Request) -> dict[str, str]:
    """An url-encoded form body as {field: value} (the first of repeated fields); {} for any other body. Kept on
    the request, so the CSRF check and the view read it once."""
    cached = getattr(request.state, "console_form", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    form: dict[str, str] = {}
    if request.headers.get("content-type", "").split(";", 1)[0].strip().lower() == FORM:
        try:
            text = (await request.body()).decode()
        except UnicodeDecodeError:
            raise errors.InvalidRequest("The form is not UTF-8.") from None
        form = {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}
    request.state.console_form = form
    return form


async def check(request: Request, expected: str) -> None:
    """Refuse the request unless it comes from the console's origin with the token `expected`."""
    check_origin(request)
    token = request.headers.get("x-csrf-token")
    if token is None:
        token = (await read_form(request)).get("csrf_token")
    if not token or not hmac.compare_digest(token.encode(), expected.encode()):
        raise errors.AccessDenied("The page's CSRF token is missing or out of date: reload the page and try again.")
