"""One document to the chunks its knowledge base stores: parse, read its metadata, chunk, then (once embedded) the
vector store's chunks with Bedrock's metadata and location.

Each stored chunk carries, beside the document's own metadata attributes, the attributes Bedrock adds to every
chunk (and Retrieve returns): `x-amz-bedrock-kb-source-uri` (S3 documents), `x-amz-bedrock-kb-data-source-id`,
`x-amz-bedrock-kb-chunk-id` and, where the chunk comes from one page, `x-amz-bedrock-kb-document-page-number`.
Its location is Bedrock's RetrievalResultLocation: `{"type": "S3", "s3Location": {"uri": ...}}` or
`{"type": "CUSTOM", "customDocumentLocation": {"id": ...}}`. Attributes marked includeForEmbedding are embedded
with the chunk's text (as "key: value" lines before it), not stored in it.

The vector store's document id is the data source's id and a hash of the document's URI, so a document keeps its
id across jobs and two data sources of one knowledge base never share one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from outcrop.knowledge import chunk as chunking
from outcrop.knowledge.chunking_config import ChunkingConfig
from outcrop.knowledge.metadata import Attribute, parse_metadata
from outcrop.knowledge.parse import DEFAULT_MAX_BYTES, parse
from outcrop.knowledge.vectors import Chunk

SOURCE_URI = "x-amz-bedrock-kb-source-uri"
DATA_SOURCE_ID = "x-amz-bedrock-kb-data-source-id"
CHUNK_ID = "x-amz-bedrock-kb-chunk-id"
PAGE_NUMBER = "x-amz-bedrock-kb-document-page-number"


def document_id(ds_id: str, kind: str, uri: str) -> str:
    return f"{ds_id}-{hashlib.sha256(f'{kind}:{uri}'.encode()).hexdigest()[:40]}"


def digest(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def location(kind: str, uri: str) -> dict[str, Any]:
    if kind == "S3":
        return {"type": "S3", "s3Location": {"uri": uri}}
    return {"type": "CUSTOM", "customDocumentLocation": {"id": uri}}


@dataclass(frozen=True)
class Content:
    """What one document is made of, read from its source."""

    kind: str  # S3 | CUSTOM
    uri: str  # s3://bucket/key, or the CUSTOM document's id
    name: str  # for the parser (its extension) and for messages: the URI, or the id
    data: bytes
    content_type: str | None = None
    metadata: bytes | None = None  # a <name>.metadata.json sidecar, or inline attributes in that format
    metadata_name: str = ""


@dataclass(frozen=True)
class Prepared:
    document_id: str
    kind: str
    uri: str
    chunks: list[chunking.Chunk]
    attributes: dict[str, Attribute]

    def texts(self) -> list[str]:
        """What gets embedded for each chunk."""
        extra = [f"{a.key}: {_plain(a.value)}" for a in self.attributes.values() if a.include_for_embedding]
        prefix = "\n".join(extra) + "\n" if extra else ""
        return [prefix + c.text for c in self.chunks]


def prepare(content: Content, ds_id: str, config: ChunkingConfig, embed: chunking.Embed | None = None,
            max_bytes: int = DEFAULT_MAX_BYTES) -> Prepared:  # fmt: skip
    """Parse, read the metadata and chunk (SEMANTIC chunking embeds through `embed`); a DocumentError says why the
    document cannot be."""
    attributes = parse_metadata(content.metadata, content.metadata_name) if content.metadata is not None else {}
    parsed = parse(content.data, content.name, content_type=content.content_type, max_bytes=max_bytes)
    chunks = chunking.chunk(parsed, config, embed=embed)
    return Prepared(document_id(ds_id, content.kind, content.uri), content.kind, content.uri, chunks, attributes)


def stored(prepared: Prepared, ds_id: str, vectors: Sequence[Sequence[float]]) -> list[Chunk]:
    """The vector store's chunks of a prepared document, given the vector of each of its texts."""
    base: dict[str, Any] = {k: a.value for k, a in prepared.attributes.items()}
    base[DATA_SOURCE_ID] = ds_id
    if prepared.kind == "S3":
        base[SOURCE_URI] = prepared.uri
    where = location(prepared.kind, prepared.uri)
    out: list[Chunk] = []
    for c, vector in zip(prepared.chunks, vectors, strict=True):
        chunk_id = f"{prepared.document_id}:{c.index}"
        metadata = {**base, CHUNK_ID: chunk_id}
        if c.page is not None:
            metadata[PAGE_NUMBER] = c.page
        parent_id = f"{prepared.document_id}:p{c.parent.index}" if c.parent is not None else None
        out.append(Chunk(chunk_id, prepared.document_id, c.text, vector, metadata, where, parent_id,
                         c.parent.text if c.parent is not None else None))  # fmt: skip
    return out


def _plain(value: Any) -> str:
    return ", ".join(value) if isinstance(value, tuple) else str(value)
