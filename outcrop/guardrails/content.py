"""Content filters: a text's confidence per Bedrock category, from its sentence embeddings.

Bedrock Guardrails' content filters name six categories (HATE, INSULTS, SEXUAL, VIOLENCE, MISCONDUCT,
PROMPT_ATTACK), give every text a confidence NONE / LOW / MEDIUM / HIGH in each, and block a text when
its confidence reaches the filter's strength: HIGH blocks LOW and above, MEDIUM blocks MEDIUM and
above, LOW blocks only HIGH, NONE blocks nothing (`blocks`).

The classifier reads all-MiniLM-L6-v2 embeddings (L2-normalized, 384 dimensions): a small network
with one hidden layer (ReLU) and a softmax over the classes, trained by
scripts/train_guardrail_classifier.py on examples the project wrote (outcrop/guardrails/data/train/)
and shipped as content_classifier.npz: the hidden layer's weights and bias, the output layer's, class
names, the per-category score thresholds of the LOW / MEDIUM / HIGH bands and the embedding model's
name. A file without a hidden layer is a plain logistic regression (the output layer on the embedding).
PROMPT_ATTACK is decided by a second network of the same shape, prompt_attack_classifier.npz, trained
with the public labelled data too (jailbreaks collected in the wild, DAN templates, benign instructions
and application content: outcrop/guardrails/data/DATA.md); the content categories keep the network
trained on the project's lines, which did better on real traffic than one trained with the public
toxicity sets (benchmarks/README.md, "Guardrail content filters"). The CLASSIC tier's files end in
_static. On CLASSIC, a text whose PROMPT_ATTACK score reaches ATTACK_CASCADE_FROM has that category decided by
the STANDARD classifier on MiniLM vectors (the caller embeds: assess.Checker; `needs_attack_cascade`).
Its classes are the six categories, SELF_HARM and BENIGN. Bedrock has no self-harm filter: self-harm
content (encouragement, methods) is reported under VIOLENCE, so a category's probability is the sum
of its classes' (VIOLENCE = VIOLENCE + SELF_HARM); how a category's score follows from the
probabilities is in ContentClassifier's docstring.

A text is embedded as several pieces (`windows`): the whole text when it has at most WINDOW_WORDS
words, and runs of whole sentences of MIN_WORDS to WINDOW_WORDS words, so that a harmful passage
inside a long benign text is still seen on its own and a text past MiniLM's 256-token limit is read to
its end. A text of more than MAX_WINDOWS such runs is read in WINDOW_WORDS-word windows instead, up to
MAX_WINDOWS of them (about 1,900 words; the rest is not read). A category's score is the largest over
the pieces. MIN_WORDS was chosen on held-out documents built from our own examples (see the training
script): 8-word pieces caught a harmful sentence inside benign text more often but flagged benign
multi-sentence texts more, for the same average held-out recall and 40 % more windows to embed.
A text of several windows is also scored as a whole (`with_whole`): the mean of its window vectors,
normalized, counts as one more window. It costs no extra embedding, and it is what sees a jailbreak
prompt, whose sentences are harmless one by one and whose intent is in the whole (the classifier is
trained on such means of long texts, scripts/train_guardrail_classifier.py).
This module needs numpy only: the caller embeds (the guardrail runtime through the embedding engine,
the scripts directly).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

CATEGORIES = ("HATE", "INSULTS", "SEXUAL", "VIOLENCE", "MISCONDUCT", "PROMPT_ATTACK")
CONFIDENCES = ("NONE", "LOW", "MEDIUM", "HIGH")
STRENGTHS = CONFIDENCES  # a filter's strength takes the same four values
# Internal classes reported under another category (Bedrock has no self-harm filter).
REPORTED_AS = {"SELF_HARM": "VIOLENCE"}
BENIGN = "BENIGN"

DEFAULT_PATH = Path(__file__).parent / "data" / "content_classifier.npz"

# CLASSIC's PROMPT_ATTACK cascade: a text whose CLASSIC score for PROMPT_ATTACK reaches this is decided by the
# STANDARD classifier on MiniLM vectors instead (static vectors read code and tables as attacks: 48 % of BIPIA's
# code answers blocked at MEDIUM). Chosen on the training lines, never the evaluation sets, by
# scripts/choose_attack_cascade.py: the smallest value that sends at most 11 % of the project's benign lines
# (10.4 %, hard negatives included) and at least 99.5 % of its attack lines (99.6 %) on to MiniLM.
ATTACK_CASCADE_FROM = 0.05

WINDOW_WORDS = 60  # MiniLM reads 256 word pieces; 60 words stay well inside that, and near the training lines
MIN_WORDS = 16  # shorter sentences join their neighbours: a fragment alone ("Kill it.") has no context
MAX_WINDOWS = 32  # about 1,900 words; a longer text is read up to there

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+")


def _sentences(text: str) -> list[list[str]]:
    """The text's sentences as word lists, a sentence past WINDOW_WORDS cut into WINDOW_WORDS-word parts."""
    out: list[list[str]] = []
    for sentence in _SENTENCE_END.split(text):
        words = sentence.split()
        for start in range(0, len(words), WINDOW_WORDS):
            out.append(words[start : start + WINDOW_WORDS])
    return [s for s in out if s]


