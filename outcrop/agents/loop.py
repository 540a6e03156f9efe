"""The orchestration loop of one agent turn, on `Inference` (never an engine directly):

    open the session -> [continue a returnControl plan with the caller's results]
    -> model call (ChatRequest: instruction as system, earlier turns, the question, the plan so far; the agent's
       action groups and knowledge bases as tools, so the engine's tool calling / grammar applies)
       -> tool calls? knowledge base: search it (knowledge.retrieval, as Retrieve does), numbered passages as the
          observation; Lambda: POST Bedrock's event to its URL (lambdas.py); RETURN_CONTROL: stop the turn with a
          returnControl (the plan is kept in the session) -> observations -> model call -> ...
       -> no tool call: the answer (one chunk, with citations of the passages it rests on, read as
          RetrieveAndGenerate reads them: knowledge.citations) -> the turn is kept in the session

Each model call goes through Inference as any chat call of the caller does: access, quotas, usage, and the agent's
guardrail (checking the caller's question on the turn's first call — it is the only text marked guard_content —
and every model output). A guardrail that intervenes ends the turn with its message, which is not kept.
At most `max_iterations` model calls a turn (a plan continued after returnControl counts on); past that the turn
fails with a DependencyFailedException after a failure trace. Trace steps (events.py) are produced only when the
caller asked for them.

Apart from the turn driver here: the model requests (prompts.py), knowledge-base lookups and citations
(lookups.py), a returnControl's results (results.py), Lambda calls (lambdas.py), tools (tools.py).

PRE_PROCESSING / POST_PROCESSING prompts, when the agent enables them, run before a new question's orchestration
(which an invalid input skips: the turn answers a refusal) and after its final answer (processing.py).

A session given a memoryId shows its memory's recent summaries to the model and is summarized into it when it
ends (memory.py). Not done here: code interpreter and user-input action groups, multi-agent collaboration.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from outcrop import errors
from outcrop.agents import lambdas, lookups, processing, prompts
from outcrop.agents.definition import PromptOverride
from outcrop.agents.events import (
    AgentEvent,
    Chunk,
    Failure,
    Finish,
    GuardrailStep,
    Invocation,
    ModelInput,
    ModelOutput,
    Rationale,
    ReturnControl,
    ToolInput,
    ToolOutput,
)
from outcrop.agents.memory import Memories
from outcrop.agents.results import ToolOutcome, check_pending, result_parts
from outcrop.agents.sessions import AgentSession, Pending, PendingCall, SessionStore
from outcrop.agents.tools import Target, invocation, tools
from outcrop.agents.turn import Timings, Turn
from outcrop.auth.principal import Principal
from outcrop.conversation import ChatRequest, ChatResult, Message, StopReason, Text, ToolResult, ToolUse, Usage
from outcrop.inference import Inference, collect
from outcrop.knowledge.retrieval import Passage

__all__ = ["MAX_ITERATIONS", "AgentRuntime", "Timings", "ToolOutcome", "Turn", "TurnStream"]

MAX_ITERATIONS = 10  # model calls in one turn


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000


class AgentRuntime:
    """The agents' run time: one per server. `knowledge` is ctx.knowledge (None: agents with knowledge bases fail
    when they search)."""

    def __init__(self, inference: Inference, sessions: SessionStore, knowledge: Any = None, *,
                 max_iterations: int = MAX_ITERATIONS, http: httpx.AsyncClient | None = None,
                 memory: Memories | None = None) -> None:  # fmt: skip
        self.inference = inference
        self.sessions = sessions
        self.knowledge = knowledge
        self.memory = memory  # memory across sessions (memory.py); None: memoryId is refused
        self.max_iterations = max_iterations
        self._http = http
        self._busy: set[tuple[str, str]] = set()

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient()
        return self._http

    async def start(self, turn: Turn, principal: Principal) -> TurnStream:
        """Everything that can fail before the first event: the model, the session (another caller's, one in use),
        the results of a returnControl that is not pending."""
        began = time.perf_counter()
        d = turn.definition
        model_id = await self.inference.authorize(d.foundation_model, principal)
        if self.inference.registry.kind(model_id) == "embedding":
            raise errors.InvalidRequest(f"foundationModel '{d.foundation_model}' is an embedding model; an agent "
                                        "needs a chat model.")  # fmt: skip
        key = (d.agent_id, turn.session_id)
        if key in self._busy:
            raise errors.Conflict(f"Session {turn.session_id} is answering another request; wait for it to finish.")
        opened = time.perf_counter()
        session = await self.sessions.open(d.agent_id, turn.session_id, principal.name)
        session_ms = _ms(opened)
        if turn.results:
            check_pending(session, turn.invocation_id)
        elif not turn.input_text.strip() and not turn.end_session:
            raise errors.InvalidRequest("inputText must not be empty (or send sessionState."
                                        "returnControlInvocationResults to continue a returnControl).")  # fmt: skip
        if turn.session_attributes is not None:
            session.attributes = dict(turn.session_attributes)
        if turn.prompt_session_attributes is not None:
            session.prompt_attributes = dict(turn.prompt_session_attributes)
        if turn.memory_id:
            if self.memory is None:
                raise errors.InvalidRequest("memoryId: this server has no store to keep agent memory in.")
            if not d.memory_enabled:
                raise errors.InvalidRequest(f"memoryId: agent {d.agent_id} has no memoryConfiguration with "
                                            "SESSION_SUMMARY enabled.")  # fmt: skip
            await self.memory.recall(d, session, turn.memory_id)
        if self.memory is not None:
            self.memory.maybe_sweep()
        self._busy.add(key)
        stream = TurnStream(self, turn, session, principal, began)
        stream.timings.session_ms = session_ms
        return stream


class TurnStream:
    """One turn's events (events.AgentEvent). Always closed by the dialect (`aclose`), which frees the session."""

    def __init__(self, runtime: AgentRuntime, turn: Turn, session: AgentSession, principal: Principal,
                 began: float) -> None:  # fmt: skip
        self.runtime = runtime
        self.turn = turn
        self.session = session
        self.principal = principal
        self.timings = Timings()
        self._began = began
        self._trace_id = str(uuid.uuid4())
        self._tools, self._targets = tools(turn.definition)
        self._staged = ChatResult((), StopReason.END_TURN, Usage())
        self._closed = False

    @property
    def session_id(self) -> str:
        return self.turn.session_id

    # --- the prompt (prompts.py) ---

    def _system(self) -> str:
        has_kb = any(t.knowledge_base is not None for t in self._targets.values())
        memory = self.session.memory.summaries if self.session.memory else ()
        return prompts.system(self.turn.definition, self.session.prompt_attributes, bool(self._tools), has_kb, memory)

    def _history(self) -> list[Message]:
        if self.turn.history is not None:
            return list(self.turn.history)
        return prompts.history(self.session.turns)

    def _chat(self, messages: list[Message]) -> ChatRequest:
        return prompts.chat_request(self.turn.definition, messages, self._system(), self._tools,
                                    self.turn.enable_trace)  # fmt: skip

    # --- the loop ---

    async def __aiter__(self) -> AsyncIterator[AgentEvent]:
        try:
            async for event in self._run():
                yield event
        finally:
            self.timings.total_ms = _ms(self._began)

    async def _run(self) -> AsyncIterator[AgentEvent]:
        turn, session = self.turn, self.session
        trace = turn.enable_trace
        pending = session.pending if turn.results else None
        history = self._history()
        plan_start = len(history)
        if pending is not None:
            question = pending.question
            messages = [*history, *pending.messages]
            try:
                results: list[ToolResult] = result_parts(pending, turn.results)
            except errors.ModelFailure as exc:  # a result with responseState FAILURE
                if trace:
                    yield Failure(f"{self._trace_id}-{pending.iterations}", exc.message)
                raise
            if messages and messages[-1].role == "user":  # results already known when control was returned
                messages[-1] = Message("user", (*messages[-1].parts, *results))
            else:
                messages.append(Message("user", tuple(results)))
            passages = list(pending.passages)
            iterations = pending.iterations
            first_call = False
        else:
            if not turn.input_text.strip():  # endSession alone
                await self._end()
                return
            question = turn.input_text
            marked = ("guard_content",) if turn.definition.guardrail else None
            messages = [*history, Message("user", (Text(question, marked),))]
            passages = []
            iterations = 0
            first_call = True
        session.pending = None
        pre = processing.enabled(turn.definition, "PRE_PROCESSING") if pending is None else None
        if pre is not None:  # the question is checked here, the turn's first call
            first_call = False
            messages[plan_start] = Message("user", (Text(question),))
            values = processing.pre_values(turn.definition, question, history, self._tools, session.prompt_attributes)
            async for event in self._stage(pre, processing.PRE_TEMPLATE, values, marked=True):
                yield event
            blocked = self._staged.stop_reason == StopReason.GUARDRAIL_INTERVENED
            if blocked or not processing.parse_pre(self._staged.text, pre.parser_mode).valid:
                yield Chunk(self._staged.text if blocked else processing.REFUSAL)
                await self._finish(None, None)
                return
        while True:
            if iterations >= self.runtime.max_iterations:
                step = f"{self._trace_id}-{iterations}"
                reason = f"The agent reached its limit of {self.runtime.max_iterations} model calls in one turn."
                if trace:
                    yield Failure(step, reason)
                await self._save()
                raise errors.ModelFailure(reason)
            iterations += 1
            step = f"{self._trace_id}-{iterations - 1}"
            chat = self._chat(messages)
            if trace:
                yield ModelInput(step, turn.definition.foundation_model, prompts.prompt_text(chat), chat.sampling)
            result = await self._call(chat)
            if first_call:  # the question is checked once a turn, on its first model call
                messages[plan_start] = Message("user", (Text(question),))
                first_call = False
            if trace:
                yield ModelOutput(step, prompts.raw(result), result.usage, result.latency_ms)
                if result.guardrail is not None:
                    yield GuardrailStep(step, result.guardrail)
            if result.stop_reason == StopReason.GUARDRAIL_INTERVENED:
                if trace:
                    yield Finish(step, result.text)
                yield Chunk(result.text)
                await self._finish(None, None)
                return
            calls = [p for p in result.parts if isinstance(p, ToolUse)]
            if not calls:
                answer, cited = lookups.cite(result.text, passages)
                if trace:
                    yield Finish(step, answer)
                post = processing.enabled(turn.definition, "POST_PROCESSING")
                if post is not None:  # rewrites the answer (markers kept, so the citations are read again)
                    done = [c.text for m in messages[plan_start:] for p in m.parts if isinstance(p, ToolResult)
                            for c in p.content if isinstance(c, Text)]  # fmt: skip
                    values = processing.post_values(question, result.text.strip(), done)
                    async for event in self._stage(post, processing.POST_TEMPLATE, values):
                        yield event
                    if self._staged.stop_reason == StopReason.GUARDRAIL_INTERVENED:
                        yield Chunk(self._staged.text)
                        await self._finish(None, None)
                        return
                    answer, cited = lookups.cite(processing.parse_post(self._staged.text, post.parser_mode), passages)
                yield Chunk(answer, cited)
                await self._finish(question, answer)
                return
            if trace and result.text.strip():
                yield Rationale(step, result.text.strip())
            messages.append(Message("assistant", result.parts))
            known: list[ToolResult] = []
            returned: list[Invocation] = []
            for call in calls:
                target = self._targets.get(call.name)
                if target is None:
                    known.append(ToolResult(call.id, (Text(f"There is no tool named {call.name}."),), True))
                    continue
                inv = invocation(call, target)
                if trace:
                    yield ToolInput(step, inv)
                if inv.execution == "RETURN_CONTROL":
                    returned.append(inv)
                    continue
                began = time.perf_counter()
                if inv.kind == "KNOWLEDGE_BASE":
                    found = await self._search(inv)
                    text = lookups.numbered(found, len(passages) + 1)
                    passages += found
                    output = ToolOutput(step, inv, text, tuple(found))
                else:
                    try:
                        output = await self._lambda(step, inv, target, question)
                    except errors.ModelFailure as exc:  # unreachable, garbage, or responseState FAILURE
                        if trace:
                            yield Failure(step, exc.message)
                        raise
                self.timings.tool_ms += _ms(began)
                if trace:
                    yield output
                known.append(ToolResult(call.id, (Text(output.text),), output.is_error))
            if known:
                messages.append(Message("user", tuple(known)))
            if returned:
                invocation_id = str(uuid.uuid4())
                calls_kept = tuple(PendingCall(c.tool_use_id, c.action_group, c.function or None, c.api_path or None,
                                               c.method or None) for c in returned)  # fmt: skip
                plan = tuple(messages[plan_start:])
                session.pending = Pending(invocation_id, question, plan, calls_kept, tuple(passages), iterations)
                await self._save()
                yield ReturnControl(invocation_id, tuple(returned))
                return

    async def _stage(self, override: PromptOverride, default: Mapping[str, Any], values: Mapping[str, str],
                     marked: bool = False) -> AsyncIterator[AgentEvent]:  # fmt: skip
        """A pre- or post-processing call (processing.py) and its trace; its result is left in `_staged`."""
        stage = override.prompt_type
        step = f"{self._trace_id}-{'pre' if stage == 'PRE_PROCESSING' else 'post'}-0"
        chat = processing.request(self.turn.definition, override, default, values, self.turn.enable_trace, marked)
        if self.turn.enable_trace:
            yield ModelInput(step, chat.model, prompts.prompt_text(chat), chat.sampling, stage, override.creation_mode,
                             override.parser_mode)  # fmt: skip
        self._staged = result = await self._call(chat)
        if self.turn.enable_trace:
            if stage == "PRE_PROCESSING":
                verdict = processing.parse_pre(result.text, override.parser_mode)
                parsed: dict[str, Any] = {"isValid": verdict.valid, "rationale": verdict.rationale}
            else:
                parsed = {"text": processing.parse_post(result.text, override.parser_mode)}
            yield ModelOutput(step, prompts.raw(result), result.usage, result.latency_ms, stage, parsed)
            if result.guardrail is not None:
                yield GuardrailStep(step, result.guardrail)

    async def _call(self, chat: ChatRequest) -> ChatResult:
        inference = self.runtime.inference
        began = time.perf_counter()
        stream = await inference.stream(chat, self.principal, whole=True)
        try:
            return await collect(stream)
        finally:
            await stream.aclose()
            self.timings.model_ms += _ms(began)
            self.timings.model_calls += 1

    async def _search(self, inv: Invocation) -> list[Passage]:
        config = self.turn.retrievals.get(inv.knowledge_base_id)
        return await lookups.search(self.runtime.knowledge, inv.knowledge_base_id, self.principal,
                                    inv.query or self.turn.input_text, config)  # fmt: skip

    async def _lambda(self, step: str, inv: Invocation, target: Target, question: str) -> ToolOutput:
        assert target.group is not None
        executor = target.group.executor
        session = self.session
        payload = lambdas.event(self.turn.definition, inv, self.session_id, question, session.attributes,
                                session.prompt_attributes)  # fmt: skip
        out = await lambdas.invoke(self.runtime.http, executor.lambda_url, executor.lambda_arn, payload)
        if out.attributes is not None:
            session.attributes = dict(out.attributes)
        if out.prompt_attributes is not None:
            session.prompt_attributes = dict(out.prompt_attributes)
        text = out.text if out.state != "REPROMPT" else f"Please try again: {out.text}"
        return ToolOutput(step, inv, text, is_error=out.is_error)

    async def _save(self) -> None:
        began = time.perf_counter()
        ttl = self.turn.definition.idle_session_ttl
        await self.runtime.sessions.save(self.session, ttl)
        self.timings.session_ms += _ms(began)

    async def _end(self) -> None:
        if self.runtime.memory is not None and self.session.memory is not None:
            await self.runtime.memory.remember(self.session, self.principal)  # summarized into its memory
        began = time.perf_counter()
        await self.runtime.sessions.end(self.session)
        self.timings.session_ms += _ms(began)

    async def _finish(self, question: str | None, answer: str | None) -> None:
        if question is not None and answer is not None:
            self.session.turns.append((question, answer))
        if self.turn.end_session:
            await self._end()
        else:
            await self._save()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self.runtime._busy.discard((self.turn.definition.agent_id, self.turn.session_id))
