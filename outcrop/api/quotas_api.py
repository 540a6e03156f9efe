"""Quotas over HTTP, for administrators (the same operations as `outcrop quotas` and the console's Keys page).

GET    /outcrop/v1/quotas           -> every rule: the config file's [[quotas]] (read-only, no id) and those set
                                       at run time (with their id, who set them and when)
PUT    /outcrop/v1/quotas           {"principal" | "group" | "everyone": true, "model"?, "requestsPerMinute"?,
                                     "tokensPerMinute"?, "concurrentStreams"?} -> the rule with its id (201; 200
                                     when it replaced one for the same principal, group or everyone and model)
DELETE /outcrop/v1/quotas/{ruleId}  -> a rule set at run time removed (those of the config file stay)
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from outcrop import errors
from outcrop.api.http import Context, caller, json_body, read_json, route
from outcrop.metering.quotas import QuotaRule, Quotas, StoredRule

# JSON member -> QuotaRule field
LIMIT_MEMBERS = {
    "requestsPerMinute": "requests_per_minute",
    "tokensPerMinute": "tokens_per_minute",
    "concurrentStreams": "concurrent_streams",
}
MAX_LIMIT = 2**31 - 1  # the store's columns are 32-bit integers on PostgreSQL
MAX_NAME = 200  # the store's columns for names and model ids


def rule_json(rule: QuotaRule, stored: StoredRule | None = None) -> dict[str, Any]:
    """A rule as the API answers it (and `outcrop quotas list --json` prints it)."""
    out: dict[str, Any] = {
        "ruleId": stored.id if stored else None,
        "source": "runtime" if stored else "config",
        "readOnly": stored is None,
        "principal": rule.principal,
        "group": rule.group,
        "everyone": rule.principal is None and rule.group is None,
        "model": rule.model,
    }
    out.update({member: getattr(rule, field) for member, field in LIMIT_MEMBERS.items()})
    out["createdBy"] = stored.created_by if stored else None
    out["createdAt"] = stored.created_at.isoformat() if stored else None
    return out


def every_rule(quotas: Quotas) -> list[dict[str, Any]]:
    """The config file's rules, then those set at run time (a store read)."""
    return [rule_json(r) for r in quotas.rules] + [rule_json(s.rule, s) for s in quotas.stored()]


def _quotas(ctx: Context, request: Request) -> Quotas:
    if not caller(request).is_admin:
        raise errors.AccessDenied("Only an administrator may manage quotas.")
    return ctx.inference.quotas


def _name(body: dict[str, Any], member: str) -> str | None:
    value = body.get(member)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME:
        raise errors.InvalidRequest(f'"{member}" must be a name of 1 to {MAX_NAME} characters.')
    return value.strip()


def _limit(body: dict[str, Any], member: str) -> int | None:
    value = body.get(member)
    if isinstance(value, float) and value.is_integer():  # 60.0 is a whole number to JSON Schema too
        value = int(value)
    # bool is an int in Python, and JSON's true is no limit
    if value is not None and (type(value) is not int or not 0 <= value <= MAX_LIMIT):
        raise errors.InvalidRequest(f'"{member}" must be a whole number from 0 to {MAX_LIMIT}, or null.')
    return value


def parse_rule(ctx: Context, body: object) -> QuotaRule:
    """The rule a PUT body describes, or InvalidRequest saying what is wrong with it."""
    if not isinstance(body, dict):
        raise errors.InvalidRequest("The request body must be a JSON object.")
    known = {"principal", "group", "everyone", "model", *LIMIT_MEMBERS}
    unknown = sorted(set(body) - known)
    if unknown:
        raise errors.InvalidRequest(f"Unknown member(s) {unknown}; known members are {sorted(known)}.")
    principal, group = _name(body, "principal"), _name(body, "group")
    everyone = body.get("everyone")
    if everyone is not None and everyone is not True:
        raise errors.InvalidRequest('"everyone" must be true (or left out).')
    if [principal is not None, group is not None, everyone is True].count(True) != 1:
        raise errors.InvalidRequest('A quota is for one "principal", one "group" or "everyone": true: give one of '
                                    "them, not two.")  # fmt: skip
    model = body.get("model")
    if model is None or model == "*":
        model = "*"
    elif not isinstance(model, str) or not model or len(model) > MAX_NAME:
        raise errors.InvalidRequest(f'"model" must be a model id (or "*", every model), at most {MAX_NAME} characters.')
    else:
        try:
            model = ctx.registry.resolve(model)
        except errors.NotFound as exc:
            raise errors.InvalidRequest(exc.message) from exc
    limits = {field: _limit(body, member) for member, field in LIMIT_MEMBERS.items()}
    if all(v is None for v in limits.values()):
        raise errors.InvalidRequest(f"Set at least one limit: {', '.join(LIMIT_MEMBERS)}.")
    return QuotaRule(principal=principal, group=group, model=model, **limits)


async def list_quotas(ctx: Context, request: Request) -> Response:
    quotas = _quotas(ctx, request)
    return json_body({"quotas": await asyncio.to_thread(every_rule, quotas)})


async def put_quota(ctx: Context, request: Request) -> Response:
    quotas = _quotas(ctx, request)
    rule = parse_rule(ctx, await read_json(request, {}))

    def put() -> tuple[StoredRule, bool]:
        same = [s for s in quotas.stored() if (s.rule.principal, s.rule.group, s.rule.model) ==
                (rule.principal, rule.group, rule.model)]  # fmt: skip
        rid = quotas.set_rule(rule, caller(request).name)
        made = next((s for s in quotas.stored() if s.id == rid), None)
        if made is None:  # removed again between the two statements: say what was set
            raise errors.Conflict(f"The quota {rid} was removed while it was being set.")
        return made, bool(same)

    made, replaced = await asyncio.to_thread(put)
    return json_body(rule_json(made.rule, made), status=200 if replaced else 201)


async def delete_quota(ctx: Context, request: Request, ruleId: str) -> Response:
    if not await asyncio.to_thread(_quotas(ctx, request).remove_rule, ruleId):
        raise errors.NotFound(f"There is no quota '{ruleId}' set at run time (those of the config file stay).")
    return json_body({"ruleId": ruleId, "removed": True})


ROUTES = [
    route("GET", "/outcrop/v1/quotas", list_quotas, "bedrock"),
    route("PUT", "/outcrop/v1/quotas", put_quota, "bedrock"),
    route("DELETE", "/outcrop/v1/quotas/{ruleId}", delete_quota, "bedrock"),
]
