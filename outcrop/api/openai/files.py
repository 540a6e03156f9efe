"""OpenAI's /v1/files for batch inputs: upload (multipart/form-data, purpose "batch"), list, get, delete, content.

The bytes go to object storage (outcrop.objects) under `batch_files_uri` (default s3://outcrop-files/, the folder
<batch_dir>/outcrop-files; an S3 bucket when the owner points it at one), the record to the store
(outcrop.jobs.files). A file is its uploader's: others (but administrators) are told it does not exist. Uploads
larger than `max_file_mib` are refused (413) as they arrive. A batch's output and error files are listed here too
(purpose "batch_output").
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from outcrop import errors
from outcrop.api.http import Context, caller, json_body, route
from outcrop.api.openai.batch_codec import OpenAIBatch
from outcrop.auth.principal import Principal
from outcrop.jobs.files import StoredFile, new_id
from outcrop.jobs.store import now
from outcrop.objects import join

DIALECT = "openai"
PURPOSES = ("batch",)  # what can be uploaded here; a batch's outputs are "batch_output"
_BOUNDARY = re.compile(r'boundary="?([^";]{1,200})"?', re.IGNORECASE)
_PARAM = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"|(\w+)=([^;\s]+)')


def codec(ctx: Context) -> OpenAIBatch:
    found = None if ctx.jobs is None else ctx.jobs.codecs.get("openai")
    if not isinstance(found, OpenAIBatch):
        raise errors.InvalidRequest("This server has no store to keep files and batches in.")
    return found


def wire(f: StoredFile) -> dict[str, Any]:
    return {"id": f.id, "object": "file", "bytes": f.bytes, "created_at": int(f.created_at.timestamp()),
            "filename": f.filename, "purpose": f.purpose, "status": "processed",
            "expires_at": None if f.expires_at is None else int(f.expires_at.timestamp()),
            "status_details": None}  # fmt: skip


async def visible(ctx: Context, file_id: str, who: Principal) -> StoredFile:
    """The file, if `who` may see it (its owner or an administrator); NotFound otherwise, so others learn nothing."""
    found = await asyncio.to_thread(codec(ctx).files.get, file_id)
    if found is None or (found.owner != who.name and not who.is_admin):
        raise errors.ObjectNotFound(f"No such File object: {file_id}")
    return found


T = TypeVar("T")


@dataclass(frozen=True)
class _Part:
    name: str
    filename: str | None
    data: bytes


def form_parts(content_type: str, body: bytes) -> list[_Part]:
    """The parts of a multipart/form-data body (RFC 7578); InvalidRequest when it is not one."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise errors.InvalidRequest("Uploads are multipart/form-data with the parts 'file' and 'purpose'.")
    m = _BOUNDARY.search(content_type)
    if m is None:
        raise errors.InvalidRequest("The multipart/form-data body names no boundary.")
    delimiter = b"--" + m.group(1).encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise errors.InvalidRequest("The multipart/form-data body is incomplete: its closing boundary is missing.")
    parts = []
    for chunk in chunks[1:-1]:
        if not chunk.startswith(b"\r\n") or not chunk.endswith(b"\r\n") or b"\r\n\r\n" not in chunk:
            raise errors.InvalidRequest("A part of the multipart/form-data body is malformed.")
        head, _, data = chunk[2:-2].partition(b"\r\n\r\n")
        params: dict[str, str] = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-disposition":
                for q in _PARAM.finditer(value):
                    key = (q.group(1) or q.group(3)).lower()
                    params[key] = q.group(2).replace('\\"', '"') if q.group(1) else q.group(4)
        if "name" not in params:
            raise errors.InvalidRequest("A part of the multipart/form-data body has no name.")
        parts.append(_Part(params["name"], params.get("filename"), data))
    return parts


