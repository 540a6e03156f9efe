"""OpenAI's batch files (/v1/batches), as a codec of the job runner (outcrop.jobs).

Input: the uploaded file `input_file_id` (purpose "batch"), one request a line:
`{"custom_id": "...", "method": "POST", "url": "/v1/chat/completions", "body": {...}}`. As on OpenAI, a file
that is not such JSONL fails the batch while it validates, every wrong line named in the batch's `errors` (a line
that is not a JSON object, without a string custom_id or repeating one, a method other than POST, a url other than
the batch's endpoint, a body that is no object). A body is decoded by the live endpoint's own decoder
(convert.decode_chat / decode_completion / decode_embeddings) and its model checked as the endpoint would (it
exists, the batch's owner may use it, it is a chat or an embedding model as the endpoint needs): a body the
endpoint would refuse becomes that request's line in the error file, with the status and error body the endpoint
would have answered, never a failed batch. A batch's requests all name one model (OpenAI's rule; the job runs on
that model's slots): the first request's; another model on a later line is that line's error.

Output: `{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error": null}` a line, in input
order; answered requests (status 200) in the output file, refused or failed ones in the error file. The files are
recorded in the file store as `outputs` makes them, under ids made from the batch's, so the batch object can name
them and a batch finished again after a crash records them once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from outcrop import errors
from outcrop.api.http import parse_json
from outcrop.api.openai import convert
from outcrop.api.openai.errors import TABLE, error_body
from outcrop.auth.access import AccessControl
from outcrop.jobs.codec import Work
from outcrop.jobs.files import FileStore, StoredFile
from outcrop.jobs.store import Job, Parsed, Record, now
from outcrop.objects import join
from outcrop.registry import Registry

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
MAX_REQUESTS = 50_000  # requests in one batch (OpenAI's limit)
MAX_ERRORS = 20  # wrong lines named in a failed batch's errors
_STATUS = {cls: status for cls, (status, _, _) in TABLE.items()}
_ERROR = re.compile(r"^Line (?P<line>\d+): (?P<message>.*) \[(?P<code>[a-z_]+)\]$")


def _line(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def output_id(job_id: str, kind: str) -> str:
    """The id of a batch's output ("output") or error ("error") file."""
    return f"file-batch{job_id}{kind}"


def request_id(job: Job, seq: int) -> str:
    return f"batch-{job.id}-{seq}"  # (the runner meters the request under this id)


def response_line(job: Job, seq: int, custom_id: str | None, status: int, body: Any) -> str:
    return _line({"id": f"batch_req_{job.id}_{seq}", "custom_id": custom_id,
                  "response": {"status_code": status, "request_id": request_id(job, seq), "body": body},
                  "error": None})  # fmt: skip


def refused(job: Job, seq: int, custom_id: str | None, error: errors.OutcropError) -> str:
    return response_line(job, seq, custom_id, errors.lookup(error, _STATUS), error_body(error))


def expired_at(job: Job) -> datetime | None:
    """When the batch's completion window closed on it with requests still to run (None if it did not)."""
    if job.status in ("stopping", "stopped") or job.expires_at is None or now() < job.expires_at:
        return None
    return job.expires_at if job.processed < job.total else None


def validation_errors(message: str | None) -> list[dict[str, Any]]:
    """A failed batch's `errors.data` from the message validation left (one `Line N: ... [code]` a line)."""
    out: list[dict[str, Any]] = []
    for text in (message or "").splitlines():
        m = _ERROR.match(text)
        if m is not None:
            out.append({"code": m.group("code"), "message": m.group("message"), "param": None,
                        "line": int(m.group("line"))})  # fmt: skip
        elif text:
            out.append({"code": "invalid_file", "message": text, "param": None, "line": None})
    return out


