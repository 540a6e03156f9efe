"""The error tree for the console: a page for what a browser navigates to (dialect "console-page"), `{"message"}`
for what the pages' scripts fetch (dialect "console", under which the playground's calls are metered). Both carry
the console's security headers."""

from __future__ import annotations

from starlette.responses import HTMLResponse, Response

from outcrop import errors
from outcrop.console.render import render_error, secure

TABLE: dict[type[errors.OutcropError], int] = {
    errors.InvalidRequest: 400,
    errors.RequestTooLarge: 413,
    errors.HeadersTooLarge: 431,
    errors.RequestTimeout: 408,
    errors.Conflict: 409,
    errors.AuthenticationFailed: 401,
    errors.AccessDenied: 403,
    errors.NotFound: 404,
    errors.UnknownOperation: 404,
    errors.Overloaded: 429,
    errors.ServiceUnavailable: 503,
    errors.QuotaExceeded: 429,
    errors.ModelFailure: 502,
    errors.InternalFailure: 500,
}

TITLES = {400: "Bad request", 401: "Sign in first", 403: "Not allowed", 404: "Not found", 408: "Too slow",
          409: "Conflict", 413: "Too large", 429: "Busy", 431: "Too large", 500: "Server error",
          502: "The model failed", 503: "Unavailable"}  # fmt: skip


def status_of(exc: errors.OutcropError) -> int:
    return errors.lookup(exc, TABLE)


def encode_page(exc: errors.OutcropError) -> Response:
    status = status_of(exc)
    html = render_error(TITLES.get(status, "Error"), exc.message, status)
    return secure(HTMLResponse(html, status_code=status))


def encode_json(exc: errors.OutcropError) -> Response:
    import orjson

    status = status_of(exc)
    body = {"message": exc.message, "type": type(exc).__name__}
    return secure(Response(orjson.dumps(body), status, media_type="application/json"))
