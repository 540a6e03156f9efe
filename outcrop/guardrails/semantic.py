"""Denied topics and contextual grounding, measured with sentence embeddings (all-MiniLM-L6-v2).

Topics: a text is on a denied topic when one of its windows is close enough to the topic's definition
or to one of its examples. The cosine is rescaled so that the operator's anchors matter: an example is
a sharper anchor than a definition (a definition describes, an example looks like what users write).
CLASSIC scores with static vectors and hands the (topic, window) pairs it is unsure of (CASCADE) to MiniLM.

Grounding, read as Bedrock reads it: the answer in the light of the query. Each answer sentence scores
the words it adds to the question (content words not in the query: "Delhi" in answer to "...head office in
what city?") by the share of them the source also uses, blended with the best cosine between the
sentence and a source sentence; the first sentence is embedded after the query, as the completion of the
question, so that a bare "Delhi" reads as the claim it makes. A sentence stating a number the source
never does is halved (a cheap, strong sign of a made-up fact). A sentence that adds no word of its own
("yes", or the question restated) scores its cosine alone. The answer's score is the mean over its
sentences. Embeddings alone scored HaluEval's hallucinated answers above its right ones: right answers
are often a bare name, and made-up ones whole sentences that reuse the passage's words.

Relevance: whether the answer answers the query: the greater of the cosine between query and answer and
how much of the query's meaning the query followed by the answer keeps (a short answer to the point
keeps nearly all of it; an answer about something else drags the pair away), rescaled per tier.
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
# CLASSIC cascade: a (topic, window) pair whose CLASSIC score (topic_score's scale, 0.5 = the threshold) falls
# in [low, high) is uncertain, and is decided by the STANDARD encoder and thresholds instead; below `low` it
# is off-topic, from `high` on it is on-topic, with no transformer run. Static vectors alone top out at
# development F1 0.59; what was tried on the development split first, at each variant's best thresholds:
# lexical evidence (the rare-weighted share of the text's content words found in the topic's definition and
# examples, added to the cosines: 0.60 at best; the weighted static vectors already are mostly lexical),
# per-topic and per-text normalization against a fixed list of 50 benign requests (anchor or text hubness
# subtracted, CSLS, z-scores: 0.61-0.66 on development, and unstable: the best thresholds moved with every
# variant). The band was chosen on the development split as the one with the best F1 on a 0.01 grid (low
# 0.30-0.41, high 0.55-0.65): (0.37, 0.60), development F1 0.79 (P 0.83, R 0.76; STANDARD alone 0.78);
# the encoder then runs on 13 % of the benign development texts and 50 % of the near misses, and on no
# window of benchmarks/guardrails_latency.py's ~200-word answer with its three topics (top CLASSIC score
# 0.36). A window it does run on costs one MiniLM pass (several ms on one core).
CASCADE = {"CLASSIC": (0.37, 0.60)}
CLASSIC_TOPICS = "CLASSIC+weighted"  # the vector space of CLASSIC denied topics (assess.Checker.vectors)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
# a full stop glued to the next capitalised sentence ("...century.First for Women is") also splits
_SENTENCE = re.compile(r"(?<=[.!?])\s+|(?<=[a-z][.!?])(?=[A-Z][a-z])|\n+")
_WORD = re.compile(r"[A-Za-z0-9]+")
# words that say nothing a source could support or contradict ("yes"/"no" answer the question's claim,
# which the embedding part reads)
_FUNCTION_WORDS = frozenset(
    re.findall(
        r"\w+",
        """a an the of in on at to for by with from and or but nor is are was were be been being am
    it its this that these those as what which who whom whose when where why how did do does done has have had having
    not no yes than then there their they them he she his her him we us you your i me my our ours also about into
    over after before during between both either neither so such very can could would should will shall may might
    must just only any some all each""",
    )
)
# GROUNDING: the weight of the lexical part, and RELEVANCE: the cosine between the query and query+answer that
# counts as 0, per tier (the STANDARD encoder spreads unrelated texts wider than the static vectors).
# Chosen on the development half of HaluEval QA (benchmarks/guardrails_grounding.py --split development).
LEXICAL_WEIGHT = 0.7
RETENTION_FLOOR = {"STANDARD": 0.7, "CLASSIC": 0.8}


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


def window_scores(anchors: TopicAnchors, windows: np.ndarray, tier: str = "STANDARD") -> np.ndarray:
    """Per window, how far past its threshold the closest anchor is, as a cosine-like score in [0, 1];
    >= 0.5 is a hit."""
    definition_threshold, example_threshold = THRESHOLDS[tier]
    if len(windows) == 0:
        return np.zeros(0, np.float32)
    sims = windows @ anchors.vectors.T  # (windows, anchors)
    best_def = sims[:, 0]
    best_ex = sims[:, 1:].max(axis=1) if anchors.vectors.shape[0] > 1 else np.full(len(windows), -1.0, np.float32)
    # Map each to 0.5 at its own threshold so that one number says "detected or not".
    return np.maximum(np.maximum(0.5 + (best_def - definition_threshold), 0.5 + (best_ex - example_threshold)), 0.0)


def topic_score(anchors: TopicAnchors, windows: np.ndarray, tier: str = "STANDARD") -> float:
    """The best of `window_scores`: >= 0.5 is a hit."""
    return float(window_scores(anchors, windows, tier).max()) if len(windows) else 0.0


def uncertain(scores: np.ndarray, tier: str) -> np.ndarray:
    """Which of `tier`'s scores (topic_score's scale) its cascade hands to the STANDARD encoder (CASCADE)."""
    if tier not in CASCADE:
        return np.zeros(np.shape(scores), bool)
    low, high = CASCADE[tier]
    return (scores >= low) & (scores < high)


def _stem(word: str) -> str:
    return word.lower()[:5]  # "finished"/"finish", "metres"/"metre": enough for names and numbers


def _new_words(sentence: str, query: str) -> list[str]:
    asked = {_stem(w) for w in _WORD.findall(query)}
    return [w for w in _WORD.findall(sentence) if w.lower() not in _FUNCTION_WORDS and _stem(w) not in asked]


def grounding_score(answer: Sequence[str], answer_vectors: np.ndarray, source: str, source_vectors: np.ndarray,
                    query: str = "") -> float:  # fmt: skip
    """Mean support of the answer's sentences by the source (see the module docstring). `answer_vectors`: one
    row a sentence, the first embedded after the query when there is one (`claim`)."""
    if len(answer) == 0 or len(source_vectors) == 0:
        return 0.0
    similarity = (answer_vectors @ source_vectors.T).max(axis=1)
    source_stems = {_stem(w) for w in _WORD.findall(source)}
    source_numbers = set(_NUMBER.findall(source))
    support = np.zeros(len(answer), np.float32)
    for i, sentence in enumerate(answer):
        added = _new_words(sentence, query)
        support[i] = similarity[i]
        if added:
            lexical = sum(_stem(w) in source_stems for w in added) / len(added)
            support[i] = LEXICAL_WEIGHT * lexical + (1 - LEXICAL_WEIGHT) * similarity[i]
        if set(_NUMBER.findall(sentence)) - source_numbers:
            support[i] *= 0.5
    return float(np.clip(support.mean(), 0.0, 1.0))


def claim(query: str, answer: Sequence[str]) -> str:
    """The text whose vector stands for the answer's first sentence: the question followed by it."""
    return f"{query.strip()} {answer[0]}".strip() if answer else query


def relevance_score(query_vector: np.ndarray, answer_vector: np.ndarray, claim_vector: np.ndarray | None = None,
                    tier: str = "STANDARD") -> float:  # fmt: skip
    """See the module docstring; without `claim_vector`, the plain cosine between query and answer."""
    score = float(query_vector @ answer_vector)
    if claim_vector is not None:
        floor = RETENTION_FLOOR.get(tier, RETENTION_FLOOR["STANDARD"])
        score = max(score, (float(query_vector @ claim_vector) - floor) / (1 - floor))
    return float(np.clip(score, 0.0, 1.0))
