"""Guardrails at run time: resolve and cache guardrail versions, check a request's input, guard the
model's output on the event stream, and answer ApplyGuardrail.

Which input text is checked follows Bedrock: every text part of every message (tool results and tool
definitions are not checked), unless the caller marked some with guardContent, in which case only
those (and system guardContent) are. ANONYMIZE on input masks what the model sees.

Output streams have two modes, as in Bedrock. `sync` holds text back in chunks (about a sentence or
two) until each is checked, so nothing blocked or unmasked ever reaches the caller. `async` releases
text at once and checks it alongside; a block ends the stream with the blocked message, but what was
already sent stays sent and masking is not applied. A non-streaming call checks each whole text block.
Rules that need the whole answer (contextual grounding, a constitution) also check whole blocks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from outcrop import errors
from outcrop.conversation import (
    BlockStop,
    ChatRequest,
    Event,
    GuardrailRef,
    GuardrailTrace,
    Message,
    MessageStart,
    MessageStop,
    StopReason,
    Text,
    TextDelta,
    Usage,
)
from outcrop.guardrails import constitution as constitution_mod
from outcrop.guardrails.assess import TUNED, Checker, Compiled, Outcome, Scope
from outcrop.guardrails.policy import compile_rules
from outcrop.guardrails.store import GuardrailStore
from outcrop.guardrails.tuned import needs_adapters

log = logging.getLogger("outcrop.guardrails")
CHUNK_CHARS = 200  # sync streaming: check and release text about this often
_DRAFT_TTL_S = 2.0  # a DRAFT can change under us; numbered versions cannot
_VERSION_TTL_S = 30.0  # ... but can be deleted


def parse_ref(value: str) -> tuple[str, str]:
    """`id`, `id:version` or an ARN (with an optional `:version`), as headers and config carry them."""
    if value.startswith("arn:"):
        head, _, tail = value.rpartition(":")
        if "/" in tail:
            return value, "DRAFT"
        return head, tail
    ident, _, version = value.partition(":")
    return ident, version or "DRAFT"


@dataclass(frozen=True)
class _Guarded:
    """Where the guarded input texts are, so masked text can be put back."""

    texts: list[str]
    places: list[tuple[int, int] | None]  # (message, part), (-1, k) for guarded_system[k], None for system / prompt
    grounding_source: str | None
    query: str | None
    spans: tuple[tuple[int, int], ...] = ()  # a raw prompt's: where each text is in it


def _input_texts(request: ChatRequest, system: str = "SELECTIVE", messages: str = "SELECTIVE") -> _Guarded:
    """The input texts a guardrail reads. SELECTIVE (a request's own guardrail): only what the caller
    marked, if anything is marked (guardContent, input tags), else every message and no system prompt.
    COMPREHENSIVE (enforced guardrails): the whole system prompt, every message, the whole raw prompt."""
    if request.prompt is not None:
        spans = request.guarded_prompt if request.guarded_prompt and messages == "SELECTIVE" else ()
        spans = spans or ((0, len(request.prompt)),)
        return _Guarded([request.prompt[a:b] for a, b in spans], [None] * len(spans), None, None, spans)
    marked = any(isinstance(p, Text) and p.qualifiers is not None for m in request.messages for p in m.parts) or bool(
        request.guarded_system
    )
    texts: list[str] = []
    places: list[tuple[int, int] | None] = []
    sources: list[str] = []
    queries: list[str] = []
    if system == "COMPREHENSIVE":
        if request.system:
            texts.append(request.system)
            places.append(None)
    else:
        for k, t in enumerate(request.guarded_system):
            texts.append(t.text)
            places.append((-1, k))
    for i, m in enumerate(request.messages):
        for j, p in enumerate(m.parts):
            if not isinstance(p, Text):
                continue
            quals = None if p.qualifiers is None else (p.qualifiers or ("guard_content",))
            if quals is not None and "grounding_source" in quals:
                sources.append(p.text)
            if quals is not None and "query" in quals:
                queries.append(p.text)
            # SELECTIVE with something marked reads the guard_content blocks only; otherwise (COMPREHENSIVE,
            # or nothing marked) every text the model reads, grounding sources and queries included
            if not marked or messages == "COMPREHENSIVE" or (quals is not None and "guard_content" in quals):
                texts.append(p.text)
                places.append((i, j))
    return _Guarded(texts, places, "\n".join(sources) or None, "\n".join(queries) or None)


def _masked(request: ChatRequest, guarded: _Guarded, texts: Sequence[str]) -> ChatRequest:
    if list(texts) == guarded.texts:
        return request
    if request.prompt is not None:
        pieces: list[str] = []
        moved: list[tuple[int, int]] = []  # where each masked span now is
        last = at = 0  # end of the previous span in the old prompt; length of the new one so far
        for (a, b), new in sorted(zip(guarded.spans, texts, strict=True)):
            pieces += [request.prompt[last:a], new]
            at += a - last
            moved.append((at, at + len(new)))
            at, last = at + len(new), b
        prompt = "".join([*pieces, request.prompt[last:]])
        # the tagged spans move with the masking; the whole prompt masked by a COMPREHENSIVE guardrail loses
        # the tags' places, and a later guardrail that honours tags reads all of it
        tagged = tuple(moved) if request.guarded_prompt and guarded.spans == request.guarded_prompt else ()
        return replace(request, prompt=prompt, guarded_prompt=tagged)
    messages = [list(m.parts) for m in request.messages]
    system = request.system
    blocks = list(request.guarded_system)
    for place, old, new in zip(guarded.places, guarded.texts, texts, strict=True):
        if old == new:
            continue
        if place is None:  # the whole system prompt: its guardContent blocks' places are lost, so a later
            system = new  # guardrail that reads only those reads the whole (masked) prompt instead
            blocks = [Text(new, ("guard_content",))] if blocks else []
        elif place[0] == -1:  # a system guardContent block: its text in the prompt, and the block itself
            system = system.replace(old, new, 1)
            blocks[place[1]] = Text(new, blocks[place[1]].qualifiers)
        else:
            i, j = place
            part = messages[i][j]
            assert isinstance(part, Text)
            messages[i][j] = Text(new, part.qualifiers)
    rebuilt = tuple(Message(m.role, tuple(parts)) for m, parts in zip(request.messages, messages, strict=True))
    return replace(request, messages=rebuilt, system=system, guarded_system=tuple(blocks))


def _last_user_text(request: ChatRequest) -> str | None:
    for m in reversed(request.messages):
        if m.role == "user":
            return "\n".join(p.text for p in m.parts if isinstance(p, Text)) or None
    return request.prompt


@dataclass
class InputCheck:
    request: ChatRequest  # with ANONYMIZE findings masked
    outcomes: list[tuple[Compiled, Outcome]]
    grounding_source: str | None
    query: str | None

    @property
    def blocking(self) -> Outcome | None:
        return next((o for _, o in self.outcomes if o.blocked), None)


def _trace_mode(refs: Sequence[GuardrailRef]) -> Literal["disabled", "enabled", "enabled_full"]:
    modes = [r.trace for r in refs if not r.enforced] or ["disabled"]
    return "enabled_full" if "enabled_full" in modes else ("enabled" if "enabled" in modes else "disabled")


class Guardrails:
    def __init__(self, store: GuardrailStore, checker: Checker) -> None:
        self.store = store
        self.checker = checker
        self._cache: dict[tuple[str, str], tuple[float, Compiled]] = {}
        self._warming: asyncio.Task[None] | None = None

    def warm_up(self) -> None:
        """When guardrails exist, load what they need (presidio takes seconds to import, the classifier and
        embedding model a second) in the background, so the first guarded call does not wait for it."""

        async def warm() -> None:
            try:
                configs = [g.config for g in await asyncio.to_thread(self.store.list)]
                if any((c.get("sensitiveInformationPolicyConfig") or {}).get("piiEntitiesConfig") for c in configs):
                    from outcrop.guardrails.pii import warm_up

                    await asyncio.to_thread(warm_up)
                if any(c.get("contentPolicyConfig") or c.get("topicPolicyConfig") for c in configs):
                    for tier in ("CLASSIC", "STANDARD"):
                        await asyncio.to_thread(self.checker.classifier, tier)
                        await self.checker.vectors(["warm up"], tier)
                    if needs_adapters(self.checker.classifier("STANDARD")):  # an installed fine-tuned encoder
                        await self.checker.vectors(["warm up"], TUNED)
            except Exception as exc:  # a failed warm-up only means the first call pays; it reports its own error
                log.warning("guardrail warm-up failed: %s", exc)

        self._warming = asyncio.get_running_loop().create_task(warm())

    async def compiled(self, identifier: str, version: str) -> Compiled:
        key = (self.store.parse_id(identifier), version)
        hit = self._cache.get(key)
        ttl = _DRAFT_TTL_S if version == "DRAFT" else _VERSION_TTL_S
        if hit is not None and time.monotonic() - hit[0] < ttl:
            return hit[1]
        g = await asyncio.to_thread(self.store.get, identifier, version)
        raw = g.config.get("constitution")
        compiled = Compiled(g, compile_rules(g.config, "INPUT"), compile_rules(g.config, "OUTPUT"),
                            constitution_mod.parse(raw) if raw else None)  # fmt: skip
        if len(self._cache) > 512:
            self._cache.clear()
        self._cache[key] = (time.monotonic(), compiled)
        return compiled

    async def resolve(self, refs: Sequence[GuardrailRef]) -> list[Compiled]:
        return list(await asyncio.gather(*(self.compiled(r.identifier, r.version) for r in refs)))

    # --- ApplyGuardrail ---------------------------------------------------------------------------

    async def apply(self, compiled: Compiled, source: str, blocks: Sequence[tuple[str, tuple[str, ...]]],
                    scope: Scope) -> Outcome:  # fmt: skip
        """`blocks` are (text, qualifiers): guard_content (or none) is checked, grounding_source and
        query feed contextual grounding."""
        guarded = [t for t, q in blocks if not q or "guard_content" in q]
        sources = [t for t, q in blocks if "grounding_source" in q]
        queries = [t for t, q in blocks if "query" in q]
        return await self.checker.assess(
            compiled, "INPUT" if source == "INPUT" else "OUTPUT", guarded,
            grounding_source="\n".join(sources) or None, query="\n".join(queries) or None, scope=scope,
        )  # fmt: skip

    # --- a model call -----------------------------------------------------------------------------

    async def check_input(self, guards: Sequence[Compiled], refs: Sequence[GuardrailRef],
                          request: ChatRequest) -> InputCheck:  # fmt: skip
        marked = _input_texts(request)
        scope: Scope = "FULL" if _trace_mode(refs) == "enabled_full" else "INTERVENTIONS"
        outcomes: list[tuple[Compiled, Outcome]] = []
        current = request
        for g, ref in zip(guards, refs, strict=True):  # in order: each sees what the previous one masked
            guarded = _input_texts(current, ref.system, ref.messages)
            outcome = await self.checker.assess(g, "INPUT", guarded.texts, scope=scope)
            outcomes.append((g, outcome))
            if outcome.blocked:
                break
            current = _masked(current, guarded, outcome.texts)
        query = marked.query or _last_user_text(request)
        return InputCheck(current, outcomes, marked.grounding_source, query)

    def blocked_stream(self, check: InputCheck, refs: Sequence[GuardrailRef]) -> AsyncIterator[Event]:
        outcome = check.blocking
        assert outcome is not None
        trace = GuardrailTrace(
            True, {g.guardrail.id: o.assessment for g, o in check.outcomes}, {}, (), outcome.reason, _trace_mode(refs)
        )

        async def events() -> AsyncIterator[Event]:
            yield MessageStart(0)
            yield TextDelta(0, outcome.message)
            yield BlockStop(0)
            yield MessageStop(StopReason.GUARDRAIL_INTERVENED, Usage(0, 0), guardrail=trace)

        return events()

    def guard_output(
        self,
        guards: Sequence[Compiled],
        refs: Sequence[GuardrailRef],
        check: InputCheck,
        events: AsyncIterator[Event],
        *,
        whole: bool,
    ) -> AsyncIterator[Event]:
        return _OutputGuard(self.checker, guards, refs, check, whole).run(events)


class _OutputGuard:
    def __init__(self, checker: Checker, guards: Sequence[Compiled], refs: Sequence[GuardrailRef],
                 check: InputCheck, whole: bool) -> None:  # fmt: skip
        self.checker = checker
        self.guards = [g for g in guards if not g.output.empty or (g.constitution and g.constitution.check_output)]
        self.check = check
        self.trace = _trace_mode(refs)
        self.scope: Scope = "FULL" if self.trace == "enabled_full" else "INTERVENTIONS"
        self.sync = whole or all(r.stream_mode == "sync" for r in refs)
        # grounding needs the whole answer, but only runs when the request gave a source to ground in
        grounding = check.grounding_source is not None
        needs_whole = any(
            (g.output.grounding and grounding) or (g.constitution and g.constitution.check_output) for g in self.guards
        )
        self.chunk = None if (whole or needs_whole) else CHUNK_CHARS
        self.assessments: dict[str, list[dict[str, Any]]] = {}
        self.model_output: list[str] = []
        self.reason: str | None = None
        self.intervened = False

    async def _check(self, text: str) -> tuple[Outcome | None, str]:
        """Every guard over `text`, in order; the blocking outcome if one blocks, and the text to release."""
        prompt = self.check.query
        for g in self.guards:
            outcome = await self.checker.assess(g, "OUTPUT", [text], grounding_source=self.check.grounding_source,
                                                query=self.check.query, scope=self.scope, prompt=prompt)  # fmt: skip
            self.assessments.setdefault(g.guardrail.id, []).append(outcome.assessment)
            if outcome.intervened:
                self.intervened = True
                self.reason = self.reason or outcome.reason or "Guardrail masked or revised the output."
            if outcome.blocked:
                return outcome, text
            text = outcome.texts[0] if outcome.texts else text
        return None, text

    def _stop(self, stop: MessageStop | None, usage: Usage) -> MessageStop:
        input_assessment = {g.guardrail.id: o.assessment for g, o in self.check.outcomes}
        trace = GuardrailTrace(
            self.intervened, input_assessment, {k: tuple(v) for k, v in self.assessments.items()},
            tuple(self.model_output) if self.intervened else (), self.reason, self.trace,
        )  # fmt: skip
        reason = (
            StopReason.GUARDRAIL_INTERVENED if self.intervened else (stop.stop_reason if stop else StopReason.END_TURN)
        )
        return MessageStop(reason, stop.usage if stop else usage, stop.stop_sequence if stop else None, trace)

    def _ending(self, index: int, message: str, stop: MessageStop | None, usage: Usage) -> list[Event]:
        """How a blocked stream ends: the blocked message in block `index`, that block's stop, the message stop."""
        return [TextDelta(index, message), BlockStop(index), self._stop(stop, usage)]

    @staticmethod
    def _cut(pending: str, size: int) -> int:
        """Where to cut a chunk of about `size` characters: after a sentence end or a space."""
        if len(pending) < size:
            return 0
        for marks in (".!?\n", " \t"):
            at = max(pending.rfind(c, size // 2) for c in marks)
            if at >= 0:
                return at + 1
        return len(pending)

    async def run(self, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
        if not self.guards:
            async for event in events:
                yield (
                    replace(event, guardrail=self._stop(event, event.usage).guardrail)
                    if isinstance(event, MessageStop)
                    else event
                )
            return
        pending: dict[int, str] = {}
        last_usage = Usage()
        last_index = 0
        background: list[asyncio.Task[tuple[Outcome | None, str]]] = []
        try:
            async for event in events:
                if isinstance(event, MessageStart):
                    last_usage = Usage(event.input_tokens, 0, event.cache_read_tokens, event.cache_write_tokens,
                                       event.cache_write_ttl_s)  # fmt: skip
                index = getattr(event, "index", None)
                if index is not None:
                    last_index = max(last_index, index)
                if isinstance(event, TextDelta):
                    self.model_output.append(event.text)
                    i = event.index
                    pending[i] = pending.get(i, "") + event.text
                    cut = self._cut(pending[i], self.chunk) if self.chunk else 0
                    chunk, pending[i] = (pending[i][:cut], pending[i][cut:]) if cut else ("", pending[i])
                    if not self.sync:  # async: release at once, check alongside
                        if chunk:
                            background.append(asyncio.ensure_future(self._check(chunk)))
                        blocked = _done_block(background)
                        if blocked is None:
                            yield event
                            continue
                    elif not chunk:
                        continue
                    else:  # sync: release a chunk once it is checked
                        blocked, released = await self._check(chunk)
                        if blocked is None:
                            yield TextDelta(i, released)
                            continue
                    for ending in self._ending(i, blocked.message, None, last_usage):
                        yield ending
                    return
                if isinstance(event, BlockStop) and pending.get(event.index):
                    chunk = pending.pop(event.index)
                    if not self.sync:
                        background.append(asyncio.ensure_future(self._check(chunk)))
                    else:
                        blocked, released = await self._check(chunk)
                        if blocked is not None:
                            for ending in self._ending(event.index, blocked.message, None, last_usage):
                                yield ending
                            return
                        yield TextDelta(event.index, released)
                if isinstance(event, MessageStop):
                    for task in background:
                        blocked, _ = await task
                        if blocked is not None:
                            # async: the answer's blocks are already out and stopped; the blocked
                            # message comes as one more text block
                            for ending in self._ending(last_index + 1, blocked.message, event, event.usage):
                                yield ending
                            return
                    yield self._stop(event, event.usage)
                    continue
                yield event
        finally:
            for task in background:
                task.cancel()
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()


def _done_block(tasks: list[asyncio.Task[tuple[Outcome | None, str]]]) -> Outcome | None:
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is None:
            blocked, _ = task.result()
            if blocked is not None:
                return blocked
    return None


def require(guardrails: Guardrails | None) -> Guardrails:
    if guardrails is None:
        raise errors.InvalidRequest("This server has no guardrail store, so it cannot apply a guardrail.")
    return guardrails


def registry_embed(registry: Any) -> Any:
    """The embedding function guardrails use: outcrop.guardrails.encoder's (the backend it names; its torch
    backends share the served built-in MiniLM when there is one, else load a private instance of it)."""
    from outcrop.guardrails.encoder import GuardrailEncoder, chosen_backend
    from outcrop.models import BUILTIN_EMBEDDING_ID, builtin_embedding_available

    holder: list[GuardrailEncoder] = []

    async def embed(texts: list[str]) -> Any:
        if not holder:
            if not builtin_embedding_available():
                raise errors.InvalidRequest(
                    "This guardrail's content filters, denied topics or grounding checks need the built-in "
                    "embedding model, which is not installed: pip install 'outcrop[guardrails]'."
                )
            backend, served = chosen_backend(), None
            if backend.startswith("torch"):
                try:
                    _, served = await registry.embedder(BUILTIN_EMBEDDING_ID)
                except errors.OutcropError:
                    served = None
            encoder = GuardrailEncoder(backend, torch_embedder=served)
            if not holder:  # two first calls may both have got here
                holder.append(encoder)
        return await holder[0].embed(texts)

    return embed
