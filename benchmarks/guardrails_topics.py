"""Denied topics on both tiers: precision, recall and F1 on a topic set we wrote, and speed per text.

What it measures
    One guardrail with every topic of `benchmarks/data/topics.json` configured at once (name, definition,
    examples: what a user would type into CreateGuardrail), its topic policy on the STANDARD tier (MiniLM)
    and on the CLASSIC tier (static embeddings, outcrop/guardrails/static.py). Every text of the chosen split
    goes through `Checker.assess` (outcrop/guardrails/assess.py) as ApplyGuardrail sends it: source INPUT,
    one text, outputScope FULL; a topic "detects" a text when its assessment entry says `detected`.

    * Per topic: precision, recall and F1 of "topic T detected" against "the text is on topic T" over every
      text of the split (the topics' on-topic paraphrases, their near misses, general benign texts), so a
      topic that fires on another topic's texts loses precision. An on-topic text may be labelled with more
      than one topic (a bitcoin question is also investment advice); detection by any of its labels is right.
    * Overall: the same counted over every (topic, text) pair (micro), and per text ("blocked" against "on
      some topic"), with the share of near misses and of benign texts blocked.
    * The F1 gap CLASSIC - STANDARD (micro); the target is a gap no worse than -0.05.
    * Speed: `Checker.assess` per text, wall time, after one warm-up call per tier (the topics' anchors are
      embedded once, on that call, and cached as the server caches them); p50 and mean in milliseconds.
      Text vectors are not cached across texts: every text is distinct, and each tier runs on its own Checker
      (CLASSIC's cascade embeds the windows it is unsure of with MiniLM, semantic.CASCADE: that is timed).

    The evaluation split was written for this benchmark and nothing in outcrop was chosen by looking at it;
    `--split development` runs the other topics, the ones semantic.THRESHOLDS may be chosen on. The script
    prints counts, not texts, unless --show-errors.

How to run
    python benchmarks/guardrails_topics.py                      # ~1 minute on 2 cores
    python benchmarks/guardrails_topics.py --split development
    python benchmarks/guardrails_topics.py --tier CLASSIC --show-errors
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, CpuWatch, foreign_cpu_note, table

from outcrop.guardrails.assess import Checker, Compiled
from outcrop.guardrails.policy import compile_rules
from outcrop.guardrails.store import Guardrail

TOPICS = ROOT / "benchmarks" / "data" / "topics.json"
TIERS = ("STANDARD", "CLASSIC")
TARGET_GAP = 0.05


@dataclass(frozen=True)
class Sample:
    text: str
    labels: frozenset[str]  # the topics it is on; empty for a near miss or a benign text
    kind: str  # on_topic | near_miss | benign


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, predicted: bool, actual: bool, text: str) -> None:
        if predicted and actual:
            self.tp += 1
        elif predicted:
            self.fp += 1
            self.errors.append(f"FP  {text}")
        elif actual:
            self.fn += 1
            self.errors.append(f"FN  {text}")

    def prf(self) -> tuple[float, float, float]:
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0
        return p, r, 2 * p * r / (p + r) if p + r else 0.0


def load(split: str, path: Path = TOPICS) -> tuple[list[dict[str, Any]], list[Sample]]:
    """The split's topic configurations (as CreateGuardrail takes them) and its labelled texts."""
    data = json.loads(path.read_text())[split]
    topics, samples = [], []
    for t in data["topics"]:
        topics.append({"name": t["name"], "type": "DENY", "definition": t["definition"], "examples": t["examples"]})
        for item in t["on_topic"]:
            text, also = (item, []) if isinstance(item, str) else (item["text"], item.get("also", []))
            samples.append(Sample(text, frozenset([t["name"], *also]), "on_topic"))
        samples += [Sample(text, frozenset(), "near_miss") for text in t["near_miss"]]
    samples += [Sample(text, frozenset(), "benign") for text in data["benign"]]
    return topics, samples


def compiled(topics: Sequence[dict[str, Any]], tier: str) -> Compiled:
    policy = {"topicsConfig": list(topics), "tierConfig": {"tierName": tier}}
    config = {"name": "topics-bench", "topicPolicyConfig": policy}
    now = datetime.now(UTC)
    g = Guardrail("bench", "DRAFT", "topics-bench", None, config, now, now)
    return Compiled(g, compile_rules(config, "INPUT"), compile_rules(config, "OUTPUT"))


def _embed() -> Any:
    """The STANDARD tier's embedding function as `outcrop serve` runs it: the guardrail encoder
    (outcrop/guardrails/encoder.py; OUTCROP_GUARDRAIL_ENCODER picks its backend, ONNX int8 by default)."""
    from outcrop.guardrails.encoder import GuardrailEncoder

    return GuardrailEncoder().embed


