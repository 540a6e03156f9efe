"""Contextual grounding on a public hallucination set (HaluEval QA): precision and recall of "ungrounded".

What it measures
    The contextual-grounding policy (outcrop/guardrails/semantic.py, run through `Checker.assess` in
    outcrop/guardrails/assess.py exactly as ApplyGuardrail runs it: source OUTPUT, the answer as the guarded
    text, the knowledge as `grounding_source`, the question as `query`, outputScope FULL) on both tiers
    (grounding follows the content policy's tier: STANDARD MiniLM, CLASSIC static embeddings).

    Data: HaluEval (Li et al. 2023, https://github.com/RUCAIBox/HaluEval, MIT licence), question answering
    over HotpotQA: each sample is a knowledge passage, a question, the right answer and a hallucinated
    answer written by ChatGPT. Each pair gives two cases: the right answer (grounded) and the hallucinated
    one. `data/qa_data.json` (10,000 pairs) is used when present; the GitHub snapshot fetched here lacks
    it (over 4 MiB), so the 500 + 500 pairs of `generation/qa/qa_{one,multi}-turn_data.json` (same
    questions, the hallucinated answer of the one-turn and of the multi-turn generation; duplicates
    dropped) are used instead.

    Splits, disjoint by question (HaluEval's dialogue and summarization files are also missing from the
    snapshot): a pair belongs to the *development* half when the first byte of the SHA-256 of its question
    is even (248 questions, 488 pairs), else to the *evaluation* half (252 questions, 499 pairs). The
    scoring method and the thresholds below were chosen on the development half only; the default run is
    the evaluation half. A fixed-seed sample of `--limit` pairs of the split is taken.

    Printed per tier: precision, recall and F1 of "flagged" against "hallucinated" at the thresholds chosen
    on the development half (Bedrock requires a threshold and has no default): GROUNDING 0.75 (development
    F1 STANDARD 0.793, CLASSIC 0.805; 0.80 is within 0.01 on both and flags more right answers) and
    RELEVANCE 0.3, which flagged at most 1.3 % of the right answers there (a hallucinated answer usually
    does answer the question: RELEVANCE is not meant to catch it); for GROUNDING alone, RELEVANCE alone
    and either: the share of right answers flagged, ROC AUC of each score, and, for information, sweeps
    of both thresholds. Speed: the mean
    wall time of one assess call (knowledge sentences are cached across the two answers of a pair, as a
    server caches a RAG source it is sent again).

How to run
    python benchmarks/guardrails_grounding.py --limit 150          # a few minutes on 2 busy cores
    python benchmarks/guardrails_grounding.py --split development --tier CLASSIC
    python benchmarks/guardrails_grounding.py --mirror /work/.mirror
    python benchmarks/guardrails_grounding.py --cache ~/.cache/outcrop-bench   # git clone --depth 1 there
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CpuWatch, foreign_cpu_note, table
from guardrails_topics import _embed

from outcrop.guardrails.assess import Checker, Compiled
from outcrop.guardrails.policy import compile_rules
from outcrop.guardrails.store import Guardrail

REPO = "RUCAIBox/HaluEval"
FULL = "data/qa_data.json"
PARTS = ("generation/qa/qa_one-turn_data.json", "generation/qa/qa_multi-turn_data.json")
DEFAULTS = {"GROUNDING": 0.75, "RELEVANCE": 0.3}  # chosen on the development half (see the docstring)
TIERS = ("STANDARD", "CLASSIC")
SEED = 14


@dataclass(frozen=True)
class Case:
    knowledge: str
    question: str
    answer: str
    hallucinated: bool


def _reader(mirror: Path, cache: Path | None) -> Any:
    """A function path -> text or None, over the mirror's bare repository or a shallow clone in `cache`."""
    bare = mirror / REPO.replace("/", "+") / "repo"
    if bare.is_dir():

        def show(path: str) -> str | None:
            out = subprocess.run(["git", "--git-dir", str(bare), "show", f"HEAD:{path}"], capture_output=True)
            text = out.stdout.decode("utf-8", "replace")
            # a blob left out of the snapshot (too large) reads as nothing or as an LFS pointer
            return text if out.returncode == 0 and text.lstrip().startswith("{") else None

        return show, f"{bare} ({_head(bare)})"
    if cache is None:
        sys.exit(f"{bare} not found: pass --mirror, or --cache DIR to git clone {REPO} there")
    clone = cache / REPO.replace("/", "+")
    if not clone.is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "clone", "--depth", "1", f"https://github.com/{REPO}", str(clone)], check=True)

    def read(path: str) -> str | None:
        file = clone / path
        return file.read_text() if file.is_file() else None

    return read, f"{clone} ({_head(clone / '.git')})"


def _head(git_dir: Path) -> str:
    out = subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", "--short", "HEAD"], capture_output=True)
    return out.stdout.decode().strip() or "?"


def _rows(text: str) -> list[dict[str, Any]]:
    text = text.strip()
    if text.startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def in_split(question: str, split: str) -> bool:
    """Development: the first byte of the question's SHA-256 is even; evaluation: odd."""
    return (hashlib.sha256(question.encode()).digest()[0] % 2 == 0) == (split == "development")


def load(mirror: Path, cache: Path | None, limit: int, split: str = "evaluation") -> tuple[list[Case], str]:
    read, where = _reader(mirror, cache)
    full = read(FULL)
    if full is not None:
        rows, used = _rows(full), FULL
    else:
        rows, used = [], " + ".join(PARTS) + f" ({FULL} absent)"
        for part in PARTS:
            text = read(part)
            if text is not None:
                rows += _rows(text)
    pairs = list({(r["knowledge"], r["question"], r["right_answer"], r["hallucinated_answer"]): None for r in rows})
    if not pairs:
        sys.exit(f"no HaluEval QA data found in {where}")
    pairs = [p for p in pairs if in_split(p[1], split)]
    questions = len({p[1] for p in pairs})
    pairs = random.Random(SEED).sample(pairs, min(limit, len(pairs)))
    cases = []
    for knowledge, question, right, wrong in pairs:
        cases += [Case(knowledge, question, right, False), Case(knowledge, question, wrong, True)]
    return cases, f"{where}: {used}; {split} half ({questions} questions), {len(pairs)} pairs sampled (seed {SEED})"


