"""kill -9 in the middle of an OpenAI batch, on a real `outcrop serve` process with the built-in llama.cpp model,
driven by the official `openai` SDK. The next server started on the same home resumes the batch: it ends
completed, its output file holds every request's answer exactly once, request_counts count each once, and each
request is metered once (one usage record of dialect "batch" each) although part of the work was done before the
kill."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import openai

from outcrop.models import BUILTIN_MODEL_ID
from tests.conftest import serve_process
from tests.sdk.test_batch_crash import _drain, stop

N_REQUESTS = 200


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(api_key="local", base_url=url + "/v1", max_retries=0, timeout=60)


def _line(i: int) -> str:
    return json.dumps({"custom_id": f"c-{i:04d}", "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": BUILTIN_MODEL_ID, "max_tokens": 24, "temperature": 0,
                                "messages": [{"role": "user", "content": f"Tell me about rock number {i}."}]}})  # fmt: skip


def test_kill_9_mid_batch_then_the_next_server_resumes_it_with_every_request_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    config = home / "config.toml"
    config.write_text("[server]\nbuiltin_embedding_model = false\n")
    procs: list[subprocess.Popen[str]] = []
    try:
        proc, url = serve_process(config, home)
        procs.append(proc)
        _drain(proc)
        client = _client(url)
        data = ("\n".join(_line(i) for i in range(N_REQUESTS)) + "\n").encode()
        uploaded = client.files.create(file=("crash.jsonl", data), purpose="batch")
        batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                      completion_window="24h")  # fmt: skip
        deadline = time.monotonic() + 120
        seen: Any = batch
        while time.monotonic() < deadline:
            seen = client.batches.retrieve(batch.id)
            done = seen.request_counts.completed if seen.request_counts else 0
            if done >= 5 or seen.status not in ("validating", "in_progress"):
                break
            time.sleep(0.05)
        assert seen.status == "in_progress" and 5 <= seen.request_counts.completed < N_REQUESTS, seen
        started = seen.in_progress_at
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

        db = sqlite3.connect(home / "outcrop.db")
        done_before = db.execute("SELECT processed FROM batch_jobs").fetchone()[0]
        db.close()
        assert 5 <= done_before < N_REQUESTS

        proc, url = serve_process(config, home)  # its start sweep finds the batch of a dead process
        procs.append(proc)
        _drain(proc)
        client = _client(url)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            seen = client.batches.retrieve(batch.id)
            if seen.status not in ("validating", "in_progress", "finalizing", "cancelling"):
                break
            time.sleep(0.3)
        assert seen.status == "completed", seen
        counts = seen.request_counts
        assert (counts.total, counts.completed, counts.failed) == (N_REQUESTS, N_REQUESTS, 0)
        assert seen.in_progress_at == started  # resumed, not started again
        assert seen.output_file_id and seen.error_file_id is None
        out = [json.loads(x) for x in client.files.content(seen.output_file_id).text.splitlines()]
        listed = {f.id for f in client.files.list(purpose="batch_output")}
    finally:
        stop(procs)

    assert [r["custom_id"] for r in out] == [f"c-{i:04d}" for i in range(N_REQUESTS)]  # each once, in order
    assert len({r["id"] for r in out}) == N_REQUESTS
    assert all(r["response"]["status_code"] == 200 and r["error"] is None for r in out)
    assert seen.output_file_id in listed
    db = sqlite3.connect(home / "outcrop.db")
    metered = db.execute("SELECT COUNT(*), COUNT(DISTINCT request_id), SUM(output_tokens) FROM usage_records "
                         "WHERE dialect = 'batch' AND status = 'ok'").fetchone()  # fmt: skip
    db.close()
    tokens = sum(r["response"]["body"]["usage"]["completion_tokens"] for r in out)
    assert metered == (N_REQUESTS, N_REQUESTS, tokens)
    assert seen.usage is not None and seen.usage.output_tokens == tokens
