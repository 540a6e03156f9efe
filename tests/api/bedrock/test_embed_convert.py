"""Bedrock embedding bodies (Titan Text Embeddings v1/v2, Cohere Embed v3) <-> canonical types, as tables."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from outcrop import errors
from outcrop.api.bedrock import embed
from outcrop.conversation import EmbedRequest, EmbedResult

TITAN_V2 = "amazon.titan-embed-text-v2:0"
TITAN_V1 = "amazon.titan-embed-text-v1"
COHERE = "cohere.embed-english-v3"
COHERE_BODY = {"texts": ["a", "b"], "input_type": "search_document"}


@pytest.mark.parametrize(
    ("model", "body", "family"),
    [
        (TITAN_V2, {"inputText": "x"}, "titan-v2"),
        ("us." + TITAN_V2, {"inputText": "x"}, "titan-v2"),
        (f"arn:aws:bedrock:us-east-1::foundation-model/{TITAN_V2}", {"inputText": "x"}, "titan-v2"),
        (TITAN_V1, {"inputText": "x"}, "titan-v1"),
        ("amazon.titan-embed-g1-text-02", {"inputText": "x"}, "titan-v1"),
        (COHERE, COHERE_BODY, "cohere"),
        ("cohere.embed-multilingual-v3", COHERE_BODY, "cohere"),
        (TITAN_V2, COHERE_BODY, "titan-v2"),  # the id decides; the body is then validated as Titan
        ("outcrop.all-minilm-l6-v2", {"inputText": "x"}, "titan-v2"),
        ("outcrop.all-minilm-l6-v2", COHERE_BODY, "cohere"),
    ],
)
def test_family(model: str, body: dict[str, Any], family: str) -> None:
    assert embed.family(model, body) == family


DECODE: list[tuple[str, str, dict[str, Any], EmbedRequest]] = [
    ("titan v2 defaults", TITAN_V2, {"inputText": "hi"}, EmbedRequest(TITAN_V2, ("hi",))),
    ("titan v2 options", TITAN_V2, {"inputText": "hi", "dimensions": 256, "normalize": False, "embeddingTypes": ["float", "binary"]},
     EmbedRequest(TITAN_V2, ("hi",), dimensions=256, normalize=False)),
    ("titan v1", TITAN_V1, {"inputText": "hi"}, EmbedRequest(TITAN_V1, ("hi",))),
    ("cohere", COHERE, {**COHERE_BODY, "truncate": "END", "embedding_types": ["int8"]},
     EmbedRequest(COHERE, ("a", "b"), purpose="search_document")),
    ("cohere truncate none", COHERE, {**COHERE_BODY, "input_type": "search_query", "truncate": "NONE"},
     EmbedRequest(COHERE, ("a", "b"), purpose="search_query")),
]  # fmt: skip


@pytest.mark.parametrize(("name", "model", "body", "expected"), DECODE, ids=[d[0] for d in DECODE])
def test_decode(name: str, model: str, body: dict[str, Any], expected: EmbedRequest) -> None:
    _, request, _ = embed.decode(model, body)
    assert request == expected


MALFORMED: list[tuple[str, str, object, str]] = [
    ("not an object", TITAN_V2, ["x"], "must be a JSON object"),
    ("unknown key", TITAN_V2, {"inputText": "x", "foo": 1}, "extraneous key [foo] is not permitted"),
    ("missing inputText", TITAN_V2, {"dimensions": 256}, "required key [inputText] not found"),
    ("empty inputText", TITAN_V2, {"inputText": ""}, "inputText"),
    ("dimensions not titan's", TITAN_V2, {"inputText": "x", "dimensions": 384}, "dimensions"),
    ("normalize not a bool", TITAN_V2, {"inputText": "x", "normalize": "yes"}, "normalize"),
    ("unknown embedding type", TITAN_V2, {"inputText": "x", "embeddingTypes": ["int8"]}, "embeddingTypes"),
    ("v1 takes only inputText", TITAN_V1, {"inputText": "x", "dimensions": 256}, "extraneous key [dimensions]"),
    ("cohere without input_type", COHERE, {"texts": ["a"]}, "required key [input_type] not found"),
    ("cohere bad input_type", COHERE, {"texts": ["a"], "input_type": "query"}, "input_type"),
    ("cohere too many texts", COHERE, {"texts": ["a"] * 97, "input_type": "clustering"}, "texts"),
    ("cohere text too long", COHERE, {"texts": ["a" * 2049], "input_type": "clustering"}, "texts.0"),
    ("cohere empty list", COHERE, {"texts": [], "input_type": "clustering"}, "texts"),
    ("cohere no texts", COHERE, {"input_type": "clustering"}, "required key [texts] not found"),
    ("cohere images", COHERE, {"images": ["data:image/png;base64,AA=="], "input_type": "image"}, "doesn't support images"),
    ("cohere truncate start", COHERE, {**COHERE_BODY, "truncate": "START"}, 'truncate "START" is not supported'),
    ("cohere bad type", COHERE, {**COHERE_BODY, "embedding_types": ["fp16"]}, "embedding_types"),
    ("cohere unknown key", COHERE, {**COHERE_BODY, "model": "x"}, "extraneous key [model]"),
    ("no embedding body", "outcrop.all-minilm-l6-v2", {"prompt": "x"}, "no embedding format"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "model", "body", "message"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed(name: str, model: str, body: object, message: str) -> None:
    with pytest.raises(errors.InvalidRequest) as info:
        embed.decode(model, body)
    assert message in info.value.message


VECTORS = np.array(
    [[0.5, -0.25, 0.0, 0.125, -1.0, 0.75, 0.3, -0.3, 0.2], [0.1, 0.2, -0.3, 0.4, 0.0, 0.0, 0.0, 0.0, 0.0]],
    dtype=np.float32,
)


def _encode(model: str, body: dict[str, Any], vectors: np.ndarray = VECTORS[:1], tokens: int = 7) -> dict[str, Any]:
    fam, _, parsed = embed.decode(model, body)
    return embed.encode(fam, EmbedResult(vectors, tokens), parsed)


def test_encode_titan_v2() -> None:
    out = _encode(TITAN_V2, {"inputText": "x"})
    floats = VECTORS[0].tolist()
    assert out == {"embedding": floats, "inputTextTokenCount": 7, "embeddingsByType": {"float": floats}}
    out = _encode(TITAN_V2, {"inputText": "x", "embeddingTypes": ["binary"]})
    assert out["embeddingsByType"] == {"float": floats, "binary": [1, 0, 0, 1, 0, 1, 1, 0, 1]}


def test_encode_titan_v1() -> None:
    assert _encode(TITAN_V1, {"inputText": "x"}) == {"embedding": VECTORS[0].tolist(), "inputTextTokenCount": 7}


def test_encode_cohere_floats() -> None:
    out = _encode(COHERE, COHERE_BODY, VECTORS)
    assert set(out) == {"id", "response_type", "embeddings", "texts"} and len(out["id"]) == 36
    assert out["response_type"] == "embeddings_floats"
    assert out["embeddings"] == VECTORS.tolist() and out["texts"] == ["a", "b"]


def test_encode_cohere_by_type() -> None:
    types = ["float", "int8", "uint8", "binary", "ubinary"]
    out = _encode(COHERE, {**COHERE_BODY, "embedding_types": types}, VECTORS)
    assert out["response_type"] == "embeddings_by_type" and list(out["embeddings"]) == types
    by = out["embeddings"]
    assert by["float"] == VECTORS.tolist()
    # int8: the largest component of each vector scaled to +-127
    assert by["int8"][0] == [64, -32, 0, 16, -127, 95, 38, -38, 25]
    assert by["int8"][1] == [32, 64, -95, 127, 0, 0, 0, 0, 0]
    assert by["uint8"][0] == [v + 128 for v in by["int8"][0]]
    # signs packed eight to a byte, most significant bit first: 9 dimensions -> 2 bytes
    assert by["ubinary"] == [[0b10010110, 0b10000000], [0b11010000, 0]]
    assert by["binary"] == [[b - 128 for b in row] for row in by["ubinary"]]


def test_headers() -> None:
    assert embed.headers(EmbedResult(VECTORS, 12), 5) == {
        "X-Amzn-Bedrock-Input-Token-Count": "12",
        "X-Amzn-Bedrock-Output-Token-Count": "0",
        "X-Amzn-Bedrock-Invocation-Latency": "5",
    }
