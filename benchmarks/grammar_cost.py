"""What decoding under a JSON schema costs: tokens/s with `response_format: json_schema` vs without.

Both through a real `outcrop serve` (a subprocess, temporary config) on the Qwen2.5-0.5B-shaped Q8_0 model
of scripts/build_bench_model.py, with the OpenAI chat completions API streamed (SSE), at temperature 0:

- free: no response_format, `ignore_eos` so every run makes exactly --tokens tokens
- schema: `response_format: {"type": "json_schema", ...}` with a schema that lets the answer go on
  (an object holding a list of strings), so llama.cpp's grammar sampler checks every token; the run stops
  at --tokens or when the grammar closes the object, whichever comes first

Decode tokens/s counts the tokens after the first over the time from the first to the last (the
`usage` chunk gives the count). Runs alternate (free, schema, schema, free, ...). Prints both and the ratio,
next to the target (issue 12: >= 85 % of free decoding; the engine samples first and has the grammar check
only the token it picked, falling back to filtering the whole vocabulary when the grammar rejects it).

    python benchmarks/grammar_cost.py                  # ~1 min on 2 cores
    python benchmarks/grammar_cost.py --tokens 256 --reps 6
"""

from __future__ import annotations

import argparse
import http.client
import json
import time
from pathlib import Path
from typing import Any

from _common import CpuWatch, foreign_cpu_note, machine_summary, median, outcrop_server, table
from decode_throughput import ensure_model

MODEL_PATH = Path(__file__).resolve().parent / ".models" / "qwen2.5-0.5b-shape-q8_0.gguf"
MODEL = "qwen.qwen2-5-0-5b-shape-v1:0"
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "facts": {"type": "array", "items": {"type": "string"}}},
    "required": ["city", "facts"],
}


def run(host: str, port: int, run_id: int, tokens: int, constrained: bool) -> tuple[float, int, float]:
    """One streamed generation: (TTFT ms, output tokens, decode tokens/s)."""
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Run {run_id}: describe Paris as JSON."}],
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if constrained:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA}}
    else:
        body["ignore_eos"] = True
    conn = http.client.HTTPConnection(host, port, timeout=600)
    start = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {response.read()[:300]!r}")
    first = last = None
    n_out = 0
    text = []
    for raw in response:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            n_out = chunk["usage"]["completion_tokens"]
        for choice in chunk.get("choices") or []:
            if choice["delta"].get("content"):
                now = time.perf_counter()
                first = first or now
                last = now
                text.append(choice["delta"]["content"])
    conn.close()
    if constrained:
        json.loads("".join(text)) if n_out < tokens else None  # a finished answer must parse
    assert first is not None and last is not None
    rate = (n_out - 1) / (last - first) if last > first else float("nan")
    return (first - start) * 1000, n_out, rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=4)
    args = ap.parse_args()
    ensure_model(MODEL_PATH)
    print(machine_summary())
    started = time.perf_counter()
    model = {"id": MODEL, "path": str(MODEL_PATH), "n_ctx": 4096}
    results: dict[bool, list[tuple[float, int, float]]] = {False: [], True: []}
    with outcrop_server([model]) as srv:
        run(srv.host, srv.port, 0, 8, False)  # warm-up (and load)
        run(srv.host, srv.port, 0, 8, True)
        watch = CpuWatch(srv.process.pid)
        t0 = time.perf_counter()
        for rep in range(args.reps):
            order = [False, True] if rep % 2 == 0 else [True, False]
            for constrained in order:
                results[constrained].append(run(srv.host, srv.port, rep + 1, args.tokens, constrained))
        foreign = watch.foreign_cores(time.perf_counter() - t0)
    rows = []
    for constrained, label in ((False, "free (ignore_eos)"), (True, "json_schema grammar")):
        r = results[constrained]
        rows.append([label, str(len(r)), f"{median([x[0] for x in r]):.0f}", f"{median([x[1] for x in r]):.0f}",
                     f"{median([x[2] for x in r]):.2f}"])  # fmt: skip
    print(table(["decoding", "runs", "TTFT ms", "tokens", "decode tok/s"], rows))
    ratio = median([x[2] for x in results[True]]) / median([x[2] for x in results[False]])
    verdict = "met" if ratio >= 0.85 else "NOT met"
    print(f"\ndecode rate under the JSON-schema grammar: {ratio:.1%} of free decoding (target >= 85 %: {verdict})")
    print(foreign_cpu_note(foreign))
    print(f"total time {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
