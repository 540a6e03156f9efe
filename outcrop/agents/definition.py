"""What an agent is, as the orchestration loop needs it: one frozen value per (agent, alias).

Both ways of defining an agent end here:

- a stored agent (bedrock-agent's CreateAgent, action groups, associated knowledge bases, aliases, versions):
  the control plane builds it with ``catalog.definition(agent_id, alias_id)`` (``ctx.agents.definition`` on the
  server's Context), resolving the alias (``TSTALIASID`` is the working draft) to the version it routes to;
- InvokeInlineAgent's request (the agent defined in the call): ``from_inline_request(body)`` below.

The loop (outcrop/agents/loop.py) only reads these values; it never reaches back into the control plane.

Field by field, with the Bedrock names they come from:

``AgentDefinition``
    agent_id, alias_id, version     -- "INLINE" / "INLINE" / "DRAFT" for an inline agent
    name                            -- agentName
    foundation_model                -- foundationModel: any served chat model id (or alias)
    instruction                     -- instruction: the agent's system prompt
    idle_session_ttl                -- idleSessionTTLInSeconds (Bedrock's default 600 s when not given)
    guardrail                       -- guardrailConfiguration (identifier, version), applied like Converse's
    prompt_overrides                -- promptOverrideConfiguration.promptConfigurations, one per promptType
    action_groups                   -- ActionGroup: the tools the agent may call
    knowledge_bases                 -- KnowledgeBaseRef: offered to the model as a search tool each
    memory_enabled                  -- memoryConfiguration SESSION_SUMMARY (stored agents only; optional), with
    memory_storage_days / memory_recent_sessions -- its storageDays and maxRecentSessions (memory.py)

``ActionGroup``
    name, description, executor (RETURN_CONTROL, or a lambda ARN already mapped to a local URL by whoever
    built the definition: ``Executor.lambda_url``), and either ``functions`` (functionSchema) or
    ``operations`` (the operations of an OpenAPI 3 apiSchema payload, each with its path, method, and
    parameters / JSON request body). An action group with a ``parent_signature`` (AMAZON.UserInput and the
    like) carries it; the loop refuses the ones it cannot serve by name.

A definition is plain data: building one validates what the loop relies on (names unique and usable as tool
names, a parsable OpenAPI payload) and raises ``errors.InvalidRequest`` with Bedrock's wording otherwise.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from outcrop import errors

INLINE_AGENT_ID = "INLINE"
DRAFT_VERSION = "DRAFT"
TEST_ALIAS_ID = "TSTALIASID"
DEFAULT_IDLE_TTL = 600  # Bedrock's default idleSessionTTLInSeconds
DEFAULT_MEMORY_DAYS = 30  # Bedrock's default memoryConfiguration.storageDays
DEFAULT_RECENT_SESSIONS = 1  # summaries shown to the model when maxRecentSessions is not given
RETURN_CONTROL: Literal["RETURN_CONTROL"] = "RETURN_CONTROL"

ParameterType = Literal["string", "number", "integer", "boolean", "array"]
PromptType = Literal[
    "PRE_PROCESSING",
    "ORCHESTRATION",
    "KNOWLEDGE_BASE_RESPONSE_GENERATION",
    "POST_PROCESSING",
    "ROUTING_CLASSIFIER",
]
_PARAMETER_TYPES = ("string", "number", "integer", "boolean", "array")
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
_NAME = re.compile(r"^[0-9a-zA-Z_\-]{1,100}$")


@dataclass(frozen=True)
class Parameter:
    name: str
    type: ParameterType
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Function:
    """A function of a functionSchema (customer-defined: parameters are flat, typed, optional or required)."""

    name: str
    description: str = ""
    parameters: tuple[Parameter, ...] = ()
    require_confirmation: bool = False


@dataclass(frozen=True)
class Operation:
    """One operation of an apiSchema's OpenAPI document.

    ``parameters`` are its path / query / header parameters (with ``location`` as OpenAPI's ``in``);
    ``body`` is the JSON schema of its ``application/json`` request body, if it has one.
    """

    path: str
    method: str  # upper case, as Bedrock's apiInvocationInput.httpMethod
    operation_id: str = ""
    description: str = ""
    parameters: tuple[OperationParameter, ...] = ()
    body: Mapping[str, Any] | None = None
    body_required: bool = False


@dataclass(frozen=True)
class OperationParameter:
    name: str
    location: str  # path, query, header, cookie
    type: str = "string"
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Executor:
    """Who runs an action group's calls: the caller (RETURN_CONTROL) or a Lambda function.

    A Lambda ARN (``lambda_arn``) is served by POSTing Bedrock's Lambda input event JSON to ``lambda_url``, a local
    HTTP endpoint the server's owner maps the ARN to; None there means the ARN has no mapping (the call fails
    with a DependencyFailedException naming it).
    """

    kind: Literal["RETURN_CONTROL", "LAMBDA"]
    lambda_arn: str = ""
    lambda_url: str | None = None


@dataclass(frozen=True)
class ActionGroup:
    name: str
    description: str = ""
    executor: Executor = field(default_factory=lambda: Executor(RETURN_CONTROL))
    functions: tuple[Function, ...] = ()
    operations: tuple[Operation, ...] = ()
    parent_signature: str | None = None  # AMAZON.UserInput, AMAZON.CodeInterpreter, ...
    enabled: bool = True


@dataclass(frozen=True)
class KnowledgeBaseRef:
    """A knowledge base the agent may search; ``retrieval`` is Bedrock's KnowledgeBaseRetrievalConfiguration
    (vectorSearchConfiguration: numberOfResults, overrideSearchType, filter, rerankingConfiguration) as JSON,
    read by the same decoder Retrieve uses."""

    knowledge_base_id: str
    description: str
    retrieval: Mapping[str, Any] | None = None
    enabled: bool = True


@dataclass(frozen=True)
class PromptOverride:
    """One promptConfigurations entry: ``state`` ENABLED/DISABLED, ``template`` the basePromptTemplate when
    overridden, ``inference`` Bedrock's InferenceConfiguration (maximumLength, stopSequences, temperature, topK,
    topP) as JSON."""

    prompt_type: PromptType
    state: Literal["ENABLED", "DISABLED"] | None = None
    template: str | None = None
    inference: Mapping[str, Any] | None = None
    creation_mode: Literal["DEFAULT", "OVERRIDDEN"] = "DEFAULT"
    parser_mode: Literal["DEFAULT", "OVERRIDDEN"] = "DEFAULT"
    foundation_model: str | None = None


@dataclass(frozen=True)
class GuardrailRef:
    identifier: str
    version: str


@dataclass(frozen=True)
class AgentDefinition:
    agent_id: str
    alias_id: str
    version: str
    foundation_model: str
    instruction: str
    name: str = ""
    idle_session_ttl: int = DEFAULT_IDLE_TTL
    guardrail: GuardrailRef | None = None
    prompt_overrides: tuple[PromptOverride, ...] = ()
    action_groups: tuple[ActionGroup, ...] = ()
    knowledge_bases: tuple[KnowledgeBaseRef, ...] = ()
    memory_enabled: bool = False
    memory_storage_days: int = DEFAULT_MEMORY_DAYS  # storageDays
    memory_recent_sessions: int = DEFAULT_RECENT_SESSIONS  # sessionSummaryConfiguration.maxRecentSessions

    def prompt_override(self, prompt_type: PromptType) -> PromptOverride | None:
        return next((p for p in self.prompt_overrides if p.prompt_type == prompt_type), None)

    @property
    def is_inline(self) -> bool:
        return self.agent_id == INLINE_AGENT_ID


# --- builders from Bedrock JSON (InvokeInlineAgent's request; the control plane reuses the pieces) ---


def from_inline_request(body: Mapping[str, Any], lambda_urls: Mapping[str, str] | None = None) -> AgentDefinition:
    """The agent InvokeInlineAgent defines in its request body (botocore already checked its shape).

    ``lambda_urls`` maps Lambda ARNs to the local URLs that serve them (the server's configuration).
    Collaborators (multi-agent), custom orchestration and customer KMS keys are refused by name.
    """
    for unsupported in ("collaborators", "collaboratorConfigurations", "customOrchestration"):
        if body.get(unsupported):
            raise errors.InvalidRequest(f"{unsupported} is not supported by this server")
    if body.get("agentCollaboration") not in (None, "DISABLED"):
        raise errors.InvalidRequest("agentCollaboration is not supported by this server (only DISABLED)")
    if body.get("orchestrationType") not in (None, "DEFAULT"):
        raise errors.InvalidRequest("orchestrationType CUSTOM_ORCHESTRATION is not supported by this server")
    ttl = body.get("idleSessionTTLInSeconds")
    return AgentDefinition(
        agent_id=INLINE_AGENT_ID,
        alias_id=INLINE_AGENT_ID,
        version=DRAFT_VERSION,
        name=str(body.get("agentName") or ""),
        foundation_model=str(body["foundationModel"]),
        instruction=str(body["instruction"]),
        idle_session_ttl=int(ttl) if ttl else DEFAULT_IDLE_TTL,
        guardrail=guardrail_ref(body.get("guardrailConfiguration")),
        prompt_overrides=prompt_overrides(body.get("promptOverrideConfiguration")),
        action_groups=action_groups(body.get("actionGroups") or (), lambda_urls),
        knowledge_bases=knowledge_bases(body.get("knowledgeBases") or ()),
    )


def guardrail_ref(config: Mapping[str, Any] | None) -> GuardrailRef | None:
    if not config:
        return None
    return GuardrailRef(str(config["guardrailIdentifier"]), str(config["guardrailVersion"]))


def prompt_overrides(config: Mapping[str, Any] | None) -> tuple[PromptOverride, ...]:
    if not config:
        return ()
    if config.get("overrideLambda"):
        raise errors.InvalidRequest("promptOverrideConfiguration.overrideLambda is not supported by this server")
    out = []
    for entry in config.get("promptConfigurations") or ():
        prompt_type = entry.get("promptType")
        if prompt_type is None:
            raise errors.InvalidRequest("promptConfigurations entries need a promptType")
        out.append(
            PromptOverride(
                prompt_type=prompt_type,
                state=entry.get("promptState"),
                template=entry.get("basePromptTemplate"),
                inference=entry.get("inferenceConfiguration"),
                creation_mode=entry.get("promptCreationMode") or "DEFAULT",
                parser_mode=entry.get("parserMode") or "DEFAULT",
                foundation_model=entry.get("foundationModel"),
            )
        )
    return tuple(out)


def knowledge_bases(entries: Sequence[Mapping[str, Any]]) -> tuple[KnowledgeBaseRef, ...]:
    refs = tuple(
        KnowledgeBaseRef(
            knowledge_base_id=str(kb["knowledgeBaseId"]),
            description=str(kb.get("description") or ""),
            retrieval=kb.get("retrievalConfiguration"),
            enabled=kb.get("knowledgeBaseState", "ENABLED") != "DISABLED",
        )
        for kb in entries
    )
    _unique([r.knowledge_base_id for r in refs], "knowledge base")
    return refs


def action_groups(
    entries: Sequence[Mapping[str, Any]], lambda_urls: Mapping[str, str] | None = None
) -> tuple[ActionGroup, ...]:
    groups = tuple(action_group(entry, lambda_urls) for entry in entries)
    _unique([g.name for g in groups], "action group")
    return groups


def action_group(entry: Mapping[str, Any], lambda_urls: Mapping[str, str] | None = None) -> ActionGroup:
    name = str(entry.get("actionGroupName") or "")
    if not _NAME.match(name):
        raise errors.InvalidRequest(f"actionGroupName {name!r} must match [0-9a-zA-Z_-]{{1,100}}")
    signature = entry.get("parentActionGroupSignature")
    functions: tuple[Function, ...] = ()
    operations: tuple[Operation, ...] = ()
    schema = entry.get("functionSchema")
    api = entry.get("apiSchema")
    if schema and api:
        raise errors.InvalidRequest(f"action group {name}: give functionSchema or apiSchema, not both")
    if schema:
        functions = tuple(function(f) for f in schema.get("functions") or ())
        _unique([f.name for f in functions], f"function of action group {name}")
    elif api:
        if api.get("s3"):
            raise errors.InvalidRequest(f"action group {name}: apiSchema.s3 is not supported here; pass payload")
        operations = openapi_operations(str(api.get("payload") or ""), name)
    elif not signature:
        raise errors.InvalidRequest(f"action group {name} needs a functionSchema or an apiSchema")
    return ActionGroup(
        name=name,
        description=str(entry.get("description") or ""),
        executor=executor(entry.get("actionGroupExecutor"), lambda_urls),
        functions=functions,
        operations=operations,
        parent_signature=signature,
        enabled=entry.get("actionGroupState", "ENABLED") != "DISABLED",
    )


def executor(config: Mapping[str, Any] | None, lambda_urls: Mapping[str, str] | None = None) -> Executor:
    if not config or config.get("customControl") == RETURN_CONTROL:
        return Executor(RETURN_CONTROL)
    arn = config.get("lambda")
    if arn:
        return Executor("LAMBDA", lambda_arn=str(arn), lambda_url=(lambda_urls or {}).get(str(arn)))
    raise errors.InvalidRequest("actionGroupExecutor needs customControl RETURN_CONTROL or a lambda ARN")


def function(entry: Mapping[str, Any]) -> Function:
    name = str(entry.get("name") or "")
    if not _NAME.match(name):
        raise errors.InvalidRequest(f"function name {name!r} must match [0-9a-zA-Z_-]{{1,100}}")
    params = []
    for pname, detail in (entry.get("parameters") or {}).items():
        ptype = detail.get("type")
        if ptype not in _PARAMETER_TYPES:
            allowed = ", ".join(_PARAMETER_TYPES)
            raise errors.InvalidRequest(f"parameter {pname} of {name}: type must be one of {allowed}")
        params.append(Parameter(str(pname), ptype, str(detail.get("description") or ""), bool(detail.get("required"))))
    return Function(
        name=name,
        description=str(entry.get("description") or ""),
        parameters=tuple(params),
        require_confirmation=entry.get("requireConfirmation") == "ENABLED",
    )


def openapi_operations(payload: str, group: str = "") -> tuple[Operation, ...]:
    """The operations of an OpenAPI 3 document given as JSON or YAML text (Bedrock's apiSchema.payload)."""
    try:
        doc = json.loads(payload) if payload.lstrip().startswith("{") else yaml.safe_load(payload)
    except (ValueError, yaml.YAMLError) as exc:
        message = f"action group {group}: apiSchema payload is not valid JSON or YAML: {exc}"
        raise errors.InvalidRequest(message) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("paths"), dict):
        raise errors.InvalidRequest(f"action group {group}: apiSchema payload needs an OpenAPI 'paths' object")
    ops = []
    for path, item in doc["paths"].items():
        if not isinstance(item, dict):
            continue
        shared = item.get("parameters") or []
        for method, op in item.items():
            if method.lower() not in _METHODS or not isinstance(op, dict):
                continue
            params = tuple(_openapi_parameter(_deref(doc, p)) for p in [*shared, *(op.get("parameters") or [])])
            body, body_required = None, False
            request_body = _deref(doc, op.get("requestBody") or {})
            content = request_body.get("content") or {}
            if "application/json" in content:
                body = _deref(doc, content["application/json"].get("schema") or {})
                body_required = bool(request_body.get("required"))
            ops.append(
                Operation(
                    path=str(path),
                    method=method.upper(),
                    operation_id=str(op.get("operationId") or ""),
                    description=str(op.get("description") or op.get("summary") or ""),
                    parameters=params,
                    body=body,
                    body_required=body_required,
                )
            )
    if not ops:
        raise errors.InvalidRequest(f"action group {group}: apiSchema payload defines no operations")
    return tuple(ops)


def _openapi_parameter(p: Mapping[str, Any]) -> OperationParameter:
    schema = p.get("schema") or {}
    return OperationParameter(
        name=str(p.get("name") or ""),
        location=str(p.get("in") or "query"),
        type=str(schema.get("type") or "string"),
        description=str(p.get("description") or ""),
        required=bool(p.get("required")),
    )


def _deref(doc: Mapping[str, Any], node: Any) -> Any:
    """Follows local ``$ref``s (#/components/...) one level at a time, as far as they go."""
    seen = 0
    while isinstance(node, Mapping) and isinstance(node.get("$ref"), str) and seen < 16:
        target: Any = doc
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        node, seen = target, seen + 1
    return node


def _unique(names: Sequence[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise errors.InvalidRequest(f"duplicate {what} name {name}")
        seen.add(name)
