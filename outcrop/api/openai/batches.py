"""OpenAI's /v1/batches: create, retrieve, list (after/limit), cancel, over the job runner (outcrop.jobs) with the
batch files of batch_codec.py.

A batch runs as its creator, with their access to the model, and only they (and administrators) see it. Its
model is the one its requests name (OpenAI's rule: one a batch), read from the input file when it is created.
The runner's states map to OpenAI's below; `request_counts` and `usage` are the job's counters; a batch that
failed validation lists the wrong lines in `errors`. `completion_window` is "24h": a batch not done by then
expires, its answered requests kept.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from outcrop import errors
from outcrop.api.http import Context, caller, json_body, parse_json, read_json, route
from outcrop.api.openai.batch_codec import output_id, validation_errors
from outcrop.api.openai.files import codec, cursor, page, visible
from outcrop.api.validation import describe, first_param
from outcrop.auth.principal import Principal
from outcrop.jobs.runner import JobRunner
from outcrop.jobs.store import Job, now

DIALECT = "openai"
CODEC = "openai"
WINDOW = timedelta(hours=24)
_WIRE = {"submitted": "validating", "validating": "validating", "scheduled": "in_progress",
         "in_progress": "in_progress", "finalizing": "finalizing", "stopping": "cancelling", "completed": "completed",
         "failed": "failed", "stopped": "cancelled", "expired": "expired"}  # fmt: skip
_ID = re.compile(r"^batch_(?P<id>[a-z0-9]{12})$")


class BatchBody(BaseModel):
    """POST /v1/batches, with OpenAI's member names."""

    model_config = ConfigDict(extra="forbid")
    input_file_id: str = Field(min_length=1, max_length=64)
    endpoint: Literal["/v1/chat/completions", "/v1/embeddings", "/v1/completions"]
    completion_window: Literal["24h"]
    metadata: dict[str, str] | None = Field(default=None, max_length=16)
    output_expires_after: dict[str, Any] | None = None


def _runner(ctx: Context) -> JobRunner:
    codec(ctx)  # (says so when there is no store)
    assert ctx.jobs is not None
    return ctx.jobs


def _ts(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp())


def wire(job: Job) -> dict[str, Any]:
    spec = job.spec
    status = _WIRE[job.status]
    finished = job.status in ("completed", "stopped", "expired")  # (the runner wrote the files by then)
    problems = validation_errors(job.message) if job.status == "failed" else []
    expired = job.status == "expired" and job.processed < job.total  # (its unrun requests are in the error file)

    def when(*states: str) -> int | None:
        return _ts(job.ended_at if job.status in FINAL else job.updated_at) if job.status in states else None

    return {
        "id": f"batch_{job.id}", "object": "batch", "endpoint": spec["endpoint"],
        "errors": {"object": "list", "data": problems} if problems else None,
        "input_file_id": spec["input_file_id"], "completion_window": spec["completion_window"], "status": status,
        "output_file_id": output_id(job.id, "output") if finished and job.succeeded else None,
        "error_file_id": output_id(job.id, "error") if finished and (job.errored or expired) else None,
        "created_at": _ts(job.submitted_at), "in_progress_at": _ts(job.started_at), "expires_at": _ts(job.expires_at),
        "finalizing_at": when("finalizing"), "completed_at": when("completed"), "failed_at": when("failed"),
        "expired_at": when("expired"), "cancelling_at": when("stopping"), "cancelled_at": when("stopped"),
        "request_counts": {"total": job.total, "completed": job.succeeded, "failed": job.errored},
        "metadata": spec.get("metadata"), "model": job.model_id or None,
        "usage": {"input_tokens": job.input_tokens, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": job.output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": job.input_tokens + job.output_tokens},
    }  # fmt: skip


FINAL = ("completed", "failed", "stopped", "expired")


