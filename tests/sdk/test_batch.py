"""Batch inference through boto3's `bedrock` client against a real server on the built-in llama.cpp model, with its
files on a real moto S3 server or in a local folder standing for a bucket: submit, poll, read the outputs and the
manifest; record errors; Stop mid-way; an unreadable input; who sees which job; the OpenAPI document."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from outcrop import store
from outcrop.api.app import build_app
from outcrop.auth.authenticate import Authenticator
from outcrop.auth.keys import Keyring
from outcrop.config import ModelSpec
from outcrop.jobs.store import JobStore
from outcrop.models import BUILTIN_EMBEDDING_ID, builtin_embedding_available
from outcrop.registry import Registry
from tests import conftest
from tests.conftest import CLAUDE, LLAMA, MISTRAL, TITAN, free_port, serve_app

ROLE = "arn:aws:iam::123456789012:role/batch"
TITAN_V2 = "amazon.titan-embed-text-v2:0"
FINISHED = {"Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as mp:
        for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                            ("AWS_DEFAULT_REGION", "us-east-1")):  # fmt: skip
            mp.setenv(name, value)
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
        server.start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[dict[str, Any]]:
    home = Path(tmp_path_factory.mktemp("batch"))
    (home / "batch" / "local-jobs").mkdir(parents=True)  # a folder standing for the bucket "local-jobs"
    settings = conftest.test_settings(home, s3_endpoint_url=s3_endpoint, batch_dir=str(home / "batch"), auth="keys")
    embedder = ModelSpec(id=BUILTIN_EMBEDDING_ID, engine="sentence-transformers", kind="embedding", aliases=(TITAN_V2,))
    settings = replace(settings, models=(*settings.models, embedder))
    engine = store.connect(f"sqlite:///{home / 'o.db'}")
    keyring = Keyring(engine, home / "secret.key")
    keys = {}
    for name, admin in (("alice", False), ("bob", False), ("root", True)):
        keyring.ensure_principal(name, admin=admin)
        keys[name] = keyring.create_aws_key(name)
    keys["root-bearer"] = keyring.create_api_key("root")[1]
    app = build_app(settings, Registry(settings), Authenticator("keys", keyring), jobs=JobStore(engine))
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    for bucket in ("batch-in", "batch-out"):
        s3.create_bucket(Bucket=bucket)
    with serve_app(app) as url:
        yield {"url": url, "home": home, "s3": s3, "keys": keys}


def _bedrock(served: dict[str, Any], who: str = "alice") -> Any:
    akid, secret = served["keys"][who]
    return boto3.client("bedrock", endpoint_url=served["url"], region_name="us-east-1", aws_access_key_id=akid,
                        aws_secret_access_key=secret, config=Config(retries={"total_max_attempts": 1}))  # fmt: skip


def _jsonl(records: list[Any]) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()


def _wait(bedrock: Any, arn: str, until: set[str] = FINISHED, timeout_s: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job = bedrock.get_model_invocation_job(jobIdentifier=arn)
        if job["status"] in until or time.monotonic() > deadline:
            return dict(job)
        time.sleep(0.3)


def _create(bedrock: Any, name: str, model: str, source: str, target: str, **extra: Any) -> str:
    return str(bedrock.create_model_invocation_job(
        jobName=name, roleArn=ROLE, modelId=model, inputDataConfig={"s3InputDataConfig": {"s3Uri": source}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": target}}, **extra)["jobArn"])  # fmt: skip


def _s3_lines(served: dict[str, Any], key: str, bucket: str = "batch-out") -> list[dict[str, Any]]:
    body = served["s3"].get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines()]


def _anthropic(text: str) -> dict[str, Any]:
    return {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 6, "temperature": 0,
            "messages": [{"role": "user", "content": text}]}  # fmt: skip


def test_jobs_in_every_body_format_complete_with_every_record_and_record_errors(served: dict[str, Any]) -> None:
    bedrock = _bedrock(served)
    s3 = served["s3"]
    claude = [
        {"recordId": "CALL0000001", "modelInput": _anthropic("Hello")},
        {"recordId": "CALL0000002", "modelInput": _anthropic("What is a rock?")},
        "{not json",
        {"modelInput": _anthropic("no id")},
        {"recordId": "CALL0000002", "modelInput": _anthropic("the same id again")},
        {"recordId": "CALL0000003", "modelInput": {"anthropic_version": "bedrock-2023-05-31", "messages": []}},
    ]
    s3.put_object(Bucket="batch-in", Key="claude/part-1.jsonl", Body=_jsonl(claude[:3]))
    s3.put_object(Bucket="batch-in", Key="claude/part-2.jsonl", Body=_jsonl(claude[3:]))
    s3.put_object(Bucket="batch-in", Key="claude/notes.txt", Body=b"not an input")
    bodies = {
        LLAMA: {"prompt": "Hello", "max_gen_len": 6, "temperature": 0},
        MISTRAL: {"prompt": "<s>[INST] Hello [/INST]", "max_tokens": 6, "temperature": 0},
        TITAN: {"inputText": "Hello", "textGenerationConfig": {"maxTokenCount": 6, "temperature": 0}},
    }
    arns = {CLAUDE: _create(bedrock, "claude-job", CLAUDE, "s3://batch-in/claude/", "s3://batch-out/results/",
                            timeoutDurationInHours=24, tags=[{"key": "team", "value": "rocks"}])}  # fmt: skip
    for model, body in bodies.items():
        key = f"{model.split('.')[0]}.jsonl"
        s3.put_object(Bucket="batch-in", Key=key,
                      Body=_jsonl([{"recordId": f"R{i:010d}", "modelInput": body} for i in range(2)]))  # fmt: skip
        arns[model] = _create(bedrock, f"{model.split('.')[0]}-job", model, f"s3://batch-in/{key}", "s3://batch-out/r")
    for model, arn in arns.items():
        job = _wait(bedrock, arn)
        job_id = arn.rsplit("/", 1)[1]
        if model != CLAUDE:
            assert job["status"] == "Completed", job
            out = _s3_lines(served, f"r/{job_id}/{model.split('.')[0]}.jsonl.out")
            assert [r["recordId"] for r in out] == ["R0000000000", "R0000000001"]
            assert all("modelOutput" in r and r["modelInput"] == bodies[model] for r in out)
            assert (job["totalRecordCount"], job["successRecordCount"], job["errorRecordCount"]) == (2, 2, 0)
            continue
        assert job["status"] == "PartiallyCompleted" and "4 of 6 records failed" in job["message"], job
        assert job["jobName"] == "claude-job" and job["roleArn"] == ROLE and job["timeoutDurationInHours"] == 24
        assert job["jobExpirationTime"] > job["submitTime"] and job["endTime"] >= job["submitTime"]
        assert job["modelInvocationType"] == "InvokeModel"
        first = _s3_lines(served, f"results/{job_id}/part-1.jsonl.out")
        second = _s3_lines(served, f"results/{job_id}/part-2.jsonl.out")
        assert [r.get("recordId") for r in first] == ["CALL0000001", "CALL0000002", None]
        ok = first[0]["modelOutput"]
        assert ok["type"] == "message" and ok["role"] == "assistant" and ok["usage"]["output_tokens"] <= 6
        assert first[2]["error"]["errorCode"] == 400 and "not JSON" in first[2]["error"]["errorMessage"]
        assert [r.get("recordId") for r in second] == [None, "CALL0000002", "CALL0000003"]
        assert "no recordId" in second[0]["error"]["errorMessage"]
        assert "more than once" in second[1]["error"]["errorMessage"]
        assert second[2]["error"]["errorCode"] == 400  # a body the model cannot take (no max_tokens)
        manifest = _s3_lines(served, f"results/{job_id}/manifest.json.out")[0]
        assert manifest["totalRecordCount"] == 6 and manifest["processedRecordCount"] == 6
        assert (manifest["successRecordCount"], manifest["errorRecordCount"]) == (2, 4)
        assert manifest["inputTokenCount"] > 0 and 0 < manifest["outputTokenCount"] <= 12


def test_a_converse_job(served: dict[str, Any]) -> None:
    bedrock = _bedrock(served)
    body = {"messages": [{"role": "user", "content": [{"text": "Hello"}]}], "inferenceConfig": {"maxTokens": 5}}
    served["s3"].put_object(Bucket="batch-in", Key="converse.jsonl",
                            Body=_jsonl([{"recordId": "C1", "modelInput": body}]))  # fmt: skip
    arn = _create(bedrock, "converse-job", CLAUDE, "s3://batch-in/converse.jsonl", "s3://batch-out/conv",
                  modelInvocationType="Converse")  # fmt: skip
    job = _wait(bedrock, arn)
    assert job["status"] == "Completed" and job["modelInvocationType"] == "Converse"
    (line,) = _s3_lines(served, f"conv/{arn.rsplit('/', 1)[1]}/converse.jsonl.out")
    assert line["modelOutput"]["output"]["message"]["role"] == "assistant"
    assert line["modelOutput"]["stopReason"] in ("end_turn", "max_tokens")


def test_an_embedding_job(served: dict[str, Any]) -> None:
    if not builtin_embedding_available():
        pytest.skip("the built-in embedding model is not installed")
    bedrock = _bedrock(served)
    served["s3"].put_object(Bucket="batch-in", Key="embed.jsonl", Body=_jsonl([
        {"recordId": "E1", "modelInput": {"inputText": "A rock.", "dimensions": 256}},
        {"recordId": "E2", "modelInput": {"texts": ["wrong family"], "input_type": "search_query"}}]))  # fmt: skip
    arn = _create(bedrock, "embed-job", TITAN_V2, "s3://batch-in/embed.jsonl", "s3://batch-out/emb")
    job = _wait(bedrock, arn)
    assert job["status"] == "PartiallyCompleted" and job["successRecordCount"] == 1, job
    first, second = _s3_lines(served, f"emb/{arn.rsplit('/', 1)[1]}/embed.jsonl.out")
    assert len(first["modelOutput"]["embedding"]) == 256 and first["modelOutput"]["inputTextTokenCount"] > 0
    assert second["error"]["errorCode"] == 400  # a Titan model takes no Cohere body


def test_a_job_on_local_files(served: dict[str, Any]) -> None:
    folder = served["home"] / "batch" / "local-jobs"
    (folder / "in").mkdir(exist_ok=True)
    (folder / "in" / "prompts.jsonl").write_bytes(
        _jsonl([{"recordId": f"L{i}", "modelInput": _anthropic(f"Question {i}")} for i in range(3)])
    )
    bedrock = _bedrock(served)
    arn = _create(bedrock, "local-job", CLAUDE, "s3://local-jobs/in/prompts.jsonl", "s3://local-jobs/out/")
    job = _wait(bedrock, arn)
    assert job["status"] == "Completed" and job["successRecordCount"] == 3
    out = folder / "out" / arn.rsplit("/", 1)[1]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json.out", "prompts.jsonl.out"]
    lines = [json.loads(x) for x in (out / "prompts.jsonl.out").read_text().splitlines()]
    assert [x["recordId"] for x in lines] == ["L0", "L1", "L2"]


def test_an_unreadable_input_fails_the_job_with_a_message(served: dict[str, Any]) -> None:
    bedrock = _bedrock(served)
    arn = _create(bedrock, "missing", CLAUDE, "s3://batch-in/no/such/file.jsonl", "s3://batch-out/x")
    job = _wait(bedrock, arn)
    assert job["status"] == "Failed" and "was not found" in job["message"], job
    served["s3"].put_object(Bucket="batch-in", Key="binary.jsonl", Body=b"\xff\xfe\x00garbage")
    job = _wait(bedrock, _create(bedrock, "binary", CLAUDE, "s3://batch-in/binary.jsonl", "s3://batch-out/x"))
    assert job["status"] == "Failed" and "UTF-8" in job["message"], job


def test_create_refuses_what_the_server_cannot_do(served: dict[str, Any]) -> None:
    bedrock = _bedrock(served)
    with pytest.raises(ClientError) as info:
        _create(bedrock, "nope", "no.such-model-v1:0", "s3://batch-in/a.jsonl", "s3://batch-out/x")
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as info:
        _create(bedrock, "nope", CLAUDE, "s3://batch-in/../etc/passwd", "s3://batch-out/x")
    assert info.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as info:
        bedrock.get_model_invocation_job(jobIdentifier="abcdefabcdef")
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_stop_mid_way_keeps_the_records_done(served: dict[str, Any]) -> None:
    bedrock = _bedrock(served)
    body = {**_anthropic("Tell me a long story about rocks"), "max_tokens": 48}
    records = [{"recordId": f"S{i:04d}", "modelInput": body} for i in range(2000)]
    served["s3"].put_object(Bucket="batch-in", Key="long.jsonl", Body=_jsonl(records))
    arn = _create(bedrock, "to-stop", CLAUDE, "s3://batch-in/long.jsonl", "s3://batch-out/stopped")
    running = _wait(bedrock, arn, {"InProgress", *FINISHED})
    while running["status"] == "InProgress" and running.get("processedRecordCount", 0) < 2:
        time.sleep(0.05)
        running = bedrock.get_model_invocation_job(jobIdentifier=arn)
    assert running["status"] == "InProgress", running
    bedrock.stop_model_invocation_job(jobIdentifier=arn)
    assert bedrock.get_model_invocation_job(jobIdentifier=arn)["status"] in ("Stopping", "Stopped")
    job = _wait(bedrock, arn)
    assert job["status"] == "Stopped", job
    assert 2 <= job["processedRecordCount"] < 2000
    job_id = arn.rsplit("/", 1)[1]
    out = _s3_lines(served, f"stopped/{job_id}/long.jsonl.out")
    assert len(out) == job["processedRecordCount"] == len({r["recordId"] for r in out})
    manifest = _s3_lines(served, f"stopped/{job_id}/manifest.json.out")[0]
    assert (manifest["totalRecordCount"], manifest["processedRecordCount"]) == (2000, job["processedRecordCount"])
    with pytest.raises(ClientError) as info:
        bedrock.stop_model_invocation_job(jobIdentifier=arn)
    assert info.value.response["Error"]["Code"] == "ConflictException"


def test_list_filters_sorts_and_pages_and_each_caller_sees_their_own(served: dict[str, Any]) -> None:
    alice, bob, root = _bedrock(served, "alice"), _bedrock(served, "bob"), _bedrock(served, "root")
    mine = _create(bob, "bobs-job", CLAUDE, "s3://batch-in/none.jsonl", "s3://batch-out/b")
    _wait(bob, mine)
    with pytest.raises(ClientError) as info:
        alice.get_model_invocation_job(jobIdentifier=mine)
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError):
        alice.stop_model_invocation_job(jobIdentifier=mine)
    assert root.get_model_invocation_job(jobIdentifier=mine)["jobName"] == "bobs-job"
    assert [j["jobName"] for j in bob.list_model_invocation_jobs()["invocationJobSummaries"]] == ["bobs-job"]
    everyone = {j["jobArn"] for j in root.list_model_invocation_jobs()["invocationJobSummaries"]}
    theirs = {j["jobArn"] for j in alice.list_model_invocation_jobs()["invocationJobSummaries"]}
    assert mine in everyone and mine not in theirs and theirs < everyone

    newest = alice.list_model_invocation_jobs()["invocationJobSummaries"]
    oldest = alice.list_model_invocation_jobs(sortBy="CreationTime", sortOrder="Ascending")["invocationJobSummaries"]
    assert [j["jobArn"] for j in newest] == [j["jobArn"] for j in reversed(oldest)]
    assert [j["submitTime"] for j in oldest] == sorted(j["submitTime"] for j in oldest)
    pages = alice.get_paginator("list_model_invocation_jobs").paginate(PaginationConfig={"PageSize": 2})
    paged = [j["jobArn"] for page in pages for j in page["invocationJobSummaries"]]
    assert paged == [j["jobArn"] for j in newest]
    failed = alice.list_model_invocation_jobs(statusEquals="Failed")["invocationJobSummaries"]
    assert failed and all(j["status"] == "Failed" for j in failed)
    for wanted in ("Completed", "PartiallyCompleted"):  # one runner state, told apart by failed records
        found = alice.list_model_invocation_jobs(statusEquals=wanted)["invocationJobSummaries"]
        assert {j["jobArn"] for j in found} == {j["jobArn"] for j in newest if j["status"] == wanted}
    named = alice.list_model_invocation_jobs(nameContains="LOCAL")["invocationJobSummaries"]
    assert [j["jobName"] for j in named] == ["local-job"]
    cut = oldest[1]["submitTime"]
    after = alice.list_model_invocation_jobs(submitTimeAfter=cut)["invocationJobSummaries"]
    assert {j["jobArn"] for j in after} == {j["jobArn"] for j in oldest if j["submitTime"] > cut}
    before = alice.list_model_invocation_jobs(submitTimeBefore=cut)["invocationJobSummaries"]
    assert {j["jobArn"] for j in before} == {j["jobArn"] for j in oldest if j["submitTime"] < cut}


def test_a_retried_client_token_returns_the_same_job(served: dict[str, Any]) -> None:
    bedrock = _bedrock(served)
    args = {"jobName": "token-job", "roleArn": ROLE, "modelId": CLAUDE, "clientRequestToken": "retry-1",
            "inputDataConfig": {"s3InputDataConfig": {"s3Uri": "s3://batch-in/none.jsonl"}},
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "s3://batch-out/t"}}}  # fmt: skip
    first = bedrock.create_model_invocation_job(**args)["jobArn"]
    assert bedrock.create_model_invocation_job(**args)["jobArn"] == first
    with pytest.raises(ClientError) as info:
        bedrock.create_model_invocation_job(**{**args, "jobName": "another"})
    assert info.value.response["Error"]["Code"] == "ConflictException"


def test_the_bedrock_openapi_document_has_the_job_operations(served: dict[str, Any]) -> None:
    doc = httpx.get(f"{served['url']}/openapi/bedrock.json").json()
    ops = {op["operationId"] for path in doc["paths"].values() for op in path.values()}
    assert {"CreateModelInvocationJob", "GetModelInvocationJob", "ListModelInvocationJobs",
            "StopModelInvocationJob"} <= ops  # fmt: skip


def test_metrics_count_batch_records_and_show_the_runner(served: dict[str, Any]) -> None:
    text = httpx.get(
        f"{served['url']}/metrics", headers={"Authorization": f"Bearer {served['keys']['root-bearer']}"}
    ).text
    assert (
        'outcrop_requests_total{dialect="batch",model="outcrop.tiny-chat-v1:0",operation="ModelInvocationJob"' in text
    )
    assert 'outcrop_batch_records_queued{model="outcrop.tiny-chat-v1:0"}' in text


def test_a_member_cannot_name_the_servers_own_files_folder(served: dict[str, Any]) -> None:
    """Everyone's /v1/files uploads and batch outputs live in s3://outcrop-files/ (batch_files_uri): a member's job
    may not read or write there by name, roles declared or not; an administrator may."""
    for source, target in (("s3://outcrop-files/batches/", "s3://batch-out/x/"),
                           ("s3://batch-in/claude/", "s3://outcrop-files/")):  # fmt: skip
        with pytest.raises(ClientError) as err:
            _create(_bedrock(served), "files-job", CLAUDE, source, target)
        assert err.value.response["Error"]["Code"] == "AccessDeniedException"
        assert "the server's own files folder (s3://outcrop-files/)" in str(err.value)
    assert _create(_bedrock(served, "root"), "files-job", CLAUDE, "s3://outcrop-files/", "s3://batch-out/admin/")
