"""OpenAI batches through the real `openai` SDK against a real server on the built-in llama.cpp model: upload,
create, poll to completed, read the output and error files; a request the endpoint refuses; a file that is not
valid JSONL; cancel mid-way; who sees which file and batch; the upload limits; paging; the OpenAPI document."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from outcrop import store
from outcrop.api.app import build_app
from outcrop.auth.authenticate import Authenticator
from outcrop.auth.keys import Keyring
from outcrop.config import ModelSpec
from outcrop.jobs.store import JobStore
from outcrop.models import BUILTIN_EMBEDDING_ID, BUILTIN_MODEL_ID, builtin_embedding_available
from outcrop.registry import Registry
from tests import conftest
from tests.conftest import serve_app

FINISHED = {"completed", "failed", "expired", "cancelled"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = Path(tmp_path_factory.mktemp("openai-batch"))
    settings = conftest.test_settings(home, batch_dir=str(home / "batch"), auth="keys", max_file_mib=1)
    if builtin_embedding_available():
        embedder = ModelSpec(id=BUILTIN_EMBEDDING_ID, engine="sentence-transformers", kind="embedding")
        settings = replace(settings, models=(*settings.models, embedder))
    engine = store.connect(f"sqlite:///{home / 'o.db'}")
    keyring = Keyring(engine, home / "secret.key")
    keys = {}
    for name, admin in (("alice", False), ("bob", False), ("root", True)):
        keyring.ensure_principal(name, admin=admin)
        keys[name] = keyring.create_api_key(name)[1]
    app = build_app(settings, Registry(settings), Authenticator("keys", keyring), jobs=JobStore(engine))
    with serve_app(app) as url:
        yield {"url": url, "home": home, "keys": keys}


def _client(served: dict[str, Any], who: str = "alice") -> openai.OpenAI:
    return openai.OpenAI(api_key=served["keys"][who], base_url=served["url"] + "/v1", max_retries=0, timeout=120)


def _jsonl(lines: list[Any]) -> bytes:
    return "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines).encode()


def _chat(custom_id: str, text: str, **extra: Any) -> dict[str, Any]:
    body = {"model": BUILTIN_MODEL_ID, "messages": [{"role": "user", "content": text}], "max_tokens": 4,
            "temperature": 0, **extra}  # fmt: skip
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def _wait(client: openai.OpenAI, batch_id: str, until: set[str] = FINISHED, timeout_s: float = 240) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in until or time.monotonic() > deadline:
            return batch
        time.sleep(0.2)


def _lines(client: openai.OpenAI, file_id: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in client.files.content(file_id).text.splitlines()]


def test_a_batch_completes_with_its_output_and_error_files(served: dict[str, Any]) -> None:
    client = _client(served)
    lines = [_chat("q-1", "Hello"), _chat("q-2", "What is a rock?"),
             _chat("bad", "Hi", max_tokens=0),  # the endpoint would refuse it: 400
             _chat("q-3", "Name a mineral.")]  # fmt: skip
    uploaded = client.files.create(file=("requests.jsonl", _jsonl(lines)), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.filename == "requests.jsonl" and uploaded.bytes > 0
    assert uploaded.id.startswith("file-") and client.files.retrieve(uploaded.id).bytes == uploaded.bytes
    assert client.files.content(uploaded.id).content == _jsonl(lines)
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"team": "rocks"})  # fmt: skip
    assert batch.status in ("validating", "in_progress") and batch.metadata == {"team": "rocks"}
    assert batch.id.startswith("batch_") and batch.input_file_id == uploaded.id
    assert batch.expires_at is not None and batch.expires_at - batch.created_at == 24 * 3600
    done = _wait(client, batch.id)
    assert done.status == "completed", done
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (4, 3, 1)
    assert done.completed_at is not None and done.model == BUILTIN_MODEL_ID
    assert done.in_progress_at is not None and done.created_at <= done.in_progress_at <= done.completed_at
    assert done.usage is not None and done.usage.input_tokens > 0 and 0 < done.usage.output_tokens <= 12
    assert done.output_file_id and done.error_file_id
    out = _lines(client, done.output_file_id)
    assert [x["custom_id"] for x in out] == ["q-1", "q-2", "q-3"]
    for x in out:
        assert x["error"] is None and x["id"].startswith("batch_req_") and x["response"]["status_code"] == 200
        assert x["response"]["request_id"]
        body = x["response"]["body"]
        assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
        assert body["usage"]["completion_tokens"] <= 4
    (err,) = _lines(client, done.error_file_id)
    assert err["custom_id"] == "bad" and err["response"]["status_code"] == 400
    assert err["response"]["body"]["error"]["type"] == "invalid_request_error"
    output = client.files.retrieve(done.output_file_id)
    assert output.purpose == "batch_output" and output.bytes == len(client.files.content(output.id).content)
    assert {f.id for f in client.files.list()} >= {uploaded.id, done.output_file_id, done.error_file_id}
    metrics = httpx.get(served["url"] + "/metrics", headers={"Authorization": f"Bearer {served['keys']['root']}"})
    assert 'dialect="batch"' in metrics.text  # each request metered as batch


def test_a_completions_batch_and_an_embeddings_batch(served: dict[str, Any]) -> None:
    client = _client(served)
    body = {"model": BUILTIN_MODEL_ID, "prompt": "Once upon a time", "max_tokens": 3, "temperature": 0}
    f = client.files.create(file=("c.jsonl", _jsonl([{"custom_id": "c", "method": "POST", "url": "/v1/completions",
                                                       "body": body}])), purpose="batch")  # fmt: skip
    done = _wait(client, client.batches.create(input_file_id=f.id, endpoint="/v1/completions",
                                               completion_window="24h").id)  # fmt: skip
    assert done.status == "completed" and done.output_file_id, done
    (line,) = _lines(client, done.output_file_id)
    assert line["response"]["body"]["object"] == "text_completion"
    if not builtin_embedding_available():
        return
    rows = [{"custom_id": "e", "method": "POST", "url": "/v1/embeddings",
             "body": {"model": BUILTIN_EMBEDDING_ID, "input": ["A rock.", "A mineral."]}},
            {"custom_id": "chat-model", "method": "POST", "url": "/v1/embeddings",
             "body": {"model": BUILTIN_EMBEDDING_ID, "input": []}}]  # fmt: skip
    f = client.files.create(file=("e.jsonl", _jsonl(rows)), purpose="batch")
    done = _wait(client, client.batches.create(input_file_id=f.id, endpoint="/v1/embeddings",
                                               completion_window="24h").id)  # fmt: skip
    assert done.status == "completed" and done.request_counts and done.request_counts.failed == 1, done
    (line,) = _lines(client, done.output_file_id or "")
    assert len(line["response"]["body"]["data"]) == 2 and line["response"]["body"]["data"][0]["embedding"]


def test_a_file_that_is_not_batch_jsonl_fails_the_batch_naming_each_line(served: dict[str, Any]) -> None:
    client = _client(served)
    lines = [_chat("a", "Hello"), "{not json", _chat("a", "the same custom_id"),
             {**_chat("b", "Hi"), "url": "/v1/embeddings"}, {"method": "POST", "url": "/v1/chat/completions"}]  # fmt: skip
    f = client.files.create(file=("bad.jsonl", _jsonl(lines)), purpose="batch")
    done = _wait(client, client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                                               completion_window="24h").id)  # fmt: skip
    assert done.status == "failed" and done.failed_at and done.errors and done.errors.data, done
    found = {(e.line, e.code) for e in done.errors.data}
    assert found == {(2, "invalid_json_line"), (3, "duplicate_custom_id"), (4, "mismatched_endpoint"),
                     (5, "missing_custom_id")}  # fmt: skip
    assert done.output_file_id is None and done.error_file_id is None


def test_cancel_mid_way_keeps_the_requests_answered(served: dict[str, Any]) -> None:
    client = _client(served)
    lines = [_chat(f"r-{i}", f"Tell a long story number {i}.", max_tokens=48, ignore_eos=True) for i in range(60)]
    f = client.files.create(file=("long.jsonl", _jsonl(lines)), purpose="batch")
    batch = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    running = _wait(client, batch.id, until={"in_progress", *FINISHED})
    assert running.status == "in_progress", running
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    done = _wait(client, batch.id, timeout_s=60)
    assert done.status == "cancelled" and done.cancelled_at, done
    counts = done.request_counts
    assert counts is not None and counts.total == 60 and counts.completed < 60
    answered = _lines(client, done.output_file_id) if done.output_file_id else []
    assert len(answered) == counts.completed and len({x["custom_id"] for x in answered}) == len(answered)
    with pytest.raises(openai.BadRequestError):
        client.batches.cancel(batch.id)  # finished: nothing to cancel


def test_files_and_batches_are_their_owners(served: dict[str, Any]) -> None:
    alice, bob, root = _client(served), _client(served, "bob"), _client(served, "root")
    f = alice.files.create(file=("mine.jsonl", _jsonl([_chat("x", "Hello")])), purpose="batch")
    batch = alice.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    for call in (lambda: bob.files.retrieve(f.id), lambda: bob.files.content(f.id), lambda: bob.files.delete(f.id),
                 lambda: bob.batches.retrieve(batch.id), lambda: bob.batches.cancel(batch.id),
                 lambda: bob.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                                            completion_window="24h")):  # fmt: skip
        with pytest.raises(openai.NotFoundError):
            call()
    assert f.id not in {x.id for x in bob.files.list()}
    assert batch.id not in {x.id for x in bob.batches.list()}
    assert root.files.retrieve(f.id).id == f.id and root.batches.retrieve(batch.id).id == batch.id
    assert batch.id in {x.id for x in root.batches.list(limit=100)}
    _wait(alice, batch.id)


def test_uploads_are_checked(served: dict[str, Any]) -> None:
    client = _client(served)
    with pytest.raises(openai.APIStatusError) as big:
        client.files.create(file=("big.jsonl", b"x" * (1024 * 1024 + 1)), purpose="batch")  # max_file_mib = 1
    assert big.value.status_code == 413 and "max_file_mib" in big.value.message
    with pytest.raises(openai.APIStatusError) as huge:  # refused from its Content-Length, before it is read
        client.files.create(file=("huge.jsonl", b"x" * (3 * 1024 * 1024)), purpose="batch")
    assert huge.value.status_code == 413
    with pytest.raises(openai.BadRequestError, match="purpose"):
        client.files.create(file=("f.jsonl", _jsonl([_chat("x", "Hi")])), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError, match="empty"):
        client.files.create(file=("f.jsonl", b""), purpose="batch")
    r = httpx.post(served["url"] + "/v1/files", json={"purpose": "batch"},
                   headers={"Authorization": f"Bearer {served['keys']['alice']}"})  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):
        client.batches.create(input_file_id="file-nothing", endpoint="/v1/chat/completions", completion_window="24h")
    f = client.files.create(file=("x.jsonl", _jsonl([_chat("x", "Hi")])), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="completion_window"):
        client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="1h")  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="endpoint"):
        client.batches.create(input_file_id=f.id, endpoint="/v1/moderations", completion_window="24h")  # type: ignore[arg-type]
    deleted = client.files.delete(f.id)
    assert deleted.deleted and deleted.id == f.id
    with pytest.raises(openai.NotFoundError) as missing:
        client.files.retrieve(f.id)
    assert missing.value.body == {"message": f"No such File object: {f.id}", "type": "invalid_request_error",  # type: ignore[comparison-overlap]
                                  "param": None, "code": None}  # fmt: skip


def test_paging(served: dict[str, Any]) -> None:
    client = _client(served, "bob")
    made = [client.files.create(file=(f"p{i}.jsonl", _jsonl([_chat("x", "Hi")])), purpose="batch").id
            for i in range(3)]  # fmt: skip
    page = client.files.list(limit=2, order="asc", purpose="batch")
    assert [f.id for f in page.data] == made[:2] and page.has_more
    assert [f.id for f in page.get_next_page().data] == made[2:]
    assert [f.id for f in client.files.list(order="asc")] == made  # the SDK follows the pages
    batches = [client.batches.create(input_file_id=i, endpoint="/v1/chat/completions", completion_window="24h").id
               for i in made]  # fmt: skip
    first = client.batches.list(limit=2)
    assert [b.id for b in first.data] == batches[::-1][:2] and first.has_more
    assert [b.id for b in client.batches.list(limit=1)] == batches[::-1]
    assert [b.id for b in client.batches.list(limit=5, after=batches[2]).data] == batches[::-1][1:]
    for listing in (client.files.list, client.batches.list):
        with pytest.raises(openai.BadRequestError) as refused:
            listing(after="file-nothing-here")
        assert "after names no object of this list" in refused.value.message
    alice = _client(served)
    with pytest.raises(openai.BadRequestError):
        alice.files.list(after=made[0])  # bob's file is no cursor for alice
    for b in batches:
        _wait(client, b)


def test_the_openapi_document_names_the_routes(served: dict[str, Any]) -> None:
    doc = httpx.get(served["url"] + "/openapi.json").json()
    assert {"/v1/files", "/v1/files/{file_id}", "/v1/files/{file_id}/content", "/v1/batches",
            "/v1/batches/{batch_id}", "/v1/batches/{batch_id}/cancel"} <= set(doc["paths"])  # fmt: skip
    assert "multipart/form-data" in doc["paths"]["/v1/files"]["post"]["requestBody"]["content"]
    assert doc["paths"]["/v1/batches"]["post"]["requestBody"]["content"]["application/json"]["schema"]
