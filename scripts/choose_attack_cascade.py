"""Reproduce the choice of content.ATTACK_CASCADE_FROM: the CLASSIC score from which PROMPT_ATTACK is handed to
the STANDARD classifier on MiniLM.

CLASSIC reads static vectors, which score code, tables and logs as prompt attacks; past ATTACK_CASCADE_FROM the
runtime asks MiniLM instead (outcrop/guardrails/assess.py). The threshold trades two things: an attack scored
below it is never seen by MiniLM (CLASSIC alone decides it, below every strength's threshold, so it passes), and
every benign text above it costs one MiniLM pass. Two conditions, on a 0.01 grid:

- at least KEEP (99.5 %) of the project's attack lines are sent on. These lines are in-sample (the classifier
  was trained on them), so they score higher than unseen attacks will: all but one score above 0.41, and every
  value from 0.02 to 0.41 meets this condition. It bounds the threshold from above, with no margin in it;
- the cost: MiniLM runs for at most BUDGET (11 %, about one in nine) of the project's benign lines, the hard
  negatives of extra_benign.txt included. The rule takes the *smallest* such value, the widest margin for
  attacks unlike the training lines that the cost allows.

(Until this script, content.py said the value was "the largest that still sends 99.5 % on"; that was misstated:
it was chosen with the cost in view, as here.)

Only the project's own training lines are read (outcrop/guardrails/data/train: prompt_attack.txt against the
benign*.txt and extra_benign.txt files), never an evaluation set. Each line is scored as the runtime scores a
text (content.windows, the static vectors, the shipped CLASSIC classifier with its PROMPT_ATTACK head). The
script prints, per threshold, the share of attack lines sent on and of benign lines sent on, marks the rule's
choice and says whether it is the shipped value.

    python scripts/choose_attack_cascade.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from train_guardrail_classifier import CLASSES, TRAIN_DIR, read_examples  # noqa: E402

from outcrop.guardrails.assess import STATIC_CLASSIFIER  # noqa: E402
from outcrop.guardrails.content import (  # noqa: E402
    ATTACK_CASCADE_FROM,
    BENIGN,
    CATEGORIES,
    ContentClassifier,
    windows,
)
from outcrop.guardrails.static import StaticEmbedder  # noqa: E402

KEEP = 0.995  # the share of the project's attack lines that must still reach MiniLM
BUDGET = 0.11  # the most of the project's benign lines MiniLM may run for
GRID = np.round(np.arange(0.01, 0.301, 0.01), 2)


def lines(label: str) -> list[str]:
    """The project's training lines of class `label`, as the training script reads them (deduplicated; a text
    under two classes dropped)."""
    texts, classes, _ = read_examples(TRAIN_DIR)
    return [t for t, c in zip(texts, classes, strict=True) if CLASSES[c] == label]


def attack_scores(texts: list[str], classifier: ContentClassifier, static: StaticEmbedder) -> np.ndarray:
    column = CATEGORIES.index("PROMPT_ATTACK")
    scores = np.zeros(len(texts), np.float32)
    for i, text in enumerate(texts):
        pieces = [w for w in windows(text) if w.strip()]
        if pieces:
            scores[i] = classifier.text_scores(static.embed(pieces))[column]
    return scores


def choose(attacks: np.ndarray, benign: np.ndarray, keep: float = KEEP, budget: float = BUDGET) -> float | None:
    """The smallest grid value that sends at most `budget` of the benign scores on and at least `keep` of the
    attack scores (a score is sent on when it is >= the value); None when no value does both."""
    passing = [float(t) for t in GRID if (attacks >= t).mean() >= keep and (benign >= t).mean() <= budget]
    return min(passing) if passing else None


def main() -> None:
    classifier = ContentClassifier.load(STATIC_CLASSIFIER)
    static = StaticEmbedder.load()
    attacks = attack_scores(lines("PROMPT_ATTACK"), classifier, static)
    benign = attack_scores(lines(BENIGN), classifier, static)
    chosen = choose(attacks, benign)
    print(f"project lines: {len(attacks)} prompt attacks, {len(benign)} benign (CLASSIC PROMPT_ATTACK scores)")
    print(f"{'from':>6}  {'attacks sent on':>15}  {'benign sent on':>14}")
    for t in GRID:
        mark = "  <- chosen" if chosen is not None and abs(t - chosen) < 1e-9 else ""
        mark += "  (shipped)" if abs(t - ATTACK_CASCADE_FROM) < 1e-9 else ""
        print(f"{t:6.2f}  {100 * (attacks >= t).mean():14.1f}%  {100 * (benign >= t).mean():13.1f}%{mark}")
    if chosen is None:
        print(f"no value sends >= {100 * KEEP:.1f} % of the attacks and <= {100 * BUDGET:.0f} % of the benign lines on")
        return
    same = abs(chosen - ATTACK_CASCADE_FROM) < 1e-9
    print(
        f"rule: the smallest value sending >= {100 * KEEP:.1f} % of the attack lines and <= {100 * BUDGET:.0f} % of"
        f" the benign lines on: {chosen:.2f} ({'the shipped value' if same else f'shipped: {ATTACK_CASCADE_FROM}'})"
    )


if __name__ == "__main__":
    main()
