"""Keys over HTTP, for administrators (the same operations as `outcrop keys`).

POST   /outcrop/v1/keys            {"principal", "kind": "api_key" | "aws", "label"?, "groups"?, "admin"?}
                                   -> the key (or the AWS secret) is in the answer, and nowhere else, ever
GET    /outcrop/v1/keys            -> every key, without secrets
DELETE /outcrop/v1/keys/{keyId}    -> revoked at once
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from outcrop import errors
from outcrop.api.http import Context, caller, json_body, read_json, route
from outcrop.auth.keys import Keyring


def _keyring(ctx: Context, request: Request) -> Keyring:
    if not caller(request).is_admin:
        raise errors.AccessDenied("Only an administrator may manage keys.")
    if ctx.authenticator.keyring is None:
        raise errors.InvalidRequest('This server runs without keys (local mode); set auth = "keys" to manage them.')
    return ctx.authenticator.keyring


async def create_key(ctx: Context, request: Request) -> Response:
    keyring = _keyring(ctx, request)
    body = await read_json(request, {})
    if not isinstance(body, dict):
        raise errors.InvalidRequest("The request body must be a JSON object.")
    principal, kind = body.get("principal"), body.get("kind", "api_key")
    if not isinstance(principal, str) or not principal or kind not in ("api_key", "aws"):
        raise errors.InvalidRequest('The body needs "principal" (a name) and "kind": "api_key" or "aws".')
    groups, label, admin = body.get("groups") or [], body.get("label"), body.get("admin", False)
    if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
        raise errors.InvalidRequest('"groups" must be a list of group names.')
    if label is not None and not isinstance(label, str):
        raise errors.InvalidRequest('"label" must be a string.')
    if not isinstance(admin, bool):
        raise errors.InvalidRequest('"admin" must be true or false.')
    await asyncio.to_thread(keyring.ensure_principal, principal, admin=admin, group_names=tuple(groups))
    if kind == "aws":
        akid, secret = await asyncio.to_thread(keyring.create_aws_key, principal, label)
        return json_body({"keyId": akid, "kind": kind, "principal": principal, "accessKeyId": akid,
                          "secretAccessKey": secret}, status=201)  # fmt: skip
    key_id, token = await asyncio.to_thread(keyring.create_api_key, principal, label)
    return json_body({"keyId": key_id, "kind": kind, "principal": principal, "apiKey": token}, status=201)


async def list_keys(ctx: Context, request: Request) -> Response:
    keys = await asyncio.to_thread(_keyring(ctx, request).list)
    return json_body({"keys": [
        {"keyId": k.id, "principal": k.principal, "kind": k.kind, "label": k.label,
         "createdAt": k.created_at.isoformat(), "revokedAt": k.revoked_at.isoformat() if k.revoked_at else None}
        for k in keys
    ]})  # fmt: skip


async def revoke_key(ctx: Context, request: Request, keyId: str) -> Response:
    if not await asyncio.to_thread(_keyring(ctx, request).revoke, keyId):
        raise errors.NotFound(f"There is no active key '{keyId}'.")
    return json_body({"keyId": keyId, "revoked": True})


ROUTES = [
    route("POST", "/outcrop/v1/keys", create_key, "bedrock"),
    route("GET", "/outcrop/v1/keys", list_keys, "bedrock"),
    route("DELETE", "/outcrop/v1/keys/{keyId}", revoke_key, "bedrock"),
]
