"""Concurrent streaming clients: Outcrop against llama.cpp's llama-server and llama-cpp-python's server.

What it measures
    At each concurrency level (default 1, 2, 4, 8), that many clients start at once, each streaming
    one chat completion (POST /v1/chat/completions, SSE, the OpenAI API every server here speaks) with
    its own ~200-token prompt (a distinct number at its start, so no server can reuse another's prompt),
    --tokens output tokens (default 128), temperature 0, end of sequence ignored. Per server and level:

    * aggregate tok/s: every stream's output tokens over the wall time from the first request sent to the
      last stream's end (prompt processing included: that is what the clients wait for);
    * TTFT p50 / p99: request sent -> first content delta;
    * end-to-end p99: request sent -> end of stream;
    * complete: the streams that ended normally with exactly --tokens tokens.

    The servers, all on the Qwen2.5-0.5B-shaped Q8_0 model of scripts/build_bench_model.py, with the
    same threads, `parallel` slots of --n-ctx tokens each, running side by side (only one is sent work at
    a time; levels x servers in an order rotated every level):

    * Outcrop (`outcrop serve`, engine llamacpp, `parallel` = the highest level);
    * llama-server built from the llama.cpp vendored in the same llama-cpp-python (`--parallel`, continuous
      batching): the anchor to beat (see benchmarks/_servers.py; built on first use, about 10 minutes);
    * llama-cpp-python's own server (`python -m llama_cpp.server`, interrupt_requests off): one request at
      a time, what a user could run instead with the same package.

    And, at c=1 only, llama-cpp-python's `Llama.generate` in this process (render, tokenize, generate,
    detokenize; no server), the ceiling for one stream.

    Then the freeze check: four streams flowing, a ~1,500-token prompt arrives, and the longest pause between
    two tokens of the four streams after it was sent (llama-server reads a prompt in batches of 2,048 tokens;
    Outcrop in chunks of about a second of work while others stream), with the long prompt's TTFT.

    Ratios are against llama-server in the same run. Targets (issue 12): aggregate >= 90 % of
    llama-server's at every level, TTFT p50 and p99 <= 1.5x llama-server's, Outcrop's c=8 aggregate >= 2x
    its c=1, Outcrop's c=1 >= 95 % of in-process generation, every stream complete. Nothing is asserted.

How to run
    pip install -e '.[bench]'
    python benchmarks/concurrency.py                    # ~6 min on 2 cores once llama-server is built
    python benchmarks/concurrency.py --levels 1,8 --tokens 64 --skip llama-cpp-python
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    CpuWatch,
    Server,
    foreign_cpu_note,
    machine_summary,
    median,
    outcrop_server,
    percentile,
    table,
)
from _servers import ensure_llama_server, llama_cpp_python_server, llama_server
from decode_throughput import DEFAULT_MODEL, ensure_model

MODEL_ID = "bench.qwen2-5-0-5b-shape-v1:0"
PARAGRAPH = (
    "A small dog named Biscuit found a brass key under a bench in the park one rainy morning. "
    "The key had a paper tag tied to it with red string, and on the tag someone had written an address "
    "on Clockmaker Lane. Biscuit carried the key past the bakery and the fountain, sniffing the wind for a "
    "clue, until an old man with spectacles opened a blue door and laughed."
)


def prompt(run: int) -> str:
    return f"Request {run}. Retell this story in your own words, then continue it.\n\n{PARAGRAPH}"


@dataclass
class Result:
    sent: float
    first: float | None
    end: float
    tokens: int
    complete: bool
    prompt_tokens: int
    error: str = ""


class Target:
    def __init__(self, name: str, server: Server, model: str, body_extra: dict[str, Any]) -> None:
        self.name = name
        self.server = server
        self.model = model
        self.body_extra = body_extra

    def stream(self, run: int, tokens: int, text: str | None = None, times: list[float] | None = None) -> Result:
        """One streamed completion; `times` collects when each content delta arrived."""
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": text or prompt(run)}],
            "max_tokens": tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
            **self.body_extra,
        }
        conn = http.client.HTTPConnection(self.server.host, self.server.port, timeout=900)
        sent = time.perf_counter()
        first = None
        deltas = usage_tokens = prompt_tokens = 0
        finished = False
        try:
            conn.request("POST", "/v1/chat/completions", body=json.dumps(body),
                         headers={"Content-Type": "application/json"})  # fmt: skip
            response = conn.getresponse()
            if response.status != 200:
                return Result(sent, None, time.perf_counter(), 0, False, 0, f"HTTP {response.status}")
            for raw in response:
                line = raw.decode(errors="replace").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if chunk.get("usage"):
                    usage_tokens = int(chunk["usage"].get("completion_tokens") or 0)
                    prompt_tokens = int(chunk["usage"].get("prompt_tokens") or 0)
                for choice in chunk.get("choices") or []:
                    if (choice.get("delta") or {}).get("content"):
                        deltas += 1
                        now = time.perf_counter()
                        if times is not None:
                            times.append(now)
                        if first is None:
                            first = now
                    if choice.get("finish_reason"):
                        finished = True
        except (OSError, http.client.HTTPException) as exc:
            return Result(sent, first, time.perf_counter(), 0, False, 0, str(exc))
        finally:
            conn.close()
        end = time.perf_counter()
        n = usage_tokens or deltas
        return Result(sent, first, end, n, finished and n == tokens, prompt_tokens)


def run_level(target: Target, level: int, tokens: int, first_run: int) -> list[Result]:
    results: list[Result | None] = [None] * level
    barrier = threading.Barrier(level)

    def client(i: int) -> None:
        barrier.wait()
        results[i] = target.stream(first_run + i, tokens)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(level)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [r for r in results if r is not None]


class Direct:
    """llama-cpp-python's Llama.generate in this process, one stream, as the engine would run it."""

    def __init__(self, model: Path, *, n_ctx: int, threads: int) -> None:
        import llama_cpp

        from outcrop.engines import chat_template
        from outcrop.engines.llamacpp.native import model_params

        with model_params(None):  # loaded as Outcrop loads it (no weight repacking on AMX CPUs)
            self.llm = llama_cpp.Llama(model_path=str(model), n_ctx=n_ctx, n_threads=threads,
                                       n_threads_batch=threads, verbose=False)  # fmt: skip
        self.template = self.llm.metadata.get("tokenizer.chat_template") or chat_template.CHATML_TOOLS_TEMPLATE
        self.render = chat_template.render

    def stream(self, run: int, tokens: int) -> Result:
        sent = time.perf_counter()
        text = self.render(self.template, [{"role": "user", "content": prompt(run)}])
        ids = self.llm.tokenize(text.encode(), add_bos=False, special=True)
        first = None
        n = 0
        gen = self.llm.generate(ids, temp=0.0, top_k=40, top_p=0.95, min_p=0.0, repeat_penalty=1.0)
        try:
            for token in gen:
                self.llm.detokenize([token])
                n += 1
                if first is None:
                    first = time.perf_counter()
                if n >= tokens:
                    break
        finally:
            gen.close()
        return Result(sent, first, time.perf_counter(), n, n == tokens, len(ids))


