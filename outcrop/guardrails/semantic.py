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

# Cosine above which a window counts as on-topic, for a definition and for an example. Chosen on
# our own topic cases (tests/guardrails/test_semantic.py: 3 topics, 12 on-topic texts, 66 off-topic
# ones): no off-topic text is caught, and about 60 % of the on-topic ones are. MiniLM's similarity is
# coarse, so topics work best with several examples phrased the way users ask.
# tier -> (definition, example). CLASSIC's static vectors separate topics less well: the same cases give
# no false positive only at these thresholds, where 2 of the 7 on-topic texts are caught.
THRESHOLDS = {"STANDARD": (0.40, 0.38), "CLASSIC": (0.70, 0.80)}
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()] or [text]


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
