"""The bedrock control plane's guardrail operations, in Bedrock's shapes (botocore's service model)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from outcrop import errors
from outcrop.api.app import Context, caller, json_body, read_json, route
from outcrop.api.bedrock.shapes import input_shape, problems
from outcrop.guardrails.store import GuardrailStore, check_semantics

DIALECT = "bedrock"


def _store(ctx: Context, request: Request, write: bool = False) -> GuardrailStore:
    if write and not caller(request).is_admin:
        raise errors.AccessDenied("Only an administrator may create, change or delete guardrails.")
    if ctx.guardrails is None:
        raise errors.InvalidRequest("This server has no store to keep guardrails in.")
    return ctx.guardrails


async def _body(request: Request, operation: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    body = await read_json(request, {})
    if not isinstance(body, dict):
        raise errors.InvalidRequest("The request body must be a JSON object.")
    found = problems({**body, **(extra or {})}, input_shape("bedrock", operation), "body")
    if found:
        more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
        raise errors.InvalidRequest(f"{len(found)} validation error(s) detected: " + "; ".join(found[:5]) + more)
    return body


def _definition(body: dict[str, Any]) -> dict[str, Any]:
    for unsupported in ("automatedReasoningPolicyConfig", "crossRegionConfig"):
        if unsupported in body:
            raise errors.InvalidRequest(f"{unsupported} is not supported by this server.")
    config = {
        k: v for k, v in body.items() if k not in ("clientRequestToken", "tags", "kmsKeyId", "guardrailIdentifier")
    }
    check_semantics(config)
    return config


async def create_guardrail(ctx: Context, request: Request) -> Response:
    store = _store(ctx, request, write=True)
    config = _definition(await _body(request, "CreateGuardrail"))
    made = await asyncio.to_thread(store.create, config)
    region = ctx.settings.region
    return json_body({"guardrailId": made.id, "guardrailArn": made.arn(region), "version": made.version,
                      "createdAt": made.created_at.isoformat()}, status=202)  # fmt: skip


async def get_guardrail(ctx: Context, request: Request, guardrailIdentifier: str) -> Response:
    store = _store(ctx, request)
    found = await asyncio.to_thread(store.get, guardrailIdentifier, request.query_params.get("guardrailVersion"))
    return json_body(found.to_get(ctx.settings.region))


async def list_guardrails(ctx: Context, request: Request) -> Response:
    store = _store(ctx, request)
    found = await asyncio.to_thread(store.list, request.query_params.get("guardrailIdentifier"))
    region = ctx.settings.region
    summaries = [
        {"id": g.id, "arn": g.arn(region), "status": "READY", "name": g.name, "version": g.version,
         "createdAt": g.created_at.isoformat(), "updatedAt": g.updated_at.isoformat(),
         **({"description": g.description} if g.description else {})}
        for g in found
    ]  # fmt: skip
    return json_body({"guardrails": summaries})


async def update_guardrail(ctx: Context, request: Request, guardrailIdentifier: str) -> Response:
    store = _store(ctx, request, write=True)
    config = _definition(await _body(request, "UpdateGuardrail", {"guardrailIdentifier": guardrailIdentifier}))
    done = await asyncio.to_thread(store.update, guardrailIdentifier, config)
    return json_body({"guardrailId": done.id, "guardrailArn": done.arn(ctx.settings.region), "version": "DRAFT",
                      "updatedAt": done.updated_at.isoformat()}, status=202)  # fmt: skip


async def create_guardrail_version(ctx: Context, request: Request, guardrailIdentifier: str) -> Response:
    store = _store(ctx, request, write=True)
    body = await _body(request, "CreateGuardrailVersion", {"guardrailIdentifier": guardrailIdentifier})
    made = await asyncio.to_thread(store.create_version, guardrailIdentifier, body.get("description"))
    return json_body({"guardrailId": made.id, "version": made.version}, status=202)


async def delete_guardrail(ctx: Context, request: Request, guardrailIdentifier: str) -> Response:
    store = _store(ctx, request, write=True)
    await asyncio.to_thread(store.delete, guardrailIdentifier, request.query_params.get("guardrailVersion"))
    return json_body({}, status=202)


ROUTES = [
    route("POST", "/guardrails", create_guardrail, DIALECT),
    route("GET", "/guardrails", list_guardrails, DIALECT),
    route("GET", "/guardrails/{guardrailIdentifier}", get_guardrail, DIALECT),
    route("PUT", "/guardrails/{guardrailIdentifier}", update_guardrail, DIALECT),
    route("POST", "/guardrails/{guardrailIdentifier}", create_guardrail_version, DIALECT),
    route("DELETE", "/guardrails/{guardrailIdentifier}", delete_guardrail, DIALECT),
]
