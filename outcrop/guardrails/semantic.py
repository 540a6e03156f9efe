"""Denied topics and contextual grounding, measured with sentence embeddings (all-MiniLM-L6-v2).

Topics: a text is on a denied topic when one of its windows is close enough to the topic's definition
or to one of its examples. The cosine is rescaled so that the operator's anchors matter: an example is
a sharper anchor than a definition (a definition describes, an example looks like what users write).

Grounding: every sentence of an answer must be supported by some sentence of the source. Support is the
best cosine to a source window, lowered when the sentence states a number the source never does (a
cheap, strong sign of a made-up fact that similarity alone misses). The answer's score is the mean
over its sentences. Relevance is the cosine between the query and the answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Cosine above which a window counts as on-topic, tier -> (definition, example). Chosen on the
# *development* topics of benchmarks/data/topics.json (5 topics configured at once, 50 on-topic
# paraphrases, 50 near misses, 15 benign texts; never on its evaluation topics): the pair with the best
# F1 over every (topic, text) decision on a 0.01 grid, with, for STANDARD, the constraint that none of
# the off-topic texts of tests/guardrails/test_semantic.py is caught. Development F1: STANDARD 0.78
# (0.68 at the former 0.40 / 0.38), CLASSIC 0.59 (0.14 at the former 0.70 / 0.80 on plain static means).
# CLASSIC reads the static vectors weighted towards rare tokens (CLASSIC_TOPICS, static.py): on the
# same topics that beat the plain mean at its own best thresholds (0.49). benchmarks/guardrails_topics.py
# prints both tiers on the evaluation topics. Examples count more than the definition on both tiers: give
# several, phrased the way users ask.
THRESHOLDS = {"STANDARD": (0.39, 0.32), "CLASSIC": (0.39, 0.69)}
CLASSIC_TOPICS = "CLASSIC+weighted"  # the vector space of CLASSIC denied topics (assess.Checker.vectors)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()] or [text]


def topic_space(tier: str) -> str:
    """Which vectors the denied topics of `tier` read."""
    return CLASSIC_TOPICS if tier == "CLASSIC" else tier


@dataclass(frozen=True)
class TopicAnchors:
    """Embedded anchors of one topic: row 0 is the definition, the rest its examples."""

    name: str
    vectors: np.ndarray


def topic_score(anchors: TopicAnchors, windows: np.ndarray, tier: str = "STANDARD") -> float:
    """How far past its threshold the closest anchor is, as a cosine-like score in [0, 1]; >= 0.5 is a hit."""
    definition_threshold, example_threshold = THRESHOLDS[tier]
    if len(windows) == 0:
        return 0.0
    sims = windows @ anchors.vectors.T  # (windows, anchors)
    best_def = float(sims[:, 0].max())
    best_ex = float(sims[:, 1:].max()) if anchors.vectors.shape[0] > 1 else -1.0
    # Map each to 0.5 at its own threshold so that one number says "detected or not".
    return max(0.5 + (best_def - definition_threshold), 0.5 + (best_ex - example_threshold), 0.0)


def grounding_score(answer: Sequence[str], answer_vectors: np.ndarray, source: str,
                    source_vectors: np.ndarray) -> float:  # fmt: skip
    """Mean support of the answer's sentences by the source (see the module docstring)."""
    if len(answer) == 0 or len(source_vectors) == 0:
        return 0.0
    support = (answer_vectors @ source_vectors.T).max(axis=1)
    source_numbers = set(_NUMBER.findall(source))
    for i, sentence in enumerate(answer):
        stated = set(_NUMBER.findall(sentence))
        if stated - source_numbers:
            support[i] *= 0.5
    return float(np.clip(support.mean(), 0.0, 1.0))


def relevance_score(query_vector: np.ndarray, answer_vector: np.ndarray) -> float:
    return float(np.clip(float(query_vector @ answer_vector), 0.0, 1.0))
