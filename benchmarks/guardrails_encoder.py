"""The guardrails' encoder options side by side: time per text and how far each moves the vectors.

What it measures
    all-MiniLM-L6-v2 (the STANDARD tier's encoder) in this process, no server, on the same window sets
    for every option:

    * "200w INPUT": the windows (outcrop.guardrails.content.windows) of guardrails_latency.py's ~200-word
      answer: what ApplyGuardrail with content filters and denied topics embeds on INPUT (6 windows);
    * "200w OUTPUT": those windows plus the answer's sentences, the grounding source's sentences and the
      query, each distinct text once: what the all-policies guardrail embeds on OUTPUT (grounding on);
    * "moderation": each of the first --texts samples of the OpenAI moderation set
      (shared/data/guardrails/openai-moderation-samples-1680.jsonl.gz) as one set of its windows.

    Like guardrails_latency.py, every 200-word call works its own call number into every sentence
    (nothing is cached here anyway). The options are each one way to turn a list of texts into
    L2-normalized vectors:

    * torch fp32: the sentence-transformers engine as the embeddings API runs it (length-sorted, one
      padded batch of up to 32 texts, float32): the baseline;
    * torch bf16: the same under bfloat16 autocast (what the guardrails ran before this script);
    * torch bf16, text by text: one forward per text (no padding);
    * onnx fp32, padded batch: the exported graph in ONNX Runtime, all texts in one padded batch;
    * onnx fp32 / onnx int8 / onnx int8-mixed, text by text, on 1 and on 2 threads: int8 is
      onnxruntime.quantization.quantize_dynamic, per output channel, of every matrix product (the
      runtime's default since December 2026); int8-mixed leaves the feed-forward output layers in
      float32 (the default before).

    What is timed: one call of an option over one whole set (tokenization, the model, pooling and
    normalization; not loading or exporting). Rounds visit every option in an order rotated every
    round, each option running every set once per round, so drift falls on all alike. The table
    gives, per set: the ms per set p50 and p90, the ratio of the p50 to torch fp32's p50 in the same
    run, and the cosine of each option's vectors to torch fp32's over all the set's texts (min, mean).
    The ONNX files are exported into the cache folder (outcrop.guardrails.encoder) first if missing.

How to run
    python benchmarks/guardrails_encoder.py                 # ~2 min on 2 cores
    python benchmarks/guardrails_encoder.py --rounds 5 --texts 20    # quicker, coarser
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, CpuWatch, foreign_cpu_note, machine_summary, median, percentile, table
from guardrails_latency import ANSWER, QUERY, SOURCE

from outcrop.guardrails import semantic
from outcrop.guardrails.content import windows
from outcrop.guardrails.encoder import GuardrailEncoder, _normalized, _Onnx, export, model_dir, onnx_path

MODERATION = ROOT.parent / "shared" / "data" / "guardrails" / "openai-moderation-samples-1680.jsonl.gz"
Encode = Callable[[Sequence[str]], np.ndarray]


def fresh(text: str, n: int) -> str:
    return " ".join(f"{s} (#{n})" for s in re.split(r"(?<=[.!?])\s+", text))


def input_set(n: int) -> list[str]:
    return windows(fresh(ANSWER, n))


def output_set(n: int) -> list[str]:
    answer, source, query = fresh(ANSWER, n), fresh(SOURCE, n), fresh(QUERY, n)
    texts = [*windows(answer), *semantic.sentences(answer), *semantic.sentences(source), query]
    return list(dict.fromkeys(texts))


def moderation_sets(path: Path, limit: int) -> list[list[str]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    texts = [str(r.get("prompt") or r.get("text") or "") for r in rows]
    return [windows(t) for t in texts if t.strip()][:limit]


def options() -> dict[str, Encode]:
    """Every option, loaded (and exported) before anything is timed."""
    model = model_dir()
    torch_enc = GuardrailEncoder("torch")
    torch_enc.load()
    st = torch_enc._torch

    def torch_batch(bf16: bool) -> Encode:
        return lambda texts: _normalized(st.vectors(list(texts), reduced_precision=bf16))

    def torch_single(texts: Sequence[str]) -> np.ndarray:
        return _normalized(np.concatenate([st.vectors([t], reduced_precision=True) for t in texts]))

    out: dict[str, Encode] = {"torch fp32 (baseline)": torch_batch(False), "torch bf16 (before)": torch_batch(True),
                              "torch bf16, text by text": torch_single}  # fmt: skip
    for variant in ("onnx", "onnx-int8", "onnx-int8-mixed"):
        path = export(variant, onnx_path(variant, model), model)
        for threads in (1, 2):
            session = _Onnx(path, model, threads)
            out[f"{variant}, text by text, {threads} thread{'s' * (threads > 1)}"] = _pooled(session)
            if variant == "onnx" and threads == 2:
                out["onnx, padded batch, 2 threads"] = _padded(session)
    return out


def _pooled(session: _Onnx) -> Encode:
    return lambda texts: _normalized(session.pooled(texts))


def _padded(session: _Onnx) -> Encode:
    """All texts in one batch, padded to the longest (the mask and the pooling in the graph handle it)."""

    def encode(texts: Sequence[str]) -> np.ndarray:
        encodings = session._tokenizer.encode_batch(list(texts))
        width = max(len(e.ids) for e in encodings)
        ids = np.array([e.ids + [0] * (width - len(e.ids)) for e in encodings], np.int64)
        mask = np.array([[1] * len(e.ids) + [0] * (width - len(e.ids)) for e in encodings], np.int64)
        return _normalized(session._session.run(None, {"input_ids": ids, "attention_mask": mask})[0])

    return encode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15, help="timed rounds (default 15)")
    ap.add_argument("--texts", type=int, default=40, help="moderation samples, each a set (default 40)")
    ap.add_argument("--moderation", type=Path, default=MODERATION, help="the moderation set (.jsonl.gz)")
    args = ap.parse_args()

    print("Guardrail encoder options: ms per set of windows, and cosine to torch fp32's vectors")
    print(f"machine: {machine_summary()}")
    started = time.perf_counter()
    opts = options()
    print(f"loaded (and exported where missing) in {time.perf_counter() - started:.1f}s", flush=True)
    moderation = moderation_sets(args.moderation, args.texts) if args.moderation.is_file() else []
    sets: dict[str, Callable[[int], list[list[str]]]] = {
        "200w INPUT": lambda n: [input_set(n)],
        "200w OUTPUT": lambda n: [output_set(n)],
    }
    if moderation:
        sets["moderation"] = lambda n: moderation
    times: dict[tuple[str, str], list[float]] = {(o, s): [] for o in opts for s in sets}
    names = list(opts)
    for name in names:  # one untimed pass each
        for make in sets.values():
            for texts in make(0)[:3]:
                opts[name](texts)
    watch, timed_from = CpuWatch(), time.perf_counter()
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            for label, make in sets.items():
                for texts in make(r + 1):
                    t0 = time.perf_counter_ns()
                    opts[name](texts)
                    times[(name, label)].append((time.perf_counter_ns() - t0) / 1e6)
    foreign = watch.foreign_cores(time.perf_counter() - timed_from)

    cosines: dict[tuple[str, str], np.ndarray] = {}
    for label, make in sets.items():
        groups = make(10_000)
        flat = [t for g in groups for t in g]
        reference = opts[names[0]](flat)
        for name in names:
            cosines[(name, label)] = (opts[name](flat) * reference).sum(axis=1)
    for label, make in sets.items():
        groups = make(0)
        n_texts = sum(len(g) for g in groups) / len(groups)
        print(f"\n{label}: {len(groups)} set(s), {n_texts:.1f} texts per set on average; ms per set")
        base = median(times[(names[0], label)])
        rows = []
        for name in names:
            t = times[(name, label)]
            c = cosines[(name, label)]
            rows.append([name, str(len(t)), f"{median(t):.1f}", f"{percentile(t, 90):.1f}",
                         f"{median(t) / base:.2f}x", f"{c.min():.5f}", f"{c.mean():.5f}"])  # fmt: skip
        print(table(["option", "n", "p50", "p90", "vs fp32", "cos min", "cos mean"], rows))
    print(foreign_cpu_note(foreign))
    print(f"\ntotal time {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
