"""Guardrails in Bedrock's shapes (botocore's service models): the control plane's Create/Get/List/Update/
Delete/CreateGuardrailVersion, and bedrock-runtime's ApplyGuardrail.

One extension: a definition may carry `constitution` (principles judged by a model; see
outcrop/guardrails/constitution.py). boto3 validates its parameters against the service model, so it
cannot send it; the CLI (`outcrop guardrails create FILE`) and plain HTTP clients can.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from outcrop import errors
from outcrop.api.bedrock.shapes import input_shape, problems
from outcrop.api.http import Context, caller, json_body, read_json, route
from outcrop.auth.principal import Principal
from outcrop.guardrails import constitution
from outcrop.guardrails.runtime import require
from outcrop.guardrails.store import Guardrail, GuardrailStore, check_semantics

DIALECT = "bedrock"


def store_for(ctx: Context, principal: Principal, write: bool = False) -> GuardrailStore:
    """The guardrail store as `principal` may use it: everyone reads guardrails and applies them; only
    administrators create, change, delete or enforce them (the web console follows the same rule)."""
    if write and not principal.is_admin:
        raise errors.AccessDenied("Only an administrator may create, change, delete or enforce guardrails.")
    if ctx.guardrails is None:
        raise errors.InvalidRequest("This server has no store to keep guardrails in.")
    return ctx.guardrails


def _store(ctx: Context, request: Request, write: bool = False) -> GuardrailStore:
    return store_for(ctx, caller(request), write)


_EXTENSIONS = {"CreateGuardrail": ("constitution",), "UpdateGuardrail": ("constitution",)}


def check_body(body: object, operation: str, extra: dict[str, Any] | None = None,
               service: str = "bedrock") -> dict[str, Any]:  # fmt: skip
    """`body` as botocore's model for `operation` says it must be (plus our extension members where a
    definition may carry them); messages name the member."""
    if not isinstance(body, dict):
        raise errors.InvalidRequest("The request body must be a JSON object.")
    checked = {k: v for k, v in body.items() if k not in _EXTENSIONS.get(operation, ())}
    found = problems({**checked, **(extra or {})}, input_shape(service, operation), "body")
    for k in extra or {}:  # path parameters travel with the body here, but the caller put them in the URL
        found = [f.replace(f"body.{k} ", f"{k} (in the path) ", 1) for f in found]
    if found:
        more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
        raise errors.InvalidRequest(f"{len(found)} validation error(s) detected: " + "; ".join(found[:5]) + more)
    return body


async def _body(
    request: Request, operation: str, extra: dict[str, Any] | None = None, service: str = "bedrock"
) -> dict[str, Any]:
    return check_body(await read_json(request, {}), operation, extra, service)


def definition(body: dict[str, Any]) -> dict[str, Any]:
    """A checked CreateGuardrail / UpdateGuardrail body -> the definition we store (also used by the CLI)."""
    if "automatedReasoningPolicyConfig" in body:
        raise errors.InvalidRequest("automatedReasoningPolicyConfig is not supported by this server.")
    # crossRegionConfig (which Bedrock requires for the STANDARD tier) is kept and reported back by
    # GetGuardrail; this server checks every request where it arrives, so there is nothing to route.
    config = {
        k: v for k, v in body.items() if k not in ("clientRequestToken", "tags", "kmsKeyId", "guardrailIdentifier")
    }
    check_semantics(config)
    if "constitution" in config:
        constitution.parse(config["constitution"])  # refused here, with the field named, not at call time
    return config


def create(store: GuardrailStore, body: object) -> Guardrail:
    """CreateGuardrail: `body` checked as the API checks it, then kept (blocking: run it on a thread)."""
    return store.create(definition(check_body(body, "CreateGuardrail")))


def update(store: GuardrailStore, identifier: str, body: object) -> Guardrail:
    """UpdateGuardrail: the DRAFT of `identifier` replaced by `body`, checked as the API checks it."""
    checked = check_body(body, "UpdateGuardrail", {"guardrailIdentifier": identifier})
    return store.update(identifier, definition(checked))


async def create_guardrail(ctx: Context, request: Request) -> Response:
    store = _store(ctx, request, write=True)
    made = await asyncio.to_thread(create, store, await read_json(request, {}))
    region = ctx.settings.region
    return json_body({"guardrailId": made.id, "guardrailArn": made.arn(region), "version": made.version,
                      "createdAt": made.created_at.isoformat()}, status=202)  # fmt: skip


async def get_guardrail(ctx: Context, request: Request, guardrailIdentifier: str) -> Response:
    store = _store(ctx, request)
    found = await asyncio.to_thread(store.get, guardrailIdentifier, request.query_params.get("guardrailVersion"))
    return json_body(found.to_get(ctx.settings.region))


def _page(request: Request, total: int) -> tuple[int, int, str | None]:
    """ListGuardrails' maxResults (1-1000; without it, up to 1000) and nextToken (an opaque offset):
    (start, end, the next page's token or None)."""
    query = request.query_params
    try:
        size = int(query.get("maxResults", "1000"))
    except ValueError:
        size = 0
    if not 1 <= size <= 1000:
        raise errors.InvalidRequest("maxResults must be a whole number from 1 to 1000.")
    start = 0
    if "nextToken" in query:
        try:
            start = int(base64.urlsafe_b64decode(query["nextToken"].encode()).decode().removeprefix("offset:"))
        except ValueError:
            raise errors.InvalidRequest("nextToken is not one this server gave out.") from None
    end = min(total, start + size)
    token = base64.urlsafe_b64encode(f"offset:{end}".encode()).decode() if end < total else None
    return start, end, token


async def list_guardrails(ctx: Context, request: Request) -> Response:
    store = _store(ctx, request)
    everything = await asyncio.to_thread(store.list, request.query_params.get("guardrailIdentifier"))
    start, end, token = _page(request, len(everything))
    found = everything[start:end]
    region = ctx.settings.region
    summaries = [
        {"id": g.id, "arn": g.arn(region), "status": "READY", "name": g.name, "version": g.version,
         "createdAt": g.created_at.isoformat(), "updatedAt": g.updated_at.isoformat(),
         **({"description": g.description} if g.description else {})}
        for g in found
    ]  # fmt: skip
    return json_body({"guardrails": summaries, **({"nextToken": token} if token else {})})


async def update_guardrail(ctx: Context, request: Request, guardrailIdentifier: str) -> Response:
    store = _store(ctx, request, write=True)
    done = await asyncio.to_thread(update, store, guardrailIdentifier, await read_json(request, {}))
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


async def apply_guardrail(ctx: Context, request: Request, guardrailIdentifier: str, guardrailVersion: str) -> Response:
    return json_body(await apply(ctx, guardrailIdentifier, guardrailVersion, await read_json(request, {})))


async def apply(ctx: Context, guardrailIdentifier: str, guardrailVersion: str, raw: object) -> dict[str, Any]:
    """ApplyGuardrail's answer for the body `raw` (checked against bedrock-runtime's model); anyone may apply
    any guardrail, as anyone may name one in a model call."""
    rails = require(ctx.inference.guardrails)
    extra = {"guardrailIdentifier": guardrailIdentifier, "guardrailVersion": guardrailVersion}
    body = check_body(raw, "ApplyGuardrail", extra, service="bedrock-runtime")
    blocks: list[tuple[str, tuple[str, ...]]] = []
    for i, item in enumerate(body["content"]):
        if "text" not in item:
            raise errors.InvalidRequest(f"content.{i}: only text content is supported by this server's guardrails.")
        blocks.append((item["text"]["text"], tuple(item["text"].get("qualifiers") or ())))
    compiled = await rails.compiled(guardrailIdentifier, guardrailVersion)
    scope = body.get("outputScope", "INTERVENTIONS")
    outcome = await rails.apply(compiled, body["source"], blocks, scope)
    if outcome.blocked:
        outputs = [{"text": outcome.message}]
    elif outcome.intervened or scope == "FULL":
        outputs = [{"text": t} for t in outcome.texts]
    else:
        outputs = []
    # Guarded: the text the policies checked; grounding sources and queries only feed the grounding check.
    guarded = sum(len(t) for t, q in blocks if not q or "guard_content" in q)
    total = sum(len(t) for t, _ in blocks)
    answer: dict[str, Any] = {
        "usage": outcome.usage,
        "action": outcome.action,
        "outputs": outputs,
        "assessments": [outcome.assessment],
        "guardrailCoverage": {"textCharacters": {"guarded": guarded, "total": total}},
    }
    if outcome.reason and outcome.intervened:
        answer["actionReason"] = outcome.reason
    return answer


# --- account-level enforced guardrails (outcrop/guardrails/enforced.py) ---------------------------


async def put_enforced(ctx: Context, request: Request) -> Response:
    store = _store(ctx, request, write=True)
    body = await _body(request, "PutEnforcedGuardrailConfiguration")
    done = await asyncio.to_thread(store.enforced.put, body, caller(request).name)
    return json_body({"configId": done.config_id, "updatedAt": done.updated_at.isoformat(),
                      "updatedBy": done.updated_by})  # fmt: skip


async def list_enforced(ctx: Context, request: Request) -> Response:
    store = _store(ctx, request)
    found = await asyncio.to_thread(store.enforced.all)
    return json_body({"guardrailsConfig": [e.to_output(ctx.settings.region) for e in found]})


async def delete_enforced(ctx: Context, request: Request, configId: str) -> Response:
    store = _store(ctx, request, write=True)
    await asyncio.to_thread(store.enforced.delete, configId)
    return json_body({})


ROUTES = [
    route("PUT", "/enforcedGuardrailsConfiguration", put_enforced, DIALECT),
    route("GET", "/enforcedGuardrailsConfiguration", list_enforced, DIALECT),
    route("DELETE", "/enforcedGuardrailsConfiguration/{configId}", delete_enforced, DIALECT),
    route("POST", "/guardrail/{guardrailIdentifier}/version/{guardrailVersion}/apply", apply_guardrail, DIALECT),
    route("POST", "/guardrails", create_guardrail, DIALECT),
    route("GET", "/guardrails", list_guardrails, DIALECT),
    route("GET", "/guardrails/{guardrailIdentifier}", get_guardrail, DIALECT),
    route("PUT", "/guardrails/{guardrailIdentifier}", update_guardrail, DIALECT),
    route("POST", "/guardrails/{guardrailIdentifier}", create_guardrail_version, DIALECT),
    route("DELETE", "/guardrails/{guardrailIdentifier}", delete_guardrail, DIALECT),
]
