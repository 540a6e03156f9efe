"""The Keys page (views/keys.py): keys made and revoked through the Keyring as `outcrop keys` and /outcrop/v1/keys do
(a secret shown once, in the answer that made it), groups, early-access decisions through AccessControl, and quotas
set at run time (Quotas.set_rule) that the next API call obeys. Administrators only."""

from __future__ import annotations

import re
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.console.conftest import EARLY, ECHO, Served, signed_in

SECRET = re.compile(r'id="secret-\d+" class="mono" value="([^"]+)"')


def _chat(served: Served, key: str, text: str = "hello") -> httpx.Response:
    return httpx.post(f"{served.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=60,
                      json={"model": ECHO, "messages": [{"role": "user", "content": text}]})  # fmt: skip


def _row(page: str, attr: str, value: str) -> str:
    found = re.search(rf'<tr {attr}="{re.escape(value)}"[^>]*>(.*?)</tr>', page, re.S)
    assert found, (attr, value)
    return found.group(1)


def test_a_new_api_key_is_shown_once_works_and_is_refused_once_revoked(keyed: Served, console: Any) -> None:
    root = signed_in(console, keyed, "root")
    made = root.post_form("/console/keys", {"principal": "carol", "kind": "api_key", "label": "ci runner",
                                             "groups": "beta, testers"})  # fmt: skip
    assert made.status_code == 200 and "Key created for carol" in made.text and "only time it is shown" in made.text
    assert made.headers["cache-control"] == "no-store"
    secrets = SECRET.findall(made.text)
    assert len(secrets) == 1 and secrets[0].startswith("ocp_")
    key = secrets[0]
    key_id = re.search(r"API key <code>(key_[0-9a-f]+)</code>", made.text).group(1)  # type: ignore[union-attr]
    listed = root.http.get("/console/keys").text
    assert key not in listed and key[4:20] not in listed  # never again, not even in part
    row = _row(listed, "data-key", key_id)
    assert "carol" in row and "API key" in row and "beta, testers" in row and "ci runner" in row
    assert "active" in row and "never" in row  # not used yet
    assert _chat(keyed, key).status_code == 200
    # revoked from the page: the very next call with it is refused
    r = root.post_form(f"/console/keys/{key_id}/revoke", {})
    assert r.status_code == 303 and r.headers["location"] == f"/console/keys?done=revoked&what={key_id}"
    after = root.http.get(r.headers["location"]).text
    assert f"Key {key_id} revoked" in after and "revoked" in _row(after, "data-key", key_id)
    assert f"/console/keys/{key_id}/revoke" not in after  # nothing left to revoke
    assert _chat(keyed, key).status_code in (401, 403)
    again = root.post_form(f"/console/keys/{key_id}/revoke", {})
    assert again.status_code == 404 and "no active key" in again.text


def test_an_aws_access_key_pair_is_shown_once_and_signs_boto3_calls(keyed: Served, console: Any) -> None:
    root = signed_in(console, keyed, "root")
    made = root.post_form("/console/keys", {"principal": "dave", "kind": "both"})
    assert made.status_code == 200
    api_key, secret = SECRET.findall(made.text)
    akid = re.search(r'id="akid-\d+" class="mono" value="(OCAK[A-Z0-9]{16})"', made.text).group(1)  # type: ignore[union-attr]
    assert api_key.startswith("ocp_") and len(secret) == 40
    listed = root.http.get("/console/keys").text
    assert secret not in listed and api_key not in listed
    assert "AWS access key" in _row(listed, "data-key", akid)
    runtime = boto3.client("bedrock-runtime", endpoint_url=keyed.url, region_name="us-east-1", aws_access_key_id=akid,
                           aws_secret_access_key=secret, config=Config(retries={"total_max_attempts": 1}))  # fmt: skip
    answer = runtime.converse(modelId=ECHO, messages=[{"role": "user", "content": [{"text": "signed"}]}])
    assert answer["output"]["message"]["content"][0]["text"] == "signed"
    assert root.post_form(f"/console/keys/{akid}/revoke", {}).status_code == 303
    with pytest.raises(ClientError) as refused:
        runtime.converse(modelId=ECHO, messages=[{"role": "user", "content": [{"text": "again"}]}])
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] in (401, 403)


