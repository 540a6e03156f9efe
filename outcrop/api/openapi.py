"""OpenAPI 3.1 documents of what this server answers, published for clients, code generators and fuzzers.

- `GET /openapi.json`: the OpenAI, Anthropic and Outcrop routes, with request bodies from the wire types the
  routes validate with (pydantic), so the document cannot drift from the code.
- `GET /openapi/bedrock.json`: the Bedrock routes, generated from botocore's service models (the source of truth
  for the Bedrock wire format) for each operation this server serves.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response

from outcrop import __version__
from outcrop.api.http import Context, Route, json_body, route

REF = "#/components/schemas/{model}"
JSON = "application/json"

_OPENAI_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type"],
    "properties": {"message": {"type": "string"}, "type": {"type": "string"}, "param": {}, "code": {}}}}}  # fmt: skip
_ANTHROPIC_ERROR = {"type": "object", "required": ["type", "error"], "properties": {
    "type": {"const": "error"},
    "error": {"type": "object", "required": ["type", "message"],
              "properties": {"type": {"type": "string"}, "message": {"type": "string"}}}}}  # fmt: skip
_OUTCROP_ERROR = {"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}}
_OBJECT = {"type": "object"}
BEDROCK_DIALECTS = ("bedrock", "bedrock-agent", "bedrock-agent-runtime")  # what bedrock_document covers
# Which routes serve each botocore service (bedrock-agent and bedrock-agent-runtime both have /tags/{arn}: the
# route belongs to the first).
_SERVICE_DIALECT = {"bedrock-runtime": "bedrock", "bedrock": "bedrock", "bedrock-agent": "bedrock-agent",
                    "bedrock-agent-runtime": "bedrock-agent-runtime"}  # fmt: skip
# bedrock-agent-runtime reuses many shape names of the other services with other members (GenerationConfiguration,
# GuardrailConfiguration, ...): its components are named AgentRuntime.<shape>.
_SPACES = {"bedrock-agent-runtime": "AgentRuntime."}


def _bodies() -> dict[str, type[BaseModel]]:
    from outcrop.api.anthropic.convert import CountTokensBody, MessagesBody
    from outcrop.api.openai.batches import BatchBody
    from outcrop.api.openai.schema import ChatBody, CompletionBody, EmbeddingBody

    return {
        "POST /v1/chat/completions": ChatBody,
        "POST /v1/completions": CompletionBody,
        "POST /v1/embeddings": EmbeddingBody,
        "POST /v1/batches": BatchBody,
        "POST /v1/messages": MessagesBody,
        "POST /v1/messages/count_tokens": CountTokensBody,
    }


# Bodies of the routes that read a few members by hand (no wire type of their own).
_TEXTS = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
_HAND_BODIES: dict[str, dict[str, Any]] = {
    "POST /v1/moderations": {"type": "object", "required": ["input"],
                             "properties": {"input": _TEXTS, "model": {"type": "string"}}},
    "POST /outcrop/v1/keys": {"type": "object", "required": ["principal"], "properties": {
        "principal": {"type": "string", "minLength": 1}, "kind": {"enum": ["api_key", "aws"]},
        "admin": {"type": "boolean"}, "groups": {"type": "array", "items": {"type": "string"}},
        "label": {"type": "string"}}},
    "PUT /outcrop/v1/quotas": {"type": "object", "properties": {
        "principal": {"type": "string", "minLength": 1, "maxLength": 200},
        "group": {"type": "string", "minLength": 1, "maxLength": 200},
        "everyone": {"const": True, "description": "the rule limits every principal, each counted on its own"},
        "model": {"type": "string", "description": 'a model id, or "*": every model (the default)'},
        **{m: {"type": ["integer", "null"], "minimum": 0, "maximum": 2**31 - 1}
           for m in ("requestsPerMinute", "tokensPerMinute", "concurrentStreams")}},
        "additionalProperties": False,
        "oneOf": [{"required": ["principal"]}, {"required": ["group"]}, {"required": ["everyone"]}]},
    "POST /outcrop/v1/access-requests": {"type": "object", "required": ["modelId"], "properties": {
        "modelId": {"type": "string"}, "reason": {"type": "string"}}},
}  # fmt: skip
# Bodies that are not JSON: OpenAI's file upload is multipart/form-data.
_FORMS: dict[str, dict[str, Any]] = {
    "POST /v1/files": {"type": "object", "required": ["file", "purpose"], "properties": {
        "file": {"type": "string", "format": "binary"}, "purpose": {"type": "string", "enum": ["batch"]}}},
}  # fmt: skip
_PAGE = [{"name": "after", "in": "query", "schema": {"type": "string"}},
         {"name": "limit", "in": "query", "schema": {"type": "integer"}}]  # fmt: skip
_QUERIES: dict[str, list[dict[str, Any]]] = {
    "GET /v1/files": [
        *_PAGE,
        {"name": "purpose", "in": "query", "schema": {"type": "string"}},
        {"name": "order", "in": "query", "schema": {"enum": ["asc", "desc"]}},
    ],
    "GET /v1/batches": _PAGE,
    "GET /outcrop/v1/usage": [
        {"name": "groupBy", "in": "query", "schema": {"type": "string"}, "description": "principal,model,day"},
        {"name": "since", "in": "query", "schema": {"type": "string", "format": "date"}},
    ],
    "GET /outcrop/v1/access-requests": [{"name": "status", "in": "query", "schema": {"type": "string"}}],
}


def _template(r: Route) -> str:
    """`^/model/(?P<modelId>[^/]+)/converse$` -> `/model/{modelId}/converse`."""
    return re.sub(r"\(\?P<(\w+)>\[\^/\]\+\)", r"{\1}", r.pattern.pattern).strip("^$")


def _error(dialect: str) -> dict[str, Any]:
    schema = {"openai": _OPENAI_ERROR, "anthropic": _ANTHROPIC_ERROR}.get(dialect, _OUTCROP_ERROR)
    return {"description": "An error in this API's own envelope", "content": {JSON: {"schema": schema}}}


def _security(r: Route) -> list[dict[str, list[str]]]:
    if r.public:
        return []
    return [{"bearer": []}, {"apiKey": []}, {"sigv4": []}]


def document(routes: Iterable[Route]) -> dict[str, Any]:
    """The OpenAI, Anthropic and Outcrop routes (everything but Bedrock's own, which `bedrock_document` covers)."""
    bodies = _bodies()
    _, defs = models_json_schema([(m, "validation") for m in bodies.values()], ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        template = _template(r)
        key = f"{r.method} {template}"
        if r.dialect in BEDROCK_DIALECTS and not template.startswith(("/outcrop/", "/healthz", "/metrics", "/openapi")):
            continue
        if r.dialect.startswith("console"):  # the web console's pages: for browsers, not API clients
            continue
        op: dict[str, Any] = {
            "operationId": re.sub(r"\W", "_", f"{r.method.lower()}{template}"),
            "security": _security(r),
            "responses": {
                "200": {"description": "OK", "content": {JSON: {"schema": _OBJECT}}},
                "4XX": _error(r.dialect),
            },
        }
        params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                  for n in re.findall(r"\{(\w+)\}", template)]  # fmt: skip
        params += _QUERIES.get(key, [])
        if params:
            op["parameters"] = params
        if key in bodies:
            ref = {"$ref": REF.format(model=bodies[key].__name__)}
            op["requestBody"] = {"required": True, "content": {JSON: {"schema": ref}}}
        elif key in _HAND_BODIES:
            op["requestBody"] = {"required": True, "content": {JSON: {"schema": _HAND_BODIES[key]}}}
        elif key in _FORMS:
            op["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": _FORMS[key]}}}
        if r.invocation:  # streams when asked
            op["responses"]["200"]["content"]["text/event-stream"] = {"schema": {"type": "string"}}
        paths.setdefault(template, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Outcrop: OpenAI, Anthropic and Outcrop APIs", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "sigv4": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "AWS Signature Version 4",
                },
            },
        },
    }


