"""Tags of the account's resources (knowledge bases, agents, agent aliases) in `resource_tags`, keyed by the
resource's name (`knowledge-base/ID`, `agent/ID`, `agent-alias/AGENT/ALIAS`). The catalogs check that a resource
exists before they read or change its tags; this module only keeps them, at most MAX_TAGS a resource as on AWS."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select

from outcrop import errors
from outcrop.store.schema import resource_tags

MAX_TAGS = 50  # per resource, as on AWS


def check_count(n: int) -> None:
    if n > MAX_TAGS:
        raise errors.InvalidRequest(f"A resource may have at most {MAX_TAGS} tags.")


def write(db: Connection, resource: str, tags: Mapping[str, str] | None) -> None:
    """Add `tags` to a resource inside the caller's transaction (a new resource's, or after `put` freed the keys)."""
    for key, value in (tags or {}).items():
        db.execute(insert(resource_tags).values(resource=resource, key=key, value=value))


def read(engine: Engine, resource: str) -> dict[str, str]:
    with engine.connect() as db:
        rows: Any = db.execute(select(resource_tags).where(resource_tags.c.resource == resource))
        return {r.key: r.value for r in rows}


def put(engine: Engine, resource: str, tags: Mapping[str, str]) -> None:
    """Set these tags (replacing the values of keys it already has), within the limit counted with its others."""
    check_count(len(set(read(engine, resource)) | set(tags)))
    with engine.begin() as db:
        db.execute(delete(resource_tags).where(resource_tags.c.resource == resource,
                                               resource_tags.c.key.in_(list(tags))))  # fmt: skip
        write(db, resource, tags)


def remove(engine: Engine, resource: str, keys: list[str]) -> None:
    with engine.begin() as db:
        db.execute(delete(resource_tags).where(resource_tags.c.resource == resource,
                                               resource_tags.c.key.in_(keys)))  # fmt: skip
