"""Model access on SQLite and PostgreSQL: states, grants, requests and recorded decisions."""

from __future__ import annotations

import pytest

from outcrop import errors, store
from outcrop.auth.access import AccessControl
from outcrop.auth.principal import Principal

ALICE = Principal("p1", "alice")
BOB = Principal("p2", "bob", groups=("beta",))
ADMIN = Principal("p3", "root", is_admin=True)


@pytest.fixture
def access(database_url: str) -> AccessControl:
    return AccessControl(store.connect(database_url), {"m.ga": "ga", "m.early": "early", "m.off": "disabled"})


def test_states(access: AccessControl) -> None:
    assert access.allowed(ALICE, "m.ga") and access.allowed(ALICE, "m.unlisted")
    assert not access.allowed(ALICE, "m.early") and access.allowed(ADMIN, "m.early")
    assert not access.allowed(ADMIN, "m.off")
    with pytest.raises(errors.AccessDenied, match="early access"):
        access.check(ALICE, "m.early")
    with pytest.raises(errors.AccessDenied, match="disabled"):
        access.check(ADMIN, "m.off")


def test_group_grant(access: AccessControl) -> None:
    access.grant("m.early", "group:beta", "root")
    assert access.allowed(BOB, "m.early") and not access.allowed(ALICE, "m.early")
    assert access.revoke("m.early", "group:beta") and not access.allowed(BOB, "m.early")


def test_request_approve_deny(access: AccessControl) -> None:
    made = access.request(ALICE, "m.early", "for the demo")
    assert made.status == "pending" and made.reason == "for the demo"
    assert access.request(ALICE, "m.early", None).id == made.id  # one pending request at a time
    assert [r.id for r in access.requests("pending")] == [made.id]
    decided = access.decide(made.id, True, "root", "ok")
    assert (decided.status, decided.decided_by, decided.decision_note) == ("approved", "root", "ok")
    assert decided.decided_at is not None
    assert access.allowed(ALICE, "m.early")
    with pytest.raises(errors.InvalidRequest, match="already approved"):
        access.decide(made.id, False, "root")
    with pytest.raises(errors.InvalidRequest, match="already have access"):
        access.request(ALICE, "m.early", None)

    other = access.request(BOB, "m.early", None)
    assert access.decide(other.id, False, "root", "not yet").status == "denied"
    assert not access.allowed(BOB, "m.early")
    assert [r.status for r in access.requests(principal="bob")] == ["denied"]


def test_requests_that_make_no_sense(access: AccessControl) -> None:
    with pytest.raises(errors.InvalidRequest, match="generally available"):
        access.request(ALICE, "m.ga", None)
    with pytest.raises(errors.InvalidRequest, match="disabled"):
        access.request(ALICE, "m.off", None)
    with pytest.raises(errors.NotFound):
        access.decide("ar_nope", True, "root")
