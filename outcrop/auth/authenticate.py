"""Turn a request's credentials, in whichever dialect it speaks, into a Principal.

- `Authorization: AWS4-HMAC-SHA256 …`: SigV4 with an Outcrop AWS access key (boto3, AWS CLI, AnthropicBedrock)
- `Authorization: Bearer …`: an Outcrop API key (Bedrock API keys via AWS_BEARER_TOKEN_BEDROCK, OpenAI SDK)
- `x-api-key: …`: an Outcrop API key (Anthropic SDK)

Modes: `local` accepts any credentials (or none) as one local principal; it is only allowed on a
loopback address. `keys` requires a valid key. `auto` is `local` on loopback and `keys` elsewhere.
"""

from __future__ import annotations

import asyncio
import ipaddress

from starlette.requests import Request

from outcrop.auth import sigv4
from outcrop.auth.keys import Keyring
from outcrop.auth.principal import LOCAL, Principal
from outcrop.errors import AuthenticationFailed, InvalidRequest

MODES = ("auto", "keys", "local")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def effective_mode(mode: str, host: str) -> str:
    """The mode a server bound to `host` runs in; refuses local mode off loopback."""
    if mode not in MODES:
        raise InvalidRequest(f"auth must be one of {MODES}, not {mode!r}")
    if mode == "auto":
        return "local" if is_loopback(host) else "keys"
    if mode == "local" and not is_loopback(host):
        raise InvalidRequest(
            f"refusing to serve on {host} without authentication: anyone who can reach it could use your models. "
            "Create keys with `outcrop keys create NAME` (and `--aws` for boto3 / the AWS CLI), then set "
            '`auth = "keys"` (or "auto") under [server], or bind to 127.0.0.1.'
        )
    return mode


class Authenticator:
    def __init__(self, mode: str, keyring: Keyring | None) -> None:
        self.mode = mode
        self.keyring = keyring

    async def authenticate(self, request: Request) -> Principal:
        if self.mode == "local":
            return LOCAL
        principal = await self._authenticate(request)
        if principal.credential_id and self.keyring is not None:
            self.keyring.touch_later(principal.credential_id)
        return principal

    async def _authenticate(self, request: Request) -> Principal:
        assert self.keyring is not None
        keyring = self.keyring
        authorization = request.headers.get("authorization", "")
        if sigv4.is_sigv4(authorization):
            body = await request.body()
            raw = request.scope.get("raw_path") or request.scope["path"].encode()
            query = request.scope.get("query_string", b"")
            path_qs = raw.decode("latin-1") + (("?" + query.decode("latin-1")) if query else "")
            found: dict[str, Principal] = {}

            def secret_for(akid: str) -> str | None:
                hit = keyring.aws_secret(akid)
                if hit is None:
                    return None
                found["principal"] = hit[0]
                return hit[1]

            await asyncio.to_thread(
                sigv4.verify,
                request.method,
                request.headers.get("host", ""),
                path_qs,
                {k.lower(): v for k, v in request.headers.items()},
                body,
                secret_for,
            )
            return found["principal"]
        token = ""
        if authorization.lower().startswith("bearer "):
            token = authorization[7:].strip()
        elif request.headers.get("x-api-key"):
            token = request.headers["x-api-key"].strip()
        if not token:
            raise AuthenticationFailed(
                "Missing credentials: sign the request with an Outcrop AWS access key (SigV4), or send an Outcrop "
                "API key as `Authorization: Bearer KEY` or `x-api-key: KEY`.",
                "MissingAuthenticationTokenException",
            )
        hit, principal = keyring.cached_api_key(token)
        if not hit:
            principal = await asyncio.to_thread(keyring.by_api_key, token)
        if principal is None:
            raise AuthenticationFailed("The API key is not valid (unknown or revoked).", "UnrecognizedClientException")
        return principal
