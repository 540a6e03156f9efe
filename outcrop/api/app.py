"""The ASGI application: one router over the raw request path, one error table per dialect.

Bedrock model ids arrive percent-encoded (`%3A`, and `%2F` inside ARNs), so routes match the raw
path and decode each label afterwards; a framework that decodes `%2F` before routing would send
ARNs to the wrong place.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote, urlsplit

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from outcrop import errors
from outcrop.api.http import Context, ErrorEncoder, Route, caller
from outcrop.auth.access import AccessControl
from outcrop.auth.authenticate import Authenticator, is_loopback
from outcrop.config import Settings
from outcrop.conversation import ChatRequest, ChatResult
from outcrop.guardrails.store import GuardrailStore
from outcrop.inference import Call, Inference, RequestLimits, current_call
from outcrop.jobs.store import JobStore
from outcrop.knowledge.catalog import KnowledgeCatalog
from outcrop.metering.invocation_log import InvocationLogger
from outcrop.metering.quotas import Quotas
from outcrop.metering.usage import UsageRecorder
from outcrop.registry import Registry

log = logging.getLogger("outcrop")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _cors(origin: str, preflight: bool = False) -> dict[str, str]:
    headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    if preflight:
        headers.update({
            "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
            "Access-Control-Allow-Headers": "authorization, content-type, x-api-key, anthropic-version, "
                                            "x-amz-date, x-amz-content-sha256, x-amz-security-token",
            "Access-Control-Max-Age": "600",
        })  # fmt: skip
    return headers


def _with_headers(send: Send, extra: dict[str, str]) -> Send:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *raw]}
        await send(message)

    return sending


def _body_limit(settings: Settings, scope: Scope) -> int:
    """The largest request body taken: max_request_mib, or for uploads to /v1/files, max_file_mib (+ 1 MiB for the
    multipart framing; the file itself is held to max_file_mib by its route)."""
    if scope.get("path") == "/v1/files" and scope.get("method") == "POST":
        return (max(settings.max_request_mib, settings.max_file_mib) + 1) * 1024 * 1024
    return settings.max_request_mib * 1024 * 1024


def _too_large(limit: int) -> str:
    return (f"The request body is larger than this server takes ({limit // (1024 * 1024)} MiB; "
            "max_request_mib under [server] sets it).")  # fmt: skip


def _hostname(authority: str) -> str | None:
    """The host of a Host header or an origin's authority, without the port; None when there is none."""
    authority = authority.strip()
    if not authority:
        return None
    if authority.startswith("["):  # [::1]:8300
        return authority[1 : authority.find("]")] if "]" in authority else authority
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


def _cut_off(scope: Scope, path: str) -> None:
    """The server is shutting down and its grace period is over: the answer is cut off (its model slot is freed as
    the cancellation unwinds). Nothing for the server to report beyond a line in its log."""
    log.info("%s %s cut off at shutdown", scope["method"], path)


async def _hang_up(receive: Receive, body_read: asyncio.Event, work: asyncio.Future[Any]) -> bool:
    """Cancel `work` if the client disconnects while it runs (after its body was read, nothing else can arrive
    but the disconnect), so a non-streaming caller that gives up frees its model slot at once, as a
    streaming one does. Streaming responses watch for the disconnect themselves once they are returned."""
    await body_read.wait()
    message = await receive()
    if message["type"] == "http.disconnect" and not work.done():
        work.cancel()
        return True
    return False


