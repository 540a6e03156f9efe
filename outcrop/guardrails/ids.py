"""Guardrail identities: the account every guardrail belongs to, and their ARNs (read by the store and by the
account's enforced configuration, which builds on the store, so neither imports the other for these)."""

from __future__ import annotations

import re

ACCOUNT = "000000000000"
ARN = re.compile(rf"^arn:aws[a-z-]*:bedrock:[^:]*:{ACCOUNT}:guardrail/(?P<id>[a-z0-9]+)$")


def guardrail_arn(region: str, gid: str) -> str:
    return f"arn:aws:bedrock:{region}:{ACCOUNT}:guardrail/{gid}"


def parse_id(identifier: str) -> str:
    """The guardrail id in an id or an ARN. An ARN naming another account is kept whole, so that no guardrail has
    it as its id: another account's guardrail is not found here, even if one of ours has the same id."""
    m = ARN.match(identifier)
    return m.group("id") if m else identifier
