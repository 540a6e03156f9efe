"""Service roles (outcrop/auth/roles.py): parsing [[roles]], who may pass a role, which locations it reaches."""

from __future__ import annotations

from pathlib import Path

import pytest

from outcrop import errors
from outcrop.auth.principal import Principal
from outcrop.auth.roles import Role, Roles
from outcrop.config import load

TEAM_A = "arn:aws:iam::000000000000:role/team-a"
ALICE = Principal("p1", "alice", groups=("team-a",))
BOB = Principal("p2", "bob")
ROOT = Principal("p3", "root", is_admin=True)


def role(**extra: object) -> Role:
    return Role.from_dict({"arn": TEAM_A, "locations": ["s3://team-a", "s3://shared/team-a/"], **extra}, "here")


def test_a_role_reaches_its_folders_and_nothing_beside_them() -> None:
    r = role()
    for inside in ("s3://team-a/", "s3://team-a/in/x.jsonl", "s3://shared/team-a/out/", "s3://shared/team-a"):
        assert r.reaches(inside), inside
    for outside in ("s3://team-ab/x.jsonl", "s3://shared/", "s3://shared/team-ab/x", "s3://team-b/team-a/x"):
        assert not r.reaches(outside), outside


def test_who_may_pass_a_role() -> None:
    by_group, by_name = role(groups=["team-a"]), role(principals=["bob"])
    assert by_group.may_pass(ALICE) and not by_group.may_pass(BOB)
    assert by_name.may_pass(BOB) and not by_name.may_pass(ALICE)
    assert not role().may_pass(ALICE)  # nobody named: only administrators


def test_check_refuses_with_what_is_wrong() -> None:
    roles = Roles([role(groups=["team-a"])])
    roles.check(ALICE, TEAM_A, ["s3://team-a/in.jsonl", "s3://shared/team-a/out/"])
    cases = [
        (ALICE, "arn:aws:iam::000000000000:role/other", ["s3://team-a/x"], "is not one this server declares"),
        (ALICE, None, ["s3://team-a/x"], "is not one this server declares"),
        (BOB, TEAM_A, ["s3://team-a/x"], "'bob' may not pass the role"),
        (ALICE, TEAM_A, ["s3://team-a/in.jsonl", "s3://team-b/out/"], "does not reach s3://team-b/out/"),
    ]
    for who, arn, where, says in cases:
        with pytest.raises(errors.AccessDenied, match=says):
            roles.check(who, arn, where)
    roles.check(ROOT, "anything", ["s3://team-b/"])  # administrators are not held to roles
    Roles().check(BOB, "anything", ["s3://team-b/"])  # no roles declared: as before


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({"locations": ["s3://a/"]}, "arn must be a role ARN"),
        ({"arn": TEAM_A}, "locations must name at least one folder"),
        ({"arn": TEAM_A, "locations": "s3://a/"}, "locations must be a list of strings"),
        ({"arn": TEAM_A, "locations": ["/srv/team-a"]}, "is not a folder"),
        ({"arn": TEAM_A, "locations": ["s3://ab/../b/"]}, "is not a folder"),
        ({"arn": TEAM_A, "locations": ["s3://shared//a/"]}, "is not a folder"),
        ({"arn": TEAM_A, "locations": ["s3://Team_A/"]}, "is not a folder"),
        ({"arn": TEAM_A, "locations": ["s3://a/"], "groups": [1]}, "groups must be a list of strings"),
        ({"arn": TEAM_A, "locations": ["s3://a/"], "policy": "x"}, "unknown key(s) ['policy']"),
    ],
)
def test_bad_role_entries_say_what_is_wrong(raw: dict[str, object], says: str) -> None:
    with pytest.raises(errors.InvalidRequest) as err:
        Role.from_dict(raw, "config.toml: [[roles]] #1")
    assert says in err.value.message and "[[roles]] #1" in err.value.message


def test_the_config_file_declares_roles(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[[roles]]\narn = "{TEAM_A}"\nlocations = ["s3://team-a/"]\ngroups = ["team-a"]\n')
    settings = load(path)
    assert settings.roles == (Role(TEAM_A, ("s3://team-a/",), (), ("team-a",)),)
    path.write_text(path.read_text() * 2)
    with pytest.raises(errors.InvalidRequest, match="declared twice"):
        load(path)
    # a misspelt table would leave every caller unrestricted: it is refused, not ignored
    path.write_text(f'[[role]]\narn = "{TEAM_A}"\nlocations = ["s3://team-a/"]\n')
    with pytest.raises(errors.InvalidRequest, match=r"unknown top-level key\(s\) \['role'\]"):
        load(path)
    path.write_text("roles = [1]\n")
    with pytest.raises(errors.InvalidRequest, match=r"roles must be \[\[roles\]\] tables"):
        load(path)
