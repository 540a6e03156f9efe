"""Run one guardrail's rules for one direction over some texts: Bedrock's GuardrailAssessment.

Cheap checks first and concurrently: words and sensitive information on a worker thread while the
embedding model embeds every window once; content filters, denied topics and grounding share those
vectors, except that STANDARD content filters read a fine-tuned copy of MiniLM (tuned.py) when the
installed classifier was trained on one. On CLASSIC all three share the static vectors.
A constitution, the only check that calls a model, runs last and only when nothing blocked already.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from outcrop import errors
from outcrop.guardrails import constitution as constitution_mod
from outcrop.guardrails import semantic, words
from outcrop.guardrails.content import ContentClassifier, blocks, needs_attack_cascade, windows
from outcrop.guardrails.policy import Rules, Source
from outcrop.guardrails.static import StaticEmbedder
from outcrop.guardrails.store import Guardrail
from outcrop.guardrails.tuned import content_embed, needs_adapters

Embed = Callable[[list[str]], Awaitable[np.ndarray]]
TUNED = "STANDARD+lora"  # the vector space of the STANDARD content filters' fine-tuned encoder
Scope = Literal["INTERVENTIONS", "FULL"]
_ACTION = {"BLOCK": "BLOCKED", "ANONYMIZE": "ANONYMIZED", "NONE": "NONE"}
_CACHE_TEXTS = 4096  # about 6 MB of vectors
STATIC_CLASSIFIER = Path(__file__).parent / "data" / "content_classifier_static.npz"
_UNIT_KEYS = ("topicPolicyUnits", "contentPolicyUnits", "wordPolicyUnits", "sensitiveInformationPolicyUnits",
              "sensitiveInformationPolicyFreeUnits", "contextualGroundingPolicyUnits")  # fmt: skip


@dataclass(frozen=True)
class Compiled:
    """A guardrail version ready to run: its rules per direction and its constitution."""

    guardrail: Guardrail
    input: Rules
    output: Rules
    constitution: constitution_mod.Constitution | None = None

    def rules(self, source: Source) -> Rules:
        return self.input if source == "INPUT" else self.output


@dataclass(frozen=True)
class Outcome:
    blocked: bool
    intervened: bool  # blocked, masked or revised
    texts: tuple[str, ...]  # the guarded texts after masking or revision
    message: str  # what a blocked call answers instead
    assessment: dict[str, Any]
    usage: dict[str, int]
    reason: str | None = None
    latency_ms: int = 0

    @property
    def action(self) -> str:
        return "GUARDRAIL_INTERVENED" if self.intervened else "NONE"


def _units(chars: int) -> int:
    return max(1, math.ceil(chars / 1000)) if chars else 0


def no_usage() -> dict[str, int]:
    return dict.fromkeys(_UNIT_KEYS, 0)


class Checker:
    """The process-wide parts the rules need: the embedding model, the content classifier, a judge."""

    def __init__(
        self, embed: Embed, complete: constitution_mod.Complete | None = None, content: Embed | None = None
    ) -> None:
        self.embed = embed
        self.complete = complete
        self._content_embed = content  # the fine-tuned encoder; loaded on first use when not given
        self._classifiers: dict[str, ContentClassifier] = {}
        self._static: StaticEmbedder | None = None
        self._anchors: dict[tuple[str, str, str], semantic.TopicAnchors] = {}
        self._cache: dict[tuple[str, str], np.ndarray] = {}  # (tier, text) -> vector, least recently used first

    async def vectors(self, texts: list[str], tier: str) -> np.ndarray:
        """Embeddings of `texts` for `tier` (STANDARD, CLASSIC, semantic.CLASSIC_TOPICS or TUNED), each distinct
        text embedded once and recent ones not again: a conversation's earlier turns are checked on every
        turn, and a RAG caller sends the same source often."""
        found = {t: self._cache[(tier, t)] for t in texts if (tier, t) in self._cache}
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            if tier == "STANDARD":
                fresh = await self.embed(missing)
            elif tier == semantic.CLASSIC_TOPICS:
                if self._static is None:
                    self._static = await asyncio.to_thread(StaticEmbedder.load)
                fresh = self._static.embed(missing, weighted=True)
            elif tier == TUNED:
                if self._content_embed is None:
                    self._content_embed = content_embed()
                fresh = await self._content_embed(missing)
            else:
                if self._static is None:  # the first use may build the table: off the event loop
                    self._static = await asyncio.to_thread(StaticEmbedder.load)
                fresh = self._static.embed(missing)  # about a millisecond: not worth a thread hop
            found.update(zip(missing, fresh, strict=True))
        for t, v in found.items():  # most recently used last
            self._cache.pop((tier, t), None)
            self._cache[(tier, t)] = v
        while len(self._cache) > _CACHE_TEXTS:
            self._cache.pop(next(iter(self._cache)))
        if not texts:
            return np.zeros((0, 384), np.float32)
        return np.stack([found[t] for t in texts]).astype(np.float32, copy=False)

    def content_space(self, tier: str) -> str:
        """Which vectors the content filters of `tier` read: the fine-tuned encoder's (TUNED) when the
        STANDARD classifier was trained on it, else the tier's own."""
        return TUNED if tier == "STANDARD" and needs_adapters(self.classifier(tier)) else tier

    async def moderate(self, texts: list[str]) -> list[dict[str, Any]]:
        """OpenAI moderation results for `texts` (moderation.py): the STANDARD content classifier at MEDIUM."""
        from outcrop.guardrails import moderation

        pieces = [windows(t) for t in texts]
        vectors = await self.vectors([w for p in pieces for w in p], self.content_space("STANDARD"))
        classifier = self.classifier("STANDARD")
        out, at = [], 0
        for p in pieces:
            out.append(moderation.result(classifier, vectors[at : at + len(p)]))
            at += len(p)
        return out

    def classifier(self, tier: str) -> ContentClassifier:
        if tier not in self._classifiers:
            self._classifiers[tier] = ContentClassifier.load(STATIC_CLASSIFIER if tier == "CLASSIC" else None)
        return self._classifiers[tier]

    async def _topic_anchors(self, compiled: Compiled, rules: Rules, tier: str = "") -> list[semantic.TopicAnchors]:
        """The topics' anchors in the vector space `tier` (default: the space of the topic tier's own)."""
        g = compiled.guardrail
        tier = tier or semantic.topic_space(rules.topic_tier)
        keys = [(g.id, g.version + g.updated_at.isoformat() + tier, t.name) for t in rules.topics]
        missing = [(k, t) for k, t in zip(keys, rules.topics, strict=True) if k not in self._anchors]
        if missing:
            texts = [s for _, t in missing for s in (f"{t.name}: {t.definition}", *t.examples)]
            vectors = await self.vectors(texts, tier)
            at = 0
            for key, t in missing:
                n = 1 + len(t.examples)
                self._anchors[key] = semantic.TopicAnchors(t.name, vectors[at : at + n])
                at += n
        return [self._anchors[k] for k in keys]

    async def _topic_scores(self, compiled: Compiled, rules: Rules, pieces: list[str],
                            anchors: list[semantic.TopicAnchors], vectors: np.ndarray) -> list[float]:  # fmt: skip
        """Each topic's best score over the windows (>= 0.5: detected). On a tier with a cascade (CLASSIC), the
        (topic, window) pairs its own vectors leave uncertain are scored again on the STANDARD encoder, which
        embeds only the windows concerned (semantic.CASCADE)."""
        tier = rules.topic_tier
        scores = np.stack([semantic.window_scores(a, vectors, tier) for a in anchors])  # (topics, windows)
        band = semantic.uncertain(scores, tier)
        if band.any():
            columns = np.flatnonzero(band.any(axis=0))
            exact = await self.vectors([pieces[i] for i in columns], "STANDARD")
            for k, anchor in enumerate(await self._topic_anchors(compiled, rules, "STANDARD")):
                rescored = semantic.window_scores(anchor, exact, "STANDARD")
                scores[k, columns] = np.where(band[k, columns], rescored, scores[k, columns])
        return [float(row.max()) for row in scores]

    async def assess(
        self,
        compiled: Compiled,
        source: Source,
        texts: Sequence[str],
        *,
        grounding_source: str | None = None,
        query: str | None = None,
        scope: Scope = "INTERVENTIONS",
        prompt: str | None = None,
    ) -> Outcome:
        started = time.perf_counter()
        rules = compiled.rules(source)
        full = scope == "FULL"
        chars = sum(len(t) for t in texts)
        assessment: dict[str, Any] = {}
        usage = no_usage()
        texts = list(texts)

        lexical = asyncio.to_thread(_lexical, rules, texts, full)
        semantic_part = self._semantic(compiled, rules, texts, grounding_source, query, full)
        (word_policy, sensitive, masked), (content_policy, topic_policy, grounding_policy) = await asyncio.gather(
            lexical, semantic_part
        )
        for key, policy, unit_key, configured in (
            ("topicPolicy", topic_policy, "topicPolicyUnits", rules.topics),
            ("contentPolicy", content_policy, "contentPolicyUnits", rules.content),
            ("wordPolicy", word_policy, "wordPolicyUnits", rules.words or rules.profanity),
            ("sensitiveInformationPolicy", sensitive, "sensitiveInformationPolicyUnits", rules.pii or rules.regexes),
            ("contextualGroundingPolicy", grounding_policy, "contextualGroundingPolicyUnits", rules.grounding),
        ):
            if configured:
                usage[unit_key] = _units(chars)
            if policy:
                assessment[key] = policy
        actions = [e["action"] for p in assessment.values() for entries in p.values() for e in entries]
        blocked = "BLOCKED" in actions
        anonymized = "ANONYMIZED" in actions
        reason = None
        out_texts = tuple(masked)
        revised = False
        if not blocked and compiled.constitution is not None and self.complete is not None:
            c = compiled.constitution
            if (c.check_input and source == "INPUT") or (c.check_output and source == "OUTPUT"):
                text = "\n\n".join(masked)
                verdict = await constitution_mod.judge(c, text, source, self.complete, prompt=prompt)
                action = "NONE"
                if not verdict.allowed:
                    if source == "OUTPUT" and c.revise_output:
                        revision = await constitution_mod.revise(c, text, verdict, self.complete, prompt=prompt)
                        if revision.strip():
                            out_texts, revised, action = (revision,), True, "REVISED"
                        else:
                            blocked, action = True, "BLOCKED"
                    else:
                        blocked, action = True, "BLOCKED"
                if full or not verdict.allowed:
                    assessment["constitutionPolicy"] = constitution_mod.trace_entry(
                        verdict, action, c.judge_model, revised
                    )
                if not verdict.allowed:
                    reason = f"Constitution rule {verdict.rule_id or '?'}: {verdict.reason}"
        latency_ms = int((time.perf_counter() - started) * 1000)
        assessment["invocationMetrics"] = {
            "guardrailProcessingLatency": latency_ms,
            "usage": usage,
            "guardrailCoverage": {"textCharacters": {"guarded": chars, "total": chars}},
        }
        if blocked and reason is None:
            reason = "Guardrail blocked."
        return Outcome(blocked, blocked or anonymized or revised, out_texts, rules.blocked_message, assessment,
                       usage, reason, latency_ms)  # fmt: skip

    async def _semantic(
        self,
        compiled: Compiled,
        rules: Rules,
        texts: list[str],
        grounding_source: str | None,
        query: str | None,
        full: bool,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        content: dict[str, Any] = {}
        topics: dict[str, Any] = {}
        grounding: dict[str, Any] = {}
        need_windows = bool(rules.content or rules.topics)
        ground = bool(rules.grounding) and grounding_source is not None and query is not None
        if not (need_windows or ground):
            return content, topics, grounding
        pieces = [w for t in texts for w in windows(t)] if need_windows else []
        answer = [s for t in texts for s in semantic.sentences(t)] if ground else []
        source_pieces = semantic.sentences(grounding_source or "") if ground else []
        anchors = await self._topic_anchors(compiled, rules) if rules.topics else []
        tier = rules.content_tier
        # the content filters' vectors: the fine-tuned encoder's when the classifier was trained on it
        space = self.content_space(tier) if rules.content else tier
        # the answer's sentences, the source's, the query, and the query followed by the answer's first sentence
        claim = [semantic.claim(query or "", answer)] if ground else []
        grounding_texts = [*answer, *source_pieces, *([query or ""] if ground else []), *claim]
        content_pieces = pieces if rules.content else []
        if space == tier:  # one call for both
            vectors = await self.vectors([*content_pieces, *grounding_texts], tier)
            window_vectors, ground_vectors = vectors[: len(content_pieces)], vectors[len(content_pieces) :]
        else:
            window_vectors = await self.vectors(content_pieces, space)
            ground_vectors = await self.vectors(grounding_texts, tier)
        topic_vectors = window_vectors
        if rules.topics and (semantic.topic_space(rules.topic_tier) != space or not rules.content):
            topic_vectors = await self.vectors(pieces, semantic.topic_space(rules.topic_tier))
        if rules.content and len(pieces):
            text_scores = self.classifier(tier).text_scores(window_vectors)
            confidences = self.classifier(tier).levels(text_scores)
            if (
                tier == "CLASSIC"
                and needs_attack_cascade(text_scores)
                and any(r.category == "PROMPT_ATTACK" for r in rules.content)
            ):  # CLASSIC's attack score is high enough to ask MiniLM (content.ATTACK_CASCADE_FROM)
                exact = await self.vectors(pieces, self.content_space("STANDARD"))
                confidences["PROMPT_ATTACK"] = self.classifier("STANDARD").confidences(exact)["PROMPT_ATTACK"]
            filters = []
            for rule in rules.content:
                confidence = confidences.get(rule.category, "NONE")
                detected = blocks(confidence, rule.strength)
                if detected or full:
                    filters.append({"type": rule.category, "confidence": confidence, "filterStrength": rule.strength,
                                    "action": "BLOCKED" if detected and rule.action == "BLOCK" else "NONE",
                                    "detected": detected})  # fmt: skip
            if filters:
                content["filters"] = filters
        if rules.topics and len(pieces):
            topic_scores = await self._topic_scores(compiled, rules, pieces, anchors, topic_vectors)
            found = []
            for topic, best in zip(rules.topics, topic_scores, strict=True):
                detected = best >= 0.5
                if detected or full:
                    found.append({"name": topic.name, "type": "DENY",
                                  "action": "BLOCKED" if detected and topic.action == "BLOCK" else "NONE",
                                  "detected": detected})  # fmt: skip
            if found:
                topics["topics"] = found
        if ground:
            n, m = len(answer), len(source_pieces)
            answer_vectors, source_vectors = ground_vectors[:n], ground_vectors[n : n + m]
            query_vector, claim_vector = ground_vectors[n + m], ground_vectors[n + m + 1]
            # the answer as a whole: the mean of its sentences (no second, longer pass through the model)
            whole_vector = answer_vectors.mean(axis=0)
            whole_vector = whole_vector / max(float(np.linalg.norm(whole_vector)), 1e-9)
            claims = answer_vectors.copy()
            if n:
                claims[0] = claim_vector  # the first sentence read as the completion of the question
            grounded = semantic.grounding_score(answer, claims, grounding_source or "", source_vectors, query or "")
            scores = {
                "GROUNDING": grounded,
                "RELEVANCE": semantic.relevance_score(query_vector, whole_vector, claim_vector, tier),
            }
            gfilters: list[dict[str, Any]] = []
            for g in rules.grounding:
                score = round(scores[g.type], 4)
                detected = score < g.threshold
                if detected or full:
                    gfilters.append({"type": g.type, "threshold": g.threshold, "score": score,
                                    "action": "BLOCKED" if detected and g.action == "BLOCK" else "NONE",
                                    "detected": detected})  # fmt: skip
            if gfilters:
                grounding["filters"] = gfilters
        return content, topics, grounding


def _lexical(rules: Rules, texts: list[str], full: bool) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Word filters and sensitive information; returns the texts with ANONYMIZE findings masked."""
    word_policy: dict[str, Any] = {}
    if rules.words or rules.profanity:
        custom = []
        for rule in rules.words:
            for match in words.find(rule.pattern, texts):
                custom.append({"match": match, "action": _ACTION[rule.action], "detected": True})
        managed = []
        if rules.profanity:
            for match in words.find(words.profanity_pattern(), texts):
                managed.append({"match": match, "type": "PROFANITY", "action": _ACTION[rules.profanity],
                                "detected": True})  # fmt: skip
        if custom or managed or full:
            word_policy = {"customWords": custom, "managedWordLists": managed}
    sensitive: dict[str, Any] = {}
    masked = texts
    if rules.pii or rules.regexes:
        actions = {p.type: p.action for p in rules.pii}
        regex_actions = {r.name: r for r in rules.regexes}
        from outcrop.guardrails.pii import PiiScanner, mask  # presidio loads on first use, and only for PII types

        scanner = PiiScanner([p.type for p in rules.pii], [(r.name, r.pattern) for r in rules.regexes])
        entities: list[dict[str, Any]] = []
        regexes: list[dict[str, Any]] = []
        masked = []
        for text in texts:
            try:
                findings = scanner.scan(text)
            except TimeoutError:  # a runaway custom regex: fail closed, and say why
                raise errors.InvalidRequest(
                    "A custom regex of this guardrail took too long on this text; the text was not let through."
                ) from None
            to_mask = []
            for f in findings:
                if f.regex:
                    regex = regex_actions[f.type]
                    regexes.append({"name": f.type, "match": f.match, "regex": regex.pattern,
                                    "action": _ACTION[regex.action], "detected": True})  # fmt: skip
                    if regex.action == "ANONYMIZE":
                        to_mask.append(f)
                else:
                    entities.append({"match": f.match, "type": f.type, "action": _ACTION[actions[f.type]],
                                     "detected": True})  # fmt: skip
                    if actions[f.type] == "ANONYMIZE":
                        to_mask.append(f)
            masked.append(mask(text, to_mask) if to_mask else text)
        if entities or regexes or full:
            sensitive = {"piiEntities": entities, "regexes": regexes}
    return word_policy, sensitive, masked
