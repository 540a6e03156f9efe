"""Guardrail definitions, kept as Bedrock's CreateGuardrail body, with DRAFT and numbered versions.

UpdateGuardrail replaces the DRAFT; CreateGuardrailVersion snapshots the DRAFT as the next number, and
numbered versions never change afterwards (updates never break a published version).
"""

from __future__ import annotations

import json
import re
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, update

from outcrop import errors
from outcrop.guardrails.enforced import EnforcedConfigs
from outcrop.guardrails.ids import ACCOUNT, guardrail_arn, parse_id
from outcrop.store.schema import guardrails

__all__ = ["ACCOUNT", "Guardrail", "GuardrailStore", "guardrail_arn"]

_ID = string.ascii_lowercase + string.digits
POLICIES = ("topicPolicyConfig", "contentPolicyConfig", "wordPolicyConfig", "sensitiveInformationPolicyConfig",
            "contextualGroundingPolicyConfig")  # fmt: skip
# CreateGuardrail's member names -> GetGuardrail's
_OUT_NAMES = {
    "topicPolicyConfig": "topicPolicy", "topicsConfig": "topics", "tierConfig": "tier",
    "contentPolicyConfig": "contentPolicy", "filtersConfig": "filters", "wordPolicyConfig": "wordPolicy",
    "wordsConfig": "words", "managedWordListsConfig": "managedWordLists",
    "sensitiveInformationPolicyConfig": "sensitiveInformationPolicy", "piiEntitiesConfig": "piiEntities",
    "regexesConfig": "regexes", "contextualGroundingPolicyConfig": "contextualGroundingPolicy",
    "automatedReasoningPolicyConfig": "automatedReasoningPolicy", "crossRegionConfig": "crossRegionDetails",
}  # fmt: skip


def _now() -> datetime:
    return datetime.now(UTC)


def _renamed(value: Any) -> Any:
    if isinstance(value, dict):
        return {_OUT_NAMES.get(k, k): _renamed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v) for v in value]
    return value


def check_semantics(config: dict[str, Any]) -> None:
    """What the service model cannot say: regexes compile, thresholds are in [0, 1), names are unique."""
    for i, rx in enumerate((config.get("sensitiveInformationPolicyConfig") or {}).get("regexesConfig") or []):
        try:
            re.compile(rx["pattern"])
        except re.error as exc:
            raise errors.InvalidRequest(
                f"sensitiveInformationPolicyConfig.regexesConfig.{i}.pattern is not a valid regular expression: {exc}"
            ) from exc
    for i, f in enumerate((config.get("contextualGroundingPolicyConfig") or {}).get("filtersConfig") or []):
        if not 0 <= f["threshold"] < 1:
            raise errors.InvalidRequest(
                f"contextualGroundingPolicyConfig.filtersConfig.{i}.threshold must be in [0, 1)."
            )
    topics = [t["name"] for t in (config.get("topicPolicyConfig") or {}).get("topicsConfig") or []]
    if len(set(topics)) != len(topics):
        raise errors.InvalidRequest("topicPolicyConfig.topicsConfig: topic names must be unique.")
    filters = [f["type"] for f in (config.get("contentPolicyConfig") or {}).get("filtersConfig") or []]
    if len(set(filters)) != len(filters):
        raise errors.InvalidRequest("contentPolicyConfig.filtersConfig: each filter type may appear once.")


@dataclass(frozen=True)
class Guardrail:
    id: str
    version: str
    name: str
    description: str | None
    config: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    def arn(self, region: str) -> str:
        return guardrail_arn(region, self.id)

    def to_get(self, region: str) -> dict[str, Any]:
        out = {_OUT_NAMES[k]: _renamed(v) for k, v in self.config.items() if k in POLICIES}
        out.update(
            name=self.name, guardrailId=self.id, guardrailArn=self.arn(region), version=self.version, status="READY",
            createdAt=self.created_at.isoformat(), updatedAt=self.updated_at.isoformat(),
            blockedInputMessaging=self.config["blockedInputMessaging"],
            blockedOutputsMessaging=self.config["blockedOutputsMessaging"],
        )  # fmt: skip
        if self.description:
            out["description"] = self.description
        profile = (self.config.get("crossRegionConfig") or {}).get("guardrailProfileIdentifier")
        if profile:  # kept for compatibility; requests are checked here, not routed
            pid = profile.rsplit("guardrail-profile/", 1)[-1]
            arn = f"arn:aws:bedrock:{region}:{ACCOUNT}:guardrail-profile/{pid}"
            arn = profile if profile.startswith("arn:") else arn
            out["crossRegionDetails"] = {"guardrailProfileId": pid, "guardrailProfileArn": arn}
        if "constitution" in self.config:  # our extension; SDKs ignore members their model doesn't name
            out["constitution"] = self.config["constitution"]
        return out


class GuardrailStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.enforced = EnforcedConfigs(self)  # the account's enforced guardrails, read through this store

    parse_id = staticmethod(parse_id)

    def _row(self, gid: str, version: str) -> Guardrail:
        with self.engine.connect() as db:
            row = db.execute(select(guardrails).where(guardrails.c.id == gid, guardrails.c.version == version)).first()
        if row is None:
            what = f"version {version} of the guardrail" if version != "DRAFT" else "the guardrail"
            raise errors.NotFound(f"{what.capitalize()} '{gid}' was not found.")
        return Guardrail(row.id, row.version, row.name, row.description, json.loads(row.config), row.created_at,
                         row.updated_at)  # fmt: skip

    def get(self, identifier: str, version: str | None = None) -> Guardrail:
        if version is not None and version != "DRAFT" and not version.isdigit():
            raise errors.InvalidRequest(f"guardrailVersion must be DRAFT or a number, not '{version}'.")
        return self._row(self.parse_id(identifier), version or "DRAFT")

    def create(self, body: dict[str, Any]) -> Guardrail:
        gid = "".join(secrets.choice(_ID) for _ in range(12))
        now = _now()
        with self.engine.begin() as db:
            taken = db.execute(select(func.count()).select_from(guardrails).where(guardrails.c.name == body["name"]))
            if taken.scalar_one():
                raise errors.InvalidRequest(f"A guardrail named '{body['name']}' already exists.")
            db.execute(insert(guardrails).values(id=gid, version="DRAFT", name=body["name"],
                                                 description=body.get("description"),
                                                 config=json.dumps(body), created_at=now, updated_at=now))  # fmt: skip
        return self._row(gid, "DRAFT")

    def update(self, identifier: str, body: dict[str, Any]) -> Guardrail:
        gid = self.parse_id(identifier)
        self._row(gid, "DRAFT")
        with self.engine.begin() as db:
            db.execute(update(guardrails).where(guardrails.c.id == gid, guardrails.c.version == "DRAFT")
                       .values(name=body["name"], description=body.get("description"), config=json.dumps(body),
                               updated_at=_now()))  # fmt: skip
        return self._row(gid, "DRAFT")

    def create_version(self, identifier: str, description: str | None) -> Guardrail:
        gid = self.parse_id(identifier)
        draft = self._row(gid, "DRAFT")
        with self.engine.begin() as db:
            numbers = [int(v) for v in db.execute(select(guardrails.c.version).where(guardrails.c.id == gid)).scalars()
                       if v.isdigit()]  # fmt: skip
            version = str(max(numbers, default=0) + 1)
            now = _now()
            row = {
                "name": draft.name,
                "description": description or draft.description,
                "config": json.dumps(draft.config),
            }
            db.execute(insert(guardrails).values(id=gid, version=version, created_at=now, updated_at=now, **row))
        return self._row(gid, version)

    def delete(self, identifier: str, version: str | None) -> None:
        gid = self.parse_id(identifier)
        self._row(gid, "DRAFT" if version is None else version)
        for e in self.enforced.all():  # deleting it would stop every model call (enforced guardrails fail closed)
            if e.guardrail_id == gid and version in (None, e.version):
                raise errors.InUse(
                    f"Version {e.version} of guardrail '{gid}' is the account's enforced guardrail "
                    f"(configuration {e.config_id}); remove that configuration first."
                )
        with self.engine.begin() as db:
            where = guardrails.c.id == gid
            if version is not None:
                if version == "DRAFT":
                    raise errors.InvalidRequest("The DRAFT version cannot be deleted alone; delete the guardrail.")
                where = where & (guardrails.c.version == version)
            db.execute(delete(guardrails).where(where))

    def list(self, identifier: str | None = None) -> list[Guardrail]:
        query = select(guardrails).order_by(guardrails.c.created_at, guardrails.c.version)
        if identifier:
            query = query.where(guardrails.c.id == self.parse_id(identifier))
        else:
            query = query.where(guardrails.c.version == "DRAFT")
        with self.engine.connect() as db:
            return [Guardrail(r.id, r.version, r.name, r.description, json.loads(r.config), r.created_at, r.updated_at)
                    for r in db.execute(query)]  # fmt: skip
