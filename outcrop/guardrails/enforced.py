"""Account-level enforced guardrails: Bedrock's Put/List/DeleteEnforcedGuardrailConfiguration.

An administrator names one numbered guardrail version that every model call on this server gets,
whatever the caller asks for and on every API (Bedrock, OpenAI, Anthropic), on top of the request's
own guardrails and the caller's key's and model's defaults. As in Bedrock:

* `modelEnforcement` limits it to `includedModels` (["ALL"]: every model) minus `excludedModels`; a
  model in both lists is excluded; without modelEnforcement it applies to every model. Entries are
  model IDs (the service model's pattern refuses ARNs), matched against the ID the caller used and
  the one it resolved to.
* `selectiveContentGuarding` says, for the system prompt and for the messages, whether the guardrail
  reads everything (COMPREHENSIVE, the default) or only what the caller marked (SELECTIVE: guardContent
  blocks and InvokeModel's input tags, as a request's own guardrail does). COMPREHENSIVE is what makes
  it enforced: a caller cannot steer the check to a harmless tagged snippet.
* One configuration per account: a second Put without the first's configId is a ConflictException;
  with it, it replaces that configuration. The list answers the configuration with `owner: ACCOUNT`
  and the deprecated `inputTags` (HONOR when the messages are SELECTIVE, else IGNORE).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import string
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from outcrop import errors
from outcrop.conversation import GuardrailRef
from outcrop.guardrails.ids import ACCOUNT, guardrail_arn
from outcrop.store.schema import enforced_guardrails

if TYPE_CHECKING:
    from outcrop.guardrails.store import GuardrailStore

MODES = ("SELECTIVE", "COMPREHENSIVE")
DEFAULT_MODE = "COMPREHENSIVE"
_TTL_S = 2.0  # other processes' changes apply within this


@dataclass(frozen=True)
class Enforced:
    config_id: str
    guardrail_id: str
    version: str
    system: str
    messages: str
    included: tuple[str, ...] | None  # None: no modelEnforcement, every model
    excluded: tuple[str, ...]
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str

    def applies_to(self, *models: str) -> bool:
        """Whether a call to a model known by any of `models` (its requested and resolved IDs) gets it."""
        names = set(models)
        if names & set(self.excluded):
            return False
        return self.included is None or "ALL" in self.included or bool(names & set(self.included))

    def ref(self) -> GuardrailRef:
        return GuardrailRef(self.guardrail_id, self.version, enforced=True, system=self.system, messages=self.messages)

    def to_output(self, region: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "configId": self.config_id, "guardrailArn": guardrail_arn(region, self.guardrail_id),
            "guardrailId": self.guardrail_id,
            "guardrailVersion": self.version, "inputTags": "HONOR" if self.messages == "SELECTIVE" else "IGNORE",
            "selectiveContentGuarding": {"system": self.system, "messages": self.messages},
            "createdAt": self.created_at.isoformat(), "createdBy": self.created_by,
            "updatedAt": self.updated_at.isoformat(), "updatedBy": self.updated_by, "owner": "ACCOUNT",
        }  # fmt: skip
        if self.included is not None:
            out["modelEnforcement"] = {"includedModels": list(self.included), "excludedModels": list(self.excluded)}
        return out


class EnforcedConfigs:
    """The configurations, kept in the guardrail store's database."""

    def __init__(self, store: GuardrailStore) -> None:
        self.store = store
        self._active: tuple[list[Enforced], float] = ([], 0.0)

    def put(self, body: dict[str, Any], by: str) -> Enforced:
        """PutEnforcedGuardrailConfiguration's checked body: create, or replace the configuration `configId`."""
        config = dict(body["guardrailInferenceConfig"])
        version = str(config["guardrailVersion"])
        if not version.isdigit() or version.startswith("0"):
            raise errors.InvalidRequest(
                "guardrailInferenceConfig.guardrailVersion must be a numbered version, not DRAFT."
            )
        found = self.store.get(config["guardrailIdentifier"], version)  # NotFound names what is missing
        config["guardrailIdentifier"] = found.id
        for where in ("system", "messages"):
            mode = (config.get("selectiveContentGuarding") or {}).get(where, DEFAULT_MODE)
            if mode not in MODES:
                raise errors.InvalidRequest(f"selectiveContentGuarding.{where} must be SELECTIVE or COMPREHENSIVE.")
        now = datetime.now(UTC)
        config_id = body.get("configId")
        conflict = "An enforced guardrail configuration exists already ({}): pass its configId to replace it."
        with self.store.engine.begin() as db:
            ids = list(db.execute(select(enforced_guardrails.c.config_id)).scalars())
            if config_id is None:
                if ids:
                    raise errors.Conflict(conflict.format(ids[0]))
                config_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(12))
                try:  # the unique account column settles two Puts racing past the check above
                    row = {"config_id": config_id, "account": ACCOUNT, "config": json.dumps(config),
                           "created_at": now, "created_by": by, "updated_at": now, "updated_by": by}  # fmt: skip
                    db.execute(insert(enforced_guardrails).values(**row))
                except IntegrityError:
                    raise errors.Conflict(conflict.format("made by another request just now")) from None
            elif config_id in ids:
                db.execute(update(enforced_guardrails).where(enforced_guardrails.c.config_id == config_id)
                           .values(config=json.dumps(config), updated_at=now, updated_by=by))  # fmt: skip
            else:
                raise errors.NotFound(f"The enforced guardrail configuration '{config_id}' was not found.")
        self._active = ([], 0.0)
        return next(e for e in self.all() if e.config_id == config_id)

    def all(self) -> list[Enforced]:
        with self.store.engine.connect() as db:
            rows = list(db.execute(select(enforced_guardrails).order_by(enforced_guardrails.c.created_at)))
        out = []
        for r in rows:
            c = json.loads(r.config)
            guarding = c.get("selectiveContentGuarding") or {}
            models = c.get("modelEnforcement")
            out.append(Enforced(
                r.config_id, c["guardrailIdentifier"], str(c["guardrailVersion"]),
                guarding.get("system", DEFAULT_MODE), guarding.get("messages", DEFAULT_MODE),
                None if models is None else tuple(models["includedModels"]),
                () if models is None else tuple(models["excludedModels"]),
                r.created_at, r.created_by, r.updated_at, r.updated_by,
            ))  # fmt: skip
        return out

    def delete(self, config_id: str) -> None:
        with self.store.engine.begin() as db:
            done = db.execute(delete(enforced_guardrails).where(enforced_guardrails.c.config_id == config_id))
        if not done.rowcount:
            raise errors.NotFound(f"The enforced guardrail configuration '{config_id}' was not found.")
        self._active = ([], 0.0)

    async def current(self) -> list[Enforced]:
        """active(), reading the database off the event loop when the cached list has expired."""
        found, expires = self._active
        if expires >= time.monotonic():
            return found
        return await asyncio.to_thread(self.active)

    def active(self) -> list[Enforced]:
        """The configurations in force, re-read every _TTL_S seconds (another process may change them)."""
        found, expires = self._active
        if expires < time.monotonic():
            found = self.all()
            self._active = (found, time.monotonic() + _TTL_S)
        return found