async def visible_batch(runner: JobRunner, batch_id: str, who: Principal) -> Job:
    """The batch, if `who` may see it (its creator or an administrator); NotFound otherwise."""
    m = _ID.match(batch_id)
    job = None if m is None else await asyncio.to_thread(runner.store.get, m.group("id"))
    if job is None or job.codec != CODEC or (job.principal.name != who.name and not who.is_admin):
        raise errors.ObjectNotFound(f"No such Batch object: {batch_id}")
    return job


def _model_of(data: bytes) -> str:
    """The model the file's requests name: the first one a request names ("" when none does; the batch then
    fails validation, saying why)."""
    for line in data.decode("utf-8-sig", "replace").splitlines():
        try:
            value = parse_json(line) if line.strip() else None
        except ValueError:
            continue
        body = value.get("body") if isinstance(value, dict) else None
        model = body.get("model") if isinstance(body, dict) else None
        if isinstance(model, str) and model:
            return model[:2048]
    return ""


def _body(raw: object) -> BatchBody:
    if not isinstance(raw, dict):
        raise errors.InvalidRequest("The request body must be a JSON object.")
    try:
        body = BatchBody.model_validate(raw)
    except ValidationError as exc:
        raise errors.InvalidRequest(describe(exc), param=first_param(exc)) from exc
    for key, value in (body.metadata or {}).items():
        if len(key) > 64 or len(value) > 512:
            raise errors.InvalidRequest("metadata keys have at most 64 characters and values at most 512.",
                                        param="metadata")  # fmt: skip
    return body


async def submit(ctx: Context, who: Principal, raw: object) -> Job:
    """POST /v1/batches for `who`, `raw` its request body (the web console too)."""
    runner = _runner(ctx)
    body = _body(raw)
    file = await visible(ctx, body.input_file_id, who)
    if file.purpose != "batch":
        raise errors.InvalidRequest(f"The file {file.id} has purpose '{file.purpose}': a batch's input file has "
                                    "purpose 'batch'.", param="input_file_id")  # fmt: skip
    model = _model_of(await asyncio.to_thread(runner.objects.read, file.uri))
    spec = {"input_file_id": file.id, "input_uri": file.uri, "endpoint": body.endpoint,
            "completion_window": body.completion_window, "metadata": body.metadata}  # fmt: skip
    return await runner.submit(CODEC, file.id, who, model, spec, expires_at=now() + WINDOW)


async def create_batch(ctx: Context, request: Request) -> Response:
    return json_body(wire(await submit(ctx, caller(request), await read_json(request, {}))))


async def get_batch(ctx: Context, request: Request, batch_id: str) -> Response:
    return json_body(wire(await visible_batch(_runner(ctx), batch_id, caller(request))))


async def list_batches(ctx: Context, request: Request) -> Response:
    runner = _runner(ctx)
    who = caller(request)
    query = dict(request.query_params)
    try:
        size = int(query.get("limit", "20"))
    except ValueError:
        size = 0
    if not 1 <= size <= 100:
        raise errors.InvalidRequest("limit must be a whole number from 1 to 100.", param="limit")
    beyond = await cursor(query, lambda after: visible_batch(runner, after, who))
    found = await asyncio.to_thread(runner.store.find, CODEC, None if who.is_admin else who.name, beyond=beyond,
                                    limit=size + 1)  # fmt: skip
    return json_body(page([wire(j) for j in found], size))


async def cancel_batch(ctx: Context, request: Request, batch_id: str) -> Response:
    runner = _runner(ctx)
    job = await visible_batch(runner, batch_id, caller(request))
    return json_body(wire(await runner.stop(job.id)))


ROUTES = [
    route("POST", "/v1/batches", create_batch, DIALECT),
    route("GET", "/v1/batches", list_batches, DIALECT),
    route("GET", "/v1/batches/{batch_id}", get_batch, DIALECT),
    route("POST", "/v1/batches/{batch_id}/cancel", cancel_batch, DIALECT),
]
