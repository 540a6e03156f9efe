"""bedrock-agent routes for agents: Create/Get/List/Update/DeleteAgent, PrepareAgent, action groups, knowledge-base
associations, versions and aliases (botocore's service model says the paths and shapes). Thin: check the body,
check what it names (a served chat model, a guardrail, a knowledge base, an OpenAPI schema), call the catalog
(outcrop/agents/catalog.py), encode.

Creating, changing and deleting agents is an administrator's, as the rest of the control plane; anyone may read.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from outcrop import errors
from outcrop.agents.catalog import AgentCatalog
from outcrop.agents.resources import DRAFT, Agent, check_action_group, check_agent
from outcrop.api.bedrock_agent import agents_convert as convert
from outcrop.api.bedrock_agent.routes import DIALECT, _body, _listed, _page_size
from outcrop.api.http import Context, caller, json_body, route


def _agents(ctx: Context, request: Request, write: bool = False) -> AgentCatalog:
    if write and not caller(request).is_admin:
        raise errors.AccessDenied("Only an administrator may create, change or delete agents.")
    if ctx.agents is None:
        raise errors.InvalidRequest("This server has no store to keep agents in.")
    return ctx.agents


def _skip_check(request: Request) -> bool:
    return request.query_params.get("skipResourceInUseCheck", "false").lower() == "true"


async def _model(ctx: Context, request: Request, model: str) -> str:
    """The served chat model `model` (an id, an alias or an ARN) names; a ValidationException naming them if none."""
    served = ", ".join(ctx.registry.names("chat")) or "none"
    try:
        model_id = ctx.registry.resolve(model)
    except errors.NotFound:
        raise errors.InvalidRequest(f"foundationModel '{model}' names no model served here. Chat models: "
                                    f"{served}.") from None  # fmt: skip
    if ctx.registry.kind(model_id) != "chat":
        raise errors.InvalidRequest(f"foundationModel '{model}' is an embedding model. Chat models: {served}.")
    await ctx.inference.authorize(model_id, caller(request))
    return model_id


async def _guardrail(ctx: Context, config: dict[str, Any] | None) -> None:
    if not config or not config.get("guardrailIdentifier"):
        return
    if ctx.guardrails is None:
        raise errors.InvalidRequest("This server keeps no guardrails, so guardrailConfiguration cannot name one.")
    try:
        await asyncio.to_thread(ctx.guardrails.get, config["guardrailIdentifier"], config.get("guardrailVersion"))
    except errors.NotFound as exc:
        raise errors.InvalidRequest(f"guardrailConfiguration: {exc.message}") from None


async def _checked_agent(ctx: Context, request: Request, body: dict[str, Any]) -> None:
    check_agent(body)
    if body.get("foundationModel"):
        await _model(ctx, request, body["foundationModel"])
    await _guardrail(ctx, body.get("guardrailConfiguration"))


# --- agents ------------------------------------------------------------------------------------------------


async def create_agent(ctx: Context, request: Request) -> Response:
    agents = _agents(ctx, request, write=True)
    body = await _body(request, "CreateAgent")
    await _checked_agent(ctx, request, body)
    made = await asyncio.to_thread(agents.create, body)
    return json_body({"agent": convert.agent(made, ctx.settings.region)}, status=202)


async def get_agent(ctx: Context, request: Request, agentId: str) -> Response:
    agents = _agents(ctx, request)
    await _body(request, "GetAgent", {"agentId": agentId})
    return json_body({"agent": convert.agent(await asyncio.to_thread(agents.get, agentId), ctx.settings.region)})


async def list_agents(ctx: Context, request: Request) -> Response:
    agents = _agents(ctx, request)
    body = await _body(request, "ListAgents")
    page = await asyncio.to_thread(agents.list_agents, _page_size(body), body.get("nextToken"))
    return _listed(page, "agentSummaries", convert.agent_summary)


async def update_agent(ctx: Context, request: Request, agentId: str) -> Response:
    agents = _agents(ctx, request, write=True)
    body = await _body(request, "UpdateAgent", {"agentId": agentId})
    await asyncio.to_thread(agents.get, agentId)  # an unknown id is a 404 before the body is judged
    await _checked_agent(ctx, request, body)
    done = await asyncio.to_thread(agents.update, agentId, body)
    return json_body({"agent": convert.agent(done, ctx.settings.region)}, status=202)


async def delete_agent(ctx: Context, request: Request, agentId: str) -> Response:
    agents = _agents(ctx, request, write=True)
    await _body(request, "DeleteAgent", {"agentId": agentId})
    gone = await asyncio.to_thread(agents.delete, agentId)
    return json_body({"agentId": gone.id, "agentStatus": "DELETING"}, status=202)


async def _problems(ctx: Context, request: Request, agents: AgentCatalog, agent: Agent) -> list[str]:
    """What keeps the DRAFT from running: its model, instruction, guardrail, action groups, knowledge bases."""
    found: list[str] = []
    model = agent.spec.get("foundationModel")
    if not model:
        found.append("The agent has no foundationModel.")
    if not agent.spec.get("instruction"):
        found.append("The agent has no instruction.")
    checks: list[Any] = [_guardrail(ctx, agent.spec.get("guardrailConfiguration"))]
    if model:
        checks.append(_model(ctx, request, model))
    for group in await asyncio.to_thread(agents.all_groups, agent.id, DRAFT):
        if group.state == "ENABLED":
            entry = agents.group_entry(group)
            checks.append(asyncio.to_thread(check_action_group, entry, agents.lambda_urls, group.payload))
    kbs = ctx.knowledge.catalog if ctx.knowledge is not None else None
    for link in await asyncio.to_thread(agents.all_links, agent.id, DRAFT):
        if kbs is None:
            found.append(f"Knowledge base '{link.knowledge_base_id}': this server keeps no knowledge bases.")
        elif link.state == "ENABLED":
            checks.append(asyncio.to_thread(kbs.get, link.knowledge_base_id))
    for result in await asyncio.gather(*checks, return_exceptions=True):
        if isinstance(result, errors.OutcropError):
            found.append(result.message)
        elif isinstance(result, BaseException):
            raise result
    return found


async def prepare_agent(ctx: Context, request: Request, agentId: str) -> Response:
    """NOT_PREPARED -> PREPARING -> PREPARED; an incomplete agent goes back to NOT_PREPARED with the reasons (its
    failureReasons) and the call is a ValidationException saying them."""
    agents = _agents(ctx, request, write=True)
    await _body(request, "PrepareAgent", {"agentId": agentId})
    agent = await asyncio.to_thread(agents.get, agentId)
    await asyncio.to_thread(agents.set_status, agentId, "PREPARING")
    try:
        found = await _problems(ctx, request, agents, agent)
    except BaseException:
        await asyncio.to_thread(agents.set_status, agentId, agent.status)
        raise
    if found:
        await asyncio.to_thread(agents.set_status, agentId, "NOT_PREPARED", found)
        raise errors.InvalidRequest(f"The agent '{agentId}' cannot be prepared: " + " ".join(found))
    done = await asyncio.to_thread(agents.set_status, agentId, "PREPARED")
    stamp = done.prepared_at.isoformat() if done.prepared_at else done.updated_at.isoformat()
    return json_body({"agentId": agentId, "agentStatus": "PREPARING", "agentVersion": DRAFT, "preparedAt": stamp},
                     status=202)  # fmt: skip


# --- versions ----------------------------------------------------------------------------------------------


async def get_agent_version(ctx: Context, request: Request, agentId: str, agentVersion: str) -> Response:
    agents = _agents(ctx, request)
    await _body(request, "GetAgentVersion", {"agentId": agentId, "agentVersion": agentVersion})
    found = await asyncio.to_thread(agents.version, agentId, agentVersion)
    return json_body({"agentVersion": convert.agent(found, ctx.settings.region)})


async def list_agent_versions(ctx: Context, request: Request, agentId: str) -> Response:
    agents = _agents(ctx, request)
    body = await _body(request, "ListAgentVersions", {"agentId": agentId})
    page = await asyncio.to_thread(agents.list_versions, agentId, _page_size(body), body.get("nextToken"))
    return _listed(page, "agentVersionSummaries", convert.version_summary)


async def delete_agent_version(ctx: Context, request: Request, agentId: str, agentVersion: str) -> Response:
    agents = _agents(ctx, request, write=True)
    await _body(request, "DeleteAgentVersion", {"agentId": agentId, "agentVersion": agentVersion})
    await asyncio.to_thread(agents.delete_version, agentId, agentVersion, _skip_check(request))
    return json_body({"agentId": agentId, "agentVersion": agentVersion, "agentStatus": "DELETING"}, status=202)


# --- action groups -----------------------------------------------------------------------------------------


async def _schema_text(ctx: Context, body: dict[str, Any]) -> str | None:
    """The OpenAPI text of an apiSchema kept in S3 (a local folder standing for the bucket, or S3 itself)."""
    s3 = (body.get("apiSchema") or {}).get("s3")
    if not s3:
        return None
    from outcrop import config
    from outcrop.objects import Objects

    if not s3.get("s3BucketName") or not s3.get("s3ObjectKey"):
        raise errors.InvalidRequest("apiSchema.s3 needs s3BucketName and s3ObjectKey.")
    uri = f"s3://{s3['s3BucketName']}/{s3['s3ObjectKey']}"
    objects = Objects([config.batch_dir(ctx.settings)], ctx.settings.s3_endpoint_url, ctx.settings.region)
    try:
        raw = await asyncio.to_thread(objects.read, uri)
    except errors.OutcropError as exc:
        raise errors.InvalidRequest(f"apiSchema.s3: {uri} could not be read: {exc.message}") from None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise errors.InvalidRequest(f"apiSchema.s3: {uri} is not UTF-8 text.") from None


async def _checked_group(ctx: Context, agents: AgentCatalog, body: dict[str, Any]) -> str | None:
    payload = await _schema_text(ctx, body)
    check_action_group(body, agents.lambda_urls, payload)
    return payload


async def create_action_group(ctx: Context, request: Request, agentId: str, agentVersion: str) -> Response:
    agents = _agents(ctx, request, write=True)
    body = await _body(request, "CreateAgentActionGroup", {"agentId": agentId, "agentVersion": agentVersion})
    await asyncio.to_thread(agents.get, agentId)
    payload = await _checked_group(ctx, agents, body)
    made = await asyncio.to_thread(agents.create_group, agentId, body, payload)
    return json_body({"agentActionGroup": convert.action_group(made)})


async def get_action_group(ctx: Context, request: Request, agentId: str, agentVersion: str,
                           actionGroupId: str) -> Response:  # fmt: skip
    agents = _agents(ctx, request)
    path = {"agentId": agentId, "agentVersion": agentVersion, "actionGroupId": actionGroupId}
    await _body(request, "GetAgentActionGroup", path)
    found = await asyncio.to_thread(agents.group, agentId, agentVersion, actionGroupId)
    return json_body({"agentActionGroup": convert.action_group(found)})


async def list_action_groups(ctx: Context, request: Request, agentId: str, agentVersion: str) -> Response:
    agents = _agents(ctx, request)
    body = await _body(request, "ListAgentActionGroups", {"agentId": agentId, "agentVersion": agentVersion})
    page = await asyncio.to_thread(agents.list_groups, agentId, agentVersion, _page_size(body), body.get("nextToken"))
    return _listed(page, "actionGroupSummaries", convert.action_group_summary)


async def update_action_group(ctx: Context, request: Request, agentId: str, agentVersion: str,
                              actionGroupId: str) -> Response:  # fmt: skip
    agents = _agents(ctx, request, write=True)
    path = {"agentId": agentId, "agentVersion": agentVersion, "actionGroupId": actionGroupId}
    body = await _body(request, "UpdateAgentActionGroup", path)
    await asyncio.to_thread(agents.group, agentId, DRAFT, actionGroupId)
    payload = await _checked_group(ctx, agents, body)
    done = await asyncio.to_thread(agents.update_group, agentId, actionGroupId, body, payload)
    return json_body({"agentActionGroup": convert.action_group(done)})


async def delete_action_group(ctx: Context, request: Request, agentId: str, agentVersion: str,
                              actionGroupId: str) -> Response:  # fmt: skip
    agents = _agents(ctx, request, write=True)
    path = {"agentId": agentId, "agentVersion": agentVersion, "actionGroupId": actionGroupId}
    await _body(request, "DeleteAgentActionGroup", path)
    await asyncio.to_thread(agents.delete_group, agentId, actionGroupId, _skip_check(request))
    return Response(status_code=204)


# --- knowledge bases ---------------------------------------------------------------------------------------


async def associate_knowledge_base(ctx: Context, request: Request, agentId: str, agentVersion: str) -> Response:
    agents = _agents(ctx, request, write=True)
    body = await _body(request, "AssociateAgentKnowledgeBase", {"agentId": agentId, "agentVersion": agentVersion})
    await asyncio.to_thread(agents.get, agentId)
    if ctx.knowledge is None:
        raise errors.InvalidRequest("This server keeps no knowledge bases.")
    await asyncio.to_thread(ctx.knowledge.catalog.get, body["knowledgeBaseId"])  # an unknown one: 404
    made = await asyncio.to_thread(agents.associate, agentId, body)
    return json_body({"agentKnowledgeBase": convert.knowledge_base(made)})


async def get_agent_knowledge_base(ctx: Context, request: Request, agentId: str, agentVersion: str,
                                   knowledgeBaseId: str) -> Response:  # fmt: skip
    agents = _agents(ctx, request)
    path = {"agentId": agentId, "agentVersion": agentVersion, "knowledgeBaseId": knowledgeBaseId}
    await _body(request, "GetAgentKnowledgeBase", path)
    found = await asyncio.to_thread(agents.link, agentId, agentVersion, knowledgeBaseId)
    return json_body({"agentKnowledgeBase": convert.knowledge_base(found)})


async def list_agent_knowledge_bases(ctx: Context, request: Request, agentId: str, agentVersion: str) -> Response:
    agents = _agents(ctx, request)
    body = await _body(request, "ListAgentKnowledgeBases", {"agentId": agentId, "agentVersion": agentVersion})
    page = await asyncio.to_thread(agents.list_links, agentId, agentVersion, _page_size(body), body.get("nextToken"))
    return _listed(page, "agentKnowledgeBaseSummaries", convert.knowledge_base_summary)


async def update_agent_knowledge_base(ctx: Context, request: Request, agentId: str, agentVersion: str,
                                      knowledgeBaseId: str) -> Response:  # fmt: skip
    agents = _agents(ctx, request, write=True)
    path = {"agentId": agentId, "agentVersion": agentVersion, "knowledgeBaseId": knowledgeBaseId}
    body = await _body(request, "UpdateAgentKnowledgeBase", path)
    done = await asyncio.to_thread(agents.update_link, agentId, knowledgeBaseId, body)
    return json_body({"agentKnowledgeBase": convert.knowledge_base(done)})


async def disassociate_knowledge_base(ctx: Context, request: Request, agentId: str, agentVersion: str,
                                      knowledgeBaseId: str) -> Response:  # fmt: skip
    agents = _agents(ctx, request, write=True)
    path = {"agentId": agentId, "agentVersion": agentVersion, "knowledgeBaseId": knowledgeBaseId}
    await _body(request, "DisassociateAgentKnowledgeBase", path)
    await asyncio.to_thread(agents.disassociate, agentId, knowledgeBaseId)
    return Response(status_code=204)


# --- aliases -----------------------------------------------------------------------------------------------


async def create_alias(ctx: Context, request: Request, agentId: str) -> Response:
    agents = _agents(ctx, request, write=True)
    body = await _body(request, "CreateAgentAlias", {"agentId": agentId})
    made = await asyncio.to_thread(agents.create_alias, agentId, body)
    return json_body({"agentAlias": convert.alias(made, ctx.settings.region)}, status=202)


async def get_alias(ctx: Context, request: Request, agentId: str, agentAliasId: str) -> Response:
    agents = _agents(ctx, request)
    await _body(request, "GetAgentAlias", {"agentId": agentId, "agentAliasId": agentAliasId})
    found = await asyncio.to_thread(agents.alias, agentId, agentAliasId)
    return json_body({"agentAlias": convert.alias(found, ctx.settings.region)})


async def list_aliases(ctx: Context, request: Request, agentId: str) -> Response:
    agents = _agents(ctx, request)
    body = await _body(request, "ListAgentAliases", {"agentId": agentId})
    page = await asyncio.to_thread(agents.list_aliases, agentId, _page_size(body), body.get("nextToken"))
    return _listed(page, "agentAliasSummaries", convert.alias_summary)


async def update_alias(ctx: Context, request: Request, agentId: str, agentAliasId: str) -> Response:
    agents = _agents(ctx, request, write=True)
    body = await _body(request, "UpdateAgentAlias", {"agentId": agentId, "agentAliasId": agentAliasId})
    done = await asyncio.to_thread(agents.update_alias, agentId, agentAliasId, body)
    return json_body({"agentAlias": convert.alias(done, ctx.settings.region)}, status=202)


async def delete_alias(ctx: Context, request: Request, agentId: str, agentAliasId: str) -> Response:
    agents = _agents(ctx, request, write=True)
    await _body(request, "DeleteAgentAlias", {"agentId": agentId, "agentAliasId": agentAliasId})
    gone = await asyncio.to_thread(agents.delete_alias, agentId, agentAliasId)
    return json_body({"agentId": gone.agent_id, "agentAliasId": gone.id, "agentAliasStatus": "DELETING"}, status=202)


_AGENT = "/agents/{agentId}/"
_VERSION = _AGENT + "agentversions/{agentVersion}/"
_GROUP = _VERSION + "actiongroups/{actionGroupId}/"
_KB = _VERSION + "knowledgebases/{knowledgeBaseId}/"
_ALIAS = _AGENT + "agentaliases/{agentAliasId}/"
ROUTES = [
    route("PUT", "/agents/", create_agent, DIALECT),
    route("POST", "/agents/", list_agents, DIALECT),
    route("GET", _AGENT, get_agent, DIALECT),
    route("PUT", _AGENT, update_agent, DIALECT),
    route("DELETE", _AGENT, delete_agent, DIALECT),
    route("POST", _AGENT, prepare_agent, DIALECT),
    route("POST", _AGENT + "agentversions/", list_agent_versions, DIALECT),
    route("GET", _VERSION, get_agent_version, DIALECT),
    route("DELETE", _VERSION, delete_agent_version, DIALECT),
    route("PUT", _VERSION + "actiongroups/", create_action_group, DIALECT),
    route("POST", _VERSION + "actiongroups/", list_action_groups, DIALECT),
    route("GET", _GROUP, get_action_group, DIALECT),
    route("PUT", _GROUP, update_action_group, DIALECT),
    route("DELETE", _GROUP, delete_action_group, DIALECT),
    route("PUT", _VERSION + "knowledgebases/", associate_knowledge_base, DIALECT),
    route("POST", _VERSION + "knowledgebases/", list_agent_knowledge_bases, DIALECT),
    route("GET", _KB, get_agent_knowledge_base, DIALECT),
    route("PUT", _KB, update_agent_knowledge_base, DIALECT),
    route("DELETE", _KB, disassociate_knowledge_base, DIALECT),
    route("PUT", _AGENT + "agentaliases/", create_alias, DIALECT),
    route("POST", _AGENT + "agentaliases/", list_aliases, DIALECT),
    route("GET", _ALIAS, get_alias, DIALECT),
    route("PUT", _ALIAS, update_alias, DIALECT),
    route("DELETE", _ALIAS, delete_alias, DIALECT),
]
