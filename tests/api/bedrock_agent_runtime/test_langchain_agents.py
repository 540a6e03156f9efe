"""langchain-aws's agent wrappers, unchanged, against the server: BedrockAgentsRunnable (defines the agent through
its own bedrock-agent client — CreateAgent, a RETURN_CONTROL action group from a LangChain tool, PrepareAgent — then
calls InvokeAgent) and BedrockInlineAgentsRunnable (InvokeInlineAgent), each through a return-of-control round: the
agent asks for the tool, the test runs it, the wrapper sends the result, the agent answers. A scripted model plays
the agent."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from outcrop.conversation import ChatRequest, ToolResult
from tests.api.bedrock_agent_runtime.conftest import SCRIPTED, Env

agents = pytest.importorskip("langchain_aws.agents")
messages = pytest.importorskip("langchain_core.messages")
tools = pytest.importorskip("langchain_core.tools")

INSTRUCTION = "You help the customers of a hardware shop with their orders."
ROLE = "arn:aws:iam::123456789012:role/agent"


@pytest.fixture(autouse=True)
def _credentials(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The wrappers make their own boto3 sessions from the environment's credentials."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    env.engine.requests.clear()
    env.engine.script = _script


def _script(r: ChatRequest) -> str:
    """Calls the one tool the agent has, then answers with its result."""
    results = [p for p in r.messages[-1].parts if isinstance(p, ToolResult)]
    if results:
        return f"Order A1 is {results[0].content[0].text}."  # type: ignore[union-attr]
    call = {"name": r.tools[0].name, "arguments": {"order_id": "A1"}}
    return f"<tool_call>{json.dumps(call)}</tool_call>"


def _status_tool() -> Any:
    @tools.tool
    def get_order_status(order_id: str) -> str:
        """The shipping status of an order."""
        return {"A1": "shipped"}.get(order_id, "unknown")

    return get_order_status


def test_bedrock_agents_runnable_return_of_control_round(env: Env) -> None:
    status = _status_tool()
    name = f"langchain-{uuid.uuid4().hex[:8]}"
    agent = agents.BedrockAgentsRunnable.create_agent(
        agent_name=name, agent_resource_role_arn=ROLE, foundation_model=SCRIPTED, instruction=INSTRUCTION,
        tools=[status], region_name="us-east-1", bedrock_endpoint_url=env.url, runtime_endpoint_url=env.url,
        enable_trace=True,
    )  # fmt: skip
    made = next(a for a in env.agent.list_agents()["agentSummaries"] if a["agentName"] == name)
    assert made["agentStatus"] == "PREPARED"
    groups = env.agent.list_agent_action_groups(agentId=agent.agent_id, agentVersion="DRAFT")
    assert [g["actionGroupName"] for g in groups["actionGroupSummaries"]] == ["DEFAULT_AG_"]

    session = str(uuid.uuid4())
    actions = agent.invoke({"input": "Where is my order A1?", "session_id": session})
    assert isinstance(actions, list) and len(actions) == 1
    action = actions[0]
    assert isinstance(action, agents.BedrockAgentAction)
    assert action.tool == "get_order_status" and action.tool_input == {"order_id": "A1"}
    assert action.session_id == session and action.invocation_id
    observation = status.invoke(action.tool_input)
    finish = agent.invoke({"input": "", "intermediate_steps": [(action, observation)]})
    assert isinstance(finish, agents.BedrockAgentFinish)
    assert finish.return_values["output"] == "Order A1 is shipped." and finish.session_id == session
    assert "orchestrationTrace" in finish.trace_log
    # the tool's result reached the model as the result of its call
    assert [p.content[0].text for p in env.engine.requests[-1].messages[-1].parts] == ["shipped"]  # type: ignore[union-attr]

    # a second create_agent with the same name finds the agent instead of making another
    again = agents.BedrockAgentsRunnable.create_agent(
        agent_name=name, agent_resource_role_arn=ROLE, foundation_model=SCRIPTED, instruction=INSTRUCTION,
        tools=[status], region_name="us-east-1", bedrock_endpoint_url=env.url, runtime_endpoint_url=env.url,
    )  # fmt: skip
    assert again.agent_id == agent.agent_id


def test_bedrock_inline_agents_runnable_return_of_control_round(env: Env) -> None:
    status = _status_tool()
    agent = agents.BedrockInlineAgentsRunnable.create(
        region_name="us-east-1", endpoint_url=env.url,
        inline_agent_config={"foundation_model": SCRIPTED, "instruction": INSTRUCTION, "tools": [status],
                             "enable_trace": True},
    )  # fmt: skip
    question = messages.HumanMessage(content="Where is my order A1?")
    asked = agent.invoke([question])
    assert isinstance(asked, messages.AIMessage) and asked.content == ""
    (call,) = asked.tool_calls
    assert call["name"] == "get_order_status" and call["args"] == {"order_id": "A1"}
    result = messages.ToolMessage(content=status.invoke(call["args"]), tool_call_id=call["id"])
    answer = agent.invoke([question, asked, result])
    assert isinstance(answer, messages.AIMessage)
    assert answer.content == "Order A1 is shipped."
    assert answer.additional_kwargs["session_id"] == asked.additional_kwargs["session_id"]
