"""OpenAI's moderation endpoint (`POST /v1/moderations`) answered by the guardrails' content classifier.

The same classifier, windows and MEDIUM thresholds as a guardrail's content filters at strength MEDIUM
(STANDARD tier): a text is `flagged` when a guardrail with HATE, INSULTS, SEXUAL, VIOLENCE and MISCONDUCT
at MEDIUM would block it. OpenAI's categories map onto our classes:

    hate                  HATE                 harassment       INSULTS
    sexual                SEXUAL               illicit          MISCONDUCT
    violence, self-harm   VIOLENCE, split by which of its two classes (VIOLENCE, SELF_HARM) the
                          window that scores highest leans to (Bedrock reports self-harm as VIOLENCE)

Derived: hate/threatening, harassment/threatening and illicit/violent score the lower of the category
and violence (a threat is both). Not distinguished by this classifier, and always 0 / false:
sexual/minors, violence/graphic, self-harm/intent, self-harm/instructions (their parent category still
flags such a text). Scores are the classifier's category scores (0-1), not OpenAI's.
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np

from outcrop.guardrails.content import CATEGORIES, ContentClassifier, blocks, with_whole

MODELS = ("omni-moderation-latest", "omni-moderation-2024-09-26", "text-moderation-latest", "text-moderation-stable")
OPENAI_CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors", "violence",
    "violence/graphic",
)  # fmt: skip
_PARENT = {"hate": "HATE", "harassment": "INSULTS", "sexual": "SEXUAL", "illicit": "MISCONDUCT"}
_THREAT = {"hate/threatening": "hate", "harassment/threatening": "harassment", "illicit/violent": "illicit"}


def result(classifier: ContentClassifier, vectors: np.ndarray) -> dict[str, Any]:
    """One text's moderation result from the embeddings of its windows."""
    scores = {c: 0.0 for c in OPENAI_CATEGORIES}
    flags = {c: False for c in OPENAI_CATEGORIES}
    if len(vectors):
        category = classifier.scores(vectors)
        confidence = classifier.confidences(vectors)
        for name, ours in _PARENT.items():
            scores[name] = category[ours]
            flags[name] = blocks(confidence[ours], "MEDIUM")
        # VIOLENCE holds two classes: split it by the leaning of the window that scores highest
        pieces = with_whole(vectors)
        windows = classifier.window_scores(pieces)[:, CATEGORIES.index("VIOLENCE")]
        p = classifier.probabilities(pieces)[int(np.argmax(windows))]
        v, sh = (p[classifier.classes.index(c)] if c in classifier.classes else 0.0 for c in ("VIOLENCE", "SELF_HARM"))
        share = float(sh / (v + sh)) if v + sh > 0 else 0.0
        violent = blocks(confidence["VIOLENCE"], "MEDIUM")
        scores["violence"], scores["self-harm"] = category["VIOLENCE"] * (1 - share), category["VIOLENCE"] * share
        flags["violence"], flags["self-harm"] = violent and share < 0.5, violent and share >= 0.5
        threshold = float(classifier.thresholds[CATEGORIES.index("VIOLENCE"), 1])
        for name, parent in _THREAT.items():
            scores[name] = min(scores[parent], category["VIOLENCE"])
            flags[name] = flags[parent] and category["VIOLENCE"] >= threshold
    return {
        "flagged": any(flags.values()),
        "categories": flags,
        "category_scores": {c: round(float(s), 6) for c, s in scores.items()},
        "category_applied_input_types": {c: ["text"] for c in OPENAI_CATEGORIES},
    }


def response(model: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": "modr-" + secrets.token_hex(12), "model": model, "results": results}
