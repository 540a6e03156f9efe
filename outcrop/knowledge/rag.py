"""RetrieveAndGenerate: retrieve, build the prompt, generate through `Inference`, cite, remember the turn.

    session (sessions.py) -> passages (retrieval.py, or external.py for a document in the request)
      -> prompt (prompt.py) -> Inference.stream (access, quotas, guardrails, usage as any chat call)
      -> CitationParser (citations.py): clean text deltas and cited segments -> the dialect's encoder

`Rag.start` does everything that can fail before the first byte (unknown knowledge base or session, a bad
filter, a model that may not be used, a guardrail input block is *not* a failure) and returns a `RagStream`
whose events are `Output` (answer text, markers stripped), `Cited` (a segment and its passages) and, when a
guardrail ran, one `GuardrailAction` at the end. A non-streaming answer is `Rag.answer`: a fold over the same
stream. A completed turn is added to the session unless a guardrail intervened.

Retrieve's own guardrail checks the query as input before the search (guard_query: a blocked query finds
nothing) and each passage found as output (guard_passages: a blocked passage is dropped, a masked one returned
masked).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

from outcrop import errors
from outcrop.auth.principal import Principal
from outcrop.conversation import ChatRequest, GuardrailRef, MessageStop, Sampling, TextDelta
from outcrop.inference import Stream
from outcrop.knowledge import external, prompt
from outcrop.knowledge.citations import CitationParser, Segment
from outcrop.knowledge.retrieval import Passage, Retrieval, retrieve
from outcrop.knowledge.service import Knowledge
from outcrop.knowledge.sessions import Session, Sessions


@dataclass(frozen=True)
class Generation:
    model: str
    template: str | None = None  # None: prompt.DEFAULT_TEMPLATE
    sampling: Sampling = field(default_factory=Sampling)
    guardrail: GuardrailRef | None = None


@dataclass(frozen=True)
class RagRequest:
    question: str
    generation: Generation
    knowledge_base_id: str | None = None  # KNOWLEDGE_BASE; else `documents` (EXTERNAL_SOURCES)
    retrieval: Retrieval = field(default_factory=Retrieval)
    documents: tuple[external.Document, ...] = ()
    session_id: str | None = None
    kms_key_arn: str | None = None


@dataclass(frozen=True)
class Output:
    text: str


@dataclass(frozen=True)
class Cited:
    text: str
    start: int
    end: int  # exclusive
    passages: tuple[Passage, ...]


@dataclass(frozen=True)
class GuardrailAction:
    intervened: bool


RagEvent = Output | Cited | GuardrailAction


@dataclass
class Timings:
    """Milliseconds spent in each step of one call (benchmarks/knowledge_rag.py reports them)."""

    session_ms: float = 0.0  # opening the session, and adding the turn at the end
    retrieve_ms: float = 0.0  # the query's embedding and the search (or parsing an external document)
    prompt_ms: float = 0.0
    generate_ms: float = 0.0  # from handing the request to Inference until the model's last event
    first_token_ms: float | None = None  # from handing the request to Inference until the first text


@dataclass(frozen=True)
class RagResult:
    text: str
    citations: tuple[Cited, ...]
    session_id: str
    guardrail_intervened: bool | None  # None: no guardrail ran
    timings: Timings


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000


class RagStream:
    def __init__(self, rag: Rag, request: RagRequest, session: Session, passages: list[Passage], stream: Stream,
                 timings: Timings, started: float) -> None:  # fmt: skip
        self.rag = rag
        self.request = request
        self.session_id = session.id
        self.passages = passages
        self.stream = stream
        self.timings = timings
        self._started = started  # when the request went to Inference
        self.text = ""

    def _cited(self, segment: Segment, text: str) -> Cited:
        refs = tuple(self.passages[r - 1] for r in segment.refs)
        return Cited(text[segment.start : segment.end], segment.start, segment.end, refs)

    async def __aiter__(self) -> AsyncIterator[RagEvent]:
        parser = CitationParser(len(self.passages), [p.text for p in self.passages])
        stop: MessageStop | None = None
        async for event in self.stream:
            if isinstance(event, TextDelta):
                if self.timings.first_token_ms is None:
                    self.timings.first_token_ms = _ms(self._started)
                clean, done = parser.feed(event.text)
                if clean:
                    yield Output(clean)
                for segment in done:
                    yield self._cited(segment, parser.text)
            elif isinstance(event, MessageStop):
                stop = event
        self.timings.generate_ms = _ms(self._started)
        clean, done = parser.finish()
        if clean:
            yield Output(clean)
        self.text = parser.text
        trace = stop.guardrail if stop is not None else None
        intervened = trace.intervened if trace is not None else None
        if not intervened:
            for segment in done:
                yield self._cited(segment, parser.text)
        if intervened is not None:
            yield GuardrailAction(intervened)
        if not intervened and parser.text.strip():
            began = time.perf_counter()
            await asyncio.to_thread(self.rag.sessions.add_turn, self.session_id, self.request.question, parser.text)
            self.timings.session_ms += _ms(began)

    async def aclose(self) -> None:
        await self.stream.aclose()


class Rag:
    def __init__(self, knowledge: Knowledge, sessions: Sessions) -> None:
        self.knowledge = knowledge
        self.sessions = sessions

    async def _passages(self, request: RagRequest, principal: Principal, session: Session) -> list[Passage]:
        if request.knowledge_base_id is not None:
            page = await retrieve(self.knowledge, request.knowledge_base_id, principal, request.question,
                                  request.retrieval, context=session.last_question)  # fmt: skip
            return page.passages
        out: list[Passage] = []
        for document in request.documents:
            out += await asyncio.to_thread(external.passages, document, request.question, session.last_question)
        return out

    async def start(self, request: RagRequest, principal: Principal, *, whole: bool = False) -> RagStream:
        """`whole`: the caller folds the answer (guardrails then check it whole, as for any non-streaming call)."""
        inference = self.knowledge.inference
        model_id = await inference.authorize(request.generation.model, principal)
        if inference.registry.kind(model_id) == "embedding":
            raise errors.InvalidRequest(f"modelArn '{request.generation.model}' is an embedding model; name a chat "
                                        "model to generate the answer with.")  # fmt: skip
        if request.generation.template is not None:
            prompt.check_template(request.generation.template)
        timings = Timings()
        began = time.perf_counter()
        session = await asyncio.to_thread(self.sessions.open, request.session_id, principal.name, request.kms_key_arn)
        timings.session_ms = _ms(began)
        began = time.perf_counter()
        passages = await self._passages(request, principal, session)
        timings.retrieve_ms = _ms(began)
        began = time.perf_counter()
        messages = prompt.build(request.generation.template, request.question, [p.text for p in passages],
                                session.turns)  # fmt: skip
        ref = request.generation.guardrail
        chat = ChatRequest(model=request.generation.model, messages=messages, sampling=request.generation.sampling,
                           guardrails=(ref,) if ref else ())  # fmt: skip
        timings.prompt_ms = _ms(began)
        began = time.perf_counter()
        stream = await inference.stream(chat, principal, whole=whole)
        return RagStream(self, request, session, passages, stream, timings, began)

    async def answer(self, request: RagRequest, principal: Principal) -> RagResult:
        stream = await self.start(request, principal, whole=True)
        citations: list[Cited] = []
        intervened: bool | None = None
        try:
            async for event in stream:
                if isinstance(event, Cited):
                    citations.append(event)
                elif isinstance(event, GuardrailAction):
                    intervened = event.intervened
        finally:
            await stream.aclose()
        return RagResult(stream.text, tuple(citations), stream.session_id, intervened, stream.timings)


async def guard_query(knowledge: Knowledge, ref: GuardrailRef, query: str) -> tuple[bool, bool]:
    """Retrieve's guardrailConfiguration on the query: (blocked, intervened)."""
    from outcrop.guardrails.runtime import require

    rails = require(knowledge.inference.guardrails)
    checked = await rails.apply(await rails.compiled(ref.identifier, ref.version), "INPUT", [(query, ())],
                                "INTERVENTIONS")  # fmt: skip
    return checked.blocked, checked.intervened


async def guard_passages(knowledge: Knowledge, ref: GuardrailRef,
                         passages: list[Passage]) -> tuple[list[Passage], bool]:  # fmt: skip
    """Retrieve's guardrailConfiguration on what it found: (the passages that may be returned, masked where the
    guardrail masks; whether it intervened)."""
    from outcrop.guardrails.runtime import require

    rails = require(knowledge.inference.guardrails)
    compiled = await rails.compiled(ref.identifier, ref.version)
    intervened = False
    kept: list[Passage] = []
    for p in passages:
        out = await rails.apply(compiled, "OUTPUT", [(p.text, ())], "INTERVENTIONS")
        intervened = intervened or out.intervened
        if not out.blocked:
            kept.append(replace(p, text=out.texts[0]) if out.texts else p)
    return kept, intervened
