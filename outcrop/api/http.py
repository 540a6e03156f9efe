"""What every route module needs, in a module of its own so that the app, which assembles the routes, and the
routes never import each other: the route table entry, the request context, JSON in and out, the caller."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from outcrop import errors
from outcrop.agents.catalog import AgentCatalog
from outcrop.auth.access import AccessControl
from outcrop.auth.authenticate import Authenticator
from outcrop.auth.principal import Principal
from outcrop.config import Settings
from outcrop.conversation import ChatRequest, ChatResult
from outcrop.guardrails.store import GuardrailStore
from outcrop.inference import Inference
from outcrop.jobs.runner import JobRunner
from outcrop.knowledge.service import Knowledge
from outcrop.metering.invocation_log import InvocationLogger
from outcrop.registry import Registry

Handler = Callable[..., Awaitable[Response]]
ErrorEncoder = Callable[[errors.OutcropError], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    dialect: str
    public: bool = False  # answered without credentials (health checks)
    invocation: str | None = None  # a model invocation, logged under this operation name when logging is on


@dataclass
class Context:
    settings: Settings
    registry: Registry
    inference: Inference
    authenticator: Authenticator
    access: AccessControl
    invocation_log: InvocationLogger | None = None
    guardrails: GuardrailStore | None = None
    knowledge: Knowledge | None = None
    jobs: JobRunner | None = None  # batch jobs (outcrop.jobs)
    agent_runtime: Any = None  # the agents' run time (outcrop.agents.loop.AgentRuntime), made on first use
    agents: AgentCatalog | None = None  # Bedrock Agents' control plane (outcrop.agents), kept with knowledge bases
    console: Any = None  # the web console's sign-in sessions (outcrop.console.session.Sessions), made on first use


GUARDRAIL_TRACES = ("disabled", "enabled", "enabled_full")


def header_guardrails(request: Request, chat: ChatRequest) -> ChatRequest:
    """The OpenAI and Anthropic dialects name a guardrail in headers (Bedrock has guardrailConfig):
    `X-Outcrop-Guardrail: ID[:VERSION]`, optional `X-Outcrop-Guardrail-Trace: enabled|enabled_full`
    and `X-Outcrop-Guardrail-Stream-Mode: sync|async`."""
    from outcrop.conversation import GuardrailRef
    from outcrop.guardrails.runtime import parse_ref

    value = request.headers.get("x-outcrop-guardrail")
    if not value:
        return chat
    ident, version = parse_ref(value.strip())
    trace = request.headers.get("x-outcrop-guardrail-trace", "disabled").lower()
    mode = request.headers.get("x-outcrop-guardrail-stream-mode", "sync").lower()
    if trace not in GUARDRAIL_TRACES:
        raise errors.InvalidRequest(f"X-Outcrop-Guardrail-Trace must be one of {list(GUARDRAIL_TRACES)}.")
    if mode not in ("sync", "async"):
        raise errors.InvalidRequest("X-Outcrop-Guardrail-Stream-Mode must be sync or async.")
    return replace(chat, guardrails=(GuardrailRef(ident, version, trace, mode),))  # type: ignore[arg-type]


def guardrail_extras(result: ChatResult) -> tuple[dict[str, str], dict[str, Any]]:
    """For OpenAI / Anthropic answers: an `x-outcrop-guardrail-action` header when a guardrail ran, and
    the Bedrock-shaped trace as `guardrail_trace` in the body when the caller asked for one."""
    g = result.guardrail
    if g is None:
        return {}, {}
    headers = {"x-outcrop-guardrail-action": "INTERVENED" if g.intervened else "NONE"}
    if g.trace == "disabled":
        return headers, {}
    body = {"action": headers["x-outcrop-guardrail-action"], "input_assessment": dict(g.input_assessment),
            "output_assessments": {k: list(v) for k, v in g.output_assessments.items()},
            "action_reason": g.action_reason}  # fmt: skip
    return headers, {"guardrail_trace": body}


def route(
    method: str, template: str, handler: Handler, dialect: str, public: bool = False, invocation: str | None = None
) -> Route:
    """`/model/{modelId}/converse` -> a regex over the raw path; labels never span a `/`."""
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
    return Route(method, re.compile(f"^{regex}$"), handler, dialect, public, invocation)


MAX_JSON_DEPTH = 128  # levels of nesting a request body may have (deeper ones only serve to exhaust the stack)


def parse_json(raw: bytes | str) -> object:
    """JSON nested at most MAX_JSON_DEPTH levels deep; ValueError saying what is wrong otherwise (orjson: fast,
    and it stops at 1,024 levels where the standard library's parser would exhaust Python's stack)."""
    value = orjson.loads(raw)
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > MAX_JSON_DEPTH:
                    raise ValueError(f"it nests more than {MAX_JSON_DEPTH} levels deep")
                stack.append((child, depth + 1))
    return value


async def read_json(request: Request, empty: object = None) -> object:
    """The request body as JSON (`empty` when there is none); InvalidRequest, in the caller's dialect, if not JSON."""
    raw = await request.body()
    if not raw:
        return empty
    try:
        return parse_json(raw)
    except ValueError as exc:
        raise errors.InvalidRequest(f"The request body is not valid JSON: {exc}.") from exc


def caller(request: Request) -> Principal:
    """The authenticated principal of this request (set by App before any handler runs)."""
    return request.state.principal  # type: ignore[no-any-return]


def json_body(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # orjson: a tenth of the stdlib's time on large answers (embeddings are thousands of floats)
    return Response(orjson.dumps(data), status, headers, media_type="application/json")
