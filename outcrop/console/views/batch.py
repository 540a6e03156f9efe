"""Batch: every batch job this key may see (Bedrock's model invocation jobs and OpenAI's batches; an administrator
sees everyone's, anyone else their own, as both APIs decide), with status and progress; submitting a JSONL file of
records; stopping a job; downloading its output and errors.

Everything goes through the functions the API routes call, as the signed-in principal: the upload is kept as an
OpenAI file (api/openai/files.save), then a file of OpenAI's batch requests becomes a batch (api/openai/batches.
submit) and a file of Bedrock's records a model invocation job (api/bedrock/batch.create) whose input location is
that file's object (s3://outcrop-files/uploads/<file id>, the folder <batch_dir>/outcrop-files unless the owner
moved batch_files_uri to a bucket) and whose outputs go beside it, under console-output/.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from posixpath import basename
from typing import Any

from starlette.responses import Response

from outcrop import errors
from outcrop.api.bedrock import batch as bedrock_batch
from outcrop.api.http import Context, json_body, parse_json
from outcrop.api.openai import batches as openai_batches
from outcrop.api.openai import files as openai_files
from outcrop.api.openai.batch_codec import output_id
from outcrop.auth.access import readable_owner
from outcrop.auth.principal import Principal
from outcrop.console.views.models import model_rows
from outcrop.console.web import Visit, view
from outcrop.jobs.files import StoredFile
from outcrop.jobs.runner import JobRunner
from outcrop.jobs.store import ACTIVE, Job
from outcrop.objects import join

PAGE = "batch"
ROOT = "/console/batch"
ROLE = "arn:aws:iam::000000000000:role/outcrop-console"  # kept and shown back by the API, never used
SHOWN = 200  # jobs listed, newest first
OUTPUT_FOLDER = "console-output/"  # under batch_files_uri: Bedrock jobs' outputs
WRITTEN = ("completed", "stopped", "expired")  # the runner wrote the outputs
API = {"bedrock": "Bedrock", "openai": "OpenAI"}
ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings", "/v1/completions")


@dataclass(frozen=True)
class Download:
    label: str
    url: str


@dataclass(frozen=True)
class JobRow:
    job: Job
    api: str
    reference: str  # the id its API knows it by: the job ARN or batch_<id>
    name: str
    status: str  # in its API's words
    downloads: tuple[Download, ...]

    @property
    def active(self) -> bool:
        return self.job.status in ACTIVE

    @property
    def stoppable(self) -> bool:
        return self.job.status in ("submitted", "validating", "scheduled", "in_progress")

    def as_json(self) -> dict[str, Any]:
        j = self.job
        downloads = [{"label": d.label, "url": d.url} for d in self.downloads]
        return {"id": j.id, "status": self.status, "active": self.active, "stoppable": self.stoppable,
                "total": j.total, "processed": j.processed, "succeeded": j.succeeded, "failed": j.errored,
                "message": j.message or "", "downloads": downloads}  # fmt: skip


def _runner(ctx: Context) -> JobRunner:
    if ctx.jobs is None:
        raise errors.InvalidRequest("This server has no store to keep batch jobs in.")
    return ctx.jobs


def _row(ctx: Context, job: Job) -> JobRow:
    base = f"{ROOT}/{job.id}/files/"
    if job.codec == "openai":
        wire = openai_batches.wire(job)
        downloads = []
        if wire["output_file_id"]:
            downloads.append(Download("Output", base + "output"))
        if wire["error_file_id"]:
            downloads.append(Download("Errors", base + "error"))
        name = str((job.spec.get("metadata") or {}).get("name") or job.spec.get("filename") or job.name)
        return JobRow(job, API["openai"], wire["id"], name, wire["status"], tuple(downloads))
    downloads = []
    if job.status in WRITTEN:
        for i, uri in enumerate(job.inputs):
            label = "Output" if len(job.inputs) == 1 else f"Output of {basename(uri)}"
            downloads.append(Download(label, f"{base}output-{i}"))
        if job.errored:
            downloads.append(Download("Failed records", base + "errors"))
        downloads.append(Download("Manifest", base + "manifest"))
    return JobRow(job, API["bedrock"], bedrock_batch.arn(job, ctx.settings.region), job.name,
                  bedrock_batch.status(job), tuple(downloads))  # fmt: skip


async def job_rows(ctx: Context, principal: Principal) -> list[JobRow]:
    runner = _runner(ctx)
    owner = readable_owner(principal)
    found: list[Job] = []
    for codec in API:
        found += await asyncio.to_thread(runner.store.find, codec, owner, limit=SHOWN)
    found.sort(key=lambda j: (j.submitted_at, j.id), reverse=True)
    return [_row(ctx, j) for j in found[:SHOWN]]


async def _visible(visit: Visit, job_id: str) -> Job:
    """The job, if this principal may see it (the API's own check, per API)."""
    runner = _runner(visit.ctx)
    job = await asyncio.to_thread(runner.store.get, job_id) if re.fullmatch(r"[a-z0-9]{12}", job_id) else None
    if job is not None and job.codec == "openai":
        return await openai_batches.visible_batch(runner, f"batch_{job_id}", visit.principal)
    return await bedrock_batch.visible(runner, job_id, visit.principal)


async def index(visit: Visit, message: str | None = None, status: int = 200) -> Response:
    rows = await job_rows(visit.ctx, visit.principal)
    models = [r for r in await model_rows(visit.ctx, visit.principal) if r.access in ("available", "granted")]
    query = visit.request.query_params
    notice = None
    if query.get("submitted"):
        notice = f"Job {query['submitted']} submitted."
    elif query.get("stopped"):
        notice = f"Job {query['stopped']} is stopping."
    return visit.render("batch.html", status=status, title="Batch", rows=rows, models=models, message=message,
                        notice=notice, active=any(r.active for r in rows),
                        everyone=readable_owner(visit.principal) is None)  # fmt: skip


async def jobs(visit: Visit) -> Response:
    """The jobs' progress, for the page to refresh while some run."""
    return json_body({"jobs": [r.as_json() for r in await job_rows(visit.ctx, visit.principal)]})


# --- submitting ----------------------------------------------------------------------------------------


def _lines(data: bytes) -> list[str]:
    try:
        return data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise errors.InvalidRequest("The file is not UTF-8 text: it cannot be JSONL.") from None


def _first_record(lines: Sequence[str]) -> dict[str, Any]:
    for line in lines:
        try:
            value = parse_json(line) if line.strip() else None
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise errors.InvalidRequest("The file holds no JSON object: each line of a JSONL file is one record.")


def file_format(lines: Sequence[str]) -> str:
    """Which batch format the file is in: "bedrock" ({"recordId", "modelInput"} a line) or "openai"
    ({"custom_id", "method", "url", "body"})."""
    first = _first_record(lines)
    if "modelInput" in first or "recordId" in first:
        return "bedrock"
    if "custom_id" in first or "body" in first:
        return "openai"
    raise errors.InvalidRequest('The first record is in neither batch format: Bedrock\'s lines are {"recordId": '
                                '..., "modelInput": {...}}, OpenAI\'s {"custom_id": ..., "method": "POST", "url": '
                                '"/v1/chat/completions", "body": {...}}.')  # fmt: skip


def with_model(lines: Sequence[str], model: str) -> bytes:
    """OpenAI's requests, each body naming `model` (a batch's requests all name one); lines that are not a request
    are kept as they are, for the batch's validation to name."""
    out = []
    for line in lines:
        try:
            value = parse_json(line) if line.strip() else None
        except ValueError:
            value = None
        if isinstance(value, dict) and isinstance(value.get("body"), dict):
            value["body"]["model"] = model
            line = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        out.append(line + "\n")
    return "".join(out).encode()


def job_name(filename: str | None, given: str) -> str:
    if given:
        return given
    stem = re.sub(r"[^A-Za-z0-9]+", "-", (filename or "batch").rsplit(".", 1)[0]).strip("-")[:40] or "batch"
    return f"{stem}-{datetime.now(UTC):%Y%m%d-%H%M%S}"


async def _forget(ctx: Context, stored: StoredFile) -> None:
    """The upload of a job that was refused (as DELETE /v1/files does)."""
    if await asyncio.to_thread(openai_files.codec(ctx).files.remove, stored.id):
        await asyncio.to_thread(_runner(ctx).objects.delete, stored.uri)


async def _submit(ctx: Context, who: Principal, filename: str | None, data: bytes, model: str, name: str,
                  converse: bool) -> Job:  # fmt: skip
    if not model:
        raise errors.InvalidRequest("Choose the model that answers the records.")
    lines = _lines(data)
    kind = file_format(lines)
    if kind == "openai":
        url = _first_record(lines).get("url")
        endpoint = url if url in ENDPOINTS else "/v1/embeddings" if ctx.registry.kind(model) == "embedding" else \
            "/v1/chat/completions"  # fmt: skip
        stored = await openai_files.save(ctx, who, "batch", filename, with_model(lines, model))
        body = {"input_file_id": stored.id, "endpoint": endpoint, "completion_window": "24h",
                "metadata": {"name": job_name(filename, name)[:512]}}  # fmt: skip
        try:
            return await openai_batches.submit(ctx, who, body)
        except errors.OutcropError:
            await _forget(ctx, stored)
            raise
    stored = await openai_files.save(ctx, who, "batch", filename, data)
    root = openai_files.codec(ctx).root
    job_body: dict[str, Any] = {
        "jobName": job_name(filename, name), "roleArn": ROLE, "modelId": model,
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": stored.uri}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": join(root, OUTPUT_FOLDER)}},
    }  # fmt: skip
    if converse:
        job_body["modelInvocationType"] = "Converse"
    try:
        return await bedrock_batch.create(ctx, who, job_body, managed=True)  # the server's own files folder
    except errors.OutcropError:
        await _forget(ctx, stored)
        raise


