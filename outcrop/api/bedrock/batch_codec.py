"""Bedrock's batch inference files (CreateModelInvocationJob), as a codec of the job runner (outcrop.jobs).

Input: `inputDataConfig.s3InputDataConfig.s3Uri` names one JSONL file, or a folder whose `.jsonl` files are all
read, in key order. Each non-blank line is a record `{"recordId": "...", "modelInput": {...}}`; `modelInput` is
the body InvokeModel takes for the job's model (every format InvokeModel accepts here: Anthropic Messages, Llama,
Mistral, Titan Text, the embedding models' bodies), or a Converse request when `modelInvocationType` is
"Converse". A line that is not JSON, has no string recordId or repeats one, or whose body the model cannot take
is a record error, written to the output, never a reason to fail the job; an input that cannot be read fails it.

Output, under `outputDataConfig.s3OutputDataConfig.s3Uri` + `<job id>/`: `<input file name>.out` per input file,
its records in input order, each `{"recordId", "modelInput", "modelOutput"}` (modelOutput: InvokeModel's
response body, or Converse's) or `{"recordId", "modelInput", "error": {"errorCode", "errorMessage"}}` (errorCode:
the HTTP status InvokeModel would have answered with); then `manifest.json.out` with Bedrock's counts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from posixpath import basename
from typing import Any

from outcrop import errors
from outcrop.api.bedrock import converse, embed, invoke
from outcrop.api.bedrock.errors import TABLE
from outcrop.api.http import parse_json
from outcrop.jobs.codec import Work
from outcrop.jobs.store import Job, Parsed, Record
from outcrop.objects import Objects, join
from outcrop.registry import Registry

MAX_RECORDS = 50_000  # records in one job (Bedrock's quota)
_CODES = {cls: status for cls, (status, _, _) in TABLE.items()}


def _line(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def error_line(record_id: Any, model_input: Any, error: errors.OutcropError) -> str:
    code = errors.lookup(error, _CODES)
    return _line({"recordId": record_id, "modelInput": model_input,
                  "error": {"errorCode": code, "errorMessage": error.message}})  # fmt: skip


class BedrockBatch:
    name = "bedrock"
    operation = "ModelInvocationJob"

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    # --- inputs ------------------------------------------------------------------------------------

    def inputs(self, job: Job, objects: Objects) -> list[str]:
        uri = str(job.spec["inputDataConfig"]["s3InputDataConfig"]["s3Uri"])
        if not uri.endswith("/") and "/" in uri.removeprefix("s3://") and objects.exists(uri):
            return [uri]
        folder = uri if uri.endswith("/") else uri + "/"
        found = [o.uri for o in objects.list(folder) if o.uri.endswith(".jsonl")]
        if not found:
            raise errors.InvalidRequest(f"The input {uri} was not found: it names neither a JSONL file nor a folder "
                                        "holding .jsonl files.")  # fmt: skip
        return found

    def parse(self, job: Job, files: Sequence[bytes]) -> list[Parsed]:
        out: list[Parsed] = []
        seen: set[str] = set()
        for part, data in enumerate(files):
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise errors.InvalidRequest(f"Input file #{part + 1} is not UTF-8 text: it cannot be JSONL.") from None
            for line in text.splitlines():
                if line.strip():
                    out.append(self._record(job, part, line, seen))
                    if len(out) > MAX_RECORDS:
                        raise errors.InvalidRequest(f"The input holds more than {MAX_RECORDS} records, the most "
                                                    "one job may have.")  # fmt: skip
        if not out:
            raise errors.InvalidRequest("The input holds no records: each line of a JSONL file is one record.")
        return out

    def _record(self, job: Job, part: int, line: str, seen: set[str]) -> Parsed:
        try:
            value = parse_json(line)
        except ValueError as exc:
            wrong = errors.InvalidRequest(f"The line is not JSON: {exc}.")
            return Parsed(part, None, line, error_line(None, line, wrong))
        if not isinstance(value, dict):
            return Parsed(part, None, line, error_line(None, value, errors.InvalidRequest("The record is no object.")))
        record_id, model_input = value.get("recordId"), value.get("modelInput")
        problem = None
        if not isinstance(record_id, str) or not record_id:
            problem = "The record has no recordId (a non-empty string)."
        elif record_id in seen:
            problem = f"The recordId '{record_id}' appears more than once in the job's input."
        elif not isinstance(model_input, dict):
            problem = "The record has no modelInput object."
        if problem is not None:
            return Parsed(part, None, line, error_line(record_id, model_input, errors.InvalidRequest(problem)))
        assert isinstance(record_id, str)
        seen.add(record_id)
        try:
            self._work(job, model_input)  # a body the model cannot take is found now, not when it runs
        except errors.OutcropError as exc:
            return Parsed(part, record_id, line, error_line(record_id, model_input, exc))
        return Parsed(part, record_id, line)

    # --- records -----------------------------------------------------------------------------------

    def decode(self, job: Job, record: Record) -> Work:
        value = json.loads(record.input)
        return self._work(job, value["modelInput"], record.key, value["modelInput"])

    def _work(self, job: Job, body: Any, record_id: str | None = None, shown: Any = None) -> Work:
        model = job.model_id
        body = dict(body)
        if job.spec.get("modelInvocationType") == "Converse":
            chat = converse.decode_request(model, body)

            def converse_line(result: Any) -> str:
                output = converse.encode_response(result)
                return _line({"recordId": record_id, "modelInput": shown, "modelOutput": output})

            return Work(chat, converse_line)
        if self.registry.kind(model) == "embedding":
            fam, request, parsed = embed.decode(model, body)

            def embed_line(result: Any) -> str:
                output = embed.encode(fam, result, parsed)
                return _line({"recordId": record_id, "modelInput": shown, "modelOutput": output})

            return Work(request, embed_line)
        body.pop("amazon-bedrock-guardrailConfig", None)  # (names no guardrail without InvokeModel's headers)
        fam_name, chat = invoke.decode_request(model, body)

        def invoke_line(result: Any) -> str:
            output = invoke.encode_response(fam_name, model, result)
            return _line({"recordId": record_id, "modelInput": shown, "modelOutput": output})

        return Work(chat, invoke_line)

    def error(self, job: Job, record: Record, error: errors.OutcropError) -> str:
        try:
            model_input = json.loads(record.input).get("modelInput")
        except (ValueError, AttributeError):
            model_input = record.input
        return error_line(record.key, model_input, error)

    # --- outputs -----------------------------------------------------------------------------------

    def folder(self, job: Job) -> str:
        """Where the job's outputs go: the output location + the job's id."""
        return join(str(job.spec["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]), job.id)

    def outputs(self, job: Job, records: Iterator[Record]) -> list[tuple[str, bytes]]:
        lines: list[list[str]] = [[] for _ in job.inputs]
        for r in records:
            if r.output is not None and r.state != "pending":
                lines[r.part].append(r.output)
        folder = self.folder(job)
        out = [(join(folder, basename(uri) + ".out"), "".join(x + "\n" for x in part).encode())
               for uri, part in zip(job.inputs, lines, strict=True)]  # fmt: skip
        manifest = {"totalRecordCount": job.total, "processedRecordCount": job.processed,
                    "successRecordCount": job.succeeded, "errorRecordCount": job.errored,
                    "inputTokenCount": job.input_tokens, "outputTokenCount": job.output_tokens}  # fmt: skip
        out.append((join(folder, "manifest.json.out"), (_line(manifest) + "\n").encode()))
        return out
