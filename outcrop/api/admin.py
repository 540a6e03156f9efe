"""Outcrop's own API for access requests (errors in the Bedrock envelope: `{"message"}` + x-amzn-ErrorType).

POST /outcrop/v1/access-requests                 {"modelId", "reason"?}  ask for an early-access model
GET  /outcrop/v1/access-requests?status=pending  an administrator sees all, others their own
POST /outcrop/v1/access-requests/{id}/approve    {"note"?}               administrators only
POST /outcrop/v1/access-requests/{id}/deny       {"note"?}               administrators only
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from outcrop import errors
from outcrop.api.http import Context, caller, json_body, read_json, route
from outcrop.auth.access import readable_owner
from outcrop.auth.principal import Principal

DIALECT = "bedrock"


async def _body(request: Request) -> dict[str, object]:
    body = await read_json(request, {})
    if not isinstance(body, dict):
        raise errors.InvalidRequest("The request body must be a JSON object.")
    return body


def _admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise errors.AccessDenied("Only an administrator may decide access requests.")


async def create_request(ctx: Context, request: Request) -> Response:
    body = await _body(request)
    model = body.get("modelId")
    if not isinstance(model, str):
        raise errors.InvalidRequest("modelId is required.")
    reason = body.get("reason")
    model_id = ctx.registry.resolve(model)
    made = await asyncio.to_thread(ctx.access.request, caller(request), model_id, str(reason) if reason else None)
    return json_body(made.to_json(), status=201)


async def list_requests(ctx: Context, request: Request) -> Response:
    who = caller(request)
    status = request.query_params.get("status")
    found = await asyncio.to_thread(ctx.access.requests, status, readable_owner(who))
    return json_body({"accessRequests": [r.to_json() for r in found]})


async def _decide(ctx: Context, request: Request, request_id: str, approve: bool) -> Response:
    who = caller(request)
    _admin(who)
    note = (await _body(request)).get("note")
    decided = await asyncio.to_thread(ctx.access.decide, request_id, approve, who.name, str(note) if note else None)
    return json_body(decided.to_json())


async def approve(ctx: Context, request: Request, requestId: str) -> Response:
    return await _decide(ctx, request, requestId, True)


async def deny(ctx: Context, request: Request, requestId: str) -> Response:
    return await _decide(ctx, request, requestId, False)


ROUTES = [
    route("POST", "/outcrop/v1/access-requests", create_request, DIALECT),
    route("GET", "/outcrop/v1/access-requests", list_requests, DIALECT),
    route("POST", "/outcrop/v1/access-requests/{requestId}/approve", approve, DIALECT),
    route("POST", "/outcrop/v1/access-requests/{requestId}/deny", deny, DIALECT),
]
