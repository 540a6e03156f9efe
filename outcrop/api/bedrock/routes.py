"""bedrock-runtime and bedrock (control plane) routes. Thin: parse, call inference, encode."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from outcrop import errors
from outcrop.api.bedrock import converse, embed, eventstream, invoke, tags
from outcrop.api.bedrock.errors import encode_stream_error
from outcrop.api.http import Context, caller, json_body, read_json, route
from outcrop.api.streaming import event_response
from outcrop.auth.access import WIRE_STATES
from outcrop.conversation import ChatRequest, Event, GuardrailRef, GuardrailTrace, MessageStop, TextDelta, ToolUseStart
from outcrop.inference import Stream
from outcrop.registry import provider_of

DIALECT = "bedrock"


def _request_id() -> dict[str, str]:
    return {"x-amzn-RequestId": str(uuid.uuid4())}


def _event_stream(
    stream: Stream, frames: Callable[[Event], list[bytes]], headers: dict[str, str] | None = None
) -> Response:
    return event_response(
        stream, frames, encode_stream_error, eventstream.CONTENT_TYPE, {**_request_id(), **(headers or {})}
    )


# --- Converse ------------------------------------------------------------------------------------


_TRACE = {"ENABLED": "enabled", "DISABLED": "disabled", "ENABLED_FULL": "enabled_full"}
_STREAM_MODE = {"SYNCHRONOUS": "sync", "ASYNCHRONOUS": "async"}


def _invoke_chat(request: Request, modelId: str, raw: object) -> tuple[str, ChatRequest, tuple[GuardrailRef, ...]]:
    """InvokeModel's body as a canonical request with its guardrail: the X-Amzn-Bedrock-Guardrail*
    headers, and the native body's `amazon-bedrock-guardrailConfig` (taken out before the body is
    parsed): `streamProcessingMode` for a stream, `tagSuffix` for input tags (api/bedrock/tags.py)."""
    config = raw.pop("amazon-bedrock-guardrailConfig", None) if isinstance(raw, dict) else None
    if config is not None and not isinstance(config, dict):
        raise errors.InvalidRequest("amazon-bedrock-guardrailConfig must be an object.")
    refs = _invoke_guardrail(request, config or {})
    fam, chat = invoke.decode_request(modelId, raw)
    if config and config.get("tagSuffix") is not None:
        chat = tags.apply(chat, tags.check_suffix(config["tagSuffix"]))
    return fam, replace(chat, guardrails=refs), refs


def _invoke_guardrail(request: Request, config: dict[str, Any]) -> tuple[GuardrailRef, ...]:
    identifier = request.headers.get("x-amzn-bedrock-guardrailidentifier")
    version = request.headers.get("x-amzn-bedrock-guardrailversion")
    if identifier is None:
        if version is not None:
            raise errors.InvalidRequest("X-Amzn-Bedrock-GuardrailVersion was given without a guardrail identifier.")
        return ()
    if version is None:
        raise errors.InvalidRequest("X-Amzn-Bedrock-GuardrailVersion is required with a guardrail identifier.")
    trace = request.headers.get("x-amzn-bedrock-trace", "DISABLED").upper()
    if trace not in _TRACE:
        raise errors.InvalidRequest(f"X-Amzn-Bedrock-Trace must be one of {sorted(_TRACE)}, not '{trace}'.")
    mode = "SYNCHRONOUS"
    if config.get("streamProcessingMode") is not None:
        mode = str(config["streamProcessingMode"])
        if mode not in _STREAM_MODE:
            raise errors.InvalidRequest(
                f"amazon-bedrock-guardrailConfig.streamProcessingMode must be one of {sorted(_STREAM_MODE)}."
            )
    return (GuardrailRef(identifier, version, _TRACE[trace], _STREAM_MODE[mode]),)  # type: ignore[arg-type]


def _guardrail_fields(refs: tuple[GuardrailRef, ...], trace: GuardrailTrace | None) -> dict[str, Any]:
    if not refs:
        return {}
    out: dict[str, Any] = {"amazon-bedrock-guardrailAction": "INTERVENED" if trace and trace.intervened else "NONE"}
    wire = converse.guardrail_trace(trace)
    if wire is not None:
        out["amazon-bedrock-trace"] = {"guardrail": wire}
    return out


async def converse_op(ctx: Context, request: Request, modelId: str) -> Response:
    await ctx.inference.authorize(modelId, caller(request))
    chat = converse.decode_request(modelId, await read_json(request, {}))
    result = await ctx.inference.complete(chat, caller(request))
    return json_body(converse.encode_response(result), headers=_request_id())


async def converse_stream_op(ctx: Context, request: Request, modelId: str) -> Response:
    await ctx.inference.authorize(modelId, caller(request))
    chat = converse.decode_request(modelId, await read_json(request, {}))
    stream = await ctx.inference.stream(chat, caller(request))
    return _event_stream(stream, lambda e: converse.encode_event(e, stream.latency_ms))


# --- InvokeModel ---------------------------------------------------------------------------------


async def invoke_op(ctx: Context, request: Request, modelId: str) -> Response:
    await ctx.inference.authorize(modelId, caller(request))  # unknown: 404, not allowed: 403, whatever the body
    if ctx.registry.kind(modelId) == "embedding":
        return await _embed_op(ctx, request, modelId)
    fam, chat, refs = _invoke_chat(request, modelId, invoke.parse_json_body(await request.body()))
    result = await ctx.inference.complete(chat, caller(request))
    headers = {
        **_request_id(),
        "X-Amzn-Bedrock-Input-Token-Count": str(invoke.reported_input_tokens(fam, result.usage)),
        "X-Amzn-Bedrock-Output-Token-Count": str(result.usage.output_tokens),
        "X-Amzn-Bedrock-Invocation-Latency": str(result.latency_ms),
        **invoke.cache_headers(fam, result.usage),
    }
    body = {**invoke.encode_response(fam, modelId, result), **_guardrail_fields(refs, result.guardrail)}
    return json_body(body, headers=headers)


async def _embed_op(ctx: Context, request: Request, modelId: str) -> Response:
    fam, embed_request, body = embed.decode(modelId, invoke.parse_json_body(await request.body()))
    started = time.perf_counter()
    result = await ctx.inference.embed(embed_request, caller(request))
    headers = {**_request_id(), **embed.headers(result, int((time.perf_counter() - started) * 1000))}
    return json_body(embed.encode(fam, result, body), headers=headers)


def _chunk(payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return eventstream.event("chunk", {"bytes": base64.b64encode(data).decode()})


async def invoke_stream_op(ctx: Context, request: Request, modelId: str) -> Response:
    await ctx.inference.authorize(modelId, caller(request))  # unknown: 404, not allowed: 403, whatever the body
    if ctx.registry.kind(modelId) == "embedding":
        raise errors.InvalidRequest(
            f"The model '{modelId}' is an embedding model: it does not support response streaming. Call InvokeModel."
        )
    fam, chat, refs = _invoke_chat(request, modelId, invoke.parse_json_body(await request.body()))
    stream = await ctx.inference.stream(chat, caller(request))
    encode = invoke.chunk_encoder(fam, modelId)
    first_byte: list[int] = []

    def frames(event: Event) -> list[bytes]:
        if not first_byte and isinstance(event, TextDelta | ToolUseStart):
            first_byte.append(stream.latency_ms)
        chunks = encode(event)
        if isinstance(event, MessageStop) and chunks:
            chunks[-1]["amazon-bedrock-invocationMetrics"] = {
                "inputTokenCount": invoke.reported_input_tokens(fam, event.usage),
                "outputTokenCount": event.usage.output_tokens,
                "invocationLatency": stream.latency_ms,
                "firstByteLatency": first_byte[0] if first_byte else stream.latency_ms,
                **invoke.cache_metrics(fam, event.usage),
            }
            chunks[-1].update(_guardrail_fields(refs, event.guardrail))
        return [_chunk(c) for c in chunks]

    return _event_stream(stream, frames, {"X-Amzn-Bedrock-Content-Type": "application/json"})


# --- CountTokens ---------------------------------------------------------------------------------


async def count_tokens_op(ctx: Context, request: Request, modelId: str) -> Response:
    await ctx.inference.authorize(modelId, caller(request))
    chat = converse.decode_count_tokens(modelId, await read_json(request, {}), invoke.decode_for_count)
    n = await ctx.inference.count_tokens(chat, caller(request))
    return json_body({"inputTokens": n}, headers=_request_id())


# --- control plane -------------------------------------------------------------------------------


def _matches(summary: dict[str, Any], query: dict[str, str]) -> bool:
    provider = query.get("byProvider")
    if provider and provider.lower() not in (
        summary["providerName"].lower(),
        provider_of(summary["modelId"]).lower(),
    ):
        return False
    if query.get("byOutputModality") and query["byOutputModality"] not in summary["outputModalities"]:
        return False
    if query.get("byInferenceType") and query["byInferenceType"] not in summary["inferenceTypesSupported"]:
        return False
    return not (
        query.get("byCustomizationType") and query["byCustomizationType"] not in summary["customizationsSupported"]
    )


def _summary(ctx: Context, name: str) -> dict[str, Any]:
    # accessState is ours (clients ignore members they don't know): GENERALLY_AVAILABLE or EARLY_ACCESS.
    state = ctx.access.state(ctx.registry.resolve(name))
    return {**ctx.registry.foundation_model(name), "accessState": WIRE_STATES[state]}


async def list_foundation_models(ctx: Context, request: Request) -> Response:
    query = dict(request.query_params)
    who = caller(request)
    names = [n for n in ctx.registry.names() if ctx.access.allowed(who, ctx.registry.resolve(n))]
    summaries = [_summary(ctx, name) for name in names]
    return json_body({"modelSummaries": [s for s in summaries if _matches(s, query)]}, headers=_request_id())


async def get_foundation_model(ctx: Context, request: Request, modelIdentifier: str) -> Response:
    model_id = ctx.registry.resolve(modelIdentifier)
    name = modelIdentifier.rsplit("/", 1)[-1] if modelIdentifier.startswith("arn:") else modelIdentifier
    details = {**_summary(ctx, name), "accessGranted": ctx.access.allowed(caller(request), model_id)}
    return json_body({"modelDetails": details}, headers=_request_id())


async def get_foundation_model_availability(ctx: Context, request: Request, modelId: str) -> Response:
    """Bedrock's own way to tell a caller whether it may use a model (boto3 drops members it doesn't
    know, so this, not accessState, is what SDK users read)."""
    who = caller(request)
    model_id = ctx.registry.resolve(modelId)
    allowed = ctx.access.allowed(who, model_id)
    agreement = "AVAILABLE" if allowed else "NOT_AVAILABLE"
    if not allowed and ctx.access.engine is not None and ctx.access.state(model_id) == "early":
        pending = await asyncio.to_thread(ctx.access.requests, "pending", who.name)
        if any(r.model_id == model_id for r in pending):
            agreement = "PENDING"
    body = {
        "modelId": modelId,
        "agreementAvailability": {"status": agreement},
        "authorizationStatus": "AUTHORIZED" if allowed else "NOT_AUTHORIZED",
        "entitlementAvailability": "NOT_AVAILABLE" if ctx.access.state(model_id) == "disabled" else "AVAILABLE",
        "regionAvailability": "AVAILABLE",
    }
    return json_body(body, headers=_request_id())


# --- model invocation logging (control plane) ---------------------------------------------------


def _logger(ctx: Context, request: Request) -> Any:
    if not caller(request).is_admin:
        raise errors.AccessDenied("Only an administrator may change model invocation logging.")
    if ctx.invocation_log is None:
        raise errors.InvalidRequest("This server has no store to keep a logging configuration in.")
    return ctx.invocation_log


async def put_logging(ctx: Context, request: Request) -> Response:
    logger = _logger(ctx, request)
    body = await read_json(request, {})
    if not isinstance(body, dict) or set(body) != {"loggingConfig"}:
        raise errors.InvalidRequest('The body must be {"loggingConfig": {...}}.')
    await asyncio.to_thread(logger.put, body["loggingConfig"], caller(request).name)
    return json_body({}, headers=_request_id())


async def get_logging(ctx: Context, request: Request) -> Response:
    config = await asyncio.to_thread(_logger(ctx, request).get)
    return json_body({"loggingConfig": config} if config else {}, headers=_request_id())


async def delete_logging(ctx: Context, request: Request) -> Response:
    await asyncio.to_thread(_logger(ctx, request).delete)
    return json_body({}, headers=_request_id())


ROUTES = [
    route("POST", "/model/{modelId}/converse", converse_op, DIALECT, invocation="Converse"),
    route("POST", "/model/{modelId}/converse-stream", converse_stream_op, DIALECT, invocation="ConverseStream"),
    route("POST", "/model/{modelId}/invoke", invoke_op, DIALECT, invocation="InvokeModel"),
    route(
        "POST",
        "/model/{modelId}/invoke-with-response-stream",
        invoke_stream_op,
        DIALECT,
        invocation="InvokeModelWithResponseStream",
    ),
    route("POST", "/model/{modelId}/count-tokens", count_tokens_op, DIALECT),
    route("GET", "/foundation-models", list_foundation_models, DIALECT),
    route("GET", "/foundation-models/{modelIdentifier}", get_foundation_model, DIALECT),
    route("GET", "/foundation-model-availability/{modelId}", get_foundation_model_availability, DIALECT),
    route("PUT", "/logging/modelinvocations", put_logging, DIALECT),
    route("GET", "/logging/modelinvocations", get_logging, DIALECT),
    route("DELETE", "/logging/modelinvocations", delete_logging, DIALECT),
]
