"""Retrieve: a knowledge base searched for a query, as Bedrock's Retrieve answers it.

- numberOfResults (default 5), overrideSearchType SEMANTIC (the default here) or HYBRID, the metadata filter;
- pages: a nextToken stands for the offset of the next page and the request it belongs to; the store is asked
  for one result more than the page needs, so a token is only given when there is a next page (at most
  MAX_RESULTS results in all);
- `context` (RetrieveAndGenerate in a session): the question is also searched with the session's previous
  question before it and the two rankings are fused, so "what about its price?" finds the passage about the
  thing the last question named while a new topic still finds its own passages;
- reranking (rerankingConfiguration, BEDROCK_RERANKING_MODEL): this server has no cross-encoder rerankers, so
  the modelArn must name a served *embedding* model; the page's passages are then ordered by the cosine between
  that model's vectors of the query and of each passage (optionally with its metadata, as
  metadataConfiguration selects), scored (1 + cosine) / 2, and cut to numberOfRerankedResults. Any other model
  is refused with a ValidationException naming the usable ones; nothing is silently skipped. (Rerank.model ""
  stands for the knowledge base's own embedding model: managed search's rerankingModelType MANAGED.)

Each passage carries Bedrock's own metadata keys beside the document's attributes: x-amz-bedrock-kb-chunk-id,
x-amz-bedrock-kb-source-uri for a document with a URI (from its location when ingestion did not set it) and what
ingestion recorded (x-amz-bedrock-kb-data-source-id, x-amz-bedrock-kb-document-page-number).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from outcrop import errors
from outcrop.auth.principal import Principal
from outcrop.conversation import EmbedRequest
from outcrop.knowledge.service import Knowledge
from outcrop.knowledge.vectors import Filter, Hit, SearchType, fuse

MAX_RESULTS = 100  # how deep pages may go (the stores return at most 100 results a search)
SOURCE_URI = "x-amz-bedrock-kb-source-uri"
CHUNK_ID = "x-amz-bedrock-kb-chunk-id"
DATA_SOURCE_ID = "x-amz-bedrock-kb-data-source-id"
_URL_KEYS = (
    ("s3Location", "uri"),
    ("webLocation", "url"),
    ("confluenceLocation", "url"),
    ("salesforceLocation", "url"),
    ("sharePointLocation", "url"),
    ("kendraDocumentLocation", "uri"),
)


@dataclass(frozen=True)
class Rerank:
    model: str  # "": the knowledge base's own embedding model
    number_of_results: int | None = None
    metadata: Literal["NONE", "ALL", "SELECTIVE"] = "NONE"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class Retrieval:
    number_of_results: int = 5
    search_type: SearchType = SearchType.SEMANTIC
    filter: Filter | None = None
    rerank: Rerank | None = None


@dataclass(frozen=True)
class Passage:
    text: str
    location: Mapping[str, Any]  # Bedrock's RetrievalResultLocation
    metadata: Mapping[str, Any]  # JSON values
    score: float | None = None


@dataclass(frozen=True)
class Page:
    passages: list[Passage]
    next_offset: int | None = None


def source_uri(location: Mapping[str, Any]) -> str | None:
    for member, key in _URL_KEYS:
        value = (location.get(member) or {}).get(key)
        if value:
            return str(value)
    return None


def passage(hit: Hit) -> Passage:
    location = dict(hit.location) if hit.location else {"type": "CUSTOM",
                                                         "customDocumentLocation": {"id": hit.document_id}}  # fmt: skip
    metadata: dict[str, Any] = {k: list(v) if isinstance(v, tuple) else v for k, v in hit.metadata.items()}
    uri = source_uri(location)
    if uri:  # documents with a URI (S3, web, ...); a CUSTOM document has none, as on Bedrock
        metadata.setdefault(SOURCE_URI, uri)
    metadata.setdefault(CHUNK_ID, hit.chunk_id)
    return Passage(hit.text, location, metadata, hit.score)


def page_token(offset: int, fingerprint: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset, "f": fingerprint}).encode()).decode().rstrip("=")


def token_offset(token: str | None, fingerprint: str) -> int:
    """The offset a nextToken stands for; ValidationException for a token of another request or none at all."""
    if token is None:
        return 0
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset, made_for = int(raw["o"]), raw["f"]
    except (ValueError, TypeError, KeyError):
        raise errors.InvalidRequest("nextToken is not a token this server gave.") from None
    if made_for != fingerprint or not 0 < offset < MAX_RESULTS:
        raise errors.InvalidRequest("nextToken belongs to another Retrieve request: send the same query, knowledge "
                                    "base and retrievalConfiguration with it.")  # fmt: skip
    return offset


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _fused(first: list[Hit], second: list[Hit]) -> list[Hit]:
    by_id = {h.chunk_id: h for h in second} | {h.chunk_id: h for h in first}
    ranked = fuse([[h.chunk_id for h in first], [h.chunk_id for h in second]])
    return [Hit(by_id[c].chunk_id, by_id[c].document_id, by_id[c].text, score, by_id[c].metadata, by_id[c].location)
            for c, score in ranked]  # fmt: skip


async def retrieve(
    knowledge: Knowledge,
    kb_id: str,
    principal: Principal,
    text: str,
    retrieval: Retrieval,
    *,
    offset: int = 0,
    context: str | None = None,
) -> Page:
    """A page of passages of knowledge base `kb_id` for `text` (`knowledge` is the service, ctx.knowledge)."""
    n = retrieval.number_of_results
    want = min(offset + n + 1, MAX_RESULTS)
    hits = await knowledge.search(kb_id, principal, text, number_of_results=want, search_type=retrieval.search_type,
                                  filter=retrieval.filter)  # fmt: skip
    if context:
        also = await knowledge.search(kb_id, principal, f"{context}\n{text}", number_of_results=want,
                                      search_type=retrieval.search_type, filter=retrieval.filter)  # fmt: skip
        hits = _fused(hits, also)
    page = [passage(h) for h in hits[offset : offset + n]]
    more = len(hits) > offset + n and offset + n < MAX_RESULTS
    if retrieval.rerank is not None and page:
        chosen = retrieval.rerank
        if not chosen.model:
            chosen = replace(chosen, model=knowledge.catalog.get(kb_id).embedding_model)
        page = await rerank(knowledge, principal, text, page, chosen)
    return Page(page, offset + n if more else None)


def _rerank_text(p: Passage, rerank: Rerank) -> str:
    if rerank.metadata == "NONE":
        return p.text
    keys = [k for k in p.metadata if not k.startswith("x-amz-bedrock-kb-")]
    if rerank.metadata == "SELECTIVE":
        keys = [k for k in keys if (not rerank.include or k in rerank.include) and k not in rerank.exclude]
    lines = [f"{k}: {p.metadata[k]}" for k in keys]
    return "\n".join([p.text, *lines])


async def rerank(knowledge: Knowledge, principal: Principal, query: str, passages: Sequence[Passage],
                 rerank: Rerank) -> list[Passage]:  # fmt: skip
    registry = knowledge.inference.registry
    usable = ", ".join(registry.names("embedding")) or "none"
    where = "rerankingConfiguration.bedrockRerankingConfiguration.modelConfiguration.modelArn"
    try:
        kind = registry.kind(rerank.model)
    except errors.NotFound:
        raise errors.InvalidRequest(
            f"{where} '{rerank.model}' names no model served here. This server reranks with an embedding model "
            f"(cosine between query and passage vectors); served embedding models: {usable}."
        ) from None
    if kind != "embedding":
        raise errors.InvalidRequest(f"{where} '{rerank.model}' is a chat model. This server reranks with an "
                                    f"embedding model; served embedding models: {usable}.")  # fmt: skip
    texts = [query, *(_rerank_text(p, rerank) for p in passages)]
    result = await knowledge.inference.embed(EmbedRequest(model=rerank.model, texts=tuple(texts)), principal)
    vectors = np.asarray(result.vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1)
    norms[norms == 0] = 1.0
    vectors = vectors / norms[:, None]
    cosines = vectors[1:] @ vectors[0]
    order = sorted(range(len(passages)), key=lambda i: -float(cosines[i]))
    keep = order[: rerank.number_of_results] if rerank.number_of_results else order
    return [Passage(passages[i].text, passages[i].location, passages[i].metadata, (1.0 + float(cosines[i])) / 2)
            for i in keep]  # fmt: skip