def _compiled(tier: str) -> Compiled:
    filters = [{"type": kind, "threshold": threshold, "action": "BLOCK"} for kind, threshold in DEFAULTS.items()]
    config = {"name": "grounding-bench", "contextualGroundingPolicyConfig": {"filtersConfig": filters},
              "contentPolicyConfig": {"filtersConfig": [], "tierConfig": {"tierName": tier}}}  # fmt: skip
    now = datetime.now(UTC)
    g = Guardrail("bench", "DRAFT", "grounding-bench", None, config, now, now)
    return Compiled(g, compile_rules(config, "INPUT"), compile_rules(config, "OUTPUT"))


async def _scores(checker: Checker, tier: str, cases: Sequence[Case]) -> tuple[list[dict[str, float]], float]:
    guardrail = _compiled(tier)
    out, started = [], time.perf_counter()
    for c in cases:
        outcome = await checker.assess(guardrail, "OUTPUT", [c.answer], grounding_source=c.knowledge,
                                       query=c.question, scope="FULL")  # fmt: skip
        filters = outcome.assessment["contextualGroundingPolicy"]["filters"]
        out.append({f["type"]: float(f["score"]) for f in filters})
    return out, (time.perf_counter() - started) * 1000 / max(len(cases), 1)


def _prf(flagged: Sequence[bool], truth: Sequence[bool]) -> tuple[float, float, float, float]:
    tp = sum(f and t for f, t in zip(flagged, truth, strict=True))
    fp = sum(f and not t for f, t in zip(flagged, truth, strict=True))
    fn = sum(t and not f for f, t in zip(flagged, truth, strict=True))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    negatives = sum(not t for t in truth)
    return p, r, 2 * p * r / (p + r) if p + r else 0.0, fp / negatives if negatives else 0.0


def _auc(scores: Sequence[float], truth: Sequence[bool]) -> float:
    """Chance that a hallucinated answer scores lower than a right one (ties count half)."""
    bad = [s for s, t in zip(scores, truth, strict=True) if t]
    good = [s for s, t in zip(scores, truth, strict=True) if not t]
    wins = sum((b < g) + 0.5 * (b == g) for b in bad for g in good)
    return wins / (len(bad) * len(good)) if bad and good else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=1000, help="pairs to sample (each gives two cases)")
    parser.add_argument("--mirror", type=Path, default=Path("/work/.mirror"), help="fetched repositories")
    parser.add_argument("--cache", type=Path, help="where to git clone the data when the mirror lacks it")
    parser.add_argument("--tier", choices=TIERS, action="append", help="a tier to run (default: both)")
    parser.add_argument("--split", choices=("evaluation", "development"), default="evaluation")
    args = parser.parse_args()
    cases, source = load(args.mirror, args.cache, args.limit, args.split)
    truth = [c.hallucinated for c in cases]
    print(f"HaluEval QA (MIT), {source}: {len(cases)} cases, half hallucinated\n")
    checker = Checker(_embed())
    watch, started = CpuWatch(), time.perf_counter()
    results = {}
    for tier in args.tier or TIERS:
        results[tier] = asyncio.run(_scores(checker, tier, cases))
    cores = watch.foreign_cores(time.perf_counter() - started)

    rows = []
    for tier, (scores, ms) in results.items():
        g = [s["GROUNDING"] < DEFAULTS["GROUNDING"] for s in scores]
        r = [s["RELEVANCE"] < DEFAULTS["RELEVANCE"] for s in scores]
        either = [a or b for a, b in zip(g, r, strict=True)]
        for label, flagged in (("GROUNDING", g), ("RELEVANCE", r), ("either", either)):
            p, rec, f1, fpr = _prf(flagged, truth)
            auc = _auc([s[label] for s in scores], truth) if label != "either" else float("nan")
            rows.append([tier, label, f"{p:.3f}", f"{rec:.3f}", f"{f1:.3f}", f"{100 * fpr:.1f}",
                         "-" if label == "either" else f"{auc:.3f}", f"{ms:.1f}"])  # fmt: skip
    at = f"GROUNDING {DEFAULTS['GROUNDING']} / RELEVANCE {DEFAULTS['RELEVANCE']}"
    print(f"At {at} ('flagged' against 'hallucinated'):")
    print(table(["tier", "filter", "P", "R", "F1", "right answers flagged %", "ROC AUC", "ms/assess"], rows))
    for kind, grid in (
        ("GROUNDING", (0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)),
        ("RELEVANCE", (0.1, 0.2, 0.3, 0.4, 0.5)),
    ):
        print(f"\n{kind} threshold sweep (for information; flagged when score < threshold):")
        rows = []
        for threshold in grid:
            row = [f"{threshold:.2f}"]
            for scores, _ in results.values():
                p, rec, f1, fpr = _prf([s[kind] < threshold for s in scores], truth)
                row += [f"{p:.3f}", f"{rec:.3f}", f"{f1:.3f}", f"{100 * fpr:.1f}"]
            rows.append(row)
        headers = ["threshold"] + [f"{t[:4]} {m}" for t in results for m in ("P", "R", "F1", "FP%")]
        print(table(headers, rows))
    print(foreign_cpu_note(cores))


if __name__ == "__main__":
    main()