async def save(ctx: Context, who: Principal, purpose: str, filename: str | None, data: bytes) -> StoredFile:
    """An upload of `who`'s, kept (the web console's batch uploads too)."""
    batch = codec(ctx)
    if purpose not in PURPOSES:
        raise errors.InvalidRequest(f"This server keeps files for batches only: purpose must be 'batch', not "
                                    f"{purpose!r}.", param="purpose")  # fmt: skip
    limit = ctx.settings.max_file_mib * 1024 * 1024
    if len(data) > limit:
        raise errors.RequestTooLarge(f"The file is larger than this server takes ({ctx.settings.max_file_mib} MiB; "
                                     "max_file_mib under [server] sets it).")  # fmt: skip
    if not data.strip():
        raise errors.InvalidRequest("The file is empty.", param="file")
    name = (filename or "upload.jsonl").replace("\\", "/").rsplit("/", 1)[-1][:512] or "upload.jsonl"
    file_id = new_id()
    uri = join(batch.root, "uploads", file_id)
    await asyncio.to_thread(ctx.jobs.objects.write, uri, data)  # type: ignore[union-attr]
    stored = StoredFile(file_id, who.name, purpose, name, len(data), uri, now(), None)
    await asyncio.to_thread(batch.files.add, stored)
    return stored


async def upload(ctx: Context, request: Request) -> Response:
    codec(ctx)  # (says so when there is no store)
    parts = {p.name: p for p in form_parts(request.headers.get("content-type", ""), await request.body())}
    purpose = parts.get("purpose")
    file = parts.get("file")
    if purpose is None:
        raise errors.InvalidRequest("purpose is required.", param="purpose")
    if file is None:
        raise errors.InvalidRequest("file is required.", param="file")
    wanted = purpose.data.decode("utf-8", "replace").strip()
    return json_body(wire(await save(ctx, caller(request), wanted, file.filename, file.data)))


def _limit(query: dict[str, str], default: int, most: int) -> int:
    try:
        n = int(query.get("limit", str(default)))
    except ValueError:
        n = 0
    if not 1 <= n <= most:
        raise errors.InvalidRequest(f"limit must be a whole number from 1 to {most}.", param="limit")
    return n


def page(items: list[dict[str, Any]], size: int) -> dict[str, Any]:
    """OpenAI's cursor page from up to size + 1 items read past the cursor (the extra one says there are more)."""
    data = items[:size]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": len(items) > size}  # fmt: skip


async def cursor(query: dict[str, str], find: Callable[[str], Awaitable[T]]) -> T | None:
    """The object OpenAI's `after` names, found by `find` (None without one); one that `find` says does not exist
    (or this caller may not see) is a 400 naming the cursor."""
    after = query.get("after")
    if not after:
        return None
    try:
        return await find(after)
    except errors.ObjectNotFound:
        raise errors.InvalidRequest(f"after names no object of this list: {after}.", param="after") from None


async def list_files(ctx: Context, request: Request) -> Response:
    batch = codec(ctx)
    who = caller(request)
    query = dict(request.query_params)
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise errors.InvalidRequest("order must be asc or desc.", param="order")
    size = _limit(query, 10_000, 10_000)
    beyond = await cursor(query, lambda after: visible(ctx, after, who))
    found = await asyncio.to_thread(batch.files.find, None if who.is_admin else who.name,
                                    purpose=query.get("purpose") or None, ascending=order == "asc", beyond=beyond,
                                    limit=size + 1)  # fmt: skip
    return json_body(page([wire(f) for f in found], size))


async def get_file(ctx: Context, request: Request, file_id: str) -> Response:
    return json_body(wire(await visible(ctx, file_id, caller(request))))


async def delete_file(ctx: Context, request: Request, file_id: str) -> Response:
    batch = codec(ctx)
    found = await visible(ctx, file_id, caller(request))
    if await asyncio.to_thread(batch.files.remove, found.id):
        await asyncio.to_thread(ctx.jobs.objects.delete, found.uri)  # type: ignore[union-attr]
    return json_body({"id": found.id, "object": "file", "deleted": True})


async def file_content(ctx: Context, request: Request, file_id: str) -> Response:
    found = await visible(ctx, file_id, caller(request))
    data = await asyncio.to_thread(ctx.jobs.objects.read, found.uri)  # type: ignore[union-attr]
    return Response(data, 200, media_type="application/octet-stream")


ROUTES = [
    route("POST", "/v1/files", upload, DIALECT),
    route("GET", "/v1/files", list_files, DIALECT),
    route("GET", "/v1/files/{file_id}", get_file, DIALECT),
    route("DELETE", "/v1/files/{file_id}", delete_file, DIALECT),
    route("GET", "/v1/files/{file_id}/content", file_content, DIALECT),
]
