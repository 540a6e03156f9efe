"""InvokeModel bodies of Bedrock's embedding models: Amazon Titan Text Embeddings (v1, v2) and Cohere Embed
v3. Pure decode/encode, no I/O.

The body format follows the model id the caller used (`amazon.titan-embed-text-v1` -> Titan v1, any other
`amazon.titan-embed…` -> Titan v2, `cohere.embed…` -> Cohere); under any other id (a local model under
its own name) the body says which it is: `inputText` -> Titan v2, `texts` -> Cohere.

Where the model behind the id differs from the one Bedrock runs, callers get what the model has, said
plainly: all-MiniLM-L6-v2 gives 384 dimensions, so a Titan v2 body without `dimensions` gets 384 (not
1024), `dimensions: 256` gets the first 256 re-normalized, and 512 or 1024 are refused with the model's
size in the message. Cohere's `input_type` is passed on (models that do not use it ignore it).

Cohere's quantized types, which Cohere does not specify exactly, are computed per vector so a vector
never depends on the others in its request: int8 scales the largest component to ±127, uint8 is int8 +
128, binary / ubinary pack the signs (1 for > 0) eight to a byte, most significant bit first, as int8
(byte - 128) / uint8. Titan's binary is one 0/1 per dimension.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, StrictBool

from outcrop import errors
from outcrop.api.bedrock.schema import NativeBody, parse_native
from outcrop.conversation import EmbedRequest, EmbedResult

Family = Literal["titan-v1", "titan-v2", "cohere"]


class TitanV1Body(NativeBody):
    inputText: str = Field(min_length=1, max_length=50000)


class TitanV2Body(NativeBody):
    inputText: str = Field(min_length=1, max_length=50000)
    dimensions: Literal[256, 512, 1024] | None = None
    normalize: StrictBool = True
    embeddingTypes: list[Literal["float", "binary"]] | None = Field(default=None, min_length=1)


CohereText = Annotated[str, Field(min_length=1, max_length=2048)]
CohereType = Literal["float", "int8", "uint8", "binary", "ubinary"]


class CohereBody(NativeBody):
    texts: list[CohereText] | None = Field(default=None, min_length=1, max_length=96)
    images: list[str] | None = None
    input_type: Literal["search_document", "search_query", "classification", "clustering", "image"]
    truncate: Literal["NONE", "START", "END"] | None = None
    embedding_types: list[CohereType] | None = Field(default=None, min_length=1)


def family(model_id: str, body: object) -> Family:
    name = "." + model_id.rsplit("/", 1)[-1]  # an ARN's resource part; a geo prefix stays in front
    if ".amazon.titan-embed-text-v1" in name or ".amazon.titan-embed-g1-text" in name:
        return "titan-v1"
    if ".amazon.titan-embed" in name:
        return "titan-v2"
    if ".cohere.embed" in name:
        return "cohere"
    if isinstance(body, dict):
        if "inputText" in body:
            return "titan-v2"
        if "texts" in body or "images" in body:
            return "cohere"
    raise errors.InvalidRequest(
        f"Malformed input request: '{model_id}' is an embedding model and the body is in no embedding format. "
        'Send a Titan Text Embeddings body ({"inputText": ...}) or a Cohere Embed body '
        '({"texts": [...], "input_type": "search_document"}).'
    )


Body = TitanV1Body | TitanV2Body | CohereBody


def decode(model_id: str, raw: object) -> tuple[Family, EmbedRequest, Body]:
    """The family, the canonical request, and the parsed body (encode reads the caller's choices from it)."""
    fam = family(model_id, raw)
    if fam == "titan-v1":
        v1: TitanV1Body = parse_native(TitanV1Body, raw)
        return fam, EmbedRequest(model=model_id, texts=(v1.inputText,)), v1
    if fam == "titan-v2":
        v2: TitanV2Body = parse_native(TitanV2Body, raw)
        request = EmbedRequest(model=model_id, texts=(v2.inputText,), dimensions=v2.dimensions, normalize=v2.normalize)
        return fam, request, v2
    co: CohereBody = parse_native(CohereBody, raw)
    if co.images is not None or co.input_type == "image":
        raise errors.InvalidRequest("This model doesn't support images: send texts.")
    if not co.texts:
        raise errors.InvalidRequest("Malformed input request: required key [texts] not found.")
    if co.truncate == "START":
        raise errors.InvalidRequest(
            'truncate "START" is not supported here: long texts are cut at the end. Send "END" or "NONE".'
        )
    return fam, EmbedRequest(model=model_id, texts=tuple(co.texts), purpose=co.input_type), co


# --- encoding --------------------------------------------------------------------------------------


def _int8(m: np.ndarray) -> np.ndarray:
    scale = 127.0 / np.maximum(np.abs(m).max(axis=1, keepdims=True), 1e-12)
    return np.clip(np.rint(m * scale), -127, 127).astype(np.int16)


def _packed(m: np.ndarray) -> np.ndarray:
    return np.packbits(m > 0, axis=1).astype(np.int16)  # uint8 0..255, MSB first


QUANTIZE = {
    "float": lambda m: m,
    "int8": _int8,
    "uint8": lambda m: _int8(m) + 128,
    "binary": lambda m: _packed(m) - 128,
    "ubinary": _packed,
}


def encode(fam: Family, result: EmbedResult, body: Body) -> dict[str, Any]:
    vectors = np.asarray(result.vectors, dtype=np.float32)
    if isinstance(body, CohereBody):
        out: dict[str, Any] = {"id": str(uuid.uuid4())}
        if body.embedding_types:
            by_type = {t: QUANTIZE[t](vectors).tolist() for t in dict.fromkeys(body.embedding_types)}
            out.update(response_type="embeddings_by_type", embeddings=by_type)
        else:
            out.update(response_type="embeddings_floats", embeddings=vectors.tolist())
        out["texts"] = list(body.texts or ())
        return out
    floats = vectors[0].tolist()
    out = {"embedding": floats, "inputTextTokenCount": result.input_tokens}
    if isinstance(body, TitanV2Body):
        # Always there, float always among them (whatever embeddingTypes asked), binary when asked.
        out["embeddingsByType"] = {"float": floats}
        if "binary" in (body.embeddingTypes or ()):
            out["embeddingsByType"]["binary"] = (vectors[0] > 0).astype(np.int8).tolist()
    return out


def headers(result: EmbedResult, latency_ms: int) -> dict[str, str]:
    """InvokeModel's usage headers; embeddings generate no tokens, so the output count is 0."""
    return {
        "X-Amzn-Bedrock-Input-Token-Count": str(result.input_tokens),
        "X-Amzn-Bedrock-Output-Token-Count": "0",
        "X-Amzn-Bedrock-Invocation-Latency": str(latency_ms),
    }
