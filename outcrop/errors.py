"""The one error tree. Every dialect maps these to its own envelope in one table.

    OutcropError
    ├── InvalidRequest          the caller sent something wrong (bad JSON, unknown field, bad type)
    │   ├── ContextWindowExceeded   the prompt does not fit the model's context
    │   ├── RequestTooLarge         the body is larger than the server takes (413)
    │   ├── HeadersTooLarge         the request's headers are larger than the server takes (431)
    │   └── RequestTimeout          the client sent its request too slowly (408)
    ├── AuthenticationFailed    no credentials, unknown or revoked key, bad signature, expired date
    ├── AccessDenied            an authenticated caller that may not do this
    ├── NotFound                a model (or other resource) that does not exist
    │   └── ObjectNotFound      an OpenAI file or batch (no model_not_found code)
    ├── UnknownOperation        no such route / operation
    ├── Overloaded              the model's queue is full: retry later
    │   └── ServiceUnavailable      the store (database) cannot be reached or is busy: retry later (503)
    ├── QuotaExceeded           the caller used up its requests, tokens or streams for now
    ├── ModelFailure            the engine failed while generating
    └── InternalFailure         anything else; never shows a traceback to the caller

Messages are written for the caller: say what is wrong and, where it helps, what would be right.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from typing import TypeVar

T = TypeVar("T")


class OutcropError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(OutcropError):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class ContextWindowExceeded(InvalidRequest):
    pass


class RequestTooLarge(InvalidRequest):
    pass


class HeadersTooLarge(InvalidRequest):
    pass


class RequestTimeout(InvalidRequest):
    pass


class Conflict(InvalidRequest):
    """The request is valid but clashes with what exists (Bedrock's ConflictException; elsewhere a 400)."""


class InUse(InvalidRequest):
    """The resource cannot be deleted or changed while something uses it (Bedrock's ResourceInUseException)."""


class AuthenticationFailed(OutcropError):
    """`aws_code` is what AWS front-ends send for this failure: UnrecognizedClientException (unknown
    key), InvalidSignatureException (wrong signature, expired or future date), MissingAuthenticationToken."""

    def __init__(self, message: str, aws_code: str = "UnrecognizedClientException") -> None:
        super().__init__(message)
        self.aws_code = aws_code


class AccessDenied(OutcropError):
    pass


class NotFound(OutcropError):
    pass


class ObjectNotFound(NotFound):
    """A resource that is not a model (an OpenAI file or batch): OpenAI gives it no `code`."""


class UnknownOperation(OutcropError):
    pass


class Overloaded(OutcropError):
    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ServiceUnavailable(Overloaded):
    """The server cannot answer for now: its database is unreachable (PostgreSQL restarting, say) or stayed
    locked past the busy timeout. Bedrock's ServiceUnavailableException; a 503 elsewhere."""


class QuotaExceeded(OutcropError):
    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ModelFailure(OutcropError):
    pass


class InternalFailure(OutcropError):
    pass


def check_keys(raw: Mapping[str, object], known: Iterable[str], where: str) -> None:
    """InvalidRequest naming the keys of the config table `raw` that are not `known` (`where`: which table)."""
    names = set(known)
    unknown = sorted(set(raw) - names)
    if unknown:
        raise InvalidRequest(f"{where}: unknown key(s) {unknown}; known keys are {sorted(names)}")


def model_failure(what: str, exc: BaseException, log: logging.Logger) -> ModelFailure:
    """An unexpected failure as the caller sees it: what failed and a reference to the server's log, never the
    exception's own text (it can carry paths, addresses and other internals)."""
    ref = uuid.uuid4().hex[:12]
    log.error("%s (failure %s)", what, ref, exc_info=exc)
    return ModelFailure(f"{what} (failure {ref}; the server's log has the details).")


def lookup(exc: OutcropError, table: Mapping[type[OutcropError], T]) -> T:
    """A dialect's entry for `exc`: its own class's, else its nearest ancestor's, else InternalFailure's."""
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]  # type: ignore[index]
    return table[InternalFailure]
