"""The Batch page over HTTP, as a browser uses it (tests/console/conftest.py's Console and `keyed` server): a JSONL
file of Bedrock records or OpenAI requests is submitted on the tiny llama.cpp model and runs to the end through
the same services as CreateModelInvocationJob and /v1/files + /v1/batches; the list shows its progress; its output,
failed records and manifest download; a job stops; a member sees and touches only their own jobs, an
administrator everyone's; a batch made through the OpenAI API shows on the page too."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from outcrop.models import BUILTIN_MODEL_ID
from tests.console.conftest import EARLY, ECHO, Console, Served, signed_in

FINISHED = {"Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired", "completed", "failed", "cancelled",
            "expired"}  # fmt: skip


def _jsonl(lines: list[Any]) -> bytes:
    return "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines).encode()


def _anthropic(text: str, max_tokens: int = 4) -> dict[str, Any]:
    return {"anthropic_version": "bedrock-2023-05-31", "max_tokens": max_tokens, "temperature": 0,
            "messages": [{"role": "user", "content": text}]}  # fmt: skip


def _openai(custom_id: str, text: str, **extra: Any) -> dict[str, Any]:
    body = {"messages": [{"role": "user", "content": text}], "max_tokens": 4, "temperature": 0, **extra}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def submit(c: Console, data: bytes, model: str, filename: str = "records.jsonl", **fields: str) -> httpx.Response:
    return c.http.post("/console/batch/jobs", files={"file": (filename, data, "application/jsonl")},
                       data={"model": model, **fields}, headers={"Origin": c.url, "X-CSRF-Token": c.csrf()})  # fmt: skip


def wait(c: Console, job_id: str, timeout_s: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        [job] = [j for j in c.http.get("/console/batch/jobs").json()["jobs"] if j["id"] == job_id]
        if not job["active"]:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def _download(c: Console, url: str) -> tuple[httpx.Response, list[dict[str, Any]]]:
    r = c.http.get(url)
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"].startswith("attachment; filename=")
    return r, [json.loads(line) for line in r.text.splitlines()]


def test_bedrock_records_run_on_the_tiny_model_with_progress_output_and_failed_records(keyed: Served,
                                                                                        console: Any) -> None:  # fmt: skip
    c = signed_in(console, keyed, "alice")
    records = [{"recordId": "R1", "modelInput": _anthropic("Hello")},
               {"recordId": "R2", "modelInput": _anthropic("What is a rock?")},
               {"recordId": "R3", "modelInput": {"anthropic_version": "bedrock-2023-05-31", "messages": []}}]  # fmt: skip
    r = submit(c, _jsonl(records), BUILTIN_MODEL_ID, "rocks.jsonl", name="rock-job")
    assert r.status_code == 200, r.text
    assert r.json()["api"] == "Bedrock"
    job_id = r.json()["id"]
    page = c.http.get(f"/console/batch?submitted={job_id}").text
    assert f"Job {job_id} submitted." in page and "rock-job" in page and f"model-invocation-job/{job_id}" in page
    done = wait(c, job_id)
    assert done["status"] == "PartiallyCompleted", done
    assert (done["total"], done["processed"], done["succeeded"], done["failed"]) == (3, 3, 2, 1)
    assert not done["stoppable"]
    page = c.http.get("/console/batch").text
    assert f'<progress max="3" value="3" aria-labelledby="count-{job_id}">' in page
    assert "3 of 3 processed: 2 succeeded, 1 failed" in page and "PartiallyCompleted" in page
    labels = {d["label"]: d["url"] for d in done["downloads"]}
    assert set(labels) == {"Output", "Failed records", "Manifest"}
    for url in labels.values():
        assert f'href="{url}" download' in page
    _, out = _download(c, labels["Output"])
    assert [x["recordId"] for x in out] == ["R1", "R2", "R3"]
    assert out[0]["modelOutput"]["type"] == "message" and out[0]["modelOutput"]["content"][0]["text"]
    assert out[2]["error"]["errorCode"] == 400
    _, failed = _download(c, labels["Failed records"])
    assert [x["recordId"] for x in failed] == ["R3"]
    _, [manifest] = _download(c, labels["Manifest"])
    assert manifest["totalRecordCount"] == 3 and manifest["successRecordCount"] == 2
    assert manifest["errorRecordCount"] == 1 and manifest["outputTokenCount"] > 0


def test_converse_records(keyed: Served, console: Any) -> None:
    c = signed_in(console, keyed, "alice")
    converse = {"messages": [{"role": "user", "content": [{"text": "Hello"}]}], "inferenceConfig": {"maxTokens": 4}}
    r = submit(c, _jsonl([{"recordId": "C1", "modelInput": converse}]), BUILTIN_MODEL_ID, converse="on")
    assert r.status_code == 200, r.text
    done = wait(c, r.json()["id"])
    assert done["status"] == "Completed", done
    _, [line] = _download(c, done["downloads"][0]["url"])
    assert line["modelOutput"]["output"]["message"]["role"] == "assistant"


def test_openai_requests_take_the_chosen_model_and_give_output_and_error_files(keyed: Served, console: Any) -> None:
    c = signed_in(console, keyed, "alice")
    lines = [_openai("q-1", "Hello"), _openai("bad", "Hi", max_tokens=0), _openai("q-2", "Name a mineral.")]
    lines[2]["body"]["model"] = "some.other-model"  # the chosen model replaces it
    r = submit(c, _jsonl(lines), BUILTIN_MODEL_ID, "questions.jsonl")
    assert r.status_code == 200, r.text
    assert r.json()["api"] == "OpenAI"
    done = wait(c, r.json()["id"])
    assert done["status"] == "completed", done
    assert (done["total"], done["succeeded"], done["failed"]) == (3, 2, 1)
    labels = {d["label"]: d["url"] for d in done["downloads"]}
    assert set(labels) == {"Output", "Errors"}
    _, out = _download(c, labels["Output"])
    assert [x["custom_id"] for x in out] == ["q-1", "q-2"]
    assert out[0]["response"]["body"]["model"] == BUILTIN_MODEL_ID
    _, [err] = _download(c, labels["Errors"])
    assert err["custom_id"] == "bad" and err["response"]["status_code"] == 400
    page = c.http.get("/console/batch").text
    assert f"batch_{done['id']}" in page and "questions" in page
    # the same batch through the OpenAI API, as alice
    api = httpx.get(
        f"{keyed.url}/v1/batches/batch_{done['id']}", headers={"Authorization": f"Bearer {keyed.keys['alice']}"}
    )
    assert api.json()["request_counts"] == {"total": 3, "completed": 2, "failed": 1}


def test_a_job_made_through_the_api_shows_on_the_page(keyed: Served, console: Any) -> None:
    auth = {"Authorization": f"Bearer {keyed.keys['bob']}"}
    data = _jsonl([{**_openai("x", "Hi"), "body": {**_openai("x", "Hi")["body"], "model": ECHO}}])
    f = httpx.post(f"{keyed.url}/v1/files", files={"file": ("api.jsonl", data)}, data={"purpose": "batch"},
                   headers=auth).json()  # fmt: skip
    b = httpx.post(f"{keyed.url}/v1/batches", json={"input_file_id": f["id"], "endpoint": "/v1/chat/completions",
                                                     "completion_window": "24h"}, headers=auth).json()  # fmt: skip
    c = signed_in(console, keyed, "bob")
    job_id = b["id"].removeprefix("batch_")
    assert f'data-job="{job_id}"' in c.http.get("/console/batch").text
    done = wait(c, job_id)
    assert done["status"] == "completed" and done["succeeded"] == 1


def test_stopping_a_job(keyed: Served, console: Any) -> None:
    c = signed_in(console, keyed, "alice")
    long = [{"recordId": f"S{i}", "modelInput": _anthropic(" ".join(["word"] * 40), max_tokens=60)} for i in range(40)]
    r = submit(c, _jsonl(long), ECHO, "long.jsonl")  # the echo model: 50 ms a word
    job_id = r.json()["id"]
    r = c.post_form(f"/console/batch/{job_id}/stop", {})
    assert r.status_code == 303 and r.headers["location"] == f"/console/batch?stopped={job_id}"
    assert f"Job {job_id} is stopping." in c.http.get(r.headers["location"]).text
    done = wait(c, job_id)
    assert done["status"] == "Stopped", done
    assert done["processed"] < 40
    labels = {d["label"]: d["url"] for d in done["downloads"]}
    _, out = _download(c, labels["Output"])  # the records done before the stop
    assert len(out) == done["processed"]
    r = c.post_form(f"/console/batch/{job_id}/stop", {})  # finished: said on the page
    assert r.status_code == 409 and 'role="alert"' in r.text and "only a job that has not finished" in r.text


def test_a_member_sees_only_their_own_jobs_and_an_administrator_everyones(keyed: Served, console: Any) -> None:
    alice = signed_in(console, keyed, "alice")
    r = submit(alice, _jsonl([{"recordId": "A1", "modelInput": _anthropic("Hi")}]), BUILTIN_MODEL_ID, name="alices")
    job_id = r.json()["id"]
    done = wait(alice, job_id)
    bob = signed_in(console, keyed, "bob")
    assert f'data-job="{job_id}"' not in bob.http.get("/console/batch").text
    assert job_id not in {j["id"] for j in bob.http.get("/console/batch/jobs").json()["jobs"]}
    assert bob.http.get(done["downloads"][0]["url"]).status_code == 404
    assert bob.post_form(f"/console/batch/{job_id}/stop", {}).status_code == 404
    root = signed_in(console, keyed, "root")
    page = root.http.get("/console/batch").text
    assert f'data-job="{job_id}"' in page and "Everyone's jobs" in page and '<td data-label="Owner">alice</td>' in page
    assert root.http.get(done["downloads"][0]["url"]).status_code == 200
    assert "Your jobs" in alice.http.get("/console/batch").text


def test_mistakes_are_said_in_plain_words(keyed: Served, console: Any) -> None:
    c = signed_in(console, keyed, "alice")
    good = _jsonl([{"recordId": "R1", "modelInput": _anthropic("Hi")}])
    cases = [
        (submit(c, good, ""), 400, "Choose the model"),
        (submit(c, b"not json at all\n", BUILTIN_MODEL_ID), 400, "holds no JSON object"),
        (submit(c, _jsonl([{"question": "hi"}]), BUILTIN_MODEL_ID), 400, "neither batch format"),
        (submit(c, b"\xff\xfe\x00", BUILTIN_MODEL_ID), 400, "not UTF-8"),
        (submit(c, good, BUILTIN_MODEL_ID, "refused.jsonl", name="no spaces allowed"), 400, "jobName"),
        (submit(c, good, EARLY, "refused.jsonl"), 403, EARLY),
        (submit(c, good, "no.such-model", "refused.jsonl"), 404, "no.such-model"),
    ]
    for r, status, words in cases:
        assert r.status_code == status, r.text
        assert words in r.json()["message"], r.json()
    r = c.http.post("/console/batch/jobs", data={"model": BUILTIN_MODEL_ID},
                    headers={"Origin": c.url, "X-CSRF-Token": c.csrf()})  # fmt: skip
    assert r.status_code == 400 and "JSONL file" in r.json()["message"]
    files = httpx.get(f"{keyed.url}/v1/files", headers={"Authorization": f"Bearer {keyed.keys['alice']}"}).json()
    assert not [f for f in files["data"] if f["filename"] == "refused.jsonl"]  # refused jobs leave no upload behind


def test_submitting_needs_the_pages_token(keyed: Served, console: Any) -> None:
    c = signed_in(console, keyed, "alice")
    r = c.http.post("/console/batch/jobs", files={"file": ("r.jsonl", b"{}\n")}, data={"model": BUILTIN_MODEL_ID},
                    headers={"Origin": c.url})  # fmt: skip
    assert r.status_code == 403
    anonymous = console(keyed.url)
    assert anonymous.http.get("/console/batch/jobs").status_code == 401