def stall(target: Target, run: int, long_tokens: int) -> tuple[float, float, float]:
    """Four streams flowing, then a long prompt arrives: (the longest gap between two tokens of the four after
    it was sent, their median gap, the long prompt's TTFT), in seconds."""
    times: list[list[float]] = [[] for _ in range(4)]
    threads = [threading.Thread(target=target.stream, args=(run + i, 192), kwargs={"times": times[i]})
               for i in range(4)]  # fmt: skip
    for t in threads:
        t.start()
    while min(len(ts) for ts in times) < 16:
        time.sleep(0.01)
    sent = time.perf_counter()
    text = f"Request {run}. " + "The river runs past the old mill. " * (long_tokens // 17)  # ~17 tokens each
    long = target.stream(run + 10, 8, text=text)
    if long.error or long.first is None:
        raise RuntimeError(f"{target.name}: the long prompt failed: {long.error or 'no tokens'}")
    for t in threads:
        t.join()

    steady = [b - a for ts in times for a, b in itertools.pairwise(ts[15:])]  # all four prompts read by then
    worst_after = max(b - a for ts in times for a, b in itertools.pairwise(ts) if b > sent)
    return worst_after, median(steady), (long.first or long.end) - long.sent


def summarize(results: list[Result]) -> dict[str, float]:
    start = min(r.sent for r in results)
    end = max(r.end for r in results)
    ttfts = [(r.first - r.sent) for r in results if r.first is not None]
    return {
        "agg": sum(r.tokens for r in results) / (end - start),
        "ttft50": percentile(ttfts, 50) if ttfts else float("nan"),
        "ttft99": percentile(ttfts, 99) if ttfts else float("nan"),
        "e2e99": percentile([r.end - r.sent for r in results], 99),
        "complete": sum(r.complete for r in results),
        "n": len(results),
        "prompt": max((r.prompt_tokens for r in results), default=0),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--levels", default="1,2,4,8", help="concurrency levels (default 1,2,4,8)")
    ap.add_argument("--tokens", type=int, default=128, help="output tokens per stream (default 128)")
    ap.add_argument("--n-ctx", type=int, default=2048, help="context per slot on every server (default 2048)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--llama-server", type=Path, default=None, help="a llama-server binary (default: build one)")
    ap.add_argument(
        "--llama-server-fa",
        default="off",
        choices=["on", "off", "auto"],
        help="llama-server's flash attention (default off, like Outcrop; its own default is auto)",
    )
    ap.add_argument("--prefill-chunk", type=int, default=0, help="Outcrop's prefill_chunk (default 0: auto)")
    ap.add_argument(
        "--stall-tokens",
        type=int,
        default=1500,
        help="prompt tokens of the long prompt sent while four streams flow (default ~1500; 0: skip)",
    )
    ap.add_argument("--skip", default="", help="comma-separated: llama-server, llama-cpp-python, direct")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    parallel = max(levels)
    ensure_model(args.model)
    model = args.model.resolve()
    binary = None if "llama-server" in skip else ensure_llama_server(args.llama_server)
    started = time.perf_counter()
    print(f"Concurrent streaming: Outcrop vs llama-server vs llama-cpp-python's server, on {model.name}")
    print(f"machine: {machine_summary()}")
    print(f"threads={args.threads}, {parallel} slots of {args.n_ctx} tokens, {args.tokens} output tokens per stream, "
          f"temperature 0, end of sequence ignored; levels {levels}")  # fmt: skip

    import llama_cpp

    eos = llama_cpp.Llama(model_path=str(model), vocab_only=True, verbose=False).token_eos()
    spec = {"id": MODEL_ID, "path": str(model), "n_ctx": args.n_ctx, "n_threads": args.threads,
            "parallel": parallel, "max_queue": 64, "prefill_chunk": args.prefill_chunk}  # fmt: skip
    results: dict[tuple[str, int], dict[str, float]] = {}
    run = 0
    with contextlib.ExitStack() as stack:
        targets: list[Target] = []
        srv = stack.enter_context(outcrop_server([spec]))
        targets.append(Target("Outcrop", srv, MODEL_ID, {"ignore_eos": True}))
        pids = [srv.process.pid]
        if binary is not None:
            ls = stack.enter_context(llama_server(binary, model, parallel=parallel, n_ctx=args.n_ctx,
                                                  threads=args.threads, flash_attn=args.llama_server_fa))  # fmt: skip
            targets.append(Target("llama-server", ls, "model", {"ignore_eos": True}))
            pids.append(ls.process.pid)
        if "llama-cpp-python" not in skip:
            lp = stack.enter_context(llama_cpp_python_server(model, n_ctx=args.n_ctx, threads=args.threads))
            targets.append(Target("llama-cpp-python server", lp, "model", {"logit_bias": {str(eos): -100.0}}))
            pids.append(lp.process.pid)
        for t in targets:  # warm-up (and load)
            t.stream(10_000_000, 4)
        watch, timed_from = CpuWatch(*pids), time.perf_counter()
        for k, level in enumerate(levels):
            order = targets[k % len(targets) :] + targets[: k % len(targets)]
            for t in order:
                res = run_level(t, level, args.tokens, run)
                run += 1000
                s = summarize(res)
                results[(t.name, level)] = s
                errors = sorted({r.error for r in res if r.error})
                print(f"  c={level} {t.name}: {s['agg']:.1f} tok/s, TTFT p50 {s['ttft50'] * 1000:.0f} ms "
                      f"p99 {s['ttft99'] * 1000:.0f} ms, {s['complete']}/{s['n']} complete"
                      + (f" ERRORS {errors}" if errors else ""), flush=True)  # fmt: skip
            if level == 1 and "direct" not in skip:
                # loaded only for this run and closed after: a second llama.cpp model idle in this process
                # slows the servers' llama.cpp threads
                direct = Direct(model, n_ctx=args.n_ctx, threads=args.threads)
                direct.stream(run, 4)
                s = summarize([direct.stream(run + 1, args.tokens)])
                direct.llm.close()
                del direct
                run += 1000
                results[("in-process Llama.generate", 1)] = s
                print(f"  c=1 in-process Llama.generate: {s['agg']:.1f} tok/s, TTFT {s['ttft50'] * 1000:.0f} ms")
        stalls: list[list[str]] = []
        if args.stall_tokens and max(levels) >= 5:
            for t in targets:
                if t.name == "llama-cpp-python server":
                    continue  # one request at a time: a new prompt waits, it cannot stall anyone
                after, typical, ttft = stall(t, run, args.stall_tokens)
                run += 1000
                stalls.append([t.name, f"{typical:.2f}", f"{after:.2f}", f"{ttft:.1f}"])
                print(f"  stall {t.name}: longest gap {after:.2f} s (median {typical:.2f} s), long TTFT {ttft:.1f} s")
        foreign = watch.foreign_cores(time.perf_counter() - timed_from)

    names = [t.name for t in targets]
    anchor = "llama-server" if "llama-server" in names else None
    rows = []
    for level in levels:
        for name in [*names, "in-process Llama.generate"]:
            s = results.get((name, level))
            if s is None:
                continue
            a = results.get((anchor, level)) if anchor else None
            rows.append([
                str(level), name, f"{s['prompt']:.0f}", f"{s['agg']:.1f}",
                f"{s['agg'] / a['agg'] * 100:.0f} %" if a else "-",
                f"{s['ttft50'] * 1000:.0f}", f"{s['ttft50'] / a['ttft50']:.2f}x" if a else "-",
                f"{s['ttft99'] * 1000:.0f}", f"{s['ttft99'] / a['ttft99']:.2f}x" if a else "-",
                f"{s['e2e99']:.1f}", f"{s['complete']:.0f}/{s['n']:.0f}",
            ])  # fmt: skip
    print()
    print(table(["c", "server", "prompt tok", "agg tok/s", "vs llama-server", "TTFT p50 ms", "vs", "TTFT p99 ms",
                 "vs", "e2e p99 s", "complete"], rows, align="><>>>>>>>>>"))  # fmt: skip
    ours = {level: results[("Outcrop", level)] for level in levels}
    print()
    if anchor:
        worst = min(ours[lv]["agg"] / results[(anchor, lv)]["agg"] for lv in levels)
        ttft = max(max(ours[lv]["ttft50"] / results[(anchor, lv)]["ttft50"],
                       ours[lv]["ttft99"] / results[(anchor, lv)]["ttft99"]) for lv in levels)  # fmt: skip
        print(f"Outcrop aggregate vs llama-server, worst level: {worst * 100:.0f} % (target >= 90 %)")
        print(f"Outcrop TTFT vs llama-server, worst of p50/p99 at any level: {ttft:.2f}x (target <= 1.5x)")
    if 1 in ours and max(levels) > 1:
        top = max(levels)
        print(f"Outcrop c={top} aggregate / c=1: {ours[top]['agg'] / ours[1]['agg']:.2f}x (target >= 2x)")
    d = results.get(("in-process Llama.generate", 1))
    if d and 1 in ours:
        print(f"Outcrop c=1 vs in-process Llama.generate: {ours[1]['agg'] / d['agg'] * 100:.0f} % (target >= 95 %)")
    if stalls:
        print(f"\nfour streams flowing, then a ~{args.stall_tokens}-token prompt arrives: the longest pause in the "
              "four streams (seconds)")  # fmt: skip
        print(table(["server", "median gap", "longest gap after it", "long prompt TTFT s"], stalls))
    print(f"streams complete: {sum(int(s['complete']) for s in results.values())} of "
          f"{sum(int(s['n']) for s in results.values())}")  # fmt: skip
    print(foreign_cpu_note(foreign))
    print(f"total time {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
