"""Agents, their action groups, knowledge-base associations, versions and aliases as plain values, and the checks
botocore's `bedrock-agent` model cannot make.

An agent is an account resource, scoped like a knowledge base: `arn:aws:bedrock:REGION:000000000000:agent/ID`, its
aliases `...:agent-alias/AGENT_ID/ALIAS_ID`. Its working draft is version DRAFT; every alias created (or updated)
without a routingConfiguration snapshots the DRAFT as the next numbered version, as on Bedrock. The test alias
`TSTALIASID` always exists and always routes to the DRAFT.

What this server serves (anything else is a ValidationException that says what is):
- orchestrationType DEFAULT, agentCollaboration DISABLED; a customerEncryptionKeyArn is kept, not applied;
- action groups with a functionSchema or an OpenAPI 3 apiSchema (a JSON or YAML payload, or an S3 object read
  through outcrop/objects.py), run by the caller (`customControl: RETURN_CONTROL`) or by a Lambda ARN the server's
  owner maps to a local HTTP endpoint in `[server.agent_lambda_urls]`; the AMAZON.UserInput signature.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from outcrop import errors
from outcrop.agents import definition as defs
from outcrop.guardrails.ids import ACCOUNT

DRAFT = defs.DRAFT_VERSION
TEST_ALIAS = defs.TEST_ALIAS_ID
TEST_ALIAS_NAME = "AgentTestAlias"
DEFAULT_ROLE = f"arn:aws:iam::{ACCOUNT}:role/outcrop-agent"  # reported when a create names no role
SIGNATURES = ("AMAZON.UserInput",)  # parentActionGroupSignature values served here
_AGENT_FIELDS = ("instruction", "foundationModel", "description", "orchestrationType", "idleSessionTTLInSeconds",
                 "agentResourceRoleArn", "customerEncryptionKeyArn", "promptOverrideConfiguration",
                 "guardrailConfiguration", "memoryConfiguration", "agentCollaboration")  # fmt: skip
_VERSION = re.compile(r"^[0-9]{1,5}$")


def agent_arn(region: str, agent_id: str) -> str:
    return f"arn:aws:bedrock:{region}:{ACCOUNT}:agent/{agent_id}"


def alias_arn(region: str, agent_id: str, alias_id: str) -> str:
    return f"arn:aws:bedrock:{region}:{ACCOUNT}:agent-alias/{agent_id}/{alias_id}"


def agent_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """The members of a Create/UpdateAgent body an agent version keeps (name and tags apart)."""
    return {k: body[k] for k in _AGENT_FIELDS if body.get(k) is not None}


@dataclass(frozen=True)
class Agent:
    """The DRAFT of an agent (`version` DRAFT) or one of its numbered versions: `spec` holds the members of its
    Create/UpdateAgent request (`agent_fields`)."""

    id: str
    name: str
    version: str
    spec: dict[str, Any]
    status: str  # NOT_PREPARED | PREPARING | PREPARED | FAILED | DELETING ...
    failure_reasons: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    prepared_at: datetime | None
    latest_version: str  # the highest numbered version, or DRAFT when there is none

    def arn(self, region: str) -> str:
        return agent_arn(region, self.id)


@dataclass(frozen=True)
class ActionGroup:
    agent_id: str
    version: str
    id: str
    name: str
    state: str  # ENABLED | DISABLED
    spec: dict[str, Any]  # the Create/UpdateAgentActionGroup members (executor, schemas, signature, description)
    payload: str | None  # the OpenAPI text an apiSchema's S3 object held when it was read
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class KnowledgeBaseLink:
    agent_id: str
    version: str
    knowledge_base_id: str
    description: str
    state: str  # ENABLED | DISABLED
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Alias:
    agent_id: str
    id: str
    name: str
    description: str | None
    routing: tuple[dict[str, Any], ...]  # routingConfiguration: [{agentVersion}]
    history: tuple[dict[str, Any], ...]  # agentAliasHistoryEvents, newest first
    status: str
    created_at: datetime
    updated_at: datetime

    @property
    def version(self) -> str:
        return str(self.routing[0]["agentVersion"]) if self.routing else DRAFT

    def arn(self, region: str) -> str:
        return alias_arn(region, self.agent_id, self.id)


# --- checks -------------------------------------------------------------------------------------


def check_agent(body: Mapping[str, Any]) -> None:
    """A Create/UpdateAgent body (already valid for the service model) that this server can serve; the model and
    the guardrail are checked against what is served by the caller."""
    if body.get("orchestrationType", "DEFAULT") != "DEFAULT" or body.get("customOrchestration"):
        raise errors.InvalidRequest("orchestrationType CUSTOM_ORCHESTRATION is not supported by this server; "
                                    "agents use the DEFAULT orchestration.")  # fmt: skip
    if body.get("agentCollaboration", "DISABLED") != "DISABLED":
        raise errors.InvalidRequest("agentCollaboration (multi-agent collaboration) is not supported by this server; "
                                    "only DISABLED is.")  # fmt: skip
    defs.prompt_overrides(body.get("promptOverrideConfiguration"))
    guardrail = body.get("guardrailConfiguration") or {}
    if bool(guardrail.get("guardrailIdentifier")) != bool(guardrail.get("guardrailVersion")):
        raise errors.InvalidRequest("guardrailConfiguration needs both guardrailIdentifier and guardrailVersion.")
    memory = body.get("memoryConfiguration")
    if memory and any(t != "SESSION_SUMMARY" for t in memory["enabledMemoryTypes"]):
        raise errors.InvalidRequest("memoryConfiguration.enabledMemoryTypes: only SESSION_SUMMARY is supported.")


def check_action_group(body: Mapping[str, Any], lambda_urls: Mapping[str, str], payload: str | None) -> None:
    """A Create/UpdateAgentActionGroup body (already valid for the service model) that the agent loop can run.
    `payload`: the OpenAPI text of an apiSchema kept in S3, once read."""
    name = body["actionGroupName"]
    signature = body.get("parentActionGroupSignature")
    schemas = [k for k in ("functionSchema", "apiSchema") if body.get(k)]
    executor = body.get("actionGroupExecutor") or {}
    if signature is not None:
        if signature not in SIGNATURES:
            raise errors.InvalidRequest(f"parentActionGroupSignature {signature} is not supported by this server; "
                                        f"supported: {', '.join(SIGNATURES)}.")  # fmt: skip
        if schemas or executor or body.get("parentActionGroupSignatureParams"):
            raise errors.InvalidRequest(
                f"An action group with parentActionGroupSignature {signature} takes no actionGroupExecutor, "
                "functionSchema, apiSchema or signature parameters."
            )
        return
    if len(schemas) != 1:
        raise errors.InvalidRequest(f"Action group '{name}' needs exactly one of functionSchema and apiSchema.")
    if len([k for k in ("lambda", "customControl") if executor.get(k)]) != 1:
        raise errors.InvalidRequest(f"Action group '{name}' needs an actionGroupExecutor with either customControl "
                                    "RETURN_CONTROL or a lambda ARN.")  # fmt: skip
    arn = executor.get("lambda")
    if arn and arn not in lambda_urls:
        raise errors.InvalidRequest(
            f"actionGroupExecutor.lambda '{arn}' is not mapped to an endpoint on this server. Its owner maps Lambda "
            'ARNs to local HTTP endpoints in config.toml: [server.agent_lambda_urls] "ARN" = "http://host:port/path"'
            "; or use customControl RETURN_CONTROL."
        )
    api = body.get("apiSchema")
    if api:
        if len([k for k in ("payload", "s3") if api.get(k)]) != 1:
            raise errors.InvalidRequest("apiSchema needs exactly one of payload and s3.")
        text = api.get("payload") or payload or ""
        _check_openapi(text, name)
    functions = (body.get("functionSchema") or {}).get("functions")
    if body.get("functionSchema") and not functions:
        raise errors.InvalidRequest(f"functionSchema of action group '{name}' defines no functions.")
    defs.action_group({**body, "apiSchema": {"payload": text}} if api else body, lambda_urls)


def _check_openapi(text: str, group: str) -> None:
    import json

    import yaml

    try:
        doc = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise errors.InvalidRequest(f"apiSchema of action group '{group}' is not valid JSON or YAML: {exc}") from None
    if not isinstance(doc, dict) or not str(doc.get("openapi", "")).startswith("3."):
        raise errors.InvalidRequest(f"apiSchema of action group '{group}' must be an OpenAPI 3 document (its "
                                    "'openapi' member 3.0.x or 3.1.x).")  # fmt: skip
    if not isinstance(doc.get("paths"), dict) or not doc["paths"]:
        raise errors.InvalidRequest(f"apiSchema of action group '{group}' has no paths.")
    for path, item in doc["paths"].items():
        if not str(path).startswith("/") or not isinstance(item, dict):
            raise errors.InvalidRequest(f"apiSchema of action group '{group}': path '{path}' must start with / and "
                                        "hold operations.")  # fmt: skip


def check_routing(routing: list[dict[str, Any]] | None) -> None:
    """An alias's routingConfiguration: one numbered version (the DRAFT is only the test alias's)."""
    if not routing:
        return
    if len(routing) != 1:
        raise errors.InvalidRequest("routingConfiguration takes one entry: the version the alias routes to.")
    entry = routing[0]
    if entry.get("provisionedThroughput"):
        raise errors.InvalidRequest("routingConfiguration.provisionedThroughput is not supported by this server.")
    version = entry.get("agentVersion")
    if version is None or not _VERSION.match(str(version)):
        raise errors.InvalidRequest(f"routingConfiguration.agentVersion must be a numbered version, not {version!r} "
                                    f"(the DRAFT is served by the test alias {TEST_ALIAS}).")  # fmt: skip
