"""The agent control plane through boto3's `bedrock-agent` client against a real server: agents created, read,
listed page by page, updated, prepared (NOT_PREPARED -> PREPARING -> PREPARED) and deleted; action groups with
function schemas, OpenAPI schemas (JSON, YAML, an S3 object in a local folder), RETURN_CONTROL and mapped Lambda
executors; knowledge-base associations; aliases and the versions they snapshot; tags; the definition the runtime
reads; and Bedrock's errors (unknown ids, a model not served, conflicts, an incomplete agent)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from outcrop import store
from outcrop.agents.catalog import AgentCatalog
from outcrop.api.app import build_app
from outcrop.config import ModelSpec, Settings
from outcrop.engines.echo import EchoEngine
from outcrop.guardrails.store import GuardrailStore
from outcrop.knowledge.catalog import KnowledgeCatalog
from outcrop.registry import Registry
from tests.api.bedrock_agent.test_knowledge_bases import EMBED, FakeEmbedder, _kb
from tests.conftest import client, serve_app

CHAT = "test.echo-v1:0"
CHAT_ARN = f"arn:aws:bedrock:us-east-1::foundation-model/{CHAT}"
LAMBDA = "arn:aws:lambda:us-east-1:123456789012:function:orders"
INSTRUCTION = "You are a helpful agent that looks up orders and answers questions about them."
OPENAPI = {"openapi": "3.0.0", "info": {"title": "Orders", "version": "1"}, "paths": {"/orders/{id}": {"get": {
    "operationId": "getOrder", "description": "Get an order",
    "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]}}}}  # fmt: skip
YAML = """openapi: 3.0.0
info: {title: Stock, version: '1'}
paths:
  /stock:
    post:
      description: Check stock
      requestBody:
        required: true
        content:
          application/json:
            schema: {type: object, properties: {sku: {type: string}}}