async def submit(visit: Visit) -> Response:
    """The page's script sends the form as multipart/form-data (with the X-CSRF-Token header)."""
    kind = visit.request.headers.get("content-type", "")
    if not kind.lower().startswith("multipart/form-data"):
        raise errors.InvalidRequest("Choose a JSONL file of records to upload (the form sends multipart/form-data).")
    parts = {p.name: p for p in openai_files.form_parts(kind, await visit.request.body())}

    def text(name: str) -> str:
        part = parts.get(name)
        return part.data.decode("utf-8", "replace").strip() if part is not None else ""

    file = parts.get("file")
    if file is None or not file.filename:
        raise errors.InvalidRequest("Choose a JSONL file of records to upload.")
    job = await _submit(visit.ctx, visit.principal, file.filename, file.data, text("model"), text("name"),
                        text("converse") == "on")  # fmt: skip
    return json_body({"id": job.id, "api": API[job.codec]})


# --- stopping and downloading --------------------------------------------------------------------------


async def stop(visit: Visit, job_id: str) -> Response:
    job = await _visible(visit, job_id)
    try:
        await _runner(visit.ctx).stop(job.id)
    except errors.Conflict as exc:  # finished meanwhile
        return await index(visit, exc.message, 409)
    return visit.redirect(ROOT, stopped=job.id)


