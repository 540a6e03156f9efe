"""The error tree in Bedrock's shape: status, `x-amzn-ErrorType`, `{"message"}`; in a stream, an
exception frame named by the stream union's camelCase member."""

from __future__ import annotations

import json
import uuid

from starlette.responses import Response

from outcrop import errors
from outcrop.api.bedrock import eventstream

# error class -> (HTTP status, x-amzn-ErrorType, in-stream exception member)
TABLE: dict[type[errors.OutcropError], tuple[int, str, str]] = {
    errors.InvalidRequest: (400, "ValidationException", "validationException"),
    errors.ContextWindowExceeded: (400, "ValidationException", "validationException"),
    errors.RequestTooLarge: (413, "ValidationException", "validationException"),
    errors.HeadersTooLarge: (431, "ValidationException", "validationException"),
    errors.RequestTimeout: (408, "RequestTimeoutException", "validationException"),
    errors.Conflict: (400, "ConflictException", "validationException"),  # 400, as botocore's model says
    errors.InUse: (400, "ResourceInUseException", "validationException"),
    errors.AuthenticationFailed: (403, "UnrecognizedClientException", "internalServerException"),
    errors.AccessDenied: (403, "AccessDeniedException", "internalServerException"),
    errors.NotFound: (404, "ResourceNotFoundException", "validationException"),
    errors.UnknownOperation: (404, "UnknownOperationException", "internalServerException"),
    errors.Overloaded: (429, "ThrottlingException", "throttlingException"),
    errors.ServiceUnavailable: (503, "ServiceUnavailableException", "serviceUnavailableException"),
    errors.QuotaExceeded: (429, "ThrottlingException", "throttlingException"),
    errors.ModelFailure: (424, "ModelErrorException", "modelStreamErrorException"),
    errors.InternalFailure: (500, "InternalServerException", "internalServerException"),
}


def _lookup(exc: errors.OutcropError) -> tuple[int, str, str]:
    return errors.lookup(exc, TABLE)


def encode_error(exc: errors.OutcropError) -> Response:
    status, code, _ = _lookup(exc)
    if isinstance(exc, errors.AuthenticationFailed):
        code = exc.aws_code  # AWS names the failure: unknown key, bad signature, missing token
    body: dict[str, object] = {"message": exc.message}
    if isinstance(exc, errors.ModelFailure):
        body.update(originalStatusCode=500, resourceName="")
    headers = {"x-amzn-ErrorType": code, "x-amzn-RequestId": str(uuid.uuid4())}
    if isinstance(exc, errors.Overloaded | errors.QuotaExceeded):
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
    return Response(json.dumps(body), status_code=status, headers=headers, media_type="application/json")


def encode_stream_error(exc: errors.OutcropError) -> bytes:
    _, _, member = _lookup(exc)
    body: dict[str, object] = {"message": exc.message}
    if member == "modelStreamErrorException":
        body.update(originalStatusCode=500, originalMessage=exc.message)
    return eventstream.exception(member, body)
