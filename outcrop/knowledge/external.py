"""RetrieveAndGenerate over a document passed with the request (EXTERNAL_SOURCES, byteContent).

The document is parsed as ingestion parses it (parse.py: PDF, DOCX, HTML, Markdown, text, CSV, XLSX, JSON),
cut into FIXED_SIZE chunks of 300 tokens, and the chunks that best match the question (and the session's previous
question) by BM25 are given to the model, up to CONTEXT_TOKENS tokens, in document order. A short document is
given whole. No embedding model is needed, so this works on a server that serves none.

An s3Location source is refused: this server does not read S3 objects for a single request (ingest the bucket
into a knowledge base instead).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from outcrop import errors
from outcrop.knowledge.chunk import chunk
from outcrop.knowledge.chunking_config import FixedSize
from outcrop.knowledge.citations import content_words
from outcrop.knowledge.parse import parse
from outcrop.knowledge.retrieval import CHUNK_ID, SOURCE_URI, Passage

CONTEXT_TOKENS = 1500  # the most document text given to the model
CHUNK_TOKENS = 300
MAX_BYTES = 10 * 1024 * 1024  # ByteContentBlob's limit in botocore's model


@dataclass(frozen=True)
class Document:
    identifier: str
    content_type: str
    data: bytes


def _bm25(query: set[str], chunks: list[set[str]], lengths: list[int]) -> list[float]:
    n = len(chunks)
    avg = sum(lengths) / n if n else 1.0
    df = Counter(w for words in chunks for w in words)
    scores = []
    for words, length in zip(chunks, lengths, strict=True):
        s = 0.0
        for w in query & words:
            idf = math.log(1 + (n - df[w] + 0.5) / (df[w] + 0.5))
            s += idf * 2.2 / (1 + 1.2 * (0.25 + 0.75 * length / avg))  # tf taken as 1: chunks are short
        scores.append(s)
    return scores


def passages(document: Document, question: str, context: str | None = None) -> list[Passage]:
    parsed = parse(document.data, document.identifier, content_type=document.content_type, max_bytes=MAX_BYTES)
    pieces = chunk(parsed, FixedSize(CHUNK_TOKENS, 10))
    if not pieces:
        raise errors.InvalidRequest(f"The document '{document.identifier}' holds no text.")
    chosen = list(range(len(pieces)))
    if sum(p.tokens for p in pieces) > CONTEXT_TOKENS:
        query = content_words(question + " " + (context or ""))
        scores = _bm25(query, [content_words(p.text) for p in pieces], [p.tokens for p in pieces])
        chosen, used = [], 0
        for i in sorted(range(len(pieces)), key=lambda i: -scores[i]):
            if used + pieces[i].tokens > CONTEXT_TOKENS and chosen:
                break
            chosen.append(i)
            used += pieces[i].tokens
        chosen.sort()
    location = {"type": "CUSTOM", "customDocumentLocation": {"id": document.identifier}}
    return [Passage(pieces[i].text, location, {SOURCE_URI: document.identifier,
                                               CHUNK_ID: f"{document.identifier}#{pieces[i].index}"})
            for i in chosen]  # fmt: skip