class _Wrong(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class OpenAIBatch:
    name = "openai"
    operation = "Batch"

    def __init__(self, registry: Registry, access: AccessControl, files: FileStore, root: str) -> None:
        self.registry = registry
        self.access = access
        self.files = files
        self.root = root  # where the batches' output files go (a folder URI)

    # --- inputs ------------------------------------------------------------------------------------

    def inputs(self, job: Job, objects: Any) -> list[str]:
        return [str(job.spec["input_uri"])]

    def parse(self, job: Job, files: Sequence[bytes]) -> list[Parsed]:
        try:
            text = b"".join(files).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise errors.InvalidRequest("The input file is not UTF-8 text: it cannot be JSONL.") from None
        out: list[Parsed] = []
        wrong: list[str] = []
        seen: set[str] = set()
        models: dict[str, errors.OutcropError | None] = {}
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                custom_id, body = self._request(job, line, seen)
            except _Wrong as exc:
                wrong.append(f"Line {number}: {exc.message} [{exc.code}]")
                if len(wrong) >= MAX_ERRORS:
                    break
                continue
            seen.add(custom_id)
            seq = len(out)
            try:
                self._work(job, body, models)  # a body the endpoint would refuse is found now, not when it runs
            except errors.OutcropError as exc:
                out.append(Parsed(0, custom_id, line, refused(job, seq, custom_id, exc)))
            else:
                out.append(Parsed(0, custom_id, line))
            if len(out) > MAX_REQUESTS:
                raise errors.InvalidRequest(f"The input file holds more than {MAX_REQUESTS} requests, the most one "
                                            "batch may have.")  # fmt: skip
        if wrong:
            raise errors.InvalidRequest("\n".join(wrong))
        if not out:
            raise errors.InvalidRequest("The input file holds no requests: each line of a JSONL file is one.")
        return out

    def _request(self, job: Job, line: str, seen: set[str]) -> tuple[str, dict[str, Any]]:
        try:
            value = parse_json(line)
        except ValueError as exc:
            raise _Wrong("invalid_json_line", f"The line is not valid JSON: {exc}.") from None
        if not isinstance(value, dict):
            raise _Wrong("invalid_json_line", "The line is not a JSON object.")
        custom_id = value.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            raise _Wrong("missing_custom_id", "The request has no custom_id (a non-empty string).")
        if custom_id in seen:
            raise _Wrong("duplicate_custom_id", f"The custom_id '{custom_id}' appears more than once in the file.")
        if value.get("method") != "POST":
            raise _Wrong("invalid_method", "The request's method must be POST.")
        if value.get("url") != job.spec["endpoint"]:
            raise _Wrong("mismatched_endpoint", f"The request's url must be the batch's endpoint, "
                                                f"{job.spec['endpoint']}, not {value.get('url')!r}.")  # fmt: skip
        body = value.get("body")
        if not isinstance(body, dict):
            raise _Wrong("invalid_body", "The request has no body object.")
        return custom_id, body

    # --- records -----------------------------------------------------------------------------------

    def decode(self, job: Job, record: Record) -> Work:
        value = json.loads(record.input)
        return self._work(job, value["body"], {}, record)

    def _work(self, job: Job, body: dict[str, Any], models: dict[str, errors.OutcropError | None],
              record: Record | None = None) -> Work:  # fmt: skip
        endpoint = job.spec["endpoint"]
        if body.get("stream"):
            raise errors.InvalidRequest("A batch's requests cannot stream: stream must be false.", param="stream")
        if endpoint == "/v1/embeddings":
            embed, wire = convert.decode_embeddings(body)
            self._model(job, wire.model, "embedding", models)
            return Work(embed, lambda result: self._answer(job, record, convert.encode_embeddings(
                wire.model, result, wire.encoding_format)))  # fmt: skip
        if endpoint == "/v1/completions":
            chat, cwire = convert.decode_completion(body)
            self._model(job, cwire.model, "chat", models)
            return Work(chat, lambda result: self._answer(job, record, convert.encode_completion(cwire.model, result)))
        chat, chwire = convert.decode_chat(body)
        self._model(job, chwire.model, "chat", models)
        return Work(chat, lambda result: self._answer(job, record, convert.encode_chat(chwire.model, result)))

    def _model(self, job: Job, name: str, kind: str, seen: dict[str, errors.OutcropError | None]) -> None:
        """What the endpoint checks of the model (once a model in a file), and that it is the batch's."""
        if job.model_id and name != job.model_id:
            message = f"The request names the model '{name}', but this batch's requests use '{job.model_id}'"
            raise errors.InvalidRequest(message + ": a batch's requests all name one model.", param="model")
        if name not in seen:
            try:
                model_id = self.registry.resolve(name)
                self.access.check(job.principal, model_id)
                if self.registry.kind(model_id) != kind:
                    wanted = "an embedding model" if kind == "embedding" else "a chat model"
                    raise errors.InvalidRequest(f"{job.spec['endpoint']} needs {wanted}; '{name}' is not one.",
                                                param="model")  # fmt: skip
                seen[name] = None
            except errors.OutcropError as exc:
                seen[name] = exc
        problem = seen[name]
        if problem is not None:
            raise problem

    def _answer(self, job: Job, record: Record | None, body: dict[str, Any]) -> str:
        assert record is not None
        return response_line(job, record.seq, record.key, 200, body)

    def error(self, job: Job, record: Record, error: errors.OutcropError) -> str:
        return refused(job, record.seq, record.key, error)

    # --- outputs -----------------------------------------------------------------------------------

    def _uri(self, job: Job, kind: str) -> str:
        return join(self.root, "batches", job.id, f"{kind}.jsonl")

    def outputs(self, job: Job, records: Iterator[Record]) -> list[tuple[str, bytes]]:
        """The output and error files (those with lines), recorded in the file store as they are made: the
        runner writes them next, before the batch's final status shows their ids. (A file recorded whose write
        then fails belongs to a failed batch, which names no files.)"""
        answered: list[str] = []
        failed: list[str] = []
        expired = expired_at(job) is not None
        for r in records:
            if r.output is not None and r.state != "pending":
                (answered if r.state == "done" else failed).append(r.output)
            elif expired:  # (as on OpenAI: a request the window closed on is in the error file, batch_expired)
                failed.append(_line({"id": f"batch_req_{job.id}_{r.seq}", "custom_id": r.key, "response": None,
                                     "error": {"code": "batch_expired", "message": "This request could not be "
                                               "executed before the completion window expired."}}))  # fmt: skip
        out = []
        at = now()
        for kind, lines in (("output", answered), ("error", failed)):
            if lines:
                data = "".join(x + "\n" for x in lines).encode()
                uri = join(self.root, "batches", job.id, f"{kind}.jsonl")
                self.files.keep(StoredFile(output_id(job.id, kind), job.principal.name, "batch_output",
                                           f"batch_{job.id}_{kind}.jsonl", len(data), uri, at, None))  # fmt: skip
                out.append((uri, data))
        return out
