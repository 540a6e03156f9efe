"""InvokeInlineAgent and InvokeAgent through boto3's bedrock-agent-runtime client against a real server. A scripted
model plays the agent (a tool call, then, once it has the tool's result, the answer), so the loop is checked
exactly: returnControl and its continuation, a knowledge-base search with the citation of the passage used,
trace events and their order, sessions across turns, the iteration bound, guardrails, bad ids. One turn runs on
the built-in llama.cpp model."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError, EventStreamError

from outcrop.api.bedrock_agent_runtime.agent_routes import runtime
from outcrop.conversation import ChatRequest, ToolResult
from outcrop.models import BUILTIN_MODEL_ID
from tests.api.bedrock_agent_runtime.conftest import BLOCKED_IN, SCRIPTED, Env

ORDERS = {
    "actionGroupName": "orders",
    "description": "Look up orders",
    "actionGroupExecutor": {"customControl": "RETURN_CONTROL"},
    "functionSchema": {"functions": [{"name": "get_status", "description": "The status of an order",
                                      "parameters": {"orderId": {"type": "string", "required": True,
                                                                 "description": "the order's id"}}}]},
}  # fmt: skip
PRICES = [
    "The Zephyr 3000 costs 199 dollars and comes with a two year warranty.",
    "Tomato plants need six hours of sunlight a day.",
]


@pytest.fixture(autouse=True)
def _reset(env: Env) -> None:
    env.engine.script = None
    env.engine.requests.clear()


@pytest.fixture(scope="module")
def kb(env: Env) -> str:
    kb_id = env.knowledge_base("agent-tests")
    env.add(kb_id, "prices", PRICES)
    return kb_id


def _call(name: str, **arguments: Any) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def _results(r: ChatRequest) -> list[str]:
    """The tool results the model was given in the last message."""
    last = r.messages[-1]
    return [p.content[0].text for p in last.parts if isinstance(p, ToolResult)]  # type: ignore[union-attr]


def _invoke(env: Env, session: str, **kw: Any) -> list[dict[str, Any]]:
    args: dict[str, Any] = {"foundationModel": SCRIPTED, "instruction": "You help the customers of a hardware shop with their orders.",
                            "actionGroups": [ORDERS], **kw}  # fmt: skip
    out = env.runtime.invoke_inline_agent(sessionId=session, **args)
    assert out["sessionId"] == session
    return list(out["completion"])


def _text(events: list[dict[str, Any]]) -> str:
    return "".join(e["chunk"]["bytes"].decode() for e in events if "chunk" in e)


def _order_script(r: ChatRequest) -> str:
    results = _results(r)
    return (
        f"Order A1 is {results[0]}." if results else "Let me look that up. " + _call("orders__get_status", orderId="A1")
    )


def test_return_control_then_results_then_answer(env: Env) -> None:
    env.engine.script = _order_script
    session = str(uuid.uuid4())
    events = _invoke(env, session, inputText="Where is my order A1?")
    assert [next(iter(e)) for e in events] == ["returnControl"]
    rc = events[0]["returnControl"]
    assert rc["invocationInputs"] == [{"functionInvocationInput": {
        "actionGroup": "orders", "function": "get_status", "actionInvocationType": "RESULT",
        "parameters": [{"name": "orderId", "type": "string", "value": "A1"}]}}]  # fmt: skip
    tools = env.engine.requests[0].tools
    assert [t.name for t in tools] == ["orders__get_status"] and tools[0].input_schema["required"] == ["orderId"]
    result = {"functionResult": {"actionGroup": "orders", "function": "get_status",
                                 "responseBody": {"TEXT": {"body": "shipped"}}}}  # fmt: skip
    events = _invoke(env, session, inlineSessionState={"invocationId": rc["invocationId"],
                                                       "returnControlInvocationResults": [result]})  # fmt: skip
    assert _text(events) == "Order A1 is shipped."
    last = env.engine.requests[-1]
    assert _results(last) == ["shipped"]
    assert [m.role for m in last.messages] == ["user", "assistant", "user"]  # question, tool call, result
    assert last.messages[0].text == "Where is my order A1?"


def test_trace_events_present_and_ordered(env: Env) -> None:
    env.engine.script = _order_script
    session = str(uuid.uuid4())
    events = _invoke(env, session, inputText="Where is my order A1?", enableTrace=True)
    steps = [next(iter(e["trace"]["trace"]["orchestrationTrace"])) for e in events if "trace" in e]
    assert steps == ["modelInvocationInput", "modelInvocationOutput", "rationale", "invocationInput"]
    assert next(iter(events[-1])) == "returnControl"
    traces = [e["trace"] for e in events if "trace" in e]
    assert all(t["sessionId"] == session for t in traces)
    orch = [t["trace"]["orchestrationTrace"] for t in traces]
    assert orch[2]["rationale"]["text"] == "Let me look that up."
    assert orch[3]["invocationInput"]["actionGroupInvocationInput"]["function"] == "get_status"
    assert orch[3]["invocationInput"]["actionGroupInvocationInput"]["executionType"] == "RETURN_CONTROL"
    assert len({next(iter(o.values()))["traceId"] for o in orch}) == 1  # one orchestration step
    rc = events[-1]["returnControl"]
    result = {"functionResult": {"actionGroup": "orders", "function": "get_status",
                                 "responseBody": {"TEXT": {"body": "delivered"}}}}  # fmt: skip
    events = _invoke(env, session, enableTrace=True, inlineSessionState={
        "invocationId": rc["invocationId"], "returnControlInvocationResults": [result]})  # fmt: skip
    kinds = [next(iter(e["trace"]["trace"]["orchestrationTrace"])) if "trace" in e else next(iter(e)) for e in events]
    assert kinds == ["modelInvocationInput", "modelInvocationOutput", "observation", "chunk"]
    observation = events[2]["trace"]["trace"]["orchestrationTrace"]["observation"]
    assert observation["type"] == "FINISH" and observation["finalResponse"]["text"] == "Order A1 is delivered."


def test_knowledge_base_answer_with_citation(env: Env, kb: str) -> None:
    def script(r: ChatRequest) -> str:
        results = _results(r)
        if not results:
            return _call(f"knowledge_base__{kb}", searchQuery="Zephyr 3000 price")
        n = re.search(r"\[(\d+)\] The Zephyr 3000 costs", results[0])
        assert n is not None
        return f"The Zephyr 3000 costs 199 dollars [{n.group(1)}]."

    env.engine.script = script
    events = _invoke(env, str(uuid.uuid4()), inputText="How much is the Zephyr?", actionGroups=[], enableTrace=True,
                     knowledgeBases=[{"knowledgeBaseId": kb, "description": "product facts",
                                      "retrievalConfiguration": {"vectorSearchConfiguration": {"numberOfResults": 2}}}])  # fmt: skip
    chunk = next(e["chunk"] for e in events if "chunk" in e)
    text = chunk["bytes"].decode()
    assert text == "The Zephyr 3000 costs 199 dollars."
    (citation,) = chunk["attribution"]["citations"]
    part = citation["generatedResponsePart"]["textResponsePart"]
    assert text[part["span"]["start"] : part["span"]["end"] + 1] == part["text"] == text
    assert [r["content"]["text"] for r in citation["retrievedReferences"]] == [PRICES[0]]
    orch = [e["trace"]["trace"]["orchestrationTrace"] for e in events if "trace" in e]
    lookup = orch[2]["invocationInput"]
    assert lookup["invocationType"] == "KNOWLEDGE_BASE" and lookup["knowledgeBaseLookupInput"]["knowledgeBaseId"] == kb
    found = orch[3]["observation"]
    assert found["type"] == "KNOWLEDGE_BASE" and len(found["knowledgeBaseLookupOutput"]["retrievedReferences"]) == 2
    assert [next(iter(o)) for o in orch][-1] == "observation" and orch[-1]["observation"]["type"] == "FINISH"


def test_session_continues_across_turns_and_ends(env: Env) -> None:
    env.engine.script = lambda r: f"You said: {r.messages[-1].text}"
    session = str(uuid.uuid4())
    assert _text(_invoke(env, session, inputText="hello")) == "You said: hello"
    attrs = {"sessionAttributes": {"tier": "gold"}, "promptSessionAttributes": {"today": "Monday"}}
    assert _text(_invoke(env, session, inputText="again", inlineSessionState=attrs)) == "You said: again"
    last = env.engine.requests[-1]
    assert [m.text for m in last.messages] == ["hello", "You said: hello", "again"]
    assert "today: Monday" in last.system
    _invoke(env, session, inputText="bye", endSession=True)
    _invoke(env, session, inputText="new start")
    assert [m.text for m in env.engine.requests[-1].messages] == ["new start"]


def test_max_iterations_bound(env: Env, kb: str) -> None:
    agents = runtime(env.app.context)
    env.engine.script = lambda r: _call(f"knowledge_base__{kb}", searchQuery="price")
    before = agents.max_iterations
    agents.max_iterations = 3
    try:
        with pytest.raises(EventStreamError) as err:
            _invoke(env, str(uuid.uuid4()), inputText="loop forever", enableTrace=True,
                    knowledgeBases=[{"knowledgeBaseId": kb, "description": "facts"}])  # fmt: skip
    finally:
        agents.max_iterations = before
    assert err.value.response["Error"]["Code"] == "dependencyFailedException"
    assert "limit of 3 model calls" in err.value.response["Error"]["Message"]
    assert len(env.engine.requests) == 3


def test_guardrail_on_input(env: Env) -> None:
    env.engine.script = lambda r: "should not run"
    guard = {"guardrailIdentifier": env.guardrails["words"], "guardrailVersion": "DRAFT"}
    events = _invoke(env, str(uuid.uuid4()), inputText="Tell me about the frobnicator", guardrailConfiguration=guard,
                     enableTrace=True)  # fmt: skip
    assert _text(events) == BLOCKED_IN
    assert env.engine.requests == []
    assert any("guardrailTrace" in e["trace"]["trace"] for e in events if "trace" in e)


def test_bad_requests(env: Env) -> None:
    session = str(uuid.uuid4())
    result = {"functionResult": {"actionGroup": "orders", "function": "get_status",
                                 "responseBody": {"TEXT": {"body": "x"}}}}  # fmt: skip
    with pytest.raises(ClientError) as err:  # no returnControl pending
        _invoke(env, session, inlineSessionState={"returnControlInvocationResults": [result]})
    assert err.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as err:
        _invoke(env, session, inputText="hi", foundationModel="no.such-model-v1:0")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    env.engine.script = _order_script
    rc = _invoke(env, session, inputText="Where is A1?")[0]["returnControl"]
    with pytest.raises(ClientError) as err:  # another invocation's id
        _invoke(env, session, inlineSessionState={"invocationId": "nope", "returnControlInvocationResults": [result]})
    assert err.value.response["Error"]["Code"] == "ValidationException" and rc["invocationId"] in str(err.value)
    with pytest.raises(ClientError) as err:  # an InvokeAgent of an agent that does not exist
        env.runtime.invoke_agent(agentId="AAAAAAAAAA", agentAliasId="TSTALIASID", sessionId=session, inputText="hi")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_turn_on_the_built_in_model(env: Env) -> None:
    events = _invoke(env, str(uuid.uuid4()), inputText="Where is my order A1?", foundationModel=BUILTIN_MODEL_ID,
                     promptOverrideConfiguration={"promptConfigurations": [{
                         "promptType": "ORCHESTRATION", "inferenceConfiguration": {"maximumLength": 48}}]})  # fmt: skip
    kinds = {next(iter(e)) for e in events}
    assert kinds & {"chunk", "returnControl"}


def _stored_agent(env: Env, kb: str, prepare: bool = True) -> str:
    agent = env.agent.create_agent(agentName=f"shop-{uuid.uuid4().hex[:8]}", foundationModel=SCRIPTED,
                                   instruction="You help the customers of a hardware shop with their orders.",
                                   agentResourceRoleArn="arn:aws:iam::123456789012:role/agent")["agent"]  # fmt: skip
    agent_id = str(agent["agentId"])
    env.agent.create_agent_action_group(agentId=agent_id, agentVersion="DRAFT", **ORDERS)
    env.agent.associate_agent_knowledge_base(agentId=agent_id, agentVersion="DRAFT", knowledgeBaseId=kb,
                                             description="product facts")  # fmt: skip
    if prepare:
        assert env.agent.prepare_agent(agentId=agent_id)["agentStatus"] in ("PREPARING", "PREPARED")
    return agent_id


def test_invoke_agent_on_a_stored_prepared_agent_through_its_alias(env: Env, kb: str) -> None:
    """The agent defined through bedrock-agent, prepared, given an alias (a numbered version): InvokeAgent by
    TSTALIASID and by the alias runs its action group to returnControl and continues with the results."""
    agent_id = _stored_agent(env, kb)
    alias = env.agent.create_agent_alias(agentId=agent_id, agentAliasName="live")["agentAlias"]["agentAliasId"]
    env.engine.script = _order_script
    for alias_id in ("TSTALIASID", alias):
        session = str(uuid.uuid4())
        out = env.runtime.invoke_agent(agentId=agent_id, agentAliasId=alias_id, sessionId=session,
                                       inputText="Where is my order A1?")  # fmt: skip
        events = list(out["completion"])
        assert [next(iter(e)) for e in events] == ["returnControl"], events
        rc = events[0]["returnControl"]
        assert rc["invocationInputs"][0]["functionInvocationInput"]["function"] == "get_status"
        tools = [t.name for t in env.engine.requests[-1].tools]
        assert "orders__get_status" in tools and f"knowledge_base__{kb}" in tools
        result = {"functionResult": {"actionGroup": "orders", "function": "get_status",
                                     "responseBody": {"TEXT": {"body": "shipped"}}}}  # fmt: skip
        out = env.runtime.invoke_agent(agentId=agent_id, agentAliasId=alias_id, sessionId=session, sessionState={
            "invocationId": rc["invocationId"], "returnControlInvocationResults": [result]})  # fmt: skip
        assert _text(list(out["completion"])) == "Order A1 is shipped."


def test_a_question_needing_the_knowledge_base_and_a_returned_function(env: Env, kb: str) -> None:
    """One question needing both: the stored agent searches its knowledge base, then hands a function call back
    (returnControl); the caller's result continues the same plan, and the answer cites the passage found before
    control went back."""
    agent_id = _stored_agent(env, kb)

    def script(r: ChatRequest) -> str:
        results = _results(r)
        if not results:
            return _call(f"knowledge_base__{kb}", searchQuery="Zephyr 3000 price")
        if "Zephyr 3000 costs" in results[0]:
            return _call("orders__get_status", orderId="A1")
        n = re.search(r"\[(\d+)\] The Zephyr 3000 costs", str(r.messages))  # the passage found before control went back
        assert n is not None
        return f"The Zephyr 3000 costs 199 dollars [{n.group(1)}]. Order A1 is {results[0]}."

    env.engine.script = script
    session = str(uuid.uuid4())
    out = env.runtime.invoke_agent(agentId=agent_id, agentAliasId="TSTALIASID", sessionId=session, enableTrace=True,
                                   inputText="How much is the Zephyr, and where is my order A1?")  # fmt: skip
    events = list(out["completion"])
    assert next(iter(events[-1])) == "returnControl", events
    rc = events[-1]["returnControl"]
    assert rc["invocationInputs"][0]["functionInvocationInput"]["parameters"] == [
        {"name": "orderId", "type": "string", "value": "A1"}]  # fmt: skip
    orch = [e["trace"]["trace"]["orchestrationTrace"] for e in events if "trace" in e]
    assert any(o.get("invocationInput", {}).get("invocationType") == "KNOWLEDGE_BASE" for o in orch)
    result = {"functionResult": {"actionGroup": "orders", "function": "get_status",
                                 "responseBody": {"TEXT": {"body": "shipped"}}}}  # fmt: skip
    out = env.runtime.invoke_agent(agentId=agent_id, agentAliasId="TSTALIASID", sessionId=session, sessionState={
        "invocationId": rc["invocationId"], "returnControlInvocationResults": [result]})  # fmt: skip
    events = list(out["completion"])
    chunk = next(e["chunk"] for e in events if "chunk" in e)
    assert chunk["bytes"].decode() == "The Zephyr 3000 costs 199 dollars. Order A1 is shipped."
    cited, uncited = chunk["attribution"]["citations"]  # each sentence a part, as Bedrock answers
    assert cited["generatedResponsePart"]["textResponsePart"]["text"] == "The Zephyr 3000 costs 199 dollars."
    assert [r["content"]["text"] for r in cited["retrievedReferences"]] == [PRICES[0]]
    assert uncited["generatedResponsePart"]["textResponsePart"]["text"] == "Order A1 is shipped."
    assert uncited["retrievedReferences"] == []
    # the model saw the knowledge base's passage and the caller's result in the continued plan
    seen = str(env.engine.requests[-1].messages)
    assert "Zephyr 3000 costs" in seen and "shipped" in seen


def test_the_test_alias_serves_the_draft_as_last_prepared(env: Env, kb: str) -> None:
    """As on Bedrock, changes to the DRAFT reach TSTALIASID only once the agent is prepared again: an updated
    instruction and a new action group are not served while the agent is NOT_PREPARED, and are after PrepareAgent.
    The copy kept for the test alias is never listed as a version."""
    agent_id = _stored_agent(env, kb)
    env.engine.script = lambda r: "Hello."

    def served() -> tuple[str, list[str]]:
        out = env.runtime.invoke_agent(agentId=agent_id, agentAliasId="TSTALIASID", sessionId=str(uuid.uuid4()),
                                       inputText="hi")  # fmt: skip
        assert _text(list(out["completion"])) == "Hello."
        request = env.engine.requests[-1]
        return request.system, [t.name for t in request.tools]

    system, tools = served()
    assert "hardware shop" in system and "orders__get_status" in tools
    env.agent.update_agent(agentId=agent_id, agentName=f"garden-{uuid.uuid4().hex[:8]}", foundationModel=SCRIPTED,
                           instruction="You help the customers of a garden centre with their plants.",
                           agentResourceRoleArn="arn:aws:iam::123456789012:role/agent")  # fmt: skip
    env.agent.create_agent_action_group(
        agentId=agent_id, agentVersion="DRAFT", **{**ORDERS, "actionGroupName": "plants"}
    )
    assert env.agent.get_agent(agentId=agent_id)["agent"]["agentStatus"] == "NOT_PREPARED"
    system, tools = served()
    assert "hardware shop" in system and "garden centre" not in system
    assert "plants__get_status" not in tools and "orders__get_status" in tools
    env.agent.prepare_agent(agentId=agent_id)
    system, tools = served()
    assert "garden centre" in system and "hardware shop" not in system
    assert {"plants__get_status", "orders__get_status"} <= set(tools)
    versions = env.agent.list_agent_versions(agentId=agent_id)["agentVersionSummaries"]
    assert [v["agentVersion"] for v in versions] == ["DRAFT"]
    with pytest.raises(ClientError) as err:
        env.agent.get_agent_version(agentId=agent_id, agentVersion="PREP")
    assert err.value.response["Error"]["Code"] in ("ResourceNotFoundException", "ValidationException")
    alias = env.agent.create_agent_alias(agentId=agent_id, agentAliasName="now")["agentAlias"]
    assert alias["routingConfiguration"][0]["agentVersion"] == "1"  # numbering unaffected by the kept copy


def test_invoke_agent_refuses_an_unprepared_agent_and_unknown_alias(env: Env, kb: str) -> None:
    agent_id = _stored_agent(env, kb, prepare=False)
    with pytest.raises(ClientError) as err:
        list(env.runtime.invoke_agent(agentId=agent_id, agentAliasId="TSTALIASID", sessionId=str(uuid.uuid4()),
                                      inputText="hi")["completion"])  # fmt: skip
    assert err.value.response["Error"]["Code"] in ("ValidationException", "ConflictException"), err.value.response
    with pytest.raises(ClientError) as err:
        list(env.runtime.invoke_agent(agentId=agent_id, agentAliasId="NOSUCHALIA", sessionId=str(uuid.uuid4()),
                                      inputText="hi")["completion"])  # fmt: skip
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_result_with_response_state_failure_fails_the_turn(env: Env) -> None:
    """As on Bedrock: responseState FAILURE in returnControlInvocationResults is a DependencyFailedException (after
    a failure trace); the model is not asked again."""
    env.engine.script = _order_script
    session = str(uuid.uuid4())
    rc = _invoke(env, session, inputText="Where is my order A1?")[0]["returnControl"]
    result = {"functionResult": {"actionGroup": "orders", "function": "get_status", "responseState": "FAILURE",
                                 "responseBody": {"TEXT": {"body": "the orders database is down"}}}}  # fmt: skip
    out = env.runtime.invoke_inline_agent(sessionId=session, foundationModel=SCRIPTED, actionGroups=[ORDERS],
                                          instruction="You help the customers of a hardware shop with their orders.",
                                          enableTrace=True, inlineSessionState={
                                              "invocationId": rc["invocationId"],
                                              "returnControlInvocationResults": [result]})  # fmt: skip
    events: list[dict[str, Any]] = []
    with pytest.raises(EventStreamError) as err:
        for event in out["completion"]:
            events.append(event)
    assert err.value.response["Error"]["Code"] == "dependencyFailedException"
    assert "responseState FAILURE: the orders database is down" in err.value.response["Error"]["Message"]
    assert [next(iter(e["trace"]["trace"])) for e in events] == ["failureTrace"]
    assert len(env.engine.requests) == 1