def _attachment(data: bytes, filename: str, media_type: str) -> Response:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", filename)
    return Response(data, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{safe}"'})


async def download(visit: Visit, job_id: str, which: str) -> Response:
    job = await _visible(visit, job_id)
    runner = _runner(visit.ctx)
    if job.codec == "openai":
        if which not in ("output", "error"):
            raise errors.NotFound(f"A batch has an output and an error file, no '{which}'.")
        found = await openai_files.visible(visit.ctx, output_id(job.id, which), visit.principal)
        data = await asyncio.to_thread(runner.objects.read, found.uri)
        return _attachment(data, found.filename, "application/x-ndjson")
    if job.status not in WRITTEN:
        raise errors.NotFound(f"The job {job.name} is {bedrock_batch.status(job)}: its output is written when it ends.")
    folder = runner.codecs["bedrock"].folder(job)  # type: ignore[attr-defined]
    outputs = [join(folder, basename(uri) + ".out") for uri in job.inputs]
    if which == "manifest":
        data = await asyncio.to_thread(runner.objects.read, join(folder, "manifest.json.out"))
        return _attachment(data, f"{job.name}-manifest.json", "application/json")
    if which == "errors":  # the records that failed, from the output files (where Bedrock writes them)
        kept = []
        for uri in outputs:
            for line in (await asyncio.to_thread(runner.objects.read, uri)).decode().splitlines():
                if line.strip() and "error" in json.loads(line):
                    kept.append(line + "\n")
        return _attachment("".join(kept).encode(), f"{job.name}-errors.jsonl", "application/x-ndjson")
    m = re.fullmatch(r"output-(\d+)", which)
    if m is None or int(m.group(1)) >= len(outputs):
        raise errors.NotFound(f"The job {job.name} has no output '{which}'.")
    uri = outputs[int(m.group(1))]
    data = await asyncio.to_thread(runner.objects.read, uri)
    name = f"{job.name}-output.jsonl" if len(outputs) == 1 else f"{job.name}-{basename(uri)}"
    return _attachment(data, name, "application/x-ndjson")


ROUTES = [
    view("GET", ROOT, index),
    view("GET", ROOT + "/jobs", jobs, json=True),
    view("POST", ROOT + "/jobs", submit, json=True),
    view("POST", ROOT + "/{job_id}/stop", stop),
    view("GET", ROOT + "/{job_id}/files/{which}", download),
]
