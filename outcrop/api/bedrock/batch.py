"""Batch inference jobs in Bedrock's control plane (botocore's `bedrock` model): CreateModelInvocationJob,
GetModelInvocationJob, ListModelInvocationJobs and StopModelInvocationJob, over the job runner (outcrop.jobs).

The files are batch_codec.py's; where they live is outcrop.objects (S3 at `s3_endpoint_url`, or a folder under
`batch_dir` standing for the bucket). A job runs as its creator, with their access to the model, and only they
(and administrators) see it. The server reads and writes with its own S3 credentials; roleArn decides what a caller
may reach only when the config declares service roles (outcrop.auth.roles: with [[roles]], a caller who is not an
administrator must pass a role they may, reaching both locations). vpcConfig, s3BucketOwner and s3EncryptionKeyId are
kept and shown back, not used. The runner's states map to Bedrock's below; a
completed job with failed records is PartiallyCompleted.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from outcrop import errors
from outcrop.api.bedrock.guardrails import check_body
from outcrop.api.http import Context, caller, json_body, read_json, route
from outcrop.auth.principal import Principal
from outcrop.auth.roles import Roles, within
from outcrop.jobs.runner import JobRunner
from outcrop.jobs.store import Job, now, page_token, read_page_token

DIALECT = "bedrock"
CODEC = "bedrock"
ACCOUNT = "000000000000"
DEFAULT_TIMEOUT_HOURS = 168
_WIRE = {"submitted": "Submitted", "validating": "Validating", "scheduled": "Scheduled", "in_progress": "InProgress",
         "finalizing": "InProgress", "stopping": "Stopping", "completed": "Completed", "failed": "Failed",
         "stopped": "Stopped", "expired": "Expired"}  # fmt: skip
_STATUSES = tuple(sorted({*_WIRE.values(), "PartiallyCompleted"}))
_ARN = re.compile(r"^arn:aws(?:-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:model-invocation-job/(?P<id>[a-z0-9]{12})$")


def _runner(ctx: Context) -> JobRunner:
    if ctx.jobs is None:
        raise errors.InvalidRequest("This server has no store to keep batch jobs in.")
    return ctx.jobs


def arn(job: Job, region: str) -> str:
    return f"arn:aws:bedrock:{region}:{ACCOUNT}:model-invocation-job/{job.id}"


def status(job: Job) -> str:
    if job.status == "completed" and job.errored:
        return "PartiallyCompleted"
    return _WIRE[job.status]


def _message(job: Job) -> str | None:
    if job.message:
        return job.message
    if job.status == "completed" and job.errored:
        return f"{job.errored} of {job.total} records failed; each one's error is in the output."
    return None


def _time(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def wire(job: Job, region: str) -> dict[str, Any]:
    """The job as GetModelInvocationJob answers it (and, the same members, ListModelInvocationJobs' summaries)."""
    spec = job.spec
    out: dict[str, Any] = {
        "jobArn": arn(job, region), "jobName": job.name, "modelId": job.model_id, "roleArn": spec["roleArn"],
        "status": status(job), "submitTime": _time(job.submitted_at), "lastModifiedTime": _time(job.updated_at),
        "inputDataConfig": spec["inputDataConfig"], "outputDataConfig": spec["outputDataConfig"],
        "timeoutDurationInHours": spec["timeoutDurationInHours"], "jobExpirationTime": _time(job.expires_at),
        "modelInvocationType": spec.get("modelInvocationType", "InvokeModel"),
    }  # fmt: skip
    if job.status not in ("submitted", "validating", "failed") or job.total:
        out.update(totalRecordCount=job.total, processedRecordCount=job.processed,
                   successRecordCount=job.succeeded, errorRecordCount=job.errored)  # fmt: skip
    optional = {"clientRequestToken": job.client_token, "message": _message(job), "endTime": _time(job.ended_at),
                "vpcConfig": spec.get("vpcConfig")}  # fmt: skip
    out.update({k: v for k, v in optional.items() if v is not None})
    return out


def job_id(identifier: str) -> str:
    """The job id a jobIdentifier (an id or an ARN) names."""
    m = _ARN.match(identifier)
    if m is not None:
        return m.group("id")
    if re.fullmatch(r"[a-z0-9]{12}", identifier):
        return identifier
    raise errors.InvalidRequest(f"jobIdentifier '{identifier}' is neither a job id nor a job ARN.")


async def visible(runner: JobRunner, identifier: str, who: Principal) -> Job:
    """The job, if `who` may see it (its creator or an administrator); NotFound otherwise, so others learn nothing."""
    job = await asyncio.to_thread(runner.store.get, job_id(identifier))
    if job is None or job.codec != CODEC or (job.principal.name != who.name and not who.is_admin):
        raise errors.NotFound(f"The batch inference job '{identifier}' was not found.")
    return job


def _location(body: dict[str, Any], member: str, inner: str) -> str:
    config = body[member].get(inner)
    if not isinstance(config, dict):
        raise errors.InvalidRequest(f"{member}.{inner} is required: this server reads and writes S3 locations.")
    return str(config["s3Uri"])


def _outside_server_files(runner: JobRunner, locations: list[str]) -> None:
    """Refuse a location in the server's own files folder (batch_files_uri: everyone's /v1/files uploads and
    batch outputs, and the console's), which callers reach through /v1/files and /v1/batches, never by name."""
    root = getattr(runner.codecs.get("openai"), "root", None)
    if not isinstance(root, str):
        return
    own = runner.objects.canonical(root, prefix=True)
    for uri in locations:
        if within(uri, own) or within(own, uri):
            raise errors.AccessDenied(f"{uri} is (or holds) the server's own files folder ({own}), which jobs "
                                      "reach through /v1/files and /v1/batches, not by name.")  # fmt: skip


async def create(ctx: Context, who: Principal, raw: object, *, managed: bool = False) -> Job:
    """CreateModelInvocationJob for `who`, `raw` its request body. `managed`: the locations are the server's own
    files folder (the web console's uploads and outputs), which no service role has to reach."""
    runner = _runner(ctx)
    body = check_body(raw, "CreateModelInvocationJob")
    await ctx.inference.authorize(body["modelId"], who)  # unknown: 404, not allowed: 403
    source = _location(body, "inputDataConfig", "s3InputDataConfig")
    target = _location(body, "outputDataConfig", "s3OutputDataConfig")
    # a location the server cannot use is refused now; one the caller's role does not reach too (outcrop.auth.roles)
    locations = [runner.objects.canonical(source, prefix=True), runner.objects.canonical(target, prefix=True)]
    if not managed and not who.is_admin:
        _outside_server_files(runner, locations)
        Roles(ctx.settings.roles).check(who, body.get("roleArn"), locations)
    hours = int(body.get("timeoutDurationInHours") or DEFAULT_TIMEOUT_HOURS)
    spec: dict[str, Any] = {k: body[k] for k in ("roleArn", "inputDataConfig", "outputDataConfig", "vpcConfig",
                                 "modelInvocationType", "tags") if k in body}  # fmt: skip
    spec["timeoutDurationInHours"] = hours
    token = body.get("clientRequestToken")
    digest = hashlib.sha256(json.dumps({k: v for k, v in body.items() if k != "clientRequestToken"},
                                       sort_keys=True).encode()).hexdigest()  # fmt: skip
    job = await runner.submit(CODEC, body["jobName"], who, body["modelId"], spec, client_token=token,
                              request_hash=digest, expires_at=now() + timedelta(hours=hours))  # fmt: skip
    return job


async def create_job(ctx: Context, request: Request) -> Response:
    job = await create(ctx, caller(request), await read_json(request, {}))
    return json_body({"jobArn": arn(job, ctx.settings.region)})


async def get_job(ctx: Context, request: Request, jobIdentifier: str) -> Response:
    job = await visible(_runner(ctx), jobIdentifier, caller(request))
    return json_body(wire(job, ctx.settings.region))


def _when(query: dict[str, str], name: str) -> datetime | None:
    if name not in query:
        return None
    try:
        return datetime.fromisoformat(query[name].replace("Z", "+00:00"))
    except ValueError:
        raise errors.InvalidRequest(f"{name} must be a timestamp such as 2025-01-31T12:00:00Z.") from None


def _choice(query: dict[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = query.get(name, default)
    if value not in choices:
        raise errors.InvalidRequest(f"{name} must be one of {', '.join(choices)}, not '{value}'.")
    return value


async def list_jobs(ctx: Context, request: Request) -> Response:
    runner = _runner(ctx)
    query = dict(request.query_params)
    who = caller(request)
    wanted = query.get("statusEquals")
    if wanted is not None:
        _choice(query, "statusEquals", _STATUSES, "")
    name = query.get("nameContains")
    if name is not None and not 1 <= len(name) <= 63:
        raise errors.InvalidRequest("nameContains must have 1 to 63 characters.")
    _choice(query, "sortBy", ("CreationTime",), "CreationTime")
    ascending = _choice(query, "sortOrder", ("Ascending", "Descending"), "Descending") == "Ascending"
    try:
        size = int(query.get("maxResults", "1000"))
    except ValueError:
        size = 0
    if not 1 <= size <= 1000:
        raise errors.InvalidRequest("maxResults must be a whole number from 1 to 1000.")
    start = read_page_token(query["nextToken"]) if "nextToken" in query else 0
    states, partial = _filter(wanted)
    found = await asyncio.to_thread(runner.store.find, CODEC, None if who.is_admin else who.name, status=states,
                                    partial=partial, name_contains=name, after=_when(query, "submitTimeAfter"),
                                    before=_when(query, "submitTimeBefore"), ascending=ascending, start=start,
                                    limit=size + 1)  # fmt: skip
    out: dict[str, Any] = {"invocationJobSummaries": [wire(j, ctx.settings.region) for j in found[:size]]}
    if len(found) > size:
        out["nextToken"] = page_token(start + size)
    return json_body(out)


def _filter(wanted: str | None) -> tuple[tuple[str, ...], bool | None]:
    """The runner's states (and whether records failed) that Bedrock's statusEquals names."""
    if wanted is None:
        return (), None
    if wanted in ("Completed", "PartiallyCompleted"):
        return ("completed",), wanted == "PartiallyCompleted"
    return tuple(k for k, v in _WIRE.items() if v == wanted), None


async def stop_job(ctx: Context, request: Request, jobIdentifier: str) -> Response:
    runner = _runner(ctx)
    job = await visible(runner, jobIdentifier, caller(request))
    await runner.stop(job.id)
    return json_body({})


ROUTES = [
    route("POST", "/model-invocation-job", create_job, DIALECT),
    route("GET", "/model-invocation-jobs", list_jobs, DIALECT),
    route("GET", "/model-invocation-job/{jobIdentifier}", get_job, DIALECT),
    route("POST", "/model-invocation-job/{jobIdentifier}/stop", stop_job, DIALECT),
]
