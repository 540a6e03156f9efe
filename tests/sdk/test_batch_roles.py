"""Service roles on batch jobs, through boto3's `bedrock` client against a real keyed server whose config declares
[[roles]] (outcrop/auth/roles.py), with local folders standing for the buckets: a member passes only a role they
may, and the job reaches only the role's folders; an administrator is not held to roles; an allowed job runs on
the built-in model and writes where its role reaches."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from outcrop import store
from outcrop.api.app import build_app
from outcrop.auth.authenticate import Authenticator
from outcrop.auth.keys import Keyring
from outcrop.auth.roles import Role
from outcrop.jobs.store import JobStore
from outcrop.registry import Registry
from tests import conftest
from tests.conftest import CLAUDE, serve_app

TEAM_A = "arn:aws:iam::000000000000:role/team-a-batch"
OPEN = "arn:aws:iam::000000000000:role/anyone"
RECORD = {"recordId": "R0000000001", "modelInput": {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 4,
                                                    "messages": [{"role": "user", "content": "Hello"}]}}  # fmt: skip


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = Path(tmp_path_factory.mktemp("batch-roles"))
    for bucket in ("team-a", "team-b"):
        (home / "batch" / bucket).mkdir(parents=True)
        (home / "batch" / bucket / "in.jsonl").write_text(json.dumps(RECORD) + "\n")
    # team-a's role also names the server's own files folder (s3://outcrop-files/, <batch_dir>/outcrop-files), which
    # no member's job may name all the same
    team_a = Role(TEAM_A, ("s3://team-a/", "s3://outcrop-files/"), groups=("team-a",))
    roles = (team_a, Role(OPEN, ("s3://team-b/shared/",), ("bob",)))
    settings = conftest.test_settings(home, batch_dir=str(home / "batch"), auth="keys", roles=roles)
    engine = store.connect(f"sqlite:///{home / 'o.db'}")
    keyring = Keyring(engine, home / "secret.key")
    keys = {}
    for name, admin, groups in (("alice", False, ("team-a",)), ("bob", False, ()), ("root", True, ())):
        keyring.ensure_principal(name, admin=admin, group_names=groups)
        keys[name] = keyring.create_aws_key(name)
    app = build_app(settings, Registry(settings), Authenticator("keys", keyring), jobs=JobStore(engine))
    with serve_app(app) as url:
        yield {"url": url, "home": home, "keys": keys}


def _bedrock(served: dict[str, Any], who: str) -> Any:
    akid, secret = served["keys"][who]
    return boto3.client("bedrock", endpoint_url=served["url"], region_name="us-east-1", aws_access_key_id=akid,
                        aws_secret_access_key=secret, config=Config(retries={"total_max_attempts": 1}))  # fmt: skip


def _create(served: dict[str, Any], who: str, role: str, source: str, target: str) -> str:
    return str(_bedrock(served, who).create_model_invocation_job(
        jobName=f"job-{time.monotonic_ns()}", roleArn=role, modelId=CLAUDE,
        inputDataConfig={"s3InputDataConfig": {"s3Uri": source}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": target}})["jobArn"])  # fmt: skip


def test_a_member_passes_their_role_and_the_job_writes_where_it_reaches(served: dict[str, Any]) -> None:
    arn = _create(served, "alice", TEAM_A, "s3://team-a/in.jsonl", "s3://team-a/out/")
    bedrock = _bedrock(served, "alice")
    deadline = time.monotonic() + 120
    while (job := bedrock.get_model_invocation_job(jobIdentifier=arn))["status"] not in ("Completed", "Failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.3)
    assert job["status"] == "Completed" and job["roleArn"] == TEAM_A, job
    written = served["home"] / "batch" / "team-a" / "out" / arn.rsplit("/", 1)[1] / "in.jsonl.out"
    assert json.loads(written.read_text().splitlines()[0])["recordId"] == RECORD["recordId"]


@pytest.mark.parametrize(
    ("who", "role", "source", "target", "says"),
    [
        (
            "alice",
            "arn:aws:iam::000000000000:role/made-up",
            "s3://team-a/in.jsonl",
            "s3://team-a/o/",
            "is not one this server declares",
        ),
        ("alice", OPEN, "s3://team-b/shared/in.jsonl", "s3://team-b/shared/o/", "'alice' may not pass the role"),
        ("bob", TEAM_A, "s3://team-a/in.jsonl", "s3://team-a/o/", "'bob' may not pass the role"),
        ("alice", TEAM_A, "s3://team-b/in.jsonl", "s3://team-a/o/", "does not reach s3://team-b/in.jsonl"),
        ("alice", TEAM_A, "s3://team-a/in.jsonl", "s3://team-b/o/", "does not reach s3://team-b/o/"),
        ("bob", OPEN, "s3://team-b/in.jsonl", "s3://team-b/shared/o/", "does not reach s3://team-b/in.jsonl"),
        ("alice", TEAM_A, "s3://outcrop-files/batches/", "s3://team-a/o/", "the server's own files folder"),
        ("alice", TEAM_A, "s3://team-a/in.jsonl", "s3://outcrop-files/", "the server's own files folder"),
    ],
)
def test_a_member_is_refused_a_role_or_a_location_with_the_reason(
    served: dict[str, Any], who: str, role: str, source: str, target: str, says: str
) -> None:
    with pytest.raises(ClientError) as err:
        _create(served, who, role, source, target)
    assert err.value.response["Error"]["Code"] == "AccessDeniedException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403 and says in str(err.value)


def test_an_administrator_is_not_held_to_roles(served: dict[str, Any]) -> None:
    assert _create(served, "root", "arn:aws:iam::000000000000:role/made-up", "s3://team-b/in.jsonl", "s3://team-a/o/")
