"""The error tree in bedrock-agent-runtime's shape: status, `x-amzn-ErrorType`, `{"message"}`; in a stream, an
exception frame named by RetrieveAndGenerateStream's camelCase union member.

Statuses and names are botocore's bedrock-agent-runtime model: ConflictException is a 409 here; a model that
fails while answering is the knowledge base's dependency failing (DependencyFailedException, 424, with
`resourceName`); throttling and quotas are ThrottlingException. Errors the model does not list keep the names AWS
front ends use (UnrecognizedClientException, UnknownOperationException, ServiceUnavailableException).
"""

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
    errors.Conflict: (409, "ConflictException", "conflictException"),
    errors.InUse: (409, "ConflictException", "conflictException"),
    errors.AuthenticationFailed: (403, "UnrecognizedClientException", "accessDeniedException"),
    errors.AccessDenied: (403, "AccessDeniedException", "accessDeniedException"),
    errors.NotFound: (404, "ResourceNotFoundException", "resourceNotFoundException"),
    errors.UnknownOperation: (404, "UnknownOperationException", "resourceNotFoundException"),
    errors.Overloaded: (429, "ThrottlingException", "throttlingException"),
    errors.ServiceUnavailable: (503, "ServiceUnavailableException", "internalServerException"),
    errors.QuotaExceeded: (429, "ThrottlingException", "throttlingException"),
    errors.ModelFailure: (424, "DependencyFailedException", "dependencyFailedException"),
    errors.InternalFailure: (500, "InternalServerException", "internalServerException"),
}


def _lookup(exc: errors.OutcropError) -> tuple[int, str, str]:
    return errors.lookup(exc, TABLE)


def _body(exc: errors.OutcropError, member: str) -> dict[str, object]:
    body: dict[str, object] = {"message": exc.message}
    if member == "dependencyFailedException":
        body["resourceName"] = "model"
    return body


def encode_error(exc: errors.OutcropError) -> Response:
    status, code, member = _lookup(exc)
    if isinstance(exc, errors.AuthenticationFailed):
        code = exc.aws_code  # AWS names the failure: unknown key, bad signature, missing token
    headers = {"x-amzn-ErrorType": code, "x-amzn-RequestId": str(uuid.uuid4())}
    if isinstance(exc, errors.Overloaded | errors.QuotaExceeded):
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
    return Response(json.dumps(_body(exc, member)), status_code=status, headers=headers,
                    media_type="application/json")  # fmt: skip


def encode_stream_error(exc: errors.OutcropError) -> bytes:
    _, _, member = _lookup(exc)
    return eventstream.exception(member, _body(exc, member))
