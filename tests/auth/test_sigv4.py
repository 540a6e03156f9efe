"""SigV4 verification against requests signed by botocore itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from outcrop.auth import sigv4
from outcrop.errors import AuthenticationFailed

AKID, SECRET = "OCAKTESTTESTTESTTEST", "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3"
PATH = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"


def signed(body: bytes = b'{"messages": []}', path: str = PATH, token: str | None = None,
           service: str = "bedrock") -> tuple[dict[str, str], bytes, str]:  # fmt: skip
    request = AWSRequest(method="POST", url=f"http://127.0.0.1:8300{path}", data=body,
                         headers={"Content-Type": "application/json"})  # fmt: skip
    SigV4Auth(Credentials(AKID, SECRET, token), service, "us-east-1").add_auth(request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    headers.setdefault("host", "127.0.0.1:8300")
    return headers, body, path


def check(headers: dict[str, str], body: bytes, path: str, secrets: dict[str, str] | None = None,
          now: datetime | None = None) -> str:  # fmt: skip
    lookup = secrets if secrets is not None else {AKID: SECRET}
    return sigv4.verify("POST", headers["host"], path, headers, body, lookup.get, now=now)


def test_valid_signature() -> None:
    assert check(*signed()) == AKID


def _with_payload_header(body: bytes, claimed: str) -> tuple[dict[str, str], bytes, str]:
    request = AWSRequest(method="POST", url=f"http://127.0.0.1:8300{PATH}", data=body,
                         headers={"Content-Type": "application/json", "X-Amz-Content-SHA256": claimed})  # fmt: skip
    SigV4Auth(Credentials(AKID, SECRET), "bedrock", "us-east-1").add_auth(request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    headers.setdefault("host", "127.0.0.1:8300")
    return headers, body, PATH


def test_a_signed_payload_hash_must_be_the_bodys() -> None:
    """botocore's signer trusts a signed x-amz-content-sha256 instead of hashing the body: a body swapped in
    transit kept the signature valid until the header was checked against the body."""
    import hashlib

    body = b'{"messages": []}'
    headers, _, path = _with_payload_header(body, hashlib.sha256(body).hexdigest())
    assert check(headers, body, path) == AKID
    with pytest.raises(AuthenticationFailed, match="not the SHA-256 of the request body") as err:
        check(headers, b'{"messages": [{"role": "user", "content": [{"text": "injected"}]}]}', path)
    assert err.value.aws_code == "InvalidSignatureException"
    for unsigned in ("UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"):
        with pytest.raises(AuthenticationFailed, match="Unsigned payloads"):
            check(*_with_payload_header(body, unsigned))


def test_session_token_is_signed() -> None:
    headers, body, path = signed(token="sessiontoken")
    assert check(headers, body, path) == AKID
    headers["x-amz-security-token"] = "other"
    with pytest.raises(AuthenticationFailed) as err:
        check(headers, body, path)
    assert err.value.aws_code == "InvalidSignatureException"


def test_arn_path_with_encoded_slash() -> None:
    arn = "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123%3Ainference-profile%2Fus.anthropic.claude-v2%3A0/converse"
    assert check(*signed(path=arn)) == AKID


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda h, b, p: (h, b + b" ", p), "InvalidSignatureException"),  # tampered body
        (lambda h, b, p: (h, b, p.replace("converse", "invoke")), "InvalidSignatureException"),  # another path
        (lambda h, b, p: ({**h, "host": "evil:1"}, b, p), "InvalidSignatureException"),
    ],
    ids=["body", "path", "host"],
)
def test_tampering_is_detected(mutate, code: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AuthenticationFailed) as err:
        check(*mutate(*signed()))
    assert err.value.aws_code == code


def test_wrong_secret_and_unknown_key() -> None:
    with pytest.raises(AuthenticationFailed) as err:
        check(*signed(), secrets={AKID: "another-secret"})
    assert err.value.aws_code == "InvalidSignatureException"
    with pytest.raises(AuthenticationFailed) as err:
        check(*signed(), secrets={})
    assert err.value.aws_code == "UnrecognizedClientException"


def test_clock_skew() -> None:
    # A request signed now, checked by a server whose clock is 16 minutes ahead (or behind): refused.
    for minutes in (16, -16):
        with pytest.raises(AuthenticationFailed, match="Signature expired") as err:
            check(*signed(), now=datetime.now(UTC) + timedelta(minutes=minutes))
        assert err.value.aws_code == "InvalidSignatureException"
    assert check(*signed(), now=datetime.now(UTC) + timedelta(minutes=14)) == AKID


def test_wrong_service_and_garbage() -> None:
    with pytest.raises(AuthenticationFailed, match="bedrock"):
        check(*signed(service="s3"))
    with pytest.raises(AuthenticationFailed):
        sigv4.verify("POST", "h", "/", {"authorization": "AWS4-HMAC-SHA256 nonsense"}, b"", {}.get)
