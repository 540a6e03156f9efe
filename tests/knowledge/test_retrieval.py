"""Retrieve's pure parts: a stored hit as a result (Bedrock's metadata keys, a location for every result) and the
nextToken that stands for a page of one request only."""

from __future__ import annotations

import pytest

from outcrop.errors import InvalidRequest
from outcrop.knowledge.retrieval import fingerprint, page_token, passage, token_offset
from outcrop.knowledge.vectors import Hit


def test_hits_become_passages_with_bedrocks_metadata() -> None:
    s3 = passage(Hit("c1", "d1", "text", 0.9, {"year": 2024, "tags": ("a", "b")},
                     {"type": "S3", "s3Location": {"uri": "s3://b/k.pdf"}}))  # fmt: skip
    assert s3.metadata == {"year": 2024, "tags": ["a", "b"], "x-amz-bedrock-kb-source-uri": "s3://b/k.pdf",
                           "x-amz-bedrock-kb-chunk-id": "c1"}  # fmt: skip
    custom = passage(Hit("c2", "doc-7", "text", 0.5, {}, {"type": "CUSTOM", "customDocumentLocation": {"id": "doc-7"}}))
    assert custom.metadata == {"x-amz-bedrock-kb-chunk-id": "c2"}  # a CUSTOM document has no source URI
    bare = passage(Hit("c3", "doc-8", "text", 0.5, {"x-amz-bedrock-kb-chunk-id": "kept"}, None))
    assert bare.location == {"type": "CUSTOM", "customDocumentLocation": {"id": "doc-8"}}
    assert bare.metadata["x-amz-bedrock-kb-chunk-id"] == "kept" and bare.score == 0.5


def test_page_tokens() -> None:
    mine = fingerprint("KB", "query", {"vectorSearchConfiguration": {"numberOfResults": 5}})
    assert token_offset(None, mine) == 0
    assert token_offset(page_token(5, mine), mine) == 5
    with pytest.raises(InvalidRequest, match="another Retrieve request"):
        token_offset(page_token(5, mine), fingerprint("KB", "other query", None))
    with pytest.raises(InvalidRequest, match="not a token"):
        token_offset("garbage!", mine)
