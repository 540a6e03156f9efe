"""pydantic's validation errors as one line a caller can act on (OpenAI and Anthropic wording)."""

from __future__ import annotations

from pydantic import ValidationError


def _where(loc: tuple[object, ...]) -> str:
    return ".".join(str(p) for p in loc) or "body"


def describe(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors()[:5]:
        where = _where(err["loc"])
        if err["type"] == "extra_forbidden":
            problems.append(f"{where}: Extra inputs are not permitted")
        elif err["type"] == "missing":
            problems.append(f"{where}: Field required")
        else:
            problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
    more = len(exc.errors()) - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def first_param(exc: ValidationError) -> str | None:
    errs = exc.errors()
    return _where(errs[0]["loc"]) if errs else None