def _pack(sentences: list[list[str]], min_words: int, max_words: int) -> list[list[str]]:
    """Consecutive sentences joined until a piece has at least `min_words` words, never past `max_words`."""
    pieces: list[list[str]] = []
    current: list[str] = []
    for words in sentences:
        if current and len(current) + len(words) > max_words:
            pieces.append(current)
            current = []
        current = current + words
        if len(current) >= min_words:
            pieces.append(current)
            current = []
    if current:
        if pieces and len(pieces[-1]) + len(current) <= max_words:
            pieces[-1] = pieces[-1] + current  # a short tail joins the piece before it
        else:
            pieces.append(current)
    return pieces


def windows(text: str) -> list[str]:
    """The pieces of `text` to embed: the whole text when it has at most WINDOW_WORDS words, and its
    sentences (short ones joined to reach MIN_WORDS words, long ones cut at WINDOW_WORDS) when there is
    more than one. Past MAX_WINDOWS sentences, sentences are packed into WINDOW_WORDS-word windows
    instead, and past MAX_WINDOWS of those the text is read up to the last one. Never empty for a
    non-empty text."""
    sentences = _sentences(text)
    if not sentences:
        return [text] if text else []
    total = sum(len(s) for s in sentences)
    pieces = _pack(sentences, MIN_WORDS, WINDOW_WORDS)
    if len(pieces) > MAX_WINDOWS:
        pieces = _pack(sentences, WINDOW_WORDS, WINDOW_WORDS)[:MAX_WINDOWS]
    out = [" ".join(p) for p in pieces]
    if total <= WINDOW_WORDS:
        whole = " ".join(text.split())
        out = [whole] if len(out) == 1 else [whole, *out]
    return out


def with_whole(vectors: np.ndarray) -> np.ndarray:
    """A text's window vectors and, when there are several, their normalized mean (the whole text)."""
    x = np.asarray(vectors, dtype=np.float32)
    if len(x) < 2:
        return x
    mean = x.mean(axis=0)
    return np.concatenate([x, (mean / max(float(np.linalg.norm(mean)), 1e-12))[None, :]])


def blocks(confidence: str, strength: str) -> bool:
    """Bedrock's rule: a filter at `strength` blocks a text whose confidence is `confidence`."""
    c, s = CONFIDENCES.index(confidence), STRENGTHS.index(strength)
    if s == 0 or c == 0:
        return False
    return c >= 4 - s  # HIGH (3) blocks >= LOW (1); MEDIUM (2) blocks >= MEDIUM (2); LOW (1) blocks HIGH (3)


