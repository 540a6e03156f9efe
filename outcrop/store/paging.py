"""Small store helpers the catalogs share (knowledge bases, data sources, agents and their parts): Bedrock-style ids,
times, JSON columns and keyset pages (by creation time, then id), whose nextToken names the last row given out."""

from __future__ import annotations

import base64
import json
import secrets
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, and_, or_

from outcrop import errors

_ID = string.ascii_uppercase + string.digits  # Bedrock's ids: 10 of these
_AFTER_FIRST = "first"  # a page token after the entries every first page starts with (DRAFT, the test alias)


@dataclass(frozen=True)
class Page:
    """One page of a list, and the token of the next one (None on the last)."""

    items: tuple[Any, ...]
    next_token: str | None


def new_id() -> str:
    return "".join(secrets.choice(_ID) for _ in range(10))


def now() -> datetime:
    return datetime.now(UTC)


def aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)  # SQLite hands timestamps back without their zone


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _encode(value: list[str] | str) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def past(at_col: Any, id_col: Any, at: datetime, key: str, ascending: bool = True) -> Any:
    """The rows after (at, key) in the order (at_col, id_col), ascending or not: a keyset page's condition."""
    if ascending:
        return or_(at_col > at, and_(at_col == at, id_col > key))
    return or_(at_col < at, and_(at_col == at, id_col < key))


def after(created: Any, key: Any, token: str | None, *, first: bool = True) -> Any:
    """The condition for the rows after the one a nextToken names (None: from the start). `first`: the list may have
    handed out the token after its first entries (see `page`)."""
    if token is None:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode()))
        if first and value == _AFTER_FIRST:
            return None
        at, last = value
        when = datetime.fromisoformat(at)
    except (ValueError, TypeError):
        raise errors.InvalidRequest("nextToken is not one this server gave out.") from None
    return past(created, key, when, str(last))


def page(rows: list[Row[Any]], size: int, make: Callable[[Row[Any]], Any], key: str,
         first: Sequence[Any] = ()) -> Page:  # fmt: skip
    """One page: `first` (entries not stored as rows, on the first page only), then up to `size` of them in all."""
    room = size - len(first)
    more = len(rows) > room
    rows = rows[:room]
    items = (*first, *(make(r) for r in rows))
    if not more:
        return Page(items, None)
    token = _encode([rows[-1].created_at.isoformat(), getattr(rows[-1], key)]) if rows else _encode(_AFTER_FIRST)
    return Page(items, token)
