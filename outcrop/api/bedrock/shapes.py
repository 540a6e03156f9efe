"""Validate a request member against botocore's own service model (the source of truth for shapes).

botocore checks types, required members and `min` on the client side; a server must check the rest
too — unknown members, `max`, enums, ranges, patterns — and say which member is wrong.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import botocore.session
from botocore.model import Shape

_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "boolean": bool,
    "integer": int,
    "long": int,
    "double": (int, float),
    "float": (int, float),
}


@cache
def _pattern(pattern: str) -> re.Pattern[str] | None:
    """A service model's pattern (Java regular expressions, matched whole), or None where Python's re
    cannot read it (such a member is then not checked against it)."""
    try:
        return re.compile(pattern, re.DOTALL)
    except re.error:
        return None


@cache
def _model(service: str) -> Any:
    return botocore.session.get_session().get_service_model(service)


def input_shape(service: str, operation: str) -> Shape:
    return _model(service).operation_model(operation).input_shape


def problems(value: Any, shape: Shape, where: str) -> list[str]:
    """Everything wrong with `value` as `shape`, each naming the member."""
    kind = shape.type_name
    if shape.metadata.get("document"):  # a structure marked `document` holds any JSON value (filter values, ...)
        return []
    if kind == "structure":
        if not isinstance(value, dict):
            return [f"{where} must be an object"]
        out = [f"{where}.{k} is not a known member" for k in value if k not in shape.members]
        out += [f"{where}.{k} is required" for k in shape.required_members if k not in value]
        for k, v in value.items():
            if k in shape.members:
                out += problems(v, shape.members[k], f"{where}.{k}")
        return out
    if kind == "list":
        if not isinstance(value, list):
            return [f"{where} must be a list"]
        out = _length(len(value), shape, where, "items")
        for i, item in enumerate(value):
            out += problems(item, shape.member, f"{where}.{i}")  # type: ignore[attr-defined]
        return out
    if kind == "map":
        if not isinstance(value, dict):
            return [f"{where} must be an object"]
        return [p for k, v in value.items() for p in problems(v, shape.value, f"{where}.{k}")]  # type: ignore[attr-defined]
    if kind in ("document", "blob", "timestamp"):
        return []
    expected = _TYPES.get(kind)
    if expected is not None and (not isinstance(value, expected) or (kind != "boolean" and isinstance(value, bool))):
        return [f"{where} must be a {kind}"]
    out = []
    if kind == "string":
        out += _length(len(value), shape, where, "characters")
        if shape.enum and value not in shape.enum:
            out.append(f"{where} must be one of {', '.join(shape.enum)}, not '{value}'")
        pattern = _pattern(shape.metadata["pattern"]) if "pattern" in shape.metadata else None
        if pattern is not None and not out and not pattern.fullmatch(value):
            shown = value if len(value) <= 60 else value[:57] + "..."
            out.append(f"{where} '{shown}' must match the pattern {shape.metadata['pattern']}")
    elif kind in ("integer", "long", "double", "float"):
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if (low is not None and value < low) or (high is not None and value > high):
            out.append(f"{where} must be between {low} and {high}")
    return out


def _length(n: int, shape: Shape, where: str, unit: str) -> list[str]:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and n < low:
        return [f"{where} must have at least {low} {unit}"]
    if high is not None and n > high:
        return [f"{where} must have at most {high} {unit}"]
    return []
