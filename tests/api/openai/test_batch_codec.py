"""OpenAI's batch codec without a server: which lines fail a batch and which become error lines, the output line
format, requests the completion window closed on, and the multipart/form-data reader of /v1/files."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from outcrop import errors, store
from outcrop.api.openai.batch_codec import OpenAIBatch, output_id, validation_errors
from outcrop.api.openai.files import form_parts
from outcrop.auth.access import AccessControl
from outcrop.auth.principal import Principal
from outcrop.config import ModelSpec, Settings
from outcrop.jobs.files import FileStore
from outcrop.jobs.store import Job, Record, now
from outcrop.registry import Registry

ECHO = "test.echo-v1:0"
ALICE = Principal("alice", "alice")


@pytest.fixture
def codec(tmp_path: Path) -> OpenAIBatch:
    settings = Settings(config_path=tmp_path / "c.toml", builtin_model=False, builtin_embedding_model=False,
                        models=(ModelSpec(id=ECHO, engine="echo", n_ctx=64),))  # fmt: skip
    registry = Registry(settings)
    access = AccessControl(None, {s.id: s.access for s in registry.specs()})
    return OpenAIBatch(registry, access, FileStore(store.connect(f"sqlite:///{tmp_path / 'o.db'}")), "s3://f/")


def _job(model: str = ECHO, endpoint: str = "/v1/chat/completions", **changes: Any) -> Job:
    at = now()
    values: dict[str, Any] = dict(id="abcdefghijkl", codec="openai", name="file-x", principal=ALICE, model_id=model,
                                  status="validating", message=None, spec={"endpoint": endpoint, "input_uri": "s3://f/x",
                                  "input_file_id": "file-x", "completion_window": "24h"}, inputs=("s3://f/x",),
                                  client_token=None, total=0, processed=0, succeeded=0, errored=0, input_tokens=0,
                                  output_tokens=0, owner=None, submitted_at=at, updated_at=at, ended_at=None,
                                  expires_at=at + timedelta(hours=24))  # fmt: skip
    values.update(changes)
    return Job(**values)


def _request(custom_id: str, **body: Any) -> str:
    body = {"model": ECHO, "messages": [{"role": "user", "content": "hi"}], **body}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body})


def test_bodies_the_endpoint_refuses_are_error_lines_with_its_status(codec: OpenAIBatch) -> None:
    lines = [_request("ok"), _request("zero", max_tokens=0), _request("other", model="gpt-4o"),
             _request("streams", stream=True), _request("nothing", model="")]  # fmt: skip
    parsed = codec.parse(_job(), ["\n".join(lines).encode()])
    assert [p.key for p in parsed] == ["ok", "zero", "other", "streams", "nothing"]
    assert parsed[0].error is None
    refused = {p.key: json.loads(p.error or "{}") for p in parsed[1:]}
    for key, line in refused.items():
        assert line["custom_id"] == key and line["error"] is None
        assert line["response"]["status_code"] == 400, line
        assert line["response"]["body"]["error"]["type"] == "invalid_request_error"
        assert line["response"]["request_id"].startswith("batch-abcdefghijkl-")
    assert "one model" in refused["other"]["response"]["body"]["error"]["message"]


def test_an_unknown_model_is_a_404_line_and_an_embedding_endpoint_wants_an_embedding_model(codec: OpenAIBatch) -> None:
    (p,) = codec.parse(_job(model="nope"), [_request("a", model="nope").encode()])
    assert json.loads(p.error or "")["response"]["status_code"] == 404
    line = json.dumps({"custom_id": "e", "method": "POST", "url": "/v1/embeddings",
                       "body": {"model": ECHO, "input": "x"}})  # fmt: skip
    (p,) = codec.parse(_job(endpoint="/v1/embeddings"), [line.encode()])
    assert "needs an embedding model" in json.loads(p.error or "")["response"]["body"]["error"]["message"]


def test_a_file_that_is_not_batch_jsonl_fails_with_every_wrong_line(codec: OpenAIBatch) -> None:
    lines = [_request("a"), "[1]", "", json.dumps({"custom_id": "b", "method": "GET", "url": "/v1/chat/completions",
             "body": {}}), json.dumps({"custom_id": "c", "method": "POST", "url": "/v1/chat/completions"})]  # fmt: skip
    with pytest.raises(errors.InvalidRequest) as failed:
        codec.parse(_job(), ["\n".join(lines).encode()])
    found = [(e["line"], e["code"]) for e in validation_errors(failed.value.message)]
    assert found == [(2, "invalid_json_line"), (4, "invalid_method"), (5, "invalid_body")]
    for data in (b"", b"\n\n", b"\xff\xfe not utf-8"):
        with pytest.raises(errors.InvalidRequest):
            codec.parse(_job(), [data])
    assert validation_errors("The job's owner can no longer use the model.")[0]["code"] == "invalid_file"


def test_outputs_split_answers_and_errors_and_record_the_files(codec: OpenAIBatch) -> None:
    job = _job(status="in_progress", total=3, processed=2, succeeded=1, errored=1)
    records = [Record(job.id, 0, 0, "a", "done", "{}", '{"ok":1}'), Record(job.id, 1, 0, "b", "error", "{}", '{"e":1}'),
               Record(job.id, 2, 0, "c", "pending", "{}", None)]  # fmt: skip
    out = dict(codec.outputs(job, iter(records)))
    assert out == {"s3://f/batches/abcdefghijkl/output.jsonl": b'{"ok":1}\n',
                   "s3://f/batches/abcdefghijkl/error.jsonl": b'{"e":1}\n'}  # fmt: skip
    assert codec.files.get(output_id(job.id, "output")) is not None
    again = dict(codec.outputs(job, iter(records)))  # (finished again after a crash: the same files, once)
    assert again == out and len(codec.files.find("alice")) == 2
    late = _job(status="in_progress", total=3, processed=2, expires_at=now() - timedelta(seconds=1))
    errors_file = dict(codec.outputs(late, iter(records)))["s3://f/batches/abcdefghijkl/error.jsonl"]
    expired = json.loads(errors_file.splitlines()[-1])
    assert expired["custom_id"] == "c" and expired["response"] is None
    assert expired["error"]["code"] == "batch_expired"


def _form(*parts: tuple[str, str | None, bytes], boundary: str = "XyZ") -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def test_the_multipart_reader() -> None:
    body = _form(("purpose", None, b"batch"), ("file", "a.jsonl", b"line\r\n--not the boundary\r\n"), ("e", None, b""))
    parts = form_parts("multipart/form-data; boundary=XyZ", body)
    assert [(p.name, p.filename, p.data) for p in parts] == [
        ("purpose", None, b"batch"),
        ("file", "a.jsonl", b"line\r\n--not the boundary\r\n"),
        ("e", None, b""),
    ]
    assert form_parts('multipart/form-data; boundary="XyZ"', body)[1].filename == "a.jsonl"
    for content_type, data in (("application/json", body), ("multipart/form-data", body),
                               ("multipart/form-data; boundary=XyZ", body[:-8]),
                               ("multipart/form-data; boundary=XyZ", b"--XyZ\r\nno blank line\r\n--XyZ--"),
                               ("multipart/form-data; boundary=XyZ", _form(("", None, b"x")).replace(b'name=""', b""))):  # fmt: skip
        with pytest.raises(errors.InvalidRequest):
            form_parts(content_type, data)
