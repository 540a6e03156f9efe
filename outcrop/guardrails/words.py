"""Word filters: the operator's own words and phrases, and the managed profanity list.

Matching is on whole words, case-insensitively, so "class" never matches "ass"; the managed list also
matches common inflections of each entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path

_LIST = Path(__file__).parent / "data" / "profanity.txt"
_SUFFIXES = r"(?:s|es|ed|er|ers|ing|y)?"


@cache
def profanity_pattern() -> re.Pattern[str]:
    entries = [line.strip() for line in _LIST.read_text().splitlines()]
    words = sorted({e for e in entries if e and not e.startswith("#")}, key=len, reverse=True)
    body = "|".join(r"\s+".join(re.escape(w) for w in e.split()) for e in words)
    return re.compile(rf"(?<![\w*])(?:{body}){_SUFFIXES}(?!\w)", re.IGNORECASE)


def find(pattern: re.Pattern[str], texts: Iterable[str]) -> list[str]:
    """Every match of `pattern` in `texts`, as written, first occurrence of each (case-insensitive) once."""
    seen: dict[str, str] = {}
    for text in texts:
        for m in pattern.finditer(text):
            seen.setdefault(m.group(0).lower(), m.group(0))
    return list(seen.values())
