"""A guardrail definition (CreateGuardrail's body) compiled into the rules for one direction.

Bedrock lets every rule be switched per direction (`inputEnabled` / `outputEnabled`) and act per
direction (`inputAction` / `outputAction`, defaulting to the rule's `action`, else BLOCK). Action NONE
means "detect and report, but let it through"; a disabled rule is not evaluated at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Source = Literal["INPUT", "OUTPUT"]

DEFAULT_BLOCKED = "Sorry, I can't help with that."


@dataclass(frozen=True)
class ContentRule:
    category: str
    strength: str  # NONE | LOW | MEDIUM | HIGH
    action: str  # BLOCK | NONE


@dataclass(frozen=True)
class TopicRule:
    name: str
    definition: str
    examples: tuple[str, ...]
    action: str


@dataclass(frozen=True)
class WordRule:
    text: str
    action: str
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class PiiRule:
    type: str
    action: str  # BLOCK | ANONYMIZE | NONE


@dataclass(frozen=True)
class RegexRule:
    name: str
    pattern: str
    action: str


@dataclass(frozen=True)
class GroundingRule:
    type: str  # GROUNDING | RELEVANCE
    threshold: float
    action: str


@dataclass(frozen=True)
class Rules:
    """Everything one guardrail checks in one direction."""

    source: Source
    content: tuple[ContentRule, ...] = ()
    topics: tuple[TopicRule, ...] = ()
    words: tuple[WordRule, ...] = ()
    profanity: str | None = None  # the managed list's action, when enabled
    pii: tuple[PiiRule, ...] = ()
    regexes: tuple[RegexRule, ...] = ()
    grounding: tuple[GroundingRule, ...] = ()
    blocked_message: str = DEFAULT_BLOCKED
    # Bedrock's tiers, as Outcrop runs them: STANDARD on MiniLM itself (the default here: the more accurate);
    # CLASSIC on static embeddings distilled from it (about a hundred times faster, less accurate; see
    # static.py). Contextual grounding follows the content filters' tier.
    content_tier: str = "STANDARD"
    topic_tier: str = "STANDARD"

    @property
    def empty(self) -> bool:
        return not (self.content or self.topics or self.words or self.profanity or self.pii or self.regexes
                    or self.grounding)  # fmt: skip


def _on(rule: Mapping[str, Any], source: Source) -> tuple[bool, str]:
    """Whether `rule` is evaluated for `source`, and its action there."""
    key = "input" if source == "INPUT" else "output"
    enabled = rule.get(f"{key}Enabled", True)
    action = rule.get(f"{key}Action") or rule.get("action") or "BLOCK"
    return bool(enabled), str(action)


def word_pattern(text: str) -> re.Pattern[str]:
    """A custom word or phrase matches whole words, case-insensitively, with any run of spaces between words."""
    words = [re.escape(w) for w in text.split()]
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", re.IGNORECASE)


def compile_rules(config: Mapping[str, Any], source: Source) -> Rules:
    content = []
    for f in (config.get("contentPolicyConfig") or {}).get("filtersConfig") or []:
        enabled, action = _on(f, source)
        strength = f["inputStrength"] if source == "INPUT" else f["outputStrength"]
        # Bedrock: PROMPT_ATTACK applies to input only (its outputStrength must be NONE).
        if enabled and strength != "NONE" and not (f["type"] == "PROMPT_ATTACK" and source == "OUTPUT"):
            content.append(ContentRule(f["type"], strength, action))
    topics = []
    for t in (config.get("topicPolicyConfig") or {}).get("topicsConfig") or []:
        enabled, action = _on(t, source)
        if enabled:
            topics.append(TopicRule(t["name"], t["definition"], tuple(t.get("examples") or ()), action))
    word_policy = config.get("wordPolicyConfig") or {}
    words = []
    for w in word_policy.get("wordsConfig") or []:
        enabled, action = _on(w, source)
        if enabled:
            words.append(WordRule(w["text"], action, word_pattern(w["text"])))
    profanity = None
    for m in word_policy.get("managedWordListsConfig") or []:
        enabled, action = _on(m, source)
        if enabled and m["type"] == "PROFANITY":
            profanity = action
    sensitive = config.get("sensitiveInformationPolicyConfig") or {}
    pii = []
    for p in sensitive.get("piiEntitiesConfig") or []:
        enabled, action = _on(p, source)
        if enabled:
            pii.append(PiiRule(p["type"], action))
    regexes = []
    for r in sensitive.get("regexesConfig") or []:
        enabled, action = _on(r, source)
        if enabled:
            regexes.append(RegexRule(r["name"], r["pattern"], action))
    grounding = []
    if source == "OUTPUT":  # grounding and relevance judge a model's answer against its source and query
        for g in (config.get("contextualGroundingPolicyConfig") or {}).get("filtersConfig") or []:
            if g.get("enabled", True):
                grounding.append(GroundingRule(g["type"], float(g["threshold"]), g.get("action") or "BLOCK"))
    message = config.get("blockedInputMessaging" if source == "INPUT" else "blockedOutputsMessaging")
    return Rules(source, tuple(content), tuple(topics), tuple(words), profanity, tuple(pii), tuple(regexes),
                 tuple(grounding), message or DEFAULT_BLOCKED, _tier(config, "contentPolicyConfig"),
                 _tier(config, "topicPolicyConfig"))  # fmt: skip


def _tier(config: Mapping[str, Any], policy: str) -> str:
    return str(((config.get(policy) or {}).get("tierConfig") or {}).get("tierName") or "STANDARD")