def test_bad_input_is_said_on_the_page(keyed: Served, console: Any) -> None:
    root = signed_in(console, keyed, "root")
    r = root.post_form("/console/keys", {"principal": "  ", "kind": "api_key"})
    assert r.status_code == 400 and "principal&#39;s name" in r.text and "Traceback" not in r.text
    r = root.post_form("/console/keys", {"principal": "erin", "kind": "ssh"})
    assert r.status_code == 400 and "API key, an AWS access key, or both" in r.text
    r = root.post_form("/console/keys/groups", {"principal": "nobody-here", "group": "beta"})
    assert r.status_code == 404 and "no principal" in r.text


def test_a_principal_joins_a_group(keyed: Served, console: Any) -> None:
    root = signed_in(console, keyed, "root")
    r = root.post_form("/console/keys/groups", {"principal": "bob", "group": "night-shift"})
    assert r.status_code == 303
    page = root.http.get(r.headers["location"]).text
    assert "bob added to the group" in page and "night-shift" in _row(page, "data-principal", "bob")
    assert [p.groups for p in keyed.keyring.principals() if p.name == "bob"] == [("night-shift",)]


def test_a_principal_leaves_a_group_and_its_quota_stops_applying(keyed: Served, console: Any) -> None:
    root = signed_in(console, keyed, "root")
    keyed.keyring.ensure_principal("fay", group_names=("night-shift", "slow"))
    _, key = keyed.keyring.create_api_key("fay")
    made = root.post_form("/console/keys/quotas", {"applies": "group", "subject": "slow", "model": ECHO,
                                                   "requests_per_minute": "0"})  # fmt: skip
    assert made.status_code == 303, made.text
    assert _chat(keyed, key).status_code == 429  # the group's quota
    page = root.http.get("/console/keys").text
    assert 'aria-label="Take fay out of slow"' in _row(page, "data-principal", "fay")
    r = root.post_form("/console/keys/groups/leave", {"principal": "fay", "group": "slow"})
    assert r.status_code == 303 and r.headers["location"] == "/console/keys?done=ungrouped&what=fay"
    assert [p.groups for p in keyed.keyring.principals() if p.name == "fay"] == [("night-shift",)]
    assert _chat(keyed, key).status_code == 200  # the next call: no longer the group's quota
    root.post_form(f"/console/keys/quotas/{keyed.app.context.inference.quotas.stored()[0].id}/delete", {})
    again = root.post_form("/console/keys/groups/leave", {"principal": "fay", "group": "slow"})
    assert again.status_code == 404 and "is not in a group" in again.text


def test_early_access_requests_are_approved_or_denied(keyed: Served, console: Any) -> None:
    access = keyed.app.context.access
    alice = signed_in(console, keyed, "alice")
    bob = signed_in(console, keyed, "bob")
    for who in (alice, bob):
        assert who.post_form("/console/models/access-requests", {"model": EARLY, "reason": "eval"}).status_code == 303
    root = signed_in(console, keyed, "root")
    page = root.http.get("/console/keys").text
    pending = {r.principal: r.id for r in access.requests("pending")}
    assert set(pending) >= {"alice", "bob"}
    assert "alice" in _row(page, "data-request", pending["alice"]) and "eval" in _row(page, "data-request",
                                                                                       pending["alice"])  # fmt: skip
    r = root.post_form(f"/console/keys/access-requests/{pending['alice']}/approve", {"note": "go ahead"})
    assert r.status_code == 303 and "approved" in root.http.get(r.headers["location"]).text
    r = root.post_form(f"/console/keys/access-requests/{pending['bob']}/deny", {})
    assert r.status_code == 303
    decided = {x.principal: (x.status, x.decided_by, x.decision_note) for x in access.requests()
               if x.id in pending.values()}  # fmt: skip
    assert decided == {"alice": ("approved", "root", "go ahead"), "bob": ("denied", "root", None)}
    early = {"model": EARLY, "messages": [{"role": "user", "content": "hi"}]}
    headers = {name: {"Authorization": f"Bearer {keyed.keys[name]}"} for name in ("alice", "bob")}
    assert httpx.post(f"{keyed.url}/v1/chat/completions", json=early, headers=headers["alice"]).status_code == 200
    assert httpx.post(f"{keyed.url}/v1/chat/completions", json=early, headers=headers["bob"]).status_code == 403
    page = root.http.get("/console/keys").text
    assert f'data-request="{pending["bob"]}"' in page and "denied" in page  # under recent decisions
    r = root.post_form(f"/console/keys/access-requests/{pending['bob']}/approve", {})
    assert r.status_code == 400 and "already denied" in r.text


