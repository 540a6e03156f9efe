"""Guardrails: list them, create one and edit its DRAFT with every policy CreateGuardrail takes (guardrail_form.py,
or the body as JSON), publish versions, delete, and a test panel that runs ApplyGuardrail on typed text.

Everything goes through the control plane's and ApplyGuardrail's own code (api/bedrock/guardrails.py): the same
checks and messages, and the same rule on who may do what (store_for: everyone reads and applies guardrails, only
administrators create, change or delete them)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from typing import Any

from starlette.responses import Response

from outcrop import errors
from outcrop.api.bedrock import guardrails as api
from outcrop.api.http import json_body, parse_json
from outcrop.console import guardrail_form
from outcrop.console.errors import status_of
from outcrop.console.web import Visit, view
from outcrop.guardrails.store import Guardrail, GuardrailStore

PAGE = "guardrails"
BASE = "/console/guardrails"
_DONE = {"created": "Guardrail created.", "saved": "DRAFT saved.", "deleted-version": "Version deleted."}


def _latest(versions: list[Guardrail]) -> str | None:
    numbers = [int(v.version) for v in versions if v.version.isdigit()]
    return str(max(numbers)) if numbers else None


async def index(visit: Visit) -> Response:
    principal = visit.principal
    rows: list[dict[str, Any]] = []
    store = visit.ctx.guardrails
    if store is not None:
        api.store_for(visit.ctx, principal)

        def read() -> list[dict[str, Any]]:
            return [{"g": g, "latest": _latest(store.list(g.id))} for g in store.list()]

        rows = await asyncio.to_thread(read)
    deleted = visit.request.query_params.get("deleted")
    return visit.render("guardrails.html", title="Guardrails", rows=rows, stored=store is not None,
                        can_write=principal.is_admin, deleted=deleted)  # fmt: skip


def _editor(visit: Visit, g: Guardrail | None, versions: list[Guardrail], *, config: Mapping[str, Any] | None,
            message: str | None = None, status: int = 200, json_text: str | None = None, done: str | None = None,
            viewing: Guardrail | None = None) -> Response:  # fmt: skip
    """The new-guardrail page (g None) or a guardrail's page: its DRAFT in the editor (or, read only, the numbered
    version `viewing`), versions, test panel."""
    own = viewing or g
    shown = config if config is not None else (own.config if own else None)
    try:
        form = guardrail_form.view(shown)
    except Exception:  # a body too malformed to show: the last good one
        form = guardrail_form.view(own.config if own else None)
    json_open = json_text is not None  # the JSON editor posted this: show it again, open
    if json_text is None:
        json_text = json.dumps(shown or _starter(), indent=2)
    numbered = [v for v in versions if v.version.isdigit()]
    title = g.name if g else "New guardrail"
    return visit.render("guardrail.html", status=status, title=title, g=g, f=form, choices=guardrail_form.choices(),
                        blanks=guardrail_form.blanks(), versions=numbered, latest=_latest(versions), message=message,
                        json_text=json_text, json_open=json_open, can_write=visit.principal.is_admin,
                        editable=visit.principal.is_admin and viewing is None,
                        viewing=viewing.version if viewing else None,
                        done=_DONE.get(done or "") or _version_done(done), region=visit.ctx.settings.region,
                        base=BASE)  # fmt: skip


def _version_done(done: str | None) -> str | None:
    if done and done.startswith("version-") and done[8:].isdigit():
        return f"Version {done[8:]} created."
    return None


def _starter() -> dict[str, Any]:
    return {"name": "", "blockedInputMessaging": guardrail_form.BLOCKED_IN,
            "blockedOutputsMessaging": guardrail_form.BLOCKED_OUT}  # fmt: skip


def _submitted(form: Mapping[str, str]) -> tuple[object, str | None]:
    """The body a form posts: the editor's fields, or the JSON editor's text as it is (then also that text)."""
    if "definition" in form:
        text = form["definition"]
        try:
            return parse_json(text), text
        except ValueError as exc:
            raise _Refused(f"The definition is not valid JSON: {exc}.", None, text) from None
    return guardrail_form.body(form), None


class _Refused(Exception):
    def __init__(self, message: str, body: object, text: str | None) -> None:
        super().__init__(message)
        self.message, self.body, self.text = message, body, text


async def new_page(visit: Visit) -> Response:
    api.store_for(visit.ctx, visit.principal, write=True)
    return _editor(visit, None, [], config=None)


async def create(visit: Visit) -> Response:
    store = api.store_for(visit.ctx, visit.principal, write=True)
    try:
        body, text = _submitted(await visit.form())
    except _Refused as exc:
        return _editor(visit, None, [], config=None, message=exc.message, status=400, json_text=exc.text)
    try:
        made = await asyncio.to_thread(api.create, store, body)
    except errors.InvalidRequest as exc:
        return _editor(visit, None, [], config=_shown(body, text), message=exc.message, status=400, json_text=text)
    return visit.redirect(f"{BASE}/{made.id}", done="created")


def _shown(body: object, text: str | None) -> dict[str, Any] | None:
    """What the editor shows after a refusal: the form's body as sent (the JSON editor keeps its own text)."""
    return body if isinstance(body, dict) and text is None else None


async def _read(store: GuardrailStore, gid: str) -> tuple[Guardrail, list[Guardrail]]:
    def read() -> tuple[Guardrail, list[Guardrail]]:
        return store.get(gid), store.list(gid)

    return await asyncio.to_thread(read)


