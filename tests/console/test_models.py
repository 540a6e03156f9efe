"""The Models page (views/models.py): the catalog as each key sees it, early access through AccessControl, and the
load figures for administrators only (the rule of GET /outcrop/status)."""

from __future__ import annotations

import re
from typing import Any

import httpx

from outcrop.models import BUILTIN_MODEL_ID
from tests.console.conftest import EARLY, ECHO, OFF, Served, signed_in


def _row(page: str, model: str) -> str:
    found = re.search(rf'<tr data-model="{re.escape(model)}">(.*?)</tr>', page, re.S)
    assert found, model
    return found.group(1)


def test_a_member_sees_each_model_with_its_access_state(keyed: Served, console: Any) -> None:
    page = signed_in(console, keyed, "alice").http.get("/console/models").text
    assert "available" in _row(page, BUILTIN_MODEL_ID) and "llamacpp" in _row(page, BUILTIN_MODEL_ID)
    early = _row(page, EARLY)
    assert "Request access" in early and 'name="model" value="test.early-v1:0"' in early
    assert f'data-model="{OFF}"' not in page  # a disabled model is for administrators' eyes only
    assert "Slots busy" not in page and "shown to administrators" in page
    echo = _row(page, ECHO)
    assert re.search(
        r'data-label="Context"[^>]*>4,096', echo
    )  # loaded (the echo engine is given): its capabilities are known
    assert 'data-label="Tools"><span class="yes">yes' in echo and 'data-label="Grammar"><span class="muted">no' in echo


def test_requesting_early_access_makes_it_pending_and_an_approval_grants_it(keyed: Served, console: Any) -> None:
    c = signed_in(console, keyed, "bob")
    r = c.post_form("/console/models/access-requests", {"model": EARLY, "reason": "to try it"})
    assert r.status_code == 303 and r.headers["location"] == f"/console/models?requested={EARLY.replace(':', '%3A')}"
    page = c.http.get(r.headers["location"]).text
    assert "requested: an administrator will decide" in page and "pending" in _row(page, EARLY)
    again = c.post_form("/console/models/access-requests", {"model": EARLY})  # the same pending request, once
    assert again.status_code == 303
    pending = keyed.app.context.access.requests("pending", "bob")
    assert [(r.model_id, r.reason) for r in pending] == [(EARLY, "to try it")]
    keyed.app.context.access.decide(pending[0].id, True, "root")
    assert "granted" in _row(c.http.get("/console/models").text, EARLY)
    r = c.post_form("/console/models/access-requests", {"model": EARLY})
    assert r.status_code == 400 and "already have access" in r.text  # AccessControl's own message, on the page


def test_an_administrator_sees_disabled_models_and_the_load(keyed: Served, console: Any) -> None:
    root = signed_in(console, keyed, "root")
    page = root.http.get("/console/models").text
    assert "disabled" in _row(page, OFF) and "granted" in _row(page, EARLY)  # administrators may use early models
    assert re.search(r'data-field="busy">0 / 1<', _row(page, ECHO))
    load = root.http.get("/console/models/load").json()["models"]
    assert load[ECHO]["loaded"] and load[ECHO]["max_queue"] == 4 and "slots" in load[ECHO]


def test_a_member_cannot_read_the_load(keyed: Served, console: Any) -> None:
    r = signed_in(console, keyed, "alice").http.get("/console/models/load")
    assert r.status_code == 403 and r.json()["message"] == "Only an administrator may read the server's status."


def test_local_mode_shows_everything_to_the_local_administrator(base_url: str) -> None:
    page = httpx.get(f"{base_url}/console/models").text
    assert 'data-field="queue"' in page and "Request access" not in page
