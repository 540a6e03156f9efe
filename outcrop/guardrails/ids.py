"""Guardrail identities: the account every guardrail belongs to, and their ARNs (read by the store and by the
account's enforced configuration, which builds on the store, so neither imports the other for these)."""

from __future__ import annotations

import re

ACCOUNT = "000000000000"
ARN = re.compile(r"^arn:aws[a-z-]*:bedrock:[^:]*:[^:]*:guardrail/(?P<id>[a-z0-9]+)$")


def guardrail_arn(region: str, gid: str) -> str:
    return f"arn:aws:bedrock:{region}:{ACCOUNT}:guardrail/{gid}"


def parse_id(identifier: str) -> str:
    """The guardrail id in an id or an ARN."""
    m = ARN.match(identifier)
    return m.group("id") if m else identifier
