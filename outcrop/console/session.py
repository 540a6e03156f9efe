"""Who is signed in to the console: a signed token in an HttpOnly, SameSite=Strict cookie.

The cookie holds the id of the key the user signed in with, a session id and an expiry, signed with HMAC-SHA256
under a key derived from the server's secret key file ($OUTCROP_HOME/secret.key, the one that encrypts AWS
secrets), so every process of the server reads the same cookies. Each request reads the key again
(Keyring.by_credential, cached until keys change): revoking it, or disabling its principal, ends its sessions at
once, everywhere. Signing out forgets the cookie in the browser and refuses its session id in every process until
it expires (LIFETIME_S), restarts included (signouts.py keeps it in the store).

In local mode (no keys, loopback only) nobody signs in: every visitor is the local administrator, as every API
caller is, and a per-process random key signs the CSRF token.

CSRF: each session has a synchronizer token, HMAC(key, session id), which pages put in their forms and the
scripts send as X-CSRF-Token (csrf.py checks it). The sign-in form, before any session, is tied the same way to
a random nonce in a short-lived cookie of its own.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from outcrop import errors
from outcrop.auth.keys import API_KEY_PREFIX, Keyring, load_fernet
from outcrop.auth.principal import LOCAL, Principal
from outcrop.console.signouts import SignOuts

COOKIE = "outcrop_session"
SIGNIN_COOKIE = "outcrop_signin"
LIFETIME_S = 12 * 3600
SIGNIN_LIFETIME_S = 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    principal: Principal
    sid: str  # "local" in local mode
    csrf: str  # the synchronizer token this session's forms and scripts send back
    local: bool = False


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    """HttpOnly, SameSite=Strict, Path=/, and Secure when the console is served over https."""
    response.set_cookie(name, value, max_age=max_age, path="/", secure=request.url.scheme == "https",
                        httponly=True, samesite="strict")  # fmt: skip


def clear_cookie(response: Response, request: Request, name: str) -> None:
    set_cookie(response, request, name, "", 0)


class Sessions:
    def __init__(self, mode: str, keyring: Keyring | None, key: bytes) -> None:
        self.mode = mode
        self.keyring = keyring
        self._key = key
        self._signouts = SignOuts(keyring.engine) if keyring is not None else None

    @classmethod
    def of(cls, ctx: Any) -> Sessions:
        """The app's sessions (made on first use and kept on its Context)."""
        if ctx.console is None:
            keyring = ctx.authenticator.keyring
            if ctx.authenticator.mode == "local" or keyring is None:
                ctx.console = cls("local", None, secrets.token_bytes(32))
            else:
                load_fernet(keyring.key_file)  # creates it if need be, and refuses one others can read
                secret = keyring.key_file.read_bytes().strip()
                ctx.console = cls("keys", keyring, hmac.digest(secret, b"outcrop console sessions v1", "sha256"))
        return ctx.console  # type: ignore[no-any-return]

    @property
    def local(self) -> bool:
        return self.mode == "local"

    def _mac(self, purpose: str, data: str) -> str:
        return _b64(hmac.digest(self._key, f"{purpose}|{data}".encode(), hashlib.sha256))

    def csrf_for(self, sid: str) -> str:
        return self._mac("csrf", sid)

    # --- the session cookie -------------------------------------------------------------------------

    def issue(self, principal: Principal) -> str:
        """A new session's cookie value for a principal signed in with a key."""
        if principal.credential_id is None:
            raise errors.InvalidRequest("Only a key's principal can sign in.")
        payload = _b64(orjson.dumps({"c": principal.credential_id, "s": secrets.token_urlsafe(16),
                                     "e": int(time.time()) + LIFETIME_S}))  # fmt: skip
        return f"{payload}.{self._mac('session', payload)}"

    def _claims(self, value: str) -> dict[str, Any] | None:
        payload, _, mac = value.partition(".")
        if not payload or not hmac.compare_digest(mac, self._mac("session", payload)):
            return None
        try:
            claims = orjson.loads(_unb64(payload))
        except ValueError:
            return None
        if not isinstance(claims, dict) or not isinstance(claims.get("e"), int) or claims["e"] <= time.time():
            return None
        if not isinstance(claims.get("c"), str) or not isinstance(claims.get("s"), str):
            return None
        return claims

    async def current(self, request: Request) -> Session | None:
        """The signed-in session of this request, or None."""
        if self.local:
            return Session(LOCAL, "local", self.csrf_for("local"), local=True)
        claims = self._claims(request.cookies.get(COOKIE, ""))
        if claims is None or self.keyring is None:
            return None
        principal = await asyncio.to_thread(self._principal, claims)
        if principal is None:
            return None
        self.keyring.touch_later(claims["c"])
        return Session(principal, claims["s"], self.csrf_for(claims["s"]))

    def _principal(self, claims: dict[str, Any]) -> Principal | None:
        """The signed-in key's principal, unless the session was signed out or the key no longer works."""
        if self.keyring is None or (self._signouts is not None and self._signouts.ended(claims["s"])):
            return None
        return self.keyring.by_credential(claims["c"])

    async def end(self, value: str) -> None:
        """Sign a session out: every process refuses its id from now on (and the browser forgets the cookie)."""
        claims = self._claims(value)
        if claims is None or self._signouts is None:
            return
        await asyncio.to_thread(self._signouts.end, claims["s"], claims["e"])

    # --- signing in ---------------------------------------------------------------------------------

    def signin_token(self, nonce: str) -> str:
        return self._mac("signin", nonce)

    async def check_key(self, key: str, secret: str) -> Principal:
        """The principal of an API key, or of an AWS access key id with its secret: AuthenticationFailed otherwise."""
        refused = errors.AuthenticationFailed("That key is not valid (unknown or revoked), or its secret is wrong.")
        keyring = self.keyring
        if keyring is None:
            raise errors.InvalidRequest("This server runs without keys (local mode): nobody needs to sign in.")
        key, secret = key.strip(), secret.strip()
        if key.startswith(API_KEY_PREFIX):
            principal = await asyncio.to_thread(keyring.by_api_key, key)
            if principal is None:
                raise refused
            return principal
        if not key or not secret:
            raise errors.AuthenticationFailed("Give an API key, or an AWS access key ID with its secret access key.")
        found = await asyncio.to_thread(keyring.aws_secret, key)
        if found is None or not hmac.compare_digest(found[1].encode(), secret.encode()):
            raise refused
        return found[0]
