"""Action groups run by a Lambda function: a real HTTP server in this test stands for the functions, mapped to their
ARNs under [server.agent_lambda_urls] in the server's config.toml. Agents are defined through boto3's bedrock-agent
client and run through bedrock-agent-runtime's InvokeAgent; a scripted model calls the tools. Checked: the Lambda
input event Bedrock sends (functionSchema and apiSchema), the Lambda response read back (responseBody, session
attributes, REPROMPT, FAILURE, an API's error status), and a function that is down or answers garbage failing
the turn with a DependencyFailedException and a failure trace, at once."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EventStreamError

from outcrop import config, store
from outcrop.api.app import build_app
from outcrop.conversation import ChatRequest, ToolResult
from outcrop.knowledge.catalog import KnowledgeCatalog
from outcrop.registry import Registry
from tests.api.bedrock_agent_runtime.conftest import SCRIPTED, ScriptedEngine
from tests.conftest import client, free_port, serve_app

ACCOUNT = "arn:aws:lambda:us-east-1:123456789012:function"
ORDERS, REFUNDS, DOWN, GARBAGE = (f"{ACCOUNT}:{n}" for n in ("orders", "refunds", "down", "garbage"))
INSTRUCTION = "You help the customers of a hardware shop with their orders."
STATUS = {"name": "get_status", "description": "The status of an order",
          "parameters": {"orderId": {"type": "string", "required": True}}}  # fmt: skip
OPENAPI = {"openapi": "3.0.0", "info": {"title": "Refunds", "version": "1"}, "paths": {"/orders/{orderId}/refund": {
    "post": {"operationId": "refund", "description": "Refund an order",
             "parameters": [{"name": "orderId", "in": "path", "required": True, "schema": {"type": "string"}}],
             "requestBody": {"required": True, "content": {"application/json": {"schema": {
                 "type": "object", "properties": {"reason": {"type": "string"}}, "required": ["reason"]}}}},
             "responses": {"200": {"description": "done"}}}}}}  # fmt: skip

Answer = Callable[[str, dict[str, Any]], tuple[int, bytes]]


@dataclass
class Lambdas:
    """The local HTTP server standing for the Lambda functions: it records what it is sent and answers with
    `answer(path, event)`."""

    url: str
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    answer: Answer | None = None


class _Handler(BaseHTTPRequestHandler):
    lambdas: Lambdas

    def do_POST(self) -> None:
        event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.lambdas.events.append((self.path, event))
        assert self.lambdas.answer is not None
        status, body = self.lambdas.answer(self.path, event)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Env:
    agent: Any
    runtime: Any
    engine: ScriptedEngine
    lambdas: Lambdas


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = Path(tmp_path_factory.mktemp("lambdas"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    lambdas = Lambdas(f"http://127.0.0.1:{server.server_address[1]}")
    _Handler.lambdas = lambdas
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (tmp / "config.toml").write_text(f"""
[server]
knowledge_dir = "{tmp / "knowledge"}"
builtin_model = false
builtin_embedding_model = false

[server.agent_lambda_urls]
"{ORDERS}" = "{lambdas.url}/orders"
"{REFUNDS}" = "{lambdas.url}/refunds"
"{DOWN}" = "http://127.0.0.1:{free_port()}/invoke"
"{GARBAGE}" = "{lambdas.url}/garbage"