@functools.cache
def _service(name: str) -> dict[str, Any]:
    import botocore.loaders

    model: dict[str, Any] = botocore.loaders.Loader().load_service_model(name, "service-2")
    return model


def _shape(model: dict[str, Any], name: str, schemas: dict[str, Any]) -> dict[str, Any]:
    """A botocore shape as JSON Schema: structures become components (shapes can be recursive), the rest inline."""
    shape = model["shapes"][name]
    kind = shape["type"]
    if kind == "structure":
        key = model.get("_space", "") + name  # a service whose shape names clash with the others' has a prefix
        if key not in schemas:
            schemas[key] = {}  # a placeholder first: a member may refer back to this shape
            schemas[key] = _structure(model, shape, schemas)
        return {"$ref": REF.format(model=key)}
    if kind == "list":
        out: dict[str, Any] = {"type": "array", "items": _shape(model, shape["member"]["shape"], schemas)}
        out.update({k: shape[b] for k, b in (("minItems", "min"), ("maxItems", "max")) if b in shape})
        return out
    if kind == "map":
        return {"type": "object", "additionalProperties": _shape(model, shape["value"]["shape"], schemas)}
    if kind == "string":
        out = {"type": "string"}
        if "enum" in shape:
            out["enum"] = list(shape["enum"])
        out.update({k: shape[b] for k, b in (("minLength", "min"), ("maxLength", "max")) if b in shape})
        return out
    if kind in ("integer", "long"):
        out = {"type": "integer"}
        out.update({k: shape[b] for k, b in (("minimum", "min"), ("maximum", "max")) if b in shape})
        return out
    if kind in ("float", "double"):
        out = {"type": "number"}
        out.update({k: shape[b] for k, b in (("minimum", "min"), ("maximum", "max")) if b in shape})
        return out
    if kind == "boolean":
        return {"type": "boolean"}
    if kind == "timestamp":
        return {"type": "string", "format": "date-time"}
    if kind == "blob":
        return {"type": "string", "contentEncoding": "base64"}
    return {}  # document: any JSON


