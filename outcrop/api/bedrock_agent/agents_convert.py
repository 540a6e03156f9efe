"""Agents, action groups, knowledge-base links, versions and aliases in bedrock-agent's output shapes (botocore's
Agent, AgentVersion, AgentActionGroup, AgentKnowledgeBase, AgentAlias and their summaries). Pure: values in, wire
dicts out."""

from __future__ import annotations

from typing import Any

from outcrop.agents.catalog import role_arn
from outcrop.agents.resources import DRAFT, ActionGroup, Agent, Alias, KnowledgeBaseLink

_SUMMARY_FIELDS = ("description", "guardrailConfiguration")


def agent(a: Agent, region: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        **a.spec, "agentId": a.id, "agentName": a.name, "agentArn": a.arn(region), "agentStatus": a.status,
        "idleSessionTTLInSeconds": a.spec.get("idleSessionTTLInSeconds", 600), "agentResourceRoleArn": role_arn(a),
        "orchestrationType": a.spec.get("orchestrationType", "DEFAULT"),
        "agentCollaboration": a.spec.get("agentCollaboration", "DISABLED"),
        "createdAt": a.created_at.isoformat(), "updatedAt": a.updated_at.isoformat(),
    }  # fmt: skip
    if a.version == DRAFT:
        out["agentVersion"] = DRAFT
    else:
        out["version"] = a.version
    if a.prepared_at is not None:
        out["preparedAt"] = a.prepared_at.isoformat()
    if a.failure_reasons:
        out["failureReasons"] = list(a.failure_reasons)
    return out


def agent_summary(a: Agent) -> dict[str, Any]:
    out = {"agentId": a.id, "agentName": a.name, "agentStatus": a.status, "updatedAt": a.updated_at.isoformat(),
           "latestAgentVersion": a.latest_version}  # fmt: skip
    return {**out, **{k: a.spec[k] for k in _SUMMARY_FIELDS if k in a.spec}}


def version_summary(a: Agent) -> dict[str, Any]:
    out = {"agentName": a.name, "agentStatus": a.status, "agentVersion": a.version,
           "createdAt": a.created_at.isoformat(), "updatedAt": a.updated_at.isoformat()}  # fmt: skip
    return {**out, **{k: a.spec[k] for k in _SUMMARY_FIELDS if k in a.spec}}


def action_group(g: ActionGroup) -> dict[str, Any]:
    out: dict[str, Any] = {
        "agentId": g.agent_id, "agentVersion": g.version, "actionGroupId": g.id, "actionGroupName": g.name,
        "actionGroupState": g.state, "createdAt": g.created_at.isoformat(), "updatedAt": g.updated_at.isoformat(),
    }  # fmt: skip
    for key, value in g.spec.items():  # (the output shape spells the signature parentActionSignature)
        out["parentActionSignature" if key == "parentActionGroupSignature" else key] = value
    return out


def action_group_summary(g: ActionGroup) -> dict[str, Any]:
    out = {"actionGroupId": g.id, "actionGroupName": g.name, "actionGroupState": g.state,
           "updatedAt": g.updated_at.isoformat()}  # fmt: skip
    if g.spec.get("description"):
        out["description"] = g.spec["description"]
    return out


def knowledge_base(k: KnowledgeBaseLink) -> dict[str, Any]:
    return {"agentId": k.agent_id, "agentVersion": k.version, "knowledgeBaseId": k.knowledge_base_id,
            "description": k.description, "knowledgeBaseState": k.state, "createdAt": k.created_at.isoformat(),
            "updatedAt": k.updated_at.isoformat()}  # fmt: skip


def knowledge_base_summary(k: KnowledgeBaseLink) -> dict[str, Any]:
    return {"knowledgeBaseId": k.knowledge_base_id, "description": k.description, "knowledgeBaseState": k.state,
            "updatedAt": k.updated_at.isoformat()}  # fmt: skip


def alias(a: Alias, region: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "agentId": a.agent_id, "agentAliasId": a.id, "agentAliasName": a.name, "agentAliasArn": a.arn(region),
        "routingConfiguration": list(a.routing), "agentAliasHistoryEvents": list(a.history),
        "agentAliasStatus": a.status, "aliasInvocationState": "ACCEPT_INVOCATIONS",
        "createdAt": a.created_at.isoformat(), "updatedAt": a.updated_at.isoformat(),
    }  # fmt: skip
    if a.description:
        out["description"] = a.description
    return out


def alias_summary(a: Alias) -> dict[str, Any]:
    out: dict[str, Any] = {
        "agentAliasId": a.id, "agentAliasName": a.name, "routingConfiguration": list(a.routing),
        "agentAliasStatus": a.status, "aliasInvocationState": "ACCEPT_INVOCATIONS",
        "createdAt": a.created_at.isoformat(), "updatedAt": a.updated_at.isoformat(),
    }  # fmt: skip
    if a.description:
        out["description"] = a.description
    return out
