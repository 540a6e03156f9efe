"""IngestKnowledgeBaseDocuments' documents: decoded from botocore's KnowledgeBaseDocument shape into what the ledger
keeps until a worker ingests them (`Request`), and back into a document's bytes (`content`).

A document's content type must be its data source's (CUSTOM content for a CUSTOM data source, S3 content for an S3
one), as on Bedrock. CUSTOM content is inline text, inline bytes with their MIME type (the wire carries them as
base64), or an S3 object; S3 content is an object of the data source's own bucket. Metadata is inline attributes
(kept in the `<name>.metadata.json` format and checked at once) or an S3 object in that format, read with the
document. An S3 URI reads the local folder named after its bucket when the server's owner made one, as S3 data
sources do (sources.open_source).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from outcrop import errors
from outcrop.knowledge.errors import UnsupportedDocument
from outcrop.knowledge.indexing import Content, document_id
from outcrop.knowledge.metadata import parse_metadata
from outcrop.knowledge.parse import document_kind
from outcrop.knowledge.sources import Source, parse_uri

Opener = Callable[[str], Source]  # bucket -> its source
MAX_INLINE_BYTES = 5 * 1024 * 1024  # ByteContentBlob's limit in the service model


@dataclass(frozen=True)
class Request:
    """One document of an IngestKnowledgeBaseDocuments request, as the ledger keeps it until it is ingested."""

    document_id: str
    kind: str  # S3 | CUSTOM
    uri: str  # s3://bucket/key, or the CUSTOM document's id
    pending: dict[str, Any]
    data: bytes | None  # inline content


def identifier(ds_id: str, value: dict[str, Any], ds_type: str) -> tuple[str, str, str]:
    """(document id, kind, uri) of a DocumentIdentifier."""
    kind = value.get("dataSourceType")
    if kind != ds_type:
        raise errors.InvalidRequest(f"The document identifier's dataSourceType is {kind}, but the data source is "
                                    f"of type {ds_type}.")  # fmt: skip
    if kind == "S3":
        uri = str((value.get("s3") or {}).get("uri", ""))
        if not uri:
            raise errors.InvalidRequest("A document identifier of type S3 needs s3.uri.")
        parse_uri(uri)
    else:
        uri = str((value.get("custom") or {}).get("id", ""))
        if not uri:
            raise errors.InvalidRequest("A document identifier of type CUSTOM needs custom.id.")
    return document_id(ds_id, kind, uri), kind, uri


def identify(kind: str, uri: str) -> dict[str, Any]:
    """A DocumentIdentifier on the wire."""
    if kind == "S3":
        return {"dataSourceType": "S3", "s3": {"uri": uri}}
    return {"dataSourceType": "CUSTOM", "custom": {"id": uri}}


def decode(ds_id: str, ds_type: str, bucket: str | None, document: dict[str, Any], principal: str) -> Request:
    """A KnowledgeBaseDocument (already valid for the service model) this server can ingest, for a data source of
    type `ds_type` (reading bucket `bucket` when S3)."""
    content = document["content"]
    kind = content["dataSourceType"]
    if kind != ds_type:
        raise errors.InvalidRequest(f"documents: content.dataSourceType is {kind}, but the data source is of type "
                                    f"{ds_type}; it must match.")  # fmt: skip
    data: bytes | None = None
    if kind == "S3":
        if "s3" not in content:
            raise errors.InvalidRequest("documents: content.s3 is required for dataSourceType S3.")
        uri = content["s3"]["s3Location"]["uri"]
        if parse_uri(uri)[0] != bucket:
            raise errors.InvalidRequest(f"documents: {uri} is not in the data source's bucket '{bucket}'.")
        spec: dict[str, Any] = {"uri": uri, "name": uri}
    else:
        custom = content.get("custom")
        if custom is None:
            raise errors.InvalidRequest("documents: content.custom is required for dataSourceType CUSTOM.")
        uri = custom["customDocumentIdentifier"]["id"]
        spec, data = _custom(custom, uri)
    meta = document.get("metadata")
    return Request(document_id(ds_id, kind, uri), kind, uri,
                   {"principal": principal, "content": spec, "metadata": _metadata(meta, uri)}, data)  # fmt: skip


def _custom(custom: dict[str, Any], doc_id: str) -> tuple[dict[str, Any], bytes | None]:
    source = custom["sourceType"]
    if source == "S3_LOCATION":
        if "s3Location" not in custom:
            raise errors.InvalidRequest("documents: content.custom.s3Location is required for sourceType S3_LOCATION.")
        uri = custom["s3Location"]["uri"]
        parse_uri(uri)
        return {"uri": uri, "name": uri}, None
    inline = custom.get("inlineContent")
    if inline is None:
        raise errors.InvalidRequest("documents: content.custom.inlineContent is required for sourceType IN_LINE.")
    if inline["type"] == "TEXT":
        if "textContent" not in inline:
            raise errors.InvalidRequest("documents: inlineContent.textContent is required for type TEXT.")
        try:  # an id that names a format ("notes.md") is parsed as that format, any other as plain text
            document_kind(doc_id)
            content_type = None
        except UnsupportedDocument:
            content_type = "text/plain"
        return {"name": doc_id, "contentType": content_type}, str(inline["textContent"]["data"]).encode()
    if "byteContent" not in inline:
        raise errors.InvalidRequest("documents: inlineContent.byteContent is required for type BYTE.")
    raw = inline["byteContent"]["data"]
    try:
        if not isinstance(raw, str):
            raise TypeError
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise errors.InvalidRequest("documents: inlineContent.byteContent.data is not base64.") from None
    if not 1 <= len(data) <= MAX_INLINE_BYTES:
        raise errors.InvalidRequest(f"documents: inlineContent.byteContent.data must hold 1 to {MAX_INLINE_BYTES:,} "
                                    "bytes.")  # fmt: skip
    return {"name": doc_id, "contentType": inline["byteContent"]["mimeType"]}, data


def _metadata(meta: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    if meta is None:
        return None
    if meta["type"] == "S3_LOCATION":
        if "s3Location" not in meta:
            raise errors.InvalidRequest("documents: metadata.s3Location is required for type S3_LOCATION.")
        uri = meta["s3Location"]["uri"]
        parse_uri(uri)
        return {"uri": uri}
    attributes = meta.get("inlineAttributes")
    if not attributes:
        raise errors.InvalidRequest("documents: metadata.inlineAttributes is required for type IN_LINE_ATTRIBUTE.")
    sidecar = {"metadataAttributes": {a["key"]: {"value": a["value"]} for a in attributes}}
    parse_metadata(json.dumps(sidecar).encode(), f"{name} (inline metadata)")  # refused now, not in the worker
    return {"inline": sidecar}


def content(kind: str, uri: str, pending: dict[str, Any], data: bytes | None, opener: Opener) -> Content:
    """The document a pending request stands for, its S3 objects read (NotFound when one is not there)."""
    spec = pending["content"]
    if data is None:
        bucket, key = parse_uri(spec["uri"])
        data = opener(bucket).read(key)
    meta = pending.get("metadata")
    metadata: bytes | None = None
    metadata_name = ""
    if meta is not None and "uri" in meta:
        bucket, key = parse_uri(meta["uri"])
        metadata, metadata_name = opener(bucket).read(key), meta["uri"]
    elif meta is not None:
        metadata, metadata_name = json.dumps(meta["inline"]).encode(), f"{uri} (inline metadata)"
    return Content(kind, uri, spec["name"], data, spec.get("contentType"), metadata, metadata_name)