def test_a_quota_set_here_limits_the_next_calls_and_can_be_removed(keyed: Served, console: Any) -> None:
    root = signed_in(console, keyed, "root")
    made = root.post_form("/console/keys", {"principal": "frank", "kind": "api_key"})
    key = SECRET.findall(made.text)[0]
    r = root.post_form("/console/keys/quotas", {"applies": "principal", "subject": "frank", "model": ECHO,
                                                "requests_per_minute": "0", "tokens_per_minute": ""})  # fmt: skip
    assert r.status_code == 303
    page = root.http.get(r.headers["location"]).text
    assert f"Quota set for principal frank on {ECHO}" in page
    rule_id = re.search(r'<tr data-quota="(q_[0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
    row = _row(page, "data-quota", rule_id)
    assert "principal frank" in row and ECHO in row and "set by root" in row
    assert re.search(r'data-label="Requests per minute" class="num">0<', row)
    refused = _chat(keyed, key)  # no request at all: the next call obeys it
    assert refused.status_code == 429 and "Quota exceeded for 'frank'" in refused.text
    assert _chat(keyed, keyed.keys["alice"]).status_code == 200  # frank's quota, nobody else's
    # setting it again replaces it rather than adding a second rule
    root.post_form("/console/keys/quotas", {"applies": "principal", "subject": "frank", "model": ECHO,
                                           "requests_per_minute": "1000"})  # fmt: skip
    rules = keyed.app.context.inference.quotas.stored()
    assert [(s.rule.principal, s.rule.requests_per_minute) for s in rules] == [("frank", 1000)]
    assert _chat(keyed, key).status_code == 200
    r = root.post_form(f"/console/keys/quotas/{rules[0].id}/delete", {})
    assert r.status_code == 303 and keyed.app.context.inference.quotas.stored() == []
    bad = root.post_form("/console/keys/quotas", {"applies": "group", "subject": "beta", "requests_per_minute": "-3"})
    assert bad.status_code == 400 and "whole number" in bad.text
    none = root.post_form("/console/keys/quotas", {"applies": "everyone"})
    assert none.status_code == 400 and "at least one limit" in none.text


def test_a_member_is_refused_every_keys_path(keyed: Served, console: Any) -> None:
    alice = signed_in(console, keyed, "alice")
    assert 'href="/console/keys"' not in alice.http.get("/console/models").text  # not in the menu
    assert alice.http.get("/console/keys").status_code == 403
    token = alice.csrf()
    for path, form in (("/console/keys", {"principal": "mallory", "kind": "api_key"}),
                       ("/console/keys/key_000000000000/revoke", {}),
                       ("/console/keys/groups", {"principal": "alice", "group": "admins"}),
                       ("/console/keys/groups/leave", {"principal": "alice", "group": "admins"}),
                       ("/console/keys/access-requests/ar_000000000000/approve", {}),
                       ("/console/keys/quotas", {"applies": "everyone", "requests_per_minute": "0"})):  # fmt: skip
        r = alice.post_form(path, form, token)
        assert r.status_code == 403, path
    assert not any(p.name == "mallory" for p in keyed.keyring.principals())
    assert keyed.app.context.inference.quotas.stored() == []


def test_local_mode_has_no_keys_to_manage(base_url: str) -> None:
    page = httpx.get(f"{base_url}/console/keys")
    assert page.status_code == 200 and "runs without keys (local mode)" in page.text
