"""Keys and access (administrators only: nav.py marks the page, web.view() refuses it to anyone else).

Every action calls what the admin API and the CLI call: keys through the Keyring (`outcrop keys`, /outcrop/v1/keys:
ensure_principal, then create_api_key / create_aws_key; revoke), early-access requests through AccessControl.decide
(/outcrop/v1/access-requests/{id}/approve|deny), quotas through Quotas (the config file's [[quotas]] and the
rules set here, kept in the store). A new key's secret is in the answer to the POST that made it, and nowhere
else, ever: the page that lists keys has no way to show one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import Response

from outcrop import errors
from outcrop.auth.keys import Keyring
from outcrop.console.web import Visit, view
from outcrop.metering.quotas import LIMITS, QuotaRule

PAGE = "keys"
PATH = "/console/keys"
KINDS = {"api_key": "API key", "aws": "AWS access key"}
DONE = {  # ?done=... after a form's redirect: what the page says (the name comes from ?what=, escaped)
    "revoked": "Key {} revoked: its next call is refused.",
    "grouped": "{} added to the group.",
    "ungrouped": "{} taken out of the group.",
    "approved": "Access request {} approved.",
    "denied": "Access request {} denied.",
    "quota": "Quota set for {}.",
    "unquota": "Quota {} removed.",
}


def _keyring(visit: Visit) -> Keyring:
    keyring = visit.ctx.authenticator.keyring
    if keyring is None:
        raise errors.InvalidRequest('This server runs without keys (local mode); set auth = "keys" to manage them.')
    return keyring


def _subject(rule: QuotaRule) -> str:
    if rule.principal is not None and rule.group is not None:
        return f"principal {rule.principal} in group {rule.group}"
    if rule.principal is not None:
        return f"principal {rule.principal}"
    return f"group {rule.group}" if rule.group is not None else "everyone"


def _quota_rows(visit: Visit) -> list[dict[str, Any]]:
    quotas = visit.ctx.inference.quotas
    rows = [{"id": None, "source": "config file", "subject": _subject(r), "rule": r} for r in quotas.rules]
    rows += [{"id": s.id, "source": f"set by {s.created_by}", "subject": _subject(s.rule), "rule": s.rule}
             for s in quotas.stored()]  # fmt: skip
    return rows


def _read(visit: Visit) -> dict[str, Any]:
    """Everything the page lists (in a worker thread: these are store reads)."""
    keyring = _keyring(visit)
    people = keyring.principals()
    groups = {p.name: p.groups for p in people}
    access = visit.ctx.access
    early = access.engine is not None
    requests = access.requests() if early else []
    return {
        "keys": [(k, groups.get(k.principal, ())) for k in reversed(keyring.list())],  # newest first
        "people": people,
        "group_names": sorted({g for p in people for g in p.groups}),
        "pending": [r for r in requests if r.status == "pending"],
        "decided": [r for r in reversed(requests) if r.status != "pending"][:20],
        "quotas": _quota_rows(visit),
        "models": [s.id for s in visit.ctx.registry.specs()],
    }


async def index(visit: Visit, message: str | None = None, status: int = 200) -> Response:
    if visit.ctx.authenticator.keyring is None:
        return visit.render("keys.html", title="Keys", keyless=True, message=message, done=None)
    data = await asyncio.to_thread(_read, visit)
    query = visit.request.query_params
    done = DONE[query["done"]].format(query.get("what", "")) if query.get("done") in DONE else None
    return visit.render("keys.html", status=status, title="Keys", keyless=False, message=message, done=done,
                        kinds=KINDS, limits=LIMITS, **data)  # fmt: skip


async def _or_page(visit: Visit, action: Callable[[], Awaitable[Response]]) -> Response:
    """Run `action()`; a request the service refuses is said on the page, above the forms."""
    try:
        return await action()
    except (errors.InvalidRequest, errors.NotFound) as exc:
        return await index(visit, exc.message, 404 if isinstance(exc, errors.NotFound) else 400)


def _names(raw: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in raw.replace("\n", ",").split(",") if n.strip()))
    if any(len(n) > 200 for n in names):
        raise errors.InvalidRequest("A group's name is at most 200 characters.")
    return names


def _name(raw: str, what: str = "principal") -> str:
    name = raw.strip()
    if not name or len(name) > 200:
        raise errors.InvalidRequest(f"Give the {what}'s name (at most 200 characters).")
    return name


async def create(visit: Visit) -> Response:
    """The same steps as POST /outcrop/v1/keys and `outcrop keys create`; the answer shows the secret, once."""
    form = await visit.form()

    async def make() -> Response:
        keyring = _keyring(visit)
        principal = _name(form.get("principal", ""))
        kind = form.get("kind", "api_key")
        if kind not in ("api_key", "aws", "both"):
            raise errors.InvalidRequest("Choose an API key, an AWS access key, or both.")
        label = form.get("label", "").strip()[:200] or None
        admin = form.get("admin") == "on"
        await asyncio.to_thread(keyring.ensure_principal, principal, admin=admin,
                                group_names=_names(form.get("groups", "")))  # fmt: skip
        made: list[dict[str, str]] = []
        if kind in ("api_key", "both"):
            key_id, token = await asyncio.to_thread(keyring.create_api_key, principal, label)
            made.append({"kind": "api_key", "id": key_id, "secret": token})
        if kind in ("aws", "both"):
            akid, secret = await asyncio.to_thread(keyring.create_aws_key, principal, label)
            made.append({"kind": "aws", "id": akid, "secret": secret})
        return visit.render("keys_created.html", title="Key created", made=made, owner=principal, label=label,
                            base_url=visit.base_url)  # fmt: skip

    return await _or_page(visit, make)


async def revoke(visit: Visit, key_id: str) -> Response:
    await visit.form()  # (the CSRF token is checked before this view runs; the form has nothing else)

    async def run() -> Response:
        if not await asyncio.to_thread(_keyring(visit).revoke, key_id):
            raise errors.NotFound(f"There is no active key '{key_id}' (revoked already?).")
        return visit.redirect(PATH, done="revoked", what=key_id)

    return await _or_page(visit, run)


async def join_group(visit: Visit) -> Response:
    form = await visit.form()

    async def run() -> Response:
        keyring = _keyring(visit)
        principal = _name(form.get("principal", ""))
        groups = _names(form.get("group", ""))
        if not groups:
            raise errors.InvalidRequest("Give the name of a group.")
        if not await asyncio.to_thread(keyring.join_group, principal, groups):
            raise errors.NotFound(f"There is no principal '{principal}': create a key for it first.")
        return visit.redirect(PATH, done="grouped", what=principal)

    return await _or_page(visit, run)


async def leave_group(visit: Visit) -> Response:
    form = await visit.form()

    async def run() -> Response:
        principal, group = _name(form.get("principal", "")), form.get("group", "").strip()
        if not await asyncio.to_thread(_keyring(visit).leave_group, principal, group):
            raise errors.NotFound(f"'{principal}' is not in a group '{group}'.")
        return visit.redirect(PATH, done="ungrouped", what=principal)

    return await _or_page(visit, run)


async def _decide(visit: Visit, request_id: str, approve: bool) -> Response:
    form = await visit.form()
    note = form.get("note", "").strip()[:500] or None

    async def run() -> Response:
        await asyncio.to_thread(visit.ctx.access.decide, request_id, approve, visit.principal.name, note)
        return visit.redirect(PATH, done="approved" if approve else "denied", what=request_id)

    return await _or_page(visit, run)


async def approve(visit: Visit, request_id: str) -> Response:
    return await _decide(visit, request_id, True)


async def deny(visit: Visit, request_id: str) -> Response:
    return await _decide(visit, request_id, False)


def _limit(raw: str, name: str) -> int | None:
    raw = raw.strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise errors.InvalidRequest(f"{name.replace('_', ' ').capitalize()} must be a whole number >= 0, or empty.")
    return int(raw)


async def set_quota(visit: Visit) -> Response:
    form = await visit.form()

    async def run() -> Response:
        kind = form.get("applies", "principal")
        if kind not in ("principal", "group", "everyone"):
            raise errors.InvalidRequest("A quota applies to a principal, a group or everyone.")
        name = None if kind == "everyone" else _name(form.get("subject", ""), kind)
        model = form.get("model", "*").strip() or "*"
        if model != "*":
            model = visit.ctx.registry.resolve(model)
        values = {k: _limit(form.get(k, ""), k) for k in LIMITS}
        if all(v is None for v in values.values()):
            raise errors.InvalidRequest("Set at least one limit.")
        rule = QuotaRule(principal=name if kind == "principal" else None, group=name if kind == "group" else None,
                         model=model, **values)  # fmt: skip
        await asyncio.to_thread(visit.ctx.inference.quotas.set_rule, rule, visit.principal.name)
        return visit.redirect(PATH, done="quota", what=_subject(rule) + ("" if model == "*" else f" on {model}"))

    return await _or_page(visit, run)


async def remove_quota(visit: Visit, rule_id: str) -> Response:
    await visit.form()

    async def run() -> Response:
        if not await asyncio.to_thread(visit.ctx.inference.quotas.remove_rule, rule_id):
            raise errors.NotFound(f"There is no quota '{rule_id}' set here (those of the config file stay).")
        return visit.redirect(PATH, done="unquota", what=rule_id)

    return await _or_page(visit, run)


ROUTES = [
    view("GET", PATH, index),
    view("POST", PATH, create),
    view("POST", PATH + "/{key_id}/revoke", revoke),
    view("POST", PATH + "/groups", join_group),
    view("POST", PATH + "/groups/leave", leave_group),
    view("POST", PATH + "/access-requests/{request_id}/approve", approve),
    view("POST", PATH + "/access-requests/{request_id}/deny", deny),
    view("POST", PATH + "/quotas", set_quota),
    view("POST", PATH + "/quotas/{rule_id}/delete", remove_quota),
]