def _structure(model: dict[str, Any], shape: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    members = {n: m for n, m in shape.get("members", {}).items() if "location" not in m}
    out: dict[str, Any] = {
        "type": "object",
        "properties": {m.get("locationName", n): _shape(model, m["shape"], schemas) for n, m in members.items()},
    }
    required = [members[n].get("locationName", n) for n in shape.get("required", []) if n in members]
    if required:
        out["required"] = required
    if shape.get("union"):
        out.update(minProperties=1, maxProperties=1)
    return out


def _served(routes: list[Route], method: str, uri: str) -> bool:
    sample = re.sub(r"\{[^}]+\}", "x", uri.split("?", 1)[0])
    return any(r.method == method and r.pattern.match(sample) for r in routes)


def bedrock_document(
    routes: Iterable[Route],
    services: tuple[str, ...] = ("bedrock-runtime", "bedrock", "bedrock-agent", "bedrock-agent-runtime"),
) -> dict[str, Any]:
    """Every operation of botocore's Bedrock models that this server serves, as OpenAPI."""
    routes = list(routes)
    schemas: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for service in services:
        served = [r for r in routes if r.dialect == _SERVICE_DIALECT.get(service, service)]
        model = _service(service)
        if service in _SPACES:
            model = {**model, "_space": _SPACES[service]}
        for name, op in model["operations"].items():
            method, uri = op["http"]["method"], op["http"]["requestUri"]
            if not _served(served, method, uri):
                continue
            path = re.sub(r"\{(\w+)\+\}", r"{\1}", uri.split("?", 1)[0])
            entry: dict[str, Any] = {
                "operationId": name,
                "security": [{"sigv4": []}, {"bearer": []}],
                "responses": {
                    str(op["http"].get("responseCode", 200)): {"description": "OK"},
                    "4XX": {
                        "description": "x-amzn-ErrorType and {message}",
                        "content": {JSON: {"schema": _OUTCROP_ERROR}},
                    },
                },
            }
            params: list[dict[str, Any]] = []
            body: dict[str, Any] | None = None
            if "input" in op:
                shape = model["shapes"][op["input"]["shape"]]
                for n, m in shape.get("members", {}).items():
                    where = {"uri": "path", "querystring": "query", "header": "header"}.get(m.get("location", ""))
                    if where:
                        required = where == "path" or n in shape.get("required", [])
                        params.append({"name": m.get("locationName", n), "in": where, "required": required,
                                       "schema": _shape(model, m["shape"], schemas)})  # fmt: skip
                payload = shape.get("payload")
                if payload:
                    target = shape["members"][payload]["shape"]
                    body = {} if model["shapes"][target]["type"] == "blob" else _shape(model, target, schemas)
                elif any("location" not in m for m in shape.get("members", {}).values()):
                    body = _structure(model, shape, schemas)
            if params:
                entry["parameters"] = params
            if body is not None:
                entry["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
            paths.setdefault(path, {})[method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "Outcrop: Amazon Bedrock APIs (from botocore's service models)", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "sigv4": {"type": "apiKey", "in": "header", "name": "Authorization"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }


def routes(served: list[Route]) -> list[Route]:
    """The two documents' routes, over the app's whole route table (public: they hold no secrets)."""

    def handler(build: Callable[[list[Route]], dict[str, Any]]) -> Callable[[Context, Request], Any]:
        async def publish(ctx: Context, request: Request) -> Response:
            return json_body(build(served))

        return publish

    return [
        route("GET", "/openapi.json", handler(document), "bedrock", public=True),
        route("GET", "/openapi/bedrock.json", handler(bedrock_document), "bedrock", public=True),
    ]
