"""The error tree in OpenAI's envelope: {"error": {"message", "type", "param", "code"}}."""

from __future__ import annotations

import json

from starlette.responses import Response

from outcrop import errors

# error class -> (HTTP status, error.type, error.code)
TABLE: dict[type[errors.OutcropError], tuple[int, str, str | None]] = {
    errors.InvalidRequest: (400, "invalid_request_error", None),
    errors.ContextWindowExceeded: (400, "invalid_request_error", "context_length_exceeded"),
    errors.RequestTooLarge: (413, "invalid_request_error", "request_too_large"),
    errors.HeadersTooLarge: (431, "invalid_request_error", "headers_too_large"),
    errors.RequestTimeout: (408, "invalid_request_error", "request_timeout"),
    errors.AuthenticationFailed: (401, "invalid_request_error", "invalid_api_key"),
    errors.AccessDenied: (403, "permission_error", "model_access_denied"),
    errors.NotFound: (404, "invalid_request_error", "model_not_found"),
    errors.ObjectNotFound: (404, "invalid_request_error", None),
    errors.UnknownOperation: (404, "invalid_request_error", "unknown_url"),
    errors.Overloaded: (429, "rate_limit_error", "rate_limit_exceeded"),
    errors.ServiceUnavailable: (503, "server_error", "service_unavailable"),
    errors.QuotaExceeded: (429, "rate_limit_error", "rate_limit_exceeded"),
    errors.ModelFailure: (500, "server_error", "model_error"),
    errors.InternalFailure: (500, "server_error", None),
}


def _lookup(exc: errors.OutcropError) -> tuple[int, str, str | None]:
    return errors.lookup(exc, TABLE)


def error_body(exc: errors.OutcropError) -> dict[str, object]:
    _, kind, code = _lookup(exc)
    return {"error": {"message": exc.message, "type": kind, "param": getattr(exc, "param", None), "code": code}}


def encode_error(exc: errors.OutcropError) -> Response:
    status = _lookup(exc)[0]
    headers = {}
    if isinstance(exc, errors.Overloaded | errors.QuotaExceeded):
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
    return Response(json.dumps(error_body(exc)), status, headers, media_type="application/json")
