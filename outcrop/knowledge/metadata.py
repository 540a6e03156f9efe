"""`<name>.metadata.json` sidecar files: a document's metadata attributes, in Bedrock's format.

    {"metadataAttributes": {"year": 2024, "genre": "report", "public": true, "tags": ["a", "b"]}}

A value is a string, a number, a boolean or a list of strings; the typed form Bedrock also reads is accepted too:
{"value": {"type": "STRING" | "NUMBER" | "BOOLEAN" | "STRING_LIST", "stringValue" | ...: v}, "includeForEmbedding":
bool}. The sidecar sits beside its document (A.txt -> A.txt.metadata.json) and may be at most 10 KB (Bedrock's
quota). Keys starting with "x-amz-bedrock-kb-" are Bedrock's own (source URI, page number) and refused here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from outcrop.knowledge.errors import InvalidMetadata

SUFFIX = ".metadata.json"
MAX_SIDECAR_BYTES = 10 * 1024
RESERVED_PREFIX = "x-amz-bedrock-kb-"
MAX_KEY_CHARS = 256  # MetadataAttributeSchema.key's length limit

Value = str | int | float | bool | tuple[str, ...]

_TYPED = {"STRING": "stringValue", "NUMBER": "numberValue", "BOOLEAN": "booleanValue", "STRING_LIST": "stringListValue"}


@dataclass(frozen=True)
class Attribute:
    key: str
    value: Value
    include_for_embedding: bool = False


def is_sidecar(name: str) -> bool:
    return name.endswith(SUFFIX)


def sidecar_name(document_name: str) -> str:
    return document_name + SUFFIX


def document_name(sidecar: str) -> str:
    return sidecar[: -len(SUFFIX)]


def parse_metadata(data: bytes, name: str, *, max_bytes: int = MAX_SIDECAR_BYTES) -> dict[str, Attribute]:
    """A sidecar's attributes by key; InvalidMetadata says what is wrong with it."""
    if len(data) > max_bytes:
        raise InvalidMetadata(name, f"the metadata file is {len(data):,} bytes; the limit is {max_bytes:,}.")
    try:
        body = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidMetadata(name, f"the metadata file is not UTF-8 JSON ({exc}).") from None
    if not isinstance(body, dict) or not isinstance(body.get("metadataAttributes"), dict):
        raise InvalidMetadata(name, 'the metadata file must be an object with a "metadataAttributes" object.')
    out: dict[str, Attribute] = {}
    for key, raw in body["metadataAttributes"].items():
        if not key or len(key) > MAX_KEY_CHARS:
            raise InvalidMetadata(name, f"metadata key {key!r} must be 1 to {MAX_KEY_CHARS} characters.")
        if key.lower().startswith(RESERVED_PREFIX):
            raise InvalidMetadata(name, f"metadata key {key!r} uses the reserved prefix {RESERVED_PREFIX!r}.")
        out[key] = _attribute(key, raw, name)
    return out


def _attribute(key: str, raw: Any, name: str) -> Attribute:
    if isinstance(raw, Mapping):
        typed = raw.get("value")
        if not isinstance(typed, Mapping) or typed.get("type") not in _TYPED:
            allowed = ", ".join(_TYPED)
            raise InvalidMetadata(name, f"metadata {key!r}: a typed value needs value.type, one of {allowed}.")
        field = _TYPED[typed["type"]]
        if field not in typed:
            raise InvalidMetadata(name, f"metadata {key!r}: type {typed['type']} needs value.{field}.")
        include = raw.get("includeForEmbedding", False)
        if not isinstance(include, bool):
            raise InvalidMetadata(name, f"metadata {key!r}: includeForEmbedding must be true or false.")
        value = _value(key, typed[field], name)
        if _kind(value) != typed["type"]:
            raise InvalidMetadata(name, f"metadata {key!r}: value.{field} is not a {typed['type']}.")
        return Attribute(key, value, include)
    return Attribute(key, _value(key, raw, name))


def _value(key: str, raw: Any, name: str) -> Value:
    if isinstance(raw, bool | str):
        return raw
    if isinstance(raw, int | float):
        if isinstance(raw, float) and not math.isfinite(raw):
            raise InvalidMetadata(name, f"metadata {key!r}: numbers must be finite.")
        return raw
    if isinstance(raw, list) and all(isinstance(v, str) for v in raw):
        if not raw:
            raise InvalidMetadata(name, f"metadata {key!r}: a string list must not be empty.")
        return tuple(raw)
    what = type(raw).__name__ if raw is not None else "null"
    raise InvalidMetadata(name, f"metadata {key!r}: {what} is not a string, number, boolean or list of strings.")


def _kind(value: Value) -> str:
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, str):
        return "STRING"
    if isinstance(value, tuple):
        return "STRING_LIST"
    return "NUMBER"
