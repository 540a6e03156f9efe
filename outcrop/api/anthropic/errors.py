"""The error tree in Anthropic's envelope: {"type": "error", "error": {"type", "message"}}.

An overloaded model is Anthropic's 529 `overloaded_error`, which its SDK retries."""

from __future__ import annotations

import json

from starlette.responses import Response

from outcrop import errors

TABLE: dict[type[errors.OutcropError], tuple[int, str]] = {
    errors.InvalidRequest: (400, "invalid_request_error"),
    errors.ContextWindowExceeded: (400, "invalid_request_error"),
    errors.RequestTooLarge: (413, "request_too_large"),
    errors.HeadersTooLarge: (431, "invalid_request_error"),
    errors.RequestTimeout: (408, "timeout_error"),
    errors.AuthenticationFailed: (401, "authentication_error"),
    errors.AccessDenied: (403, "permission_error"),
    errors.NotFound: (404, "not_found_error"),
    errors.UnknownOperation: (404, "not_found_error"),
    errors.Overloaded: (529, "overloaded_error"),
    errors.ServiceUnavailable: (503, "api_error"),
    errors.QuotaExceeded: (429, "rate_limit_error"),
    errors.ModelFailure: (500, "api_error"),
    errors.InternalFailure: (500, "api_error"),
}


def _lookup(exc: errors.OutcropError) -> tuple[int, str]:
    return errors.lookup(exc, TABLE)


def error_body(exc: errors.OutcropError) -> dict[str, object]:
    return {"type": "error", "error": {"type": _lookup(exc)[1], "message": exc.message}}


def encode_error(exc: errors.OutcropError) -> Response:
    headers = {"request-id": "req_outcrop"}
    if isinstance(exc, errors.Overloaded | errors.QuotaExceeded):
        headers["retry-after"] = str(max(1, round(exc.retry_after_s)))
    return Response(json.dumps(error_body(exc)), _lookup(exc)[0], headers, media_type="application/json")
