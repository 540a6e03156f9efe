"""bedrock-agent's errors: Bedrock's envelope and table (api/bedrock/errors.py), except where botocore's
bedrock-agent model gives another status: its ConflictException is a 409 (the bedrock model's is a 400)."""

from __future__ import annotations

from starlette.responses import Response

from outcrop import errors
from outcrop.api.bedrock.errors import encode_error as encode_bedrock_error


def encode_error(exc: errors.OutcropError) -> Response:
    response = encode_bedrock_error(exc)
    if response.headers.get("x-amzn-ErrorType") == "ConflictException":
        response.status_code = 409
    return response
