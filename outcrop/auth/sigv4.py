"""AWS Signature Version 4, verified by recomputing it with botocore's own signer.

Pitfalls handled (see shared/reference/bedrock-api.md §6): the canonical URI is the raw path as
received (model ids arrive as `%3A`), only the headers named in SignedHeaders are used, the payload
hash is computed from the raw body, the scope service is `bedrock` for every Bedrock service, the
date must be within 15 minutes of ours, and a session token, when sent, is part of the signature.

botocore's signer takes a signed `x-amz-content-sha256` header as the payload's hash instead of hashing
the payload, so a body changed in transit would pass with the original header: the header, when sent,
must be the SHA-256 of the body we received, and unsigned payloads (`UNSIGNED-PAYLOAD`, `STREAMING-…`)
are refused on these APIs (boto3 signs Bedrock payloads).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from outcrop.errors import AuthenticationFailed

_AUTH = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<akid>[^/]+)/(?P<day>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,"
    r"\s*SignedHeaders=(?P<signed>[^,]+),\s*Signature=(?P<sig>[0-9a-f]{64})"
)
MAX_SKEW = timedelta(minutes=15)
SERVICES = {"bedrock"}


def is_sigv4(authorization: str) -> bool:
    return authorization.startswith("AWS4-HMAC-SHA256")


def verify(
    method: str,
    host: str,
    raw_path_qs: str,
    headers: Mapping[str, str],
    body: bytes,
    secret_for: Callable[[str], str | None],
    now: datetime | None = None,
) -> str:
    """The access key id that signed this request, or AuthenticationFailed saying why not."""
    m = _AUTH.match(headers.get("authorization", ""))
    if not m:
        raise AuthenticationFailed(
            "The Authorization header is not a valid AWS SigV4 header.", "IncompleteSignatureException"
        )
    akid, day, region, service, signed, signature = m.group("akid", "day", "region", "service", "signed", "sig")
    amz_date = headers.get("x-amz-date", "")
    try:
        when = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise AuthenticationFailed("X-Amz-Date is missing or malformed.", "IncompleteSignatureException") from None
    now = now or datetime.now(UTC)
    if abs(now - when) > MAX_SKEW:
        raise AuthenticationFailed(
            f"Signature expired: {amz_date} is not within 15 minutes of the server time "
            f"{now.strftime('%Y%m%dT%H%M%SZ')}.",
            "InvalidSignatureException",
        )
    if day != amz_date[:8]:
        raise AuthenticationFailed("The credential scope date does not match X-Amz-Date.", "InvalidSignatureException")
    if service not in SERVICES:
        raise AuthenticationFailed(
            f"Credential should be scoped to correct service: 'bedrock', not '{service}'.", "InvalidSignatureException"
        )
    secret = secret_for(akid)
    if secret is None:
        raise AuthenticationFailed(
            "The security token included in the request is invalid.", "UnrecognizedClientException"
        )
    claimed = headers.get("x-amz-content-sha256")
    if claimed is not None:
        if claimed.upper().startswith(("UNSIGNED-PAYLOAD", "STREAMING-")):
            raise AuthenticationFailed(
                f"Unsigned payloads ({claimed}) are not accepted: sign the request body.", "InvalidSignatureException"
            )
        if not hmac.compare_digest(claimed.lower().encode(), hashlib.sha256(body).hexdigest().encode()):
            raise AuthenticationFailed(
                "The x-amz-content-sha256 header is not the SHA-256 of the request body.", "InvalidSignatureException"
            )
    names = signed.split(";")
    if "host" not in names:
        raise AuthenticationFailed("The host header must be signed.", "InvalidSignatureException")
    request = AWSRequest(
        method=method,
        url=f"http://{host}{raw_path_qs}",
        headers={name: headers.get(name, "") for name in names},
        data=body,
    )
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(akid, secret, headers.get("x-amz-security-token")), service, region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if not hmac.compare_digest(expected, signature):
        raise AuthenticationFailed(
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method.",
            "InvalidSignatureException",
        )
    return akid