async def page(visit: Visit, gid: str) -> Response:
    """?version=N shows that version's definition, read only (numbered versions never change)."""
    store = api.store_for(visit.ctx, visit.principal)
    g, versions = await _read(store, gid)
    wanted = visit.request.query_params.get("version")
    viewing = None
    if wanted and wanted != "DRAFT":
        viewing = await asyncio.to_thread(store.get, gid, wanted)  # GetGuardrail's checks: a number, one that exists
    return _editor(visit, g, versions, config=None, done=visit.request.query_params.get("done"), viewing=viewing)


async def save(visit: Visit, gid: str) -> Response:
    store = api.store_for(visit.ctx, visit.principal, write=True)
    try:
        body, text = _submitted(await visit.form())
    except _Refused as exc:
        g, versions = await _read(store, gid)
        return _editor(visit, g, versions, config=None, message=exc.message, status=400, json_text=exc.text)
    try:
        await asyncio.to_thread(api.update, store, gid, body)
    except errors.InvalidRequest as exc:
        g, versions = await _read(store, gid)
        return _editor(visit, g, versions, config=_shown(body, text), message=exc.message, status=400,
                       json_text=text)  # fmt: skip
    return visit.redirect(f"{BASE}/{gid}", done="saved")


async def create_version(visit: Visit, gid: str) -> Response:
    store = api.store_for(visit.ctx, visit.principal, write=True)
    form = await visit.form()
    body: dict[str, Any] = {}
    if form.get("description", "").strip():
        body["description"] = form["description"].strip()
    try:
        api.check_body(body, "CreateGuardrailVersion", {"guardrailIdentifier": gid})
        made = await asyncio.to_thread(store.create_version, gid, body.get("description"))
    except errors.InvalidRequest as exc:
        g, versions = await _read(store, gid)
        return _editor(visit, g, versions, config=None, message=exc.message, status=400)
    return visit.redirect(f"{BASE}/{gid}", done=f"version-{made.version}")


async def delete(visit: Visit, gid: str) -> Response:
    store = api.store_for(visit.ctx, visit.principal, write=True)
    version = (await visit.form()).get("version") or None
    g = await asyncio.to_thread(store.get, gid)
    try:
        await asyncio.to_thread(store.delete, gid, version)
    except errors.InvalidRequest as exc:  # the account's enforced guardrail, the DRAFT alone
        g, versions = await _read(store, gid)
        return _editor(visit, g, versions, config=None, message=exc.message, status=status_of(exc))
    if version is not None:
        return visit.redirect(f"{BASE}/{gid}", done="deleted-version")
    return visit.redirect(BASE, deleted=g.name)


# --- the test panel ----------------------------------------------------------------------------------------


async def apply(visit: Visit, gid: str) -> Response:
    """The test panel: {"text", "source", "version", "groundingSource"?, "query"?, "full"?} -> ApplyGuardrail's
    answer, and its assessment as rows (`findings`) for the page to show."""
    api.store_for(visit.ctx, visit.principal)
    raw = await visit.json()
    version = str(raw.get("version") or "DRAFT")
    text = raw.get("text")
    grounding, query = raw.get("groundingSource") or "", raw.get("query") or ""
    content: list[dict[str, Any]] = [{"text": {"text": text}}]
    if grounding or query:  # then only the typed text is guarded; the others feed contextual grounding
        content = [{"text": {"text": text, "qualifiers": ["guard_content"]}}]
        content += [{"text": {"text": t, "qualifiers": [q]}} for t, q in ((grounding, "grounding_source"),
                                                                          (query, "query")) if t]  # fmt: skip
    body = {"source": raw.get("source") or "INPUT", "content": content,
            "outputScope": "FULL" if raw.get("full") else "INTERVENTIONS"}  # fmt: skip
    answer = await api.apply(visit.ctx, gid, version, body)
    return json_body({"answer": answer, "findings": list(findings(answer))})


POLICIES = {"topicPolicy": "Denied topics", "contentPolicy": "Content filters", "wordPolicy": "Word filters",
            "sensitiveInformationPolicy": "Sensitive information",
            "contextualGroundingPolicy": "Contextual grounding", "constitutionPolicy": "Constitution"}  # fmt: skip
_DETAIL = (("confidence", "confidence"), ("filterStrength", "strength"), ("score", "score"),
           ("threshold", "threshold"), ("verdict", "verdict"), ("ruleId", "rule"), ("reason", "reason"))  # fmt: skip


def findings(answer: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Each entry of ApplyGuardrail's assessments, acted on or only detected: {policy, label, kind, item, match,
    detail, action, detected}, `item` the filter, topic, word list, entity type or regex that found it."""
    for assessment in answer.get("assessments") or ():
        for policy, found in assessment.items():
            if policy == "invocationMetrics" or not isinstance(found, Mapping):
                continue
            lists = {"": [found]} if "action" in found else found
            for kind, entries in lists.items():
                for e in entries if isinstance(entries, list) else ():
                    if not isinstance(e, Mapping):
                        continue
                    named = e.get("name") or e.get("type") or e.get("judgeModel")
                    item = named or ("custom word" if kind == "customWords" else policy)
                    detail = " · ".join(f"{label} {e[k]}" for k, label in _DETAIL if e.get(k) is not None)
                    yield {"policy": policy, "label": POLICIES.get(policy, policy), "kind": kind, "item": str(item),
                           "match": e.get("match"), "detail": detail, "action": e.get("action", "NONE"),
                           "detected": bool(e.get("detected", True))}  # fmt: skip


ROUTES = [
    view("GET", BASE, index),
    view("GET", f"{BASE}/new", new_page),
    view("POST", f"{BASE}/new", create),
    view("GET", BASE + "/{gid}", page),
    view("POST", BASE + "/{gid}", save),
    view("POST", BASE + "/{gid}/versions", create_version),
    view("POST", BASE + "/{gid}/delete", delete),
    view("POST", BASE + "/{gid}/apply", apply, json=True),
]