class App:
    def __init__(self, context: Context, routes: list[Route], encoders: dict[str, ErrorEncoder]) -> None:
        self.context = context
        self.routes = routes
        self.encoders = encoders

    def dialect_for(self, path: str) -> str:
        """Which envelope an error on an unmatched path gets: the API that path belongs to."""
        if path == "/" or path == "/console" or path.startswith("/console/"):
            return "console-page"
        if path.startswith("/v1/messages"):
            return "anthropic"
        if path.startswith("/v1/"):
            return "openai"
        return "bedrock"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        raw = scope.get("raw_path") or scope["path"].encode()
        path = raw.decode("latin-1").split("?", 1)[0]
        refused = self._refuse(scope)
        if refused is not None:
            await self.encoders[self.dialect_for(path)](refused)(scope, receive, send)
            return
        origin = _header(scope, b"origin")
        if origin is not None and origin in self.context.settings.allowed_origins:
            if scope["method"] == "OPTIONS":  # a CORS preflight from an allowed page
                await Response(status_code=204, headers=_cors(origin, preflight=True))(scope, receive, send)
                return
            send = _with_headers(send, _cors(origin))
        body_read = asyncio.Event()
        limit = _body_limit(self.context.settings, scope)
        size = 0

        body_timeout = self.context.settings.body_timeout_s

        async def receive_body() -> Message:
            nonlocal size
            try:
                async with asyncio.timeout(body_timeout):  # a stalled body (or a slow-drip one) holds no slot
                    message = await receive()
            except TimeoutError:
                raise errors.RequestTimeout(
                    f"The request body stalled for over {body_timeout:g} s (body_timeout_s under [server] sets "
                    "the limit)."
                ) from None
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:  # a body without Content-Length (chunked) is counted as it arrives
                    raise errors.RequestTooLarge(_too_large(limit))
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_read.set()
            return message

        request = Request(scope, receive_body)
        dispatch = asyncio.ensure_future(self._dispatch(scope["method"], path, request))
        watch = asyncio.ensure_future(_hang_up(receive, body_read, dispatch))
        try:
            response = await dispatch
        except asyncio.CancelledError:
            if watch.done() and not watch.cancelled() and watch.result():
                return  # the client went away while its answer was being made: nobody to answer
            _cut_off(scope, path)
            return
        finally:
            watch.cancel()
        # a streamed answer is metered as its last event is sent, here, outside the task that ran the route: it
        # needs the route's Call too (else every stream is recorded as the default, bedrock "-")
        call = getattr(request.state, "call", None)
        if call is not None:
            current_call.set(call)
        try:
            await response(scope, receive, send)
        except asyncio.CancelledError:
            _cut_off(scope, path)

    def _refuse(self, scope: Scope) -> errors.OutcropError | None:
        """What is refused before anything is read: headers or a body declared larger than the limits; and in local mode
        (no keys, on loopback) a Host that is not a loopback name (a DNS-rebinding page) or a foreign web page's
        Origin (any site the user visits could otherwise drive the API from the browser)."""
        settings = self.context.settings
        raw_headers = scope.get("headers", [])
        if sum(len(k) + len(v) + 4 for k, v in raw_headers) > settings.max_header_kib * 1024:
            return errors.HeadersTooLarge(
                f"The request's headers are larger than this server takes ({settings.max_header_kib} KiB; "
                "max_header_kib under [server] sets it)."
            )
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw_headers}
        limit = _body_limit(settings, scope)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            return errors.RequestTooLarge(_too_large(limit))
        if self.context.authenticator.mode != "local":
            return None
        host = _hostname(headers.get("host", ""))
        if host is not None and not is_loopback(host):
            return errors.AccessDenied(
                f"This server answers without keys, on loopback only, so it takes requests for 127.0.0.1 or "
                f"localhost, not for {host!r} (a web page using DNS rebinding sends that)."
            )
        origin = headers.get("origin")
        if origin and origin not in self.context.settings.allowed_origins:
            origin_host = _hostname(urlsplit(origin).netloc) if "://" in origin else None
            if origin_host is None or not is_loopback(origin_host):
                return errors.AccessDenied(
                    f"A web page from {origin} may not use this server: it answers without keys on loopback. "
                    "List the page's origin in allowed_origins under [server] to let it."
                )
        return None

    async def _dispatch(self, method: str, path: str, request: Request) -> Response:
        dialect = self.dialect_for(path)
        allowed = False
        try:
            for r in self.routes:
                m = r.pattern.match(path)
                if not m:
                    continue
                if r.method != method:
                    allowed = True
                    continue
                dialect = r.dialect
                params = {k: unquote(v) for k, v in m.groupdict().items()}
                if not r.public:
                    request.state.principal = await self.context.authenticator.authenticate(request)
                request.state.call = Call(r.dialect, r.handler.__name__)
                current_call.set(request.state.call)
                response = await r.handler(self.context, request, **params)
                logger = self.context.invocation_log
                if r.invocation and logger is not None and logger.enabled():
                    response = await _logged(logger, r.invocation, request, params, response)
                return response
            if allowed:
                raise errors.UnknownOperation(f"Method {method} is not allowed on {path}.")
            raise errors.UnknownOperation(f"No operation matches {method} {path}.")
        except errors.OutcropError as exc:
            return self.encoders[dialect](exc)
        except Exception:
            request_id = uuid.uuid4()
            log.exception("unhandled error in %s %s (request %s)", method, path, request_id)
            return self.encoders[dialect](
                errors.InternalFailure(f"The server hit an internal error (request {request_id}); see its log.")
            )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.context.inference.usage is not None:
                    self.context.inference.usage.start()
                if self.context.invocation_log is not None:
                    self.context.invocation_log.start()
                if self.context.inference.guardrails is not None:
                    self.context.inference.guardrails.warm_up()
                if self.context.knowledge is not None and self.context.knowledge.ingestion is not None:
                    await self.context.knowledge.ingestion.start()  # resumes jobs a dead process left
                if self.context.jobs is not None:
                    await self.context.jobs.start()  # resumes batch jobs a dead process left
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.context.jobs is not None:
                    await self.context.jobs.close()  # records in flight stay pending, for the next server
                if self.context.inference.usage is not None:
                    await self.context.inference.usage.stop()
                if self.context.invocation_log is not None:
                    await self.context.invocation_log.stop()
                if self.context.knowledge is not None:
                    if self.context.knowledge.ingestion is not None:
                        await self.context.knowledge.ingestion.close()
                    self.context.knowledge.close()
                await self.context.registry.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _openai_batch(settings: Settings, registry: Registry, access: AccessControl, jobs: JobStore) -> Any:
    """OpenAI's batch codec, its files under `batch_files_uri` (default: the folder <batch_dir>/outcrop-files)."""
    from outcrop import config
    from outcrop.api.openai.batch_codec import OpenAIBatch
    from outcrop.jobs.files import FileStore

    root = settings.batch_files_uri
    if root is None:
        root = "s3://outcrop-files/"
        (config.batch_dir(settings) / "outcrop-files").mkdir(parents=True, exist_ok=True)
    return OpenAIBatch(registry, access, FileStore(jobs.engine), root)