async def run_tier(
    checker: Checker, guardrail: Compiled, samples: Sequence[Sample]
) -> tuple[list[set[str]], list[float]]:
    """The topics detected in each sample, and the milliseconds each assess call took."""
    await checker.assess(guardrail, "INPUT", ["warm-up"], scope="FULL")
    detected, times = [], []
    for s in samples:
        started = time.perf_counter()
        out = await checker.assess(guardrail, "INPUT", [s.text], scope="FULL")
        times.append((time.perf_counter() - started) * 1000)
        entries = out.assessment.get("topicPolicy", {}).get("topics", [])
        detected.append({e["name"] for e in entries if e["detected"]})
    return detected, times


def score(names: Sequence[str], samples: Sequence[Sample], detected: Sequence[set[str]]) -> dict[str, Any]:
    per_topic = {n: Counts() for n in names}
    micro, per_text = Counts(), Counts()
    blocked = {"near_miss": 0, "benign": 0}
    for s, found in zip(samples, detected, strict=True):
        for n in names:
            per_topic[n].add(n in found, n in s.labels, s.text)
            micro.add(n in found, n in s.labels, s.text)
        # a text on a topic counts as caught when a topic fires, even another one (it is blocked either way)
        per_text.add(bool(found), bool(s.labels), s.text)
        if found and s.kind in blocked:
            blocked[s.kind] += 1
    totals = {k: sum(1 for s in samples if s.kind == k) for k in blocked}
    return {"topics": per_topic, "micro": micro, "text": per_text, "blocked": blocked, "totals": totals}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("evaluation", "development"), default="evaluation")
    parser.add_argument("--tier", choices=TIERS, action="append", help="a tier to run (default: both)")
    parser.add_argument("--data", type=Path, default=TOPICS)
    parser.add_argument("--show-errors", action="store_true", help="print every false positive and negative")
    args = parser.parse_args()
    tiers = args.tier or list(TIERS)
    topics, samples = load(args.split, args.data)
    names = [t["name"] for t in topics]
    kinds = {k: sum(1 for s in samples if s.kind == k) for k in ("on_topic", "near_miss", "benign")}
    print(f"split {args.split}: {len(topics)} topics configured at once; {len(samples)} texts "
          f"({kinds['on_topic']} on topic, {kinds['near_miss']} near misses, {kinds['benign']} benign)\n")  # fmt: skip
    embed = _embed()
    results: dict[str, dict[str, Any]] = {}
    watch, started = CpuWatch(), time.perf_counter()
    for tier in tiers:
        # a Checker per tier: its vector cache would hand CLASSIC's cascade the vectors STANDARD's run computed
        detected, times = asyncio.run(run_tier(Checker(embed), compiled(topics, tier), samples))
        results[tier] = score(names, samples, detected)
        results[tier]["times"] = times
    cores = watch.foreign_cores(time.perf_counter() - started)

    rows = []
    for n in names:
        row = [n]
        for tier in tiers:
            c = results[tier]["topics"][n]
            p, r, f = c.prf()
            row += [f"{p:.2f}", f"{r:.2f}", f"{f:.2f}"]
        rows.append(row)
    headers = ["topic"] + [f"{t[:4]} {m}" for t in tiers for m in ("P", "R", "F1")]
    print("Per topic (precision / recall / F1 of 'topic detected' against 'on that topic'):")
    print(table(headers, rows))
    print()
    rows = []
    for tier in tiers:
        res = results[tier]
        (mp, mr, mf), (tp, tr, tf) = res["micro"].prf(), res["text"].prf()
        near = f"{res['blocked']['near_miss']}/{res['totals']['near_miss']}"
        benign = f"{res['blocked']['benign']}/{res['totals']['benign']}"
        times = res["times"]
        rows.append([tier, f"{mp:.3f}", f"{mr:.3f}", f"{mf:.3f}", f"{tp:.3f}", f"{tr:.3f}", f"{tf:.3f}", near, benign,
                     f"{statistics.median(times):.2f}", f"{statistics.fmean(times):.2f}"])  # fmt: skip
    print("Overall (micro over topic x text pairs; per text: 'blocked' against 'on some topic'):")
    print(table(["tier", "P", "R", "F1", "text P", "text R", "text F1", "near misses blocked", "benign blocked",
                 "p50 ms/text", "mean ms/text"], rows))  # fmt: skip
    if set(TIERS) <= set(tiers):
        gap = results["CLASSIC"]["micro"].prf()[2] - results["STANDARD"]["micro"].prf()[2]
        verdict = "within" if gap >= -TARGET_GAP else "NOT within"
        ratio = statistics.median(results["STANDARD"]["times"]) / statistics.median(results["CLASSIC"]["times"])
        print(f"\nF1 gap CLASSIC - STANDARD: {gap:+.3f} ({verdict} the target of -{TARGET_GAP:.2f}); "
              f"CLASSIC is {ratio:.1f}x faster per text (p50)")  # fmt: skip
    print(foreign_cpu_note(cores))
    if args.show_errors:
        for tier in tiers:
            print(f"\n{tier} errors:")
            for n in names:
                for e in results[tier]["topics"][n].errors:
                    print(f"  [{n}] {e}")


if __name__ == "__main__":
    main()
