"""The caller, once authenticated. A plain value: every dialect's credentials resolve to one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    id: str
    name: str
    groups: tuple[str, ...] = ()
    is_admin: bool = False
    credential_id: str | None = None
    guardrail: str | None = None  # `id[:version]` applied to every call this caller makes


# In local mode (loopback, no keys required) every caller is this one principal.
LOCAL = Principal(id="local", name="local", is_admin=True)