def build_app(
    settings: Settings,
    registry: Registry | None = None,
    authenticator: Authenticator | None = None,
    access: AccessControl | None = None,
    quotas: Quotas | None = None,
    usage: UsageRecorder | None = None,
    invocation_log: InvocationLogger | None = None,
    guardrails: GuardrailStore | None = None,
    knowledge: KnowledgeCatalog | None = None,
    jobs: JobStore | None = None,
) -> App:
    from outcrop.api import admin, keys_api, openapi, quotas_api, status, usage_api
    from outcrop.api.anthropic import errors as anthropic_errors
    from outcrop.api.anthropic import routes as anthropic_routes
    from outcrop.api.bedrock import batch as bedrock_batch
    from outcrop.api.bedrock import errors as bedrock_errors
    from outcrop.api.bedrock import guardrails as bedrock_guardrails
    from outcrop.api.bedrock import routes as bedrock_routes
    from outcrop.api.bedrock_agent import agents_routes as bedrock_agent_agents
    from outcrop.api.bedrock_agent import errors as bedrock_agent_errors
    from outcrop.api.bedrock_agent import ingestion_routes as bedrock_agent_ingestion
    from outcrop.api.bedrock_agent import routes as bedrock_agent_routes
    from outcrop.api.bedrock_agent_runtime import agent_routes as bedrock_agent_runtime_agents
    from outcrop.api.bedrock_agent_runtime import errors as bedrock_agent_runtime_errors
    from outcrop.api.bedrock_agent_runtime import routes as bedrock_agent_runtime_routes
    from outcrop.api.openai import batches as openai_batches
    from outcrop.api.openai import errors as openai_errors
    from outcrop.api.openai import files as openai_files
    from outcrop.api.openai import routes as openai_routes
    from outcrop.console import errors as console_errors
    from outcrop.console import views as console_views

    registry = registry or Registry(settings)
    authenticator = authenticator or Authenticator("local", None)
    access = access or AccessControl(None, {s.id: s.access for s in registry.specs()})
    limits = RequestLimits(settings.max_messages, settings.max_tools, settings.max_content_blocks)
    inference = Inference(registry, access, quotas, usage, limits=limits)
    if guardrails is not None:
        from outcrop.auth.principal import LOCAL
        from outcrop.guardrails.assess import Checker
        from outcrop.guardrails.runtime import Guardrails, registry_embed

        async def judge(request: ChatRequest) -> ChatResult:  # a constitution's judge: unguarded, as the server
            return await inference.complete(request, LOCAL, guard=False)

        inference.guardrails = Guardrails(guardrails, Checker(registry_embed(registry), judge))
    service = None
    if knowledge is not None:
        from outcrop import config
        from outcrop.knowledge.ingest import Ingestion
        from outcrop.knowledge.service import Knowledge

        service = Knowledge(knowledge, inference, settings, config.knowledge_dir(settings))
        service.ingestion = Ingestion(service)
    runner = None
    if jobs is not None:
        from outcrop import config
        from outcrop.api.bedrock.batch_codec import BedrockBatch
        from outcrop.jobs.metrics import BatchProgress
        from outcrop.jobs.runner import JobRunner
        from outcrop.objects import Objects

        objects = Objects([config.batch_dir(settings)], settings.s3_endpoint_url, settings.region)
        runner = JobRunner(
            jobs,
            inference,
            objects,
            {"bedrock": BedrockBatch(registry), "openai": _openai_batch(settings, registry, access, jobs)},
        )
        inference.metrics.registry.register(BatchProgress(runner.progress))
    context = Context(settings, registry, inference, authenticator, access, invocation_log, guardrails, service,
                      runner)  # fmt: skip
    if knowledge is not None:  # agents live in the same store as the knowledge bases they use
        from outcrop.agents.catalog import AgentCatalog

        context.agents = AgentCatalog(knowledge.engine, settings.agent_lambda_urls)
    routes = [
        *status.ROUTES,
        *admin.ROUTES,
        *usage_api.ROUTES,
        *keys_api.ROUTES,
        *quotas_api.ROUTES,
        *bedrock_routes.ROUTES,
        *bedrock_guardrails.ROUTES,
        *bedrock_batch.ROUTES,
        *bedrock_agent_routes.ROUTES,
        *bedrock_agent_ingestion.ROUTES,
        *bedrock_agent_agents.ROUTES,
        *bedrock_agent_runtime_routes.ROUTES,
        *bedrock_agent_runtime_agents.ROUTES,
        *openai_routes.ROUTES,
        *openai_files.ROUTES,
        *openai_batches.ROUTES,
        *anthropic_routes.ROUTES,
    ]
    routes += openapi.routes(routes)  # the documents describe the whole table, their own routes included
    routes += console_views.routes()  # the web console: pages at / and /console/..., signed in by a cookie
    encoders: dict[str, ErrorEncoder] = {
        "bedrock": bedrock_errors.encode_error,
        "bedrock-agent": bedrock_agent_errors.encode_error,
        "bedrock-agent-runtime": bedrock_agent_runtime_errors.encode_error,
        "openai": openai_errors.encode_error,
        "anthropic": anthropic_errors.encode_error,
        "console": console_errors.encode_json,  # what the console's scripts fetch (its model calls are metered so)
        "console-page": console_errors.encode_page,
    }
    return App(context, routes, encoders)


async def _logged(
    logger: InvocationLogger, operation: str, request: Request, params: dict[str, str], response: Response
) -> Response:
    """Record the invocation's request and response bodies; a stream is recorded once it has been sent."""
    body = await request.body()
    model = params.get("modelId")
    if model is None:
        try:
            model = str(json.loads(body).get("model", "-"))
        except (ValueError, AttributeError):
            model = "-"
    fields: dict[str, Any] = {
        "operation": operation,
        "model_id": model,
        "principal": caller(request).name,
        "request_id": response.headers.get("x-amzn-requestid") or str(uuid.uuid4()),
        "request_body": body,
        "response_type": response.headers.get("content-type", ""),
    }
    if not isinstance(response, StreamingResponse):
        logger.record(**fields, response_body=bytes(response.body))
        return response
    original = response.body_iterator

    async def tee() -> AsyncIterator[Any]:
        sent: list[bytes] = []
        try:
            async for chunk in original:
                sent.append(chunk if isinstance(chunk, bytes) else str(chunk).encode())
                yield chunk
        finally:
            logger.record(**fields, response_body=b"".join(sent))

    response.body_iterator = tee()
    return response