[[models]]
id = "{SCRIPTED}"
engine = "echo"
n_ctx = 16384
""")
    settings = config.load(tmp / "config.toml")
    engine = ScriptedEngine()
    app = build_app(settings, Registry(settings, {SCRIPTED: engine}),
                    knowledge=KnowledgeCatalog(store.connect(f"sqlite:///{tmp / 'o.db'}")))  # fmt: skip
    try:
        with serve_app(app) as url:
            yield Env(client("bedrock-agent", url), client("bedrock-agent-runtime", url), engine, lambdas)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def _reset(env: Env) -> None:
    env.engine.script = None
    env.engine.requests.clear()
    env.lambdas.events.clear()
    env.lambdas.answer = None


def _agent(env: Env, *groups: dict[str, Any]) -> str:
    made = env.agent.create_agent(agentName=f"shop-{uuid.uuid4().hex[:8]}", foundationModel=SCRIPTED,
                                  instruction=INSTRUCTION,
                                  agentResourceRoleArn="arn:aws:iam::123456789012:role/agent")["agent"]  # fmt: skip
    agent_id = str(made["agentId"])
    for group in groups:
        env.agent.create_agent_action_group(agentId=agent_id, agentVersion="DRAFT", **group)
    env.agent.prepare_agent(agentId=agent_id)
    return agent_id


def _function_group(arn: str = ORDERS) -> dict[str, Any]:
    return {"actionGroupName": "orders", "actionGroupExecutor": {"lambda": arn},
            "functionSchema": {"functions": [STATUS]}}  # fmt: skip


def _api_group() -> dict[str, Any]:
    return {"actionGroupName": "refunds", "actionGroupExecutor": {"lambda": REFUNDS},
            "apiSchema": {"payload": json.dumps(OPENAPI)}}  # fmt: skip


def _call(name: str, **arguments: Any) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def _results(r: ChatRequest) -> list[ToolResult]:
    return [p for p in r.messages[-1].parts if isinstance(p, ToolResult)]


def _calls_then_answers(name: str, **arguments: Any) -> Callable[[ChatRequest], str]:
    """The model calls the tool, then answers with what the tool said (marking an error result)."""

    def script(r: ChatRequest) -> str:
        results = _results(r)
        if not results:
            return _call(name, **arguments)
        got = results[0]
        text = got.content[0].text  # type: ignore[union-attr]
        return f"Error: {text}" if got.is_error else f"The tool said: {text}"

    return script


def _invoke(env: Env, agent_id: str, session: str, **kw: Any) -> tuple[list[dict[str, Any]], Any]:
    """The events of one InvokeAgent, and the exception event that ended it (or None)."""
    out = env.runtime.invoke_agent(agentId=agent_id, agentAliasId="TSTALIASID", sessionId=session, **kw)
    events: list[dict[str, Any]] = []
    try:
        for event in out["completion"]:
            events.append(event)
    except EventStreamError as exc:
        return events, exc
    return events, None


def _text(events: list[dict[str, Any]]) -> str:
    return "".join(e["chunk"]["bytes"].decode() for e in events if "chunk" in e)


def _orchestration(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["trace"]["trace"]["orchestrationTrace"] for e in events
            if "trace" in e and "orchestrationTrace" in e["trace"]["trace"]]  # fmt: skip


def _function_answer(body: str, **extra: Any) -> Answer:
    def answer(path: str, event: dict[str, Any]) -> tuple[int, bytes]:
        response = {"actionGroup": event["actionGroup"], "function": event["function"],
                    "functionResponse": {"responseBody": {"TEXT": {"body": body}}}}  # fmt: skip
        return 200, json.dumps({"messageVersion": "1.0", "response": response, **extra}).encode()

    return answer


def test_function_lambda_gets_bedrocks_event_and_its_response_is_used(env: Env) -> None:
    agent_id = _agent(env, _function_group())
    env.engine.script = _calls_then_answers("orders__get_status", orderId="A1")
    env.lambdas.answer = _function_answer("shipped on Monday", sessionAttributes={"lastOrder": "A1"},
                                          promptSessionAttributes={"tier": "gold"})  # fmt: skip
    session = str(uuid.uuid4())
    state = {"sessionAttributes": {"customer": "ada"}, "promptSessionAttributes": {"today": "Monday"}}
    events, failed = _invoke(env, agent_id, session, inputText="Where is my order A1?", enableTrace=True,
                             sessionState=state)  # fmt: skip
    assert failed is None
    assert _text(events) == "The tool said: shipped on Monday"
    ((path, event),) = env.lambdas.events
    assert path == "/orders"
    assert event == {
        "messageVersion": "1.0",
        "agent": {"name": event["agent"]["name"], "id": agent_id, "alias": "TSTALIASID", "version": "DRAFT"},
        "inputText": "Where is my order A1?",
        "sessionId": session,
        "actionGroup": "orders",
        "function": "get_status",
        "parameters": [{"name": "orderId", "type": "string", "value": "A1"}],
        "sessionAttributes": {"customer": "ada"},
        "promptSessionAttributes": {"today": "Monday"},
    }
    assert event["agent"]["name"].startswith("shop-")
    orch = _orchestration(events)
    invocation = next(o["invocationInput"] for o in orch if "invocationInput" in o)
    assert invocation["actionGroupInvocationInput"]["executionType"] == "LAMBDA"
    observation = next(o["observation"] for o in orch if "observation" in o)
    assert observation == {"traceId": observation["traceId"], "type": "ACTION_GROUP",
                           "actionGroupInvocationOutput": {"text": "shipped on Monday"}}  # fmt: skip
    # the Lambda's session attributes replaced the session's: the next call's event carries them, and the model
    # reads the prompt session attributes
    env.lambdas.events.clear()
    events, failed = _invoke(env, agent_id, session, inputText="And order A1 again?")
    assert failed is None and _text(events) == "The tool said: shipped on Monday"
    (_, event), = env.lambdas.events  # fmt: skip
    assert event["sessionAttributes"] == {"lastOrder": "A1"}
    assert event["promptSessionAttributes"] == {"tier": "gold"}
    assert "tier: gold" in env.engine.requests[-1].system


def test_api_lambda_gets_path_method_parameters_and_body(env: Env) -> None:
    agent_id = _agent(env, _api_group())
    env.engine.script = _calls_then_answers("refunds__refund", orderId="A1", reason="broken on arrival")
    status = {"code": 200}

    def answer(path: str, event: dict[str, Any]) -> tuple[int, bytes]:
        response = {"actionGroup": event["actionGroup"], "apiPath": event["apiPath"],
                    "httpMethod": event["httpMethod"], "httpStatusCode": status["code"],
                    "responseBody": {"application/json": {"body": json.dumps({"refund": "R-77"})}}}  # fmt: skip
        return 200, json.dumps({"messageVersion": "1.0", "response": response}).encode()

    env.lambdas.answer = answer
    events, failed = _invoke(env, agent_id, str(uuid.uuid4()), inputText="Refund order A1, it arrived broken.")
    assert failed is None
    assert _text(events) == 'The tool said: {"refund": "R-77"}'
    ((path, event),) = env.lambdas.events
    assert path == "/refunds"
    assert event["actionGroup"] == "refunds"
    assert (event["apiPath"], event["httpMethod"]) == ("/orders/{orderId}/refund", "POST")
    assert "function" not in event
    assert event["parameters"] == [{"name": "orderId", "type": "string", "value": "A1"}]
    assert event["requestBody"] == {"content": {"application/json": {"properties": [
        {"name": "reason", "type": "string", "value": "broken on arrival"}]}}}  # fmt: skip
    # an error status is a failed call the model reads, not a failed turn
    status["code"] = 404
    events, failed = _invoke(env, agent_id, str(uuid.uuid4()), inputText="Refund order A1.")
    assert failed is None
    assert _text(events) == 'Error: {"refund": "R-77"}'
    assert _results(env.engine.requests[-1])[0].is_error


def test_reprompt_hands_the_body_back_to_the_model(env: Env) -> None:
    agent_id = _agent(env, _function_group())

    def script(r: ChatRequest) -> str:
        results = _results(r)
        if not results:
            return _call("orders__get_status", orderId="a-1")
        text = results[0].content[0].text  # type: ignore[union-attr]
        if "try again" in text:
            return _call("orders__get_status", orderId="A1")
        return f"Order A1: {text}"

    def answer(path: str, event: dict[str, Any]) -> tuple[int, bytes]:
        value = event["parameters"][0]["value"]
        if value != "A1":
            body = {"responseState": "REPROMPT", "responseBody": {"TEXT": {"body": "orderId looks like A1"}}}
        else:
            body = {"responseBody": {"TEXT": {"body": "delivered"}}}
        response = {"actionGroup": "orders", "function": "get_status", "functionResponse": body}
        return 200, json.dumps({"messageVersion": "1.0", "response": response}).encode()

    env.engine.script = script
    env.lambdas.answer = answer
    events, failed = _invoke(env, agent_id, str(uuid.uuid4()), inputText="Where is a-1?")
    assert failed is None
    assert _text(events) == "Order A1: delivered"
    assert [e["parameters"][0]["value"] for _, e in env.lambdas.events] == ["a-1", "A1"]
    second = env.engine.requests[1]
    assert "orderId looks like A1" in _results(second)[0].content[0].text  # type: ignore[union-attr]


def _fails(env: Env, agent_id: str, needle: str) -> list[dict[str, Any]]:
    """InvokeAgent ends with a dependencyFailedException saying `needle`, after a failure trace."""
    events, failed = _invoke(env, agent_id, str(uuid.uuid4()), inputText="Where is my order A1?", enableTrace=True)
    assert failed is not None, events
    assert failed.response["Error"]["Code"] == "dependencyFailedException"
    assert needle in failed.response["Error"]["Message"], failed.response
    failures = [e["trace"]["trace"]["failureTrace"] for e in events if "failureTrace" in e.get("trace", {}).get(
        "trace", {})]  # fmt: skip
    assert len(failures) == 1 and needle in failures[0]["failureReason"]
    assert _text(events) == ""
    return events


def test_response_state_failure_fails_the_turn(env: Env) -> None:
    agent_id = _agent(env, _function_group())
    env.engine.script = _calls_then_answers("orders__get_status", orderId="A1")

    def answer(path: str, event: dict[str, Any]) -> tuple[int, bytes]:
        body = {"responseState": "FAILURE", "responseBody": {"TEXT": {"body": "the orders database is down"}}}
        response = {"actionGroup": "orders", "function": "get_status", "functionResponse": body}
        return 200, json.dumps({"messageVersion": "1.0", "response": response}).encode()

    env.lambdas.answer = answer
    _fails(env, agent_id, "responseState FAILURE: the orders database is down")
    assert len(env.engine.requests) == 1  # the model is not asked again


def test_a_lambda_that_is_down_fails_the_turn_at_once(env: Env) -> None:
    agent_id = _agent(env, _function_group(DOWN))
    env.engine.script = _calls_then_answers("orders__get_status", orderId="A1")
    _fails(env, agent_id, f"The Lambda function {DOWN}")
    _, failed = _invoke(env, agent_id, str(uuid.uuid4()), inputText="Where is A1?")
    assert "could not be reached" in failed.response["Error"]["Message"]


@pytest.mark.parametrize(
    ("status", "body", "needle"),
    [
        (200, b"<html>not json</html>", "answered something that is not JSON"),
        (200, b'{"statusCode": 200, "body": "ok"}', "without a 'response' object"),
        (200, b'["a", "list"]', "without a 'response' object"),
        (200, b'{"response": {"functionResponse": 7}}', "without a 'response' object"),
        (200, b'{"response": {"functionResponse": {}}, "sessionAttributes": ["x"]}', "sessionAttributes that is not"),
        (500, b'{"errorMessage": "boom"}', "failed: HTTP 500"),
    ],
)
def test_a_lambda_answering_garbage_fails_the_turn(env: Env, status: int, body: bytes, needle: str) -> None:
    agent_id = _agent(env, _function_group(GARBAGE))
    env.engine.script = _calls_then_answers("orders__get_status", orderId="A1")
    env.lambdas.answer = lambda path, event: (status, body)
    _fails(env, agent_id, needle)
    assert [p for p, _ in env.lambdas.events] == ["/garbage"]


def test_a_lambda_that_hangs_fails_the_turn_when_its_time_is_up(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from outcrop.agents import lambdas

    monkeypatch.setattr(lambdas, "TIMEOUT_S", 0.5)
    released = threading.Event()

    def answer(path: str, event: dict[str, Any]) -> tuple[int, bytes]:
        released.wait(30)  # hangs until the test is over
        return _function_answer("too late")(path, event)

    agent_id = _agent(env, _function_group(GARBAGE))
    env.engine.script = _calls_then_answers("orders__get_status", orderId="A1")
    env.lambdas.answer = answer
    try:
        _fails(env, agent_id, "did not answer within 0.5 s")
        assert len(env.engine.requests) == 1  # the turn ended: the model is not asked again
    finally:
        released.set()