"""
FUNCTIONS = {"functions": [{"name": "get_weather", "description": "Weather in a city",
                            "parameters": {"city": {"type": "string", "required": True}}}]}  # fmt: skip
RETURN = {"customControl": "RETURN_CONTROL"}


@dataclass
class Env:
    agent: Any  # the bedrock-agent client
    catalog: AgentCatalog
    guardrail: str
    kb: str


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = Path(tmp_path_factory.mktemp("agents"))
    (tmp / "batch" / "schemas").mkdir(parents=True)
    (tmp / "batch" / "schemas" / "stock.yaml").write_text(YAML)
    models = (ModelSpec(id=EMBED, kind="embedding", engine="sentence-transformers"),
              ModelSpec(id=CHAT, engine="echo", n_ctx=64))  # fmt: skip
    settings = Settings(config_path=tmp / "c.toml", models=models, builtin_model=False, builtin_embedding_model=False,
                        knowledge_dir=str(tmp / "knowledge"), batch_dir=str(tmp / "batch"),
                        agent_lambda_urls={LAMBDA: "http://127.0.0.1:9/invoke"})  # fmt: skip
    registry = Registry(settings, {EMBED: FakeEmbedder(), CHAT: EchoEngine(context_length=64)})  # type: ignore[dict-item]
    db = store.connect(f"sqlite:///{tmp / 'o.db'}")
    app = build_app(settings, registry, guardrails=GuardrailStore(db), knowledge=KnowledgeCatalog(db))
    assert app.context.agents is not None
    with serve_app(app) as url:
        control = client("bedrock", url)
        guardrail = control.create_guardrail(name="words", blockedInputMessaging="no", blockedOutputsMessaging="no",
                                             wordPolicyConfig={"wordsConfig": [{"text": "frob"}]})  # fmt: skip
        agent = client("bedrock-agent", url)
        kb = agent.create_knowledge_base(**_kb("agent-docs"))["knowledgeBase"]["knowledgeBaseId"]
        yield Env(agent, app.context.agents, guardrail["guardrailId"], kb)


def _code(err: pytest.ExceptionInfo[ClientError]) -> str:
    return str(err.value.response["Error"]["Code"])


def _status(err: pytest.ExceptionInfo[ClientError]) -> int:
    return int(err.value.response["ResponseMetadata"]["HTTPStatusCode"])


def _new(env: Env, **extra: Any) -> str:
    body = {"agentName": f"a-{uuid.uuid4().hex[:8]}", "instruction": INSTRUCTION, "foundationModel": CHAT, **extra}
    return str(env.agent.create_agent(**body)["agent"]["agentId"])


def _group(env: Env, agent_id: str, name: str = "weather", **extra: Any) -> dict[str, Any]:
    body = {"actionGroupName": name, "actionGroupExecutor": RETURN, "functionSchema": FUNCTIONS, **extra}
    return env.agent.create_agent_action_group(agentId=agent_id, agentVersion="DRAFT", **body)["agentActionGroup"]  # type: ignore[no-any-return]


def test_agent_lifecycle(env: Env) -> None:
    a = env.agent
    made = a.create_agent(agentName="orders-agent", instruction=INSTRUCTION, foundationModel=CHAT_ARN,
                          description="Orders", idleSessionTTLInSeconds=900,
                          guardrailConfiguration={"guardrailIdentifier": env.guardrail, "guardrailVersion": "DRAFT"},
                          promptOverrideConfiguration={"promptConfigurations": [{
                              "promptType": "ORCHESTRATION", "promptCreationMode": "OVERRIDDEN",
                              "basePromptTemplate": "$instruction$", "promptState": "ENABLED"}]})["agent"]  # fmt: skip
    agent_id = made["agentId"]
    assert len(agent_id) == 10 and agent_id.isalnum()
    assert made["agentStatus"] == "NOT_PREPARED" and made["agentVersion"] == "DRAFT"
    assert made["agentArn"] == f"arn:aws:bedrock:us-east-1:000000000000:agent/{agent_id}"
    got = a.get_agent(agentId=agent_id)["agent"]
    assert got["foundationModel"] == CHAT_ARN and got["idleSessionTTLInSeconds"] == 900
    assert got["guardrailConfiguration"]["guardrailIdentifier"] == env.guardrail
    assert got["promptOverrideConfiguration"]["promptConfigurations"][0]["basePromptTemplate"] == "$instruction$"
    assert got["createdAt"].tzinfo is not None and "agentResourceRoleArn" in got

    changed = a.update_agent(agentId=agent_id, agentName="orders-agent-2", foundationModel=CHAT,
                             instruction=INSTRUCTION, agentResourceRoleArn="arn:aws:iam::123456789012:role/r")["agent"]  # fmt: skip
    assert changed["agentName"] == "orders-agent-2" and "description" not in changed
    assert changed["agentResourceRoleArn"] == "arn:aws:iam::123456789012:role/r"
    assert any(s["agentId"] == agent_id for s in a.list_agents()["agentSummaries"])

    gone = a.delete_agent(agentId=agent_id)
    assert (gone["agentId"], gone["agentStatus"]) == (agent_id, "DELETING")
    for call in (a.get_agent, a.delete_agent, a.prepare_agent):
        with pytest.raises(ClientError) as err:
            call(agentId=agent_id)
        assert _code(err) == "ResourceNotFoundException" and _status(err) == 404


def test_bad_model_and_guardrail(env: Env) -> None:
    for model in ("no.such-model-v1:0", EMBED):
        with pytest.raises(ClientError) as err:
            _new(env, foundationModel=model)
        assert _code(err) == "ValidationException" and CHAT in str(err.value)
    with pytest.raises(ClientError) as err:
        _new(env, guardrailConfiguration={"guardrailIdentifier": "nosuchguardrail", "guardrailVersion": "DRAFT"})
    assert _code(err) == "ValidationException" and "guardrail" in str(err.value)
    with pytest.raises(ClientError) as err:
        _new(env, orchestrationType="CUSTOM_ORCHESTRATION")
    assert _code(err) == "ValidationException"


def test_names_and_client_tokens(env: Env) -> None:
    a = env.agent
    token = uuid.uuid4().hex + "abcd"
    first = a.create_agent(agentName="tokened", instruction=INSTRUCTION, clientToken=token)["agent"]
    again = a.create_agent(agentName="tokened", instruction=INSTRUCTION, clientToken=token)["agent"]
    assert first["agentId"] == again["agentId"]
    with pytest.raises(ClientError) as err:
        a.create_agent(agentName="tokened-2", instruction=INSTRUCTION, clientToken=token)
    assert _code(err) == "ConflictException" and _status(err) == 409
    with pytest.raises(ClientError) as err:
        a.create_agent(agentName="tokened", instruction=INSTRUCTION)
    assert _code(err) == "ConflictException"


def test_list_agents_in_pages(env: Env) -> None:
    ids = {_new(env) for _ in range(5)}
    seen: list[str] = []
    token: str | None = None
    while True:
        page = env.agent.list_agents(maxResults=2, **({"nextToken": token} if token else {}))
        assert len(page["agentSummaries"]) <= 2
        seen += [s["agentId"] for s in page["agentSummaries"]]
        token = page.get("nextToken")
        if not token:
            break
    assert ids <= set(seen) and len(seen) == len(set(seen))
    with pytest.raises(ClientError) as err:
        env.agent.list_agents(nextToken="garbage")
    assert _code(err) == "ValidationException"


def test_prepare_statuses(env: Env) -> None:
    a = env.agent
    bare = a.create_agent(agentName=f"bare-{uuid.uuid4().hex[:6]}")["agent"]["agentId"]
    with pytest.raises(ClientError) as err:  # no model, no instruction
        a.prepare_agent(agentId=bare)
    assert _code(err) == "ValidationException" and "foundationModel" in str(err.value)
    got = a.get_agent(agentId=bare)["agent"]
    assert got["agentStatus"] == "NOT_PREPARED" and got["failureReasons"]

    agent_id = _new(env)
    _group(env, agent_id)
    done = a.prepare_agent(agentId=agent_id)
    assert done["agentStatus"] == "PREPARING" and done["agentVersion"] == "DRAFT" and done["preparedAt"]
    got = a.get_agent(agentId=agent_id)["agent"]
    assert got["agentStatus"] == "PREPARED" and "preparedAt" in got and "failureReasons" not in got
    _group(env, agent_id, "other")  # a change to the DRAFT: it must be prepared again
    assert a.get_agent(agentId=agent_id)["agent"]["agentStatus"] == "NOT_PREPARED"


def test_action_groups(env: Env) -> None:
    a = env.agent
    agent_id = _new(env)
    made = _group(env, agent_id, description="Weather")
    assert made["actionGroupState"] == "ENABLED" and made["functionSchema"] == FUNCTIONS
    assert made["actionGroupExecutor"] == RETURN and made["agentVersion"] == "DRAFT"
    body = {"actionGroupName": "orders", "actionGroupExecutor": {"lambda": LAMBDA},
            "apiSchema": {"payload": json.dumps(OPENAPI)}}  # fmt: skip
    api = a.create_agent_action_group(agentId=agent_id, agentVersion="DRAFT", **body)["agentActionGroup"]
    assert api["actionGroupExecutor"]["lambda"] == LAMBDA
    stock = a.create_agent_action_group(agentId=agent_id, agentVersion="DRAFT", actionGroupName="stock",
                                        actionGroupExecutor=RETURN, apiSchema={"payload": YAML})["agentActionGroup"]  # fmt: skip
    s3 = a.create_agent_action_group(agentId=agent_id, agentVersion="DRAFT", actionGroupName="stock-s3",
                                     actionGroupExecutor=RETURN,
                                     apiSchema={"s3": {"s3BucketName": "schemas", "s3ObjectKey": "stock.yaml"}})  # fmt: skip
    assert s3["agentActionGroup"]["apiSchema"]["s3"]["s3ObjectKey"] == "stock.yaml"
    ask = a.create_agent_action_group(agentId=agent_id, agentVersion="DRAFT", actionGroupName="UserInputAction",
                                      parentActionGroupSignature="AMAZON.UserInput")["agentActionGroup"]  # fmt: skip
    assert ask["parentActionSignature"] == "AMAZON.UserInput"

    got = a.get_agent_action_group(agentId=agent_id, agentVersion="DRAFT", actionGroupId=stock["actionGroupId"])
    assert got["agentActionGroup"]["apiSchema"]["payload"] == YAML
    pages, token = [], None
    while True:
        page = a.list_agent_action_groups(agentId=agent_id, agentVersion="DRAFT", maxResults=2,
                                          **({"nextToken": token} if token else {}))  # fmt: skip
        pages.append([g["actionGroupName"] for g in page["actionGroupSummaries"]])
        token = page.get("nextToken")
        if not token:
            break
    assert [n for p in pages for n in p] == ["weather", "orders", "stock", "stock-s3", "UserInputAction"] and len(
        pages
    ) == 3

    changed = a.update_agent_action_group(agentId=agent_id, agentVersion="DRAFT", actionGroupId=made["actionGroupId"],
                                          actionGroupName="weather", actionGroupExecutor=RETURN,
                                          functionSchema=FUNCTIONS, actionGroupState="DISABLED")["agentActionGroup"]  # fmt: skip
    assert changed["actionGroupState"] == "DISABLED"
    with pytest.raises(ClientError) as err:  # still ENABLED
        a.delete_agent_action_group(agentId=agent_id, agentVersion="DRAFT", actionGroupId=stock["actionGroupId"])
    assert _code(err) == "ConflictException"
    a.delete_agent_action_group(agentId=agent_id, agentVersion="DRAFT", actionGroupId=made["actionGroupId"])
    a.delete_agent_action_group(agentId=agent_id, agentVersion="DRAFT", actionGroupId=stock["actionGroupId"],
                                skipResourceInUseCheck=True)  # fmt: skip
    with pytest.raises(ClientError) as err:
        a.get_agent_action_group(agentId=agent_id, agentVersion="DRAFT", actionGroupId=made["actionGroupId"])
    assert _code(err) == "ResourceNotFoundException"
    a.prepare_agent(agentId=agent_id)
    assert a.get_agent(agentId=agent_id)["agent"]["agentStatus"] == "PREPARED"


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"apiSchema": {"payload": "openapi: [unclosed"}}, "not valid JSON or YAML"),
        ({"apiSchema": {"payload": json.dumps({"swagger": "2.0", "paths": {}})}}, "OpenAPI 3"),
        ({"apiSchema": {"s3": {"s3BucketName": "schemas", "s3ObjectKey": "missing.yaml"}}}, "could not be read"),
        ({"functionSchema": FUNCTIONS, "actionGroupExecutor": {"lambda": LAMBDA + "-unmapped"}}, "agent_lambda_urls"),
        ({"functionSchema": FUNCTIONS, "apiSchema": {"payload": json.dumps(OPENAPI)}}, "exactly one"),
        ({"functionSchema": FUNCTIONS, "actionGroupExecutor": None}, "actionGroupExecutor"),
        ({"parentActionGroupSignature": "AMAZON.CodeInterpreter"}, "not supported"),
    ],
)
def test_action_group_refusals(env: Env, extra: dict[str, Any], words: str) -> None:
    agent_id = _new(env)
    body = {
        k: v for k, v in {"actionGroupName": "bad", "actionGroupExecutor": RETURN, **extra}.items() if v is not None
    }
    with pytest.raises(ClientError) as err:
        env.agent.create_agent_action_group(agentId=agent_id, agentVersion="DRAFT", **body)
    assert _code(err) == "ValidationException" and words in str(err.value)


def test_knowledge_base_associations(env: Env) -> None:
    a = env.agent
    agent_id = _new(env)
    with pytest.raises(ClientError) as err:
        a.associate_agent_knowledge_base(agentId=agent_id, agentVersion="DRAFT", knowledgeBaseId="NOSUCHKB00",
                                         description="Missing")  # fmt: skip
    assert _code(err) == "ResourceNotFoundException"
    made = a.associate_agent_knowledge_base(agentId=agent_id, agentVersion="DRAFT", knowledgeBaseId=env.kb,
                                            description="Product docs")["agentKnowledgeBase"]  # fmt: skip
    assert made["knowledgeBaseState"] == "ENABLED" and made["description"] == "Product docs"
    with pytest.raises(ClientError) as err:
        a.associate_agent_knowledge_base(agentId=agent_id, agentVersion="DRAFT", knowledgeBaseId=env.kb,
                                         description="Again")  # fmt: skip
    assert _code(err) == "ConflictException"
    changed = a.update_agent_knowledge_base(agentId=agent_id, agentVersion="DRAFT", knowledgeBaseId=env.kb,
                                            knowledgeBaseState="DISABLED")["agentKnowledgeBase"]  # fmt: skip
    assert changed["knowledgeBaseState"] == "DISABLED" and changed["description"] == "Product docs"
    listed = a.list_agent_knowledge_bases(agentId=agent_id, agentVersion="DRAFT")["agentKnowledgeBaseSummaries"]
    assert [k["knowledgeBaseId"] for k in listed] == [env.kb]
    got = a.get_agent_knowledge_base(agentId=agent_id, agentVersion="DRAFT", knowledgeBaseId=env.kb)
    assert got["agentKnowledgeBase"]["knowledgeBaseState"] == "DISABLED"
    a.disassociate_agent_knowledge_base(agentId=agent_id, agentVersion="DRAFT", knowledgeBaseId=env.kb)
    assert a.list_agent_knowledge_bases(agentId=agent_id, agentVersion="DRAFT")["agentKnowledgeBaseSummaries"] == []
    with pytest.raises(ClientError) as err:
        a.get_agent_knowledge_base(agentId=agent_id, agentVersion="DRAFT", knowledgeBaseId=env.kb)
    assert _code(err) == "ResourceNotFoundException"


def test_versions_and_aliases(env: Env) -> None:
    a = env.agent
    agent_id = _new(env)
    _group(env, agent_id)
    a.associate_agent_knowledge_base(agentId=agent_id, agentVersion="DRAFT", knowledgeBaseId=env.kb,
                                     description="Product docs")  # fmt: skip
    with pytest.raises(ClientError) as err:  # not prepared yet: nothing to make a version of
        a.create_agent_alias(agentId=agent_id, agentAliasName="live")
    assert _code(err) == "ValidationException" and "prepare" in str(err.value)
    a.prepare_agent(agentId=agent_id)

    live = a.create_agent_alias(agentId=agent_id, agentAliasName="live", description="Live")["agentAlias"]
    assert live["routingConfiguration"] == [{"agentVersion": "1"}] and live["agentAliasStatus"] == "PREPARED"
    assert (
        live["agentAliasArn"] == f"arn:aws:bedrock:us-east-1:000000000000:agent-alias/{agent_id}/{live['agentAliasId']}"
    )
    v1 = a.get_agent_version(agentId=agent_id, agentVersion="1")["agentVersion"]
    assert v1["version"] == "1" and v1["instruction"] == INSTRUCTION and v1["agentStatus"] == "PREPARED"
    groups = a.list_agent_action_groups(agentId=agent_id, agentVersion="1")["actionGroupSummaries"]
    assert [g["actionGroupName"] for g in groups] == ["weather"]
    kbs = a.list_agent_knowledge_bases(agentId=agent_id, agentVersion="1")["agentKnowledgeBaseSummaries"]
    assert [k["knowledgeBaseId"] for k in kbs] == [env.kb]
    assert a.get_agent(agentId=agent_id)["agent"]["agentStatus"] == "PREPARED"

    pinned = a.create_agent_alias(agentId=agent_id, agentAliasName="pinned",
                                  routingConfiguration=[{"agentVersion": "1"}])["agentAlias"]  # fmt: skip
    assert pinned["routingConfiguration"] == [{"agentVersion": "1"}]
    for routing in ([{"agentVersion": "99"}], [{"agentVersion": "DRAFT"}]):
        with pytest.raises(ClientError) as err:
            a.create_agent_alias(agentId=agent_id, agentAliasName="bad", routingConfiguration=routing)
        assert _code(err) == "ValidationException"
    with pytest.raises(ClientError) as err:
        a.create_agent_alias(agentId=agent_id, agentAliasName="live")
    assert _code(err) == "ConflictException"

    test = a.get_agent_alias(agentId=agent_id, agentAliasId="TSTALIASID")["agentAlias"]
    assert test["routingConfiguration"] == [{"agentVersion": "DRAFT"}] and test["agentAliasName"] == "AgentTestAlias"
    aliases = a.list_agent_aliases(agentId=agent_id)["agentAliasSummaries"]
    assert [x["agentAliasId"] for x in aliases] == ["TSTALIASID", live["agentAliasId"], pinned["agentAliasId"]]
    first = a.list_agent_aliases(agentId=agent_id, maxResults=1)
    assert [x["agentAliasId"] for x in first["agentAliasSummaries"]] == ["TSTALIASID"]
    rest = a.list_agent_aliases(agentId=agent_id, maxResults=5, nextToken=first["nextToken"])["agentAliasSummaries"]
    assert [x["agentAliasId"] for x in rest] == [live["agentAliasId"], pinned["agentAliasId"]]
    with pytest.raises(ClientError) as err:
        a.delete_agent_alias(agentId=agent_id, agentAliasId="TSTALIASID")
    assert _code(err) == "ValidationException"

    moved = a.update_agent_alias(agentId=agent_id, agentAliasId=live["agentAliasId"], agentAliasName="live")
    assert moved["agentAlias"]["routingConfiguration"] == [{"agentVersion": "2"}]
    history = moved["agentAlias"]["agentAliasHistoryEvents"]
    assert history[0]["routingConfiguration"] == [{"agentVersion": "2"}] and "endDate" in history[1]
    versions = a.list_agent_versions(agentId=agent_id)["agentVersionSummaries"]
    assert [v["agentVersion"] for v in versions] == ["DRAFT", "1", "2"]
    assert a.get_agent(agentId=agent_id)["agent"]["agentVersion"] == "DRAFT"
    assert next(s for s in a.list_agents()["agentSummaries"] if s["agentId"] == agent_id)["latestAgentVersion"] == "2"

    with pytest.raises(ClientError) as err:  # the pinned alias routes to it
        a.delete_agent_version(agentId=agent_id, agentVersion="1")
    assert _code(err) == "ConflictException"
    gone = a.delete_agent_alias(agentId=agent_id, agentAliasId=pinned["agentAliasId"])
    assert gone["agentAliasStatus"] == "DELETING"
    assert a.delete_agent_version(agentId=agent_id, agentVersion="1")["agentStatus"] == "DELETING"
    for call in (lambda: a.get_agent_version(agentId=agent_id, agentVersion="1"),
                 lambda: a.get_agent_alias(agentId=agent_id, agentAliasId=pinned["agentAliasId"])):  # fmt: skip
        with pytest.raises(ClientError) as err:
            call()
        assert _code(err) == "ResourceNotFoundException"


def test_tags(env: Env) -> None:
    a = env.agent
    agent_id = _new(env, tags={"team": "orders"})
    arn = a.get_agent(agentId=agent_id)["agent"]["agentArn"]
    assert a.list_tags_for_resource(resourceArn=arn)["tags"] == {"team": "orders"}
    a.tag_resource(resourceArn=arn, tags={"env": "test"})
    a.untag_resource(resourceArn=arn, tagKeys=["team"])
    assert a.list_tags_for_resource(resourceArn=arn)["tags"] == {"env": "test"}
    a.prepare_agent(agentId=agent_id)
    alias = a.create_agent_alias(agentId=agent_id, agentAliasName="tagged", tags={"stage": "prod"})["agentAlias"]
    assert a.list_tags_for_resource(resourceArn=alias["agentAliasArn"])["tags"] == {"stage": "prod"}
    for bad in (arn.replace("000000000000", "123456789012"), arn.replace(agent_id, "NOSUCHAGNT")):
        with pytest.raises(ClientError) as err:
            a.list_tags_for_resource(resourceArn=bad)
        assert _code(err) == "ResourceNotFoundException"


def test_definition_for_the_runtime(env: Env) -> None:
    a = env.agent
    agent_id = _new(env, idleSessionTTLInSeconds=120, memoryConfiguration={"enabledMemoryTypes": ["SESSION_SUMMARY"]},
                    guardrailConfiguration={"guardrailIdentifier": env.guardrail, "guardrailVersion": "DRAFT"})  # fmt: skip
    _group(env, agent_id)
    a.create_agent_action_group(agentId=agent_id, agentVersion="DRAFT", actionGroupName="stock",
                                actionGroupExecutor={"lambda": LAMBDA},
                                apiSchema={"s3": {"s3BucketName": "schemas", "s3ObjectKey": "stock.yaml"}})  # fmt: skip
    a.associate_agent_knowledge_base(agentId=agent_id, agentVersion="DRAFT", knowledgeBaseId=env.kb,
                                     description="Product docs")  # fmt: skip
    with pytest.raises(Exception) as never:  # never prepared: it cannot be invoked
        env.catalog.definition(agent_id, "TSTALIASID")
    assert "PrepareAgent" in str(never.value)
    a.prepare_agent(agentId=agent_id)
    alias = a.create_agent_alias(agentId=agent_id, agentAliasName="live")["agentAlias"]["agentAliasId"]
    for alias_id, version in (("TSTALIASID", "DRAFT"), (alias, "1")):
        d = env.catalog.definition(agent_id, alias_id)
        assert (d.agent_id, d.alias_id, d.version, d.foundation_model) == (agent_id, alias_id, version, CHAT)
        assert d.instruction == INSTRUCTION and d.idle_session_ttl == 120 and d.memory_enabled
        assert d.guardrail is not None and d.guardrail.identifier == env.guardrail
        weather, stock = d.action_groups
        assert weather.executor.kind == "RETURN_CONTROL" and weather.functions[0].name == "get_weather"
        assert weather.functions[0].parameters[0].required
        assert stock.executor.lambda_url == "http://127.0.0.1:9/invoke"
        assert stock.operations[0].path == "/stock" and stock.operations[0].method == "POST"
        assert [k.knowledge_base_id for k in d.knowledge_bases] == [env.kb]
    with pytest.raises(Exception) as unknown:
        env.catalog.definition(agent_id, "NOSUCHALIS")
    assert "not found" in str(unknown.value)
