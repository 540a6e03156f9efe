"""kill -9 in the middle of a batch job, on a real `outcrop serve` process with the built-in llama.cpp model and a
local folder standing for a bucket. The next server started on the same home resumes the job: it ends Completed
with every record in the output exactly once, the manifest counting each once, and each record metered once (one
usage record of dialect "batch" per record) although part of the work was done before the kill."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from outcrop.models import BUILTIN_MODEL_ID
from tests.conftest import client, serve_process

N_RECORDS = 300
BUCKET = "crash-jobs"


def stop(procs: list[subprocess.Popen[str]]) -> None:
    """End the servers still running: terminate, then kill one that does not stop within 30 s."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def _drain(proc: subprocess.Popen[str]) -> None:
    """Read the server's output as it comes, so that a full pipe never blocks it."""
    threading.Thread(target=lambda: proc.stdout and proc.stdout.read(), daemon=True).start()


def _body(i: int) -> dict[str, Any]:
    return {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 24, "temperature": 0,
            "messages": [{"role": "user", "content": f"Tell me about rock number {i}."}]}  # fmt: skip


def test_kill_9_mid_job_then_the_next_server_resumes_it_with_every_record_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    folder = home / "batch" / BUCKET
    folder.mkdir(parents=True)
    lines = [json.dumps({"recordId": f"K{i:04d}", "modelInput": _body(i)}) for i in range(N_RECORDS)]
    (folder / "in.jsonl").write_text("\n".join(lines) + "\n")
    config = home / "config.toml"
    config.write_text("[server]\nbuiltin_embedding_model = false\n")
    procs: list[subprocess.Popen[str]] = []
    try:
        proc, url = serve_process(config, home)
        procs.append(proc)
        _drain(proc)
        bedrock = client("bedrock", url)
        arn = bedrock.create_model_invocation_job(
            jobName="crash", roleArn="arn:aws:iam::123456789012:role/batch", modelId=BUILTIN_MODEL_ID,
            inputDataConfig={"s3InputDataConfig": {"s3Uri": f"s3://{BUCKET}/in.jsonl"}},
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{BUCKET}/out/"}})["jobArn"]  # fmt: skip
        deadline = time.monotonic() + 120
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            job = bedrock.get_model_invocation_job(jobIdentifier=arn)
            if job.get("processedRecordCount", 0) >= 5 or job["status"] not in ("Submitted", "Validating",
                                                                                  "Scheduled", "InProgress"):  # fmt: skip
                break
            time.sleep(0.05)
        assert job["status"] == "InProgress" and 5 <= job["processedRecordCount"] < N_RECORDS, job
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

        db = sqlite3.connect(home / "outcrop.db")
        done_before = db.execute("SELECT processed FROM batch_jobs").fetchone()[0]
        db.close()
        assert 5 <= done_before < N_RECORDS

        proc, url = serve_process(config, home)  # its start sweep finds the job of a dead process
        procs.append(proc)
        _drain(proc)
        bedrock = client("bedrock", url)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            job = bedrock.get_model_invocation_job(jobIdentifier=arn)
            if job["status"] not in ("Submitted", "Validating", "Scheduled", "InProgress", "Stopping"):
                break
            time.sleep(0.3)
        assert job["status"] == "Completed", job
        assert (job["totalRecordCount"], job["processedRecordCount"], job["successRecordCount"]) == (N_RECORDS,) * 3
    finally:
        stop(procs)

    out = folder / "out" / arn.rsplit("/", 1)[1]
    records = [json.loads(x) for x in (out / "in.jsonl.out").read_text().splitlines()]
    assert [r["recordId"] for r in records] == [f"K{i:04d}" for i in range(N_RECORDS)]  # each once, in order
    assert all(r["modelOutput"]["type"] == "message" for r in records)
    manifest = json.loads((out / "manifest.json.out").read_text())
    assert (
        manifest["totalRecordCount"] == manifest["processedRecordCount"] == manifest["successRecordCount"] == N_RECORDS
    )
    assert manifest["errorRecordCount"] == 0
    assert manifest["outputTokenCount"] == sum(r["modelOutput"]["usage"]["output_tokens"] for r in records)
    db = sqlite3.connect(home / "outcrop.db")
    metered = db.execute("SELECT COUNT(*), COUNT(DISTINCT request_id), SUM(output_tokens) FROM usage_records "
                         "WHERE dialect = 'batch' AND status = 'ok'").fetchone()  # fmt: skip
    db.close()
    assert metered == (N_RECORDS, N_RECORDS, manifest["outputTokenCount"])
    assert not list(out.glob(".*.part"))  # no half-written output left behind
