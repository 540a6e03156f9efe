from __future__ import annotations

import json

import pytest

from outcrop.knowledge.errors import InvalidMetadata
from outcrop.knowledge.metadata import Attribute, document_name, is_sidecar, parse_metadata, sidecar_name


def _parse(body: object) -> dict[str, Attribute]:
    return parse_metadata(json.dumps(body).encode(), "a.pdf.metadata.json")


def test_names() -> None:
    assert sidecar_name("docs/A.txt") == "docs/A.txt.metadata.json"
    assert is_sidecar("docs/A.txt.metadata.json") and not is_sidecar("docs/A.json")
    assert document_name("docs/A.txt.metadata.json") == "docs/A.txt"


def test_plain_values() -> None:
    attrs = _parse(
        {"metadataAttributes": {"year": 2024, "score": 0.5, "genre": "report", "public": True, "tags": ["a", "b"]}}
    )
    assert {k: a.value for k, a in attrs.items()} == {
        "year": 2024,
        "score": 0.5,
        "genre": "report",
        "public": True,
        "tags": ("a", "b"),
    }
    assert not any(a.include_for_embedding for a in attrs.values())


def test_typed_values() -> None:
    attrs = _parse(
        {
            "metadataAttributes": {
                "tags": {"value": {"type": "STRING_LIST", "stringListValue": ["x"]}, "includeForEmbedding": True},
                "n": {"value": {"type": "NUMBER", "numberValue": 3}},
                "ok": {"value": {"type": "BOOLEAN", "booleanValue": False}},
            }
        }
    )
    assert attrs["tags"] == Attribute("tags", ("x",), True)
    assert attrs["n"] == Attribute("n", 3) and attrs["ok"] == Attribute("ok", False)


def test_empty_attributes() -> None:
    assert _parse({"metadataAttributes": {}}) == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "metadataAttributes"),
        ({"attributes": {}}, "metadataAttributes"),
        ({"metadataAttributes": {"a": None}}, "null is not"),
        ({"metadataAttributes": {"a": [1, 2]}}, "list is not"),
        ({"metadataAttributes": {"a": []}}, "must not be empty"),
        ({"metadataAttributes": {"x-amz-bedrock-kb-source-uri": "s3://x"}}, "reserved"),
        ({"metadataAttributes": {"": "v"}}, "1 to 256"),
        ({"metadataAttributes": {"a": {"value": {"type": "DATE"}}}}, "value.type"),
        ({"metadataAttributes": {"a": {"value": {"type": "NUMBER", "stringValue": "1"}}}}, "numberValue"),
        ({"metadataAttributes": {"a": {"value": {"type": "NUMBER", "numberValue": "1"}}}}, "not a NUMBER"),
        (
            {
                "metadataAttributes": {
                    "a": {"value": {"type": "STRING", "stringValue": "1"}, "includeForEmbedding": "yes"}
                }
            },
            "includeForEmbedding",
        ),
    ],
)
def test_invalid_sidecars(body, message) -> None:
    with pytest.raises(InvalidMetadata, match=message) as info:
        _parse(body)
    assert info.value.reason == "INVALID_METADATA"


def test_not_json_too_large_and_not_finite() -> None:
    with pytest.raises(InvalidMetadata, match="not UTF-8 JSON"):
        parse_metadata(b"{nope", "a.metadata.json")
    with pytest.raises(InvalidMetadata, match="limit is 10,240"):
        parse_metadata(b" " * 10241, "a.metadata.json")
    with pytest.raises(InvalidMetadata, match="finite"):
        parse_metadata(b'{"metadataAttributes": {"a": NaN}}', "a.metadata.json")
