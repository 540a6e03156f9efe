"""Bedrock's Retrieve metadata `filter` (RetrievalFilter): parsed once, compiled to SQL per database.

    {"andAll": [{"equals": {"key": "genre", "value": "report"}}, {"greaterThan": {"key": "year", "value": 2020}}]}

Semantics, from the service model's documentation: a leaf matches a chunk whose metadata holds `key` with a
value of the same type that satisfies the operator; `notEquals` also matches chunks without the key (Bedrock says
so); the other operators need the key. `in` / `notIn` take a list; `listContains` wants a string-list attribute
holding the value; `stringContains` matches a string holding the value, or a list with a member that does.
Comparisons (`greaterThan`, ...) compare numbers with numbers and strings with strings. `andAll` / `orAll` take
at least two filters (the service model's minimum).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from outcrop.errors import InvalidRequest

LEAVES = ("equals", "notEquals", "greaterThan", "greaterThanOrEquals", "lessThan", "lessThanOrEquals", "in", "notIn",
          "startsWith", "listContains", "stringContains")  # fmt: skip
GROUPS = ("andAll", "orAll")
COMPARISONS = {"greaterThan": ">", "greaterThanOrEquals": ">=", "lessThan": "<", "lessThanOrEquals": "<="}
MAX_DEPTH = 5
MAX_KEY_CHARS = 100  # FilterKey's length limit


@dataclass(frozen=True)
class Leaf:
    op: str
    key: str
    value: Any


@dataclass(frozen=True)
class Group:
    op: str  # andAll | orAll
    members: tuple[Filter, ...]


Filter = Leaf | Group


def _scalar(value: Any) -> bool:
    return isinstance(value, str | bool | int | float)


def parse_filter(raw: Any, path: str = "filter", depth: int = 0) -> Filter:
    """Bedrock's filter JSON -> a Filter; InvalidRequest (ValidationException) says what is wrong and where."""
    if not isinstance(raw, dict) or len(raw) != 1:
        raise InvalidRequest(f"{path} must be an object with exactly one operator ({', '.join(LEAVES + GROUPS)}).")
    (op, body), = raw.items()  # fmt: skip
    if op in GROUPS:
        if depth >= MAX_DEPTH:
            raise InvalidRequest(f"{path}: filters may nest at most {MAX_DEPTH} levels.")
        if not isinstance(body, list) or len(body) < 2:
            raise InvalidRequest(f"{path}.{op} must be a list of at least 2 filters.")
        return Group(op, tuple(parse_filter(m, f"{path}.{op}.{i}", depth + 1) for i, m in enumerate(body)))
    if op not in LEAVES:
        raise InvalidRequest(f"{path}: unknown filter operator {op!r}.")
    if not isinstance(body, dict) or set(body) != {"key", "value"}:
        raise InvalidRequest(f"{path}.{op} must be an object with 'key' and 'value'.")
    key, value = body["key"], body["value"]
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_CHARS:
        raise InvalidRequest(f"{path}.{op}.key must be a string of 1 to {MAX_KEY_CHARS} characters.")
    where = f"{path}.{op}.value"
    if op in ("in", "notIn"):
        if not isinstance(value, list) or not value or not all(_scalar(v) for v in value):
            raise InvalidRequest(f"{where} must be a non-empty list of strings, numbers or booleans.")
        return Leaf(op, key, tuple(value))
    if op in COMPARISONS and (isinstance(value, bool) or not isinstance(value, str | int | float)):
        raise InvalidRequest(f"{where} must be a number or a string.")
    if op in ("startsWith", "stringContains") and not isinstance(value, str):
        raise InvalidRequest(f"{where} must be a string.")
    if op == "listContains" and not _scalar(value):
        raise InvalidRequest(f"{where} must be a string, number or boolean.")
    if op in ("equals", "notEquals") and not (_scalar(value) or isinstance(value, list)):
        raise InvalidRequest(f"{where} must be a string, number, boolean or list.")
    return Leaf(op, key, tuple(value) if isinstance(value, list) else value)


def kind(value: Any) -> str:
    """JSON type name of a filter value: string | number | boolean | array."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array"


class Compiler:
    """Turns a Filter into a SQL boolean expression; each database supplies its leaf SQL (never NULL)."""

    def __init__(self, column: str) -> None:
        self.column = column
        self.params: dict[str, Any] = {}

    def param(self, value: Any) -> str:
        name = f"f{len(self.params)}"
        self.params[name] = value
        return f":{name}"

    def compile(self, node: Filter) -> str:
        if isinstance(node, Group):
            joiner = " AND " if node.op == "andAll" else " OR "
            return "(" + joiner.join(self.compile(m) for m in node.members) + ")"
        leaf: Callable[[str, Any], str] = getattr(self, "_" + node.op)
        return leaf(node.key, node.value)

    # shared definitions over the primitives below
    def _equals(self, key: str, value: Any) -> str:
        return self.equal(key, value)

    def _notEquals(self, key: str, value: Any) -> str:
        return f"(NOT {self.equal(key, value)})"

    def _in(self, key: str, values: tuple[Any, ...]) -> str:
        return "(" + " OR ".join(self.equal(key, v) for v in values) + ")"

    def _notIn(self, key: str, values: tuple[Any, ...]) -> str:
        return f"({self.present(key)} AND NOT {self._in(key, values)})"

    def _greaterThan(self, key: str, value: Any) -> str:
        return self.compare(key, ">", value)

    def _greaterThanOrEquals(self, key: str, value: Any) -> str:
        return self.compare(key, ">=", value)

    def _lessThan(self, key: str, value: Any) -> str:
        return self.compare(key, "<", value)

    def _lessThanOrEquals(self, key: str, value: Any) -> str:
        return self.compare(key, "<=", value)

    def _startsWith(self, key: str, value: str) -> str:
        return self.starts_with(key, value)

    def _listContains(self, key: str, value: Any) -> str:
        return self.list_contains(key, value)

    def _stringContains(self, key: str, value: str) -> str:
        return self.string_contains(key, value)

    # what each database writes
    def present(self, key: str) -> str:
        raise NotImplementedError

    def equal(self, key: str, value: Any) -> str:
        raise NotImplementedError

    def compare(self, key: str, op: str, value: Any) -> str:
        raise NotImplementedError

    def starts_with(self, key: str, value: str) -> str:
        raise NotImplementedError

    def list_contains(self, key: str, value: Any) -> str:
        raise NotImplementedError

    def string_contains(self, key: str, value: str) -> str:
        raise NotImplementedError
