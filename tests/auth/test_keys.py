"""Principals and keys in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from outcrop import errors, store
from outcrop.auth.keys import Keyring


@pytest.fixture
def keyring(database_url: str, tmp_path: Path) -> Keyring:
    return Keyring(store.connect(database_url), tmp_path / "secret.key")


def test_api_keys(keyring: Keyring) -> None:
    key_id, token = keyring.create_api_key("alice", "laptop")
    assert token.startswith("ocp_") and len(token) > 40
    principal = keyring.by_api_key(token)
    assert principal is not None and principal.name == "alice" and principal.credential_id == key_id
    assert keyring.by_api_key(token + "x") is None
    # the key itself is never stored
    with keyring.engine.connect() as db:
        dump = str([tuple(r) for r in db.exec_driver_sql("SELECT * FROM credentials")])
    assert token not in dump
    assert keyring.revoke(key_id) and not keyring.revoke(key_id)
    assert keyring.by_api_key(token) is None
    [info] = keyring.list()
    assert info.id == key_id and info.revoked_at is not None and info.label == "laptop"


def test_aws_keys_are_encrypted_at_rest(keyring: Keyring, tmp_path: Path) -> None:
    akid, secret = keyring.create_aws_key("app", None)
    assert akid.startswith("OCAK") and len(akid) == 20 and len(secret) == 40
    principal, recovered = keyring.aws_secret(akid) or (None, None)
    assert recovered == secret and principal is not None and principal.name == "app"
    with keyring.engine.connect() as db:
        dump = str([tuple(r) for r in db.exec_driver_sql("SELECT * FROM credentials")])
    assert secret not in dump
    assert os.stat(tmp_path / "secret.key").st_mode & 0o777 == 0o600
    keyring.revoke(akid)
    assert keyring.aws_secret(akid) is None


def test_groups_and_admin(keyring: Keyring) -> None:
    keyring.ensure_principal("bob", admin=True, group_names=("beta", "staff"))
    keyring.ensure_principal("bob", group_names=("beta",))
    _, token = keyring.create_api_key("bob")
    principal = keyring.by_api_key(token)
    assert principal is not None and principal.groups == ("beta", "staff") and principal.is_admin


def test_joining_a_group_needs_an_existing_principal(keyring: Keyring) -> None:
    assert keyring.join_group("ghost", ("beta",)) is False
    assert "ghost" not in {p.name for p in keyring.principals()}  # not made on the way
    keyring.ensure_principal("gwen")
    assert keyring.join_group("gwen", ("beta", "staff")) is True
    assert {p.name: p.groups for p in keyring.principals()}["gwen"] == ("beta", "staff")


def test_leaving_a_group(keyring: Keyring) -> None:
    keyring.ensure_principal("dora", group_names=("beta", "staff"))
    keyring.ensure_principal("erik", group_names=("beta",))
    _, token = keyring.create_api_key("dora")
    assert keyring.by_api_key(token).groups == ("beta", "staff")  # type: ignore[union-attr]
    assert keyring.leave_group("dora", "beta") is True
    assert keyring.by_api_key(token).groups == ("staff",)  # type: ignore[union-attr]  (the next lookup sees it)
    assert keyring.leave_group("dora", "beta") is False  # not a member any more
    assert keyring.leave_group("nobody", "staff") is False and keyring.leave_group("dora", "no-such") is False
    assert {p.name: p.groups for p in keyring.principals()}["erik"] == ("beta",)  # the group stays, with its others


def test_key_file_readable_by_others_is_refused(tmp_path: Path, database_url: str) -> None:
    key = tmp_path / "secret.key"
    key.write_bytes(b"x")
    key.chmod(0o644)
    keyring = Keyring(store.connect(database_url), key)
    with pytest.raises(errors.InvalidRequest, match="chmod 600"):
        keyring.create_aws_key("x", None)


def test_last_use_is_recorded(keyring: Keyring) -> None:
    key_id, _ = keyring.create_api_key("eve")
    assert keyring.list()[0].last_used_at is None
    keyring.touch(key_id)
    first = keyring.list()[0].last_used_at
    assert first is not None
    keyring.touch(key_id)  # within a minute: no second write
    assert keyring.list()[0].last_used_at == first


def test_sixteen_concurrent_first_requests_create_one_principal(database_url: str) -> None:
    """Sixteen writers at once on a new principal: no "database is locked", no duplicate, one id for all."""
    import concurrent.futures
    import threading

    keyring = Keyring(store.connect(database_url), None)
    go = threading.Barrier(16)

    def one(_: int) -> str:
        go.wait()
        return keyring.ensure_principal("carol", group_names=("beta", "staff"))

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        ids = set(pool.map(one, range(16)))
    assert len(ids) == 1