class ContentClassifier:
    """The trained model: a score per category for each window, the largest over a text's windows.

    A window's class probabilities (softmax of `weights @ h + bias`, where h = relu(hidden weights @ x +
    hidden bias), or h = x without a hidden layer) are summed per category, and a category's score is
    the probability that the window is harmful at all (1 - P(BENIGN)) scaled by the category's
    probability relative to the most probable category's. The most likely category
    gets the whole harmful mass, so a text torn between, say, HATE and INSULTS is not let through for
    being split between them, while a category far behind the leading one stays low.
    `thresholds[i]` holds the scores at which CATEGORIES[i] reaches LOW, MEDIUM and HIGH
    (non-decreasing). `weights` is (classes, inputs), `bias` (classes,); `hidden`, when given, is the
    hidden layer's (inputs, dimensions) weights and (inputs,) bias, applied first with a ReLU.
    """

    def __init__(
        self,
        weights: np.ndarray,
        bias: np.ndarray,
        classes: tuple[str, ...],
        thresholds: np.ndarray,
        embedding_model: str,
        hidden: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.weights = np.ascontiguousarray(weights, dtype=np.float32)
        self.bias = np.asarray(bias, dtype=np.float32)
        self.hidden = (
            None
            if hidden is None
            else (np.ascontiguousarray(hidden[0], dtype=np.float32), np.asarray(hidden[1], dtype=np.float32))
        )
        if self.hidden is not None and (
            self.hidden[0].shape[0] != self.weights.shape[1] or self.hidden[1].shape != (self.weights.shape[1],)
        ):
            raise ValueError("the hidden layer must have one row and one bias per input of the output layer")
        self.classes = classes
        self.thresholds = np.asarray(thresholds, dtype=np.float32)
        self.embedding_model = embedding_model
        if self.weights.shape[0] != len(classes) or self.bias.shape != (len(classes),):
            raise ValueError("weights and bias must have one row per class")
        if self.thresholds.shape != (len(CATEGORIES), 3) or np.any(np.diff(self.thresholds, axis=1) < 0):
            raise ValueError("thresholds must be (categories, 3), non-decreasing per category")
        if BENIGN not in classes:
            raise ValueError(f"the classes must include {BENIGN}")
        self._benign = classes.index(BENIGN)
        # (classes, categories): 1 where a class counts towards a category; BENIGN counts towards none.
        self._fold = np.zeros((len(classes), len(CATEGORIES)), dtype=np.float32)
        for i, name in enumerate(classes):
            category = REPORTED_AS.get(name, name)
            if category in CATEGORIES:
                self._fold[i, CATEGORIES.index(category)] = 1.0
        self.deciders: dict[int, ContentClassifier] = {}  # category index -> the classifier that scores it

    def decide(self, category: str, other: ContentClassifier) -> None:
        """Let `other` (a classifier on the same vectors) score `category`, with its thresholds."""
        if other.dimensions != self.dimensions:
            raise ValueError("a classifier deciding a category must read vectors of the same size")
        j = CATEGORIES.index(category)
        self.deciders[j] = other
        self.thresholds = self.thresholds.copy()
        self.thresholds[j] = other.thresholds[j]

    @classmethod
    def load(cls, path: Path | None = None) -> ContentClassifier:
        """The classifier saved at `path`; by default the one packaged with Outcrop. A file named like
        it with prompt_attack_classifier for content_classifier beside it (the packaged ones:
        prompt_attack_classifier.npz, prompt_attack_classifier_static.npz) decides PROMPT_ATTACK."""
        path = path or DEFAULT_PATH
        main = cls._read(path)
        attack = path.with_name(path.name.replace("content_classifier", "prompt_attack_classifier"))
        if attack != path and attack.exists():
            main.decide("PROMPT_ATTACK", cls._read(attack))
        return main

    @classmethod
    def _read(cls, path: Path) -> ContentClassifier:
        with np.load(path, allow_pickle=False) as data:
            categories = tuple(str(c) for c in data["categories"])
            if categories != CATEGORIES:
                raise ValueError(f"classifier categories {categories} are not {CATEGORIES}")
            return cls(
                weights=data["weights"],
                bias=data["bias"],
                classes=tuple(str(c) for c in data["classes"]),
                thresholds=data["thresholds"],
                embedding_model=str(data["embedding_model"]),
                hidden=(data["hidden_weights"], data["hidden_bias"]) if "hidden_weights" in data else None,
            )

    @property
    def dimensions(self) -> int:
        """The embedding's size."""
        return int((self.hidden[0] if self.hidden is not None else self.weights).shape[1])

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """(windows, classes): each window's class probabilities."""
        x = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dimensions)
        if self.hidden is not None:
            x = np.maximum(x @ self.hidden[0].T + self.hidden[1], 0.0)
        logits = x @ self.weights.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return np.asarray(p / p.sum(axis=1, keepdims=True))

    def window_scores(self, vectors: np.ndarray) -> np.ndarray:
        """(windows, categories): each window's score per category (see the class docstring)."""
        p = self.probabilities(vectors)
        per_category = p @ self._fold
        harmful = 1.0 - p[:, self._benign]
        top = np.maximum(per_category.max(axis=1), 1e-12)
        scores = per_category * (harmful / top)[:, None]
        for j, other in self.deciders.items():
            scores[:, j] = other.window_scores(vectors)[:, j]
        return np.asarray(scores)

    def text_scores(self, vectors: np.ndarray) -> np.ndarray:
        """(categories,): the largest score over one text's windows and its whole (`with_whole`; zeros for
        no window)."""
        p = self.window_scores(with_whole(np.asarray(vectors, dtype=np.float32).reshape(-1, self.dimensions)))
        return p.max(axis=0) if len(p) else np.zeros(len(CATEGORIES), dtype=np.float32)

    def scores(self, vectors: np.ndarray) -> dict[str, float]:
        """The largest score over one text's windows, per category (for traces)."""
        return {c: float(s) for c, s in zip(CATEGORIES, self.text_scores(vectors), strict=True)}

    def confidences(self, vectors: np.ndarray) -> dict[str, str]:
        """One text's confidence per category; `vectors` are the L2-normalized embeddings of its windows."""
        return self.levels(self.text_scores(vectors))

    def levels(self, scores: np.ndarray) -> dict[str, str]:
        """The confidence per category of a text's `text_scores`."""
        levels = (np.asarray(scores)[:, None] >= self.thresholds).sum(axis=1)
        return {c: CONFIDENCES[int(n)] for c, n in zip(CATEGORIES, levels, strict=True)}


def needs_attack_cascade(scores: np.ndarray) -> bool:
    """Whether CLASSIC's `text_scores` hand PROMPT_ATTACK to the STANDARD classifier (ATTACK_CASCADE_FROM)."""
    return float(scores[CATEGORIES.index("PROMPT_ATTACK")]) >= ATTACK_CASCADE_FROM
