"""Decode throughput: tokens/s through Outcrop's ConverseStream vs llama-cpp-python called directly.

What it measures
    The same greedy generation of a fixed number of tokens, on a model the size of a real small
    chat model, two ways:

    * direct: in this process, llama-cpp-python's `Llama.generate` (render the conversation with
      the model's chat template as the engine does, tokenize, then sample with the engine's settings
      at temperature 0, detokenizing each token as a streaming caller would). End of sequence is
      not honoured, so every run makes exactly --tokens tokens.
    * gateway: POST /model/<id>/converse-stream to a real `outcrop serve` (uvicorn on 127.0.0.1,
      started by this script in a subprocess with a temporary config), with inferenceConfig
      {maxTokens: --tokens, temperature: 0} and additionalModelRequestFields {ignore_eos: true},
      read over http.client as it arrives and split into AWS event-stream messages with
      botocore's EventStreamBuffer. With --boto3, also through boto3's converse_stream (info).

    For each run: TTFT, the time from the request (direct: from rendering the prompt) to the
    first token (gateway: the first contentBlockDelta to arrive), and decode tokens/s, the tokens
    after the first divided by the time from the first token to the last (so prompt processing
    and TTFT are left out). Output-token counts come from the reply's usage (gateway) and are
    checked to equal --tokens.

    The model is scripts/build_bench_model.py's random-weight GGUF with the exact shape of
    Qwen2.5-0.5B-Instruct in Q8_0 (benchmarks/.models/qwen2.5-0.5b-shape-q8_0.gguf; built first if
    missing, about a minute). Both paths load it with the same n_ctx, n_threads (for batches too)
    and n_batch. Each run's prompt starts with its own number, so neither path reuses a cached
    prompt prefix, and the direct run and the gateway run of a pair use the same prompt.

    Runs alternate (direct, gateway, gateway, direct, ...: ABBA, so neither path always goes
    first) after one short untimed warm-up on each path, and never overlap: the server is idle in
    its own process while the direct path runs, and this process is idle (blocked reading the
    stream) while the server generates. The model file's pages are pinned in memory (mmap + mlock,
    see _common.pinned_in_memory; --no-pin to skip) so that neither path reads weights back from
    disk after the page cache was reclaimed while the other one ran. The table gives, per path,
    the median TTFT and the median, min and max decode tokens/s; then the gateway/direct ratio of
    the median decode rates next to the target (>= 95 %), and the median of the per-rep ratios.
    Nothing is asserted: it is a measurement. Expect a few % of run-to-run noise on a small VM:
    run more --reps (and more --tokens) for a finer figure.

How to run
    python benchmarks/decode_throughput.py                     # ~50 s on 2 cores (~70 s with --boto3)
    python benchmarks/decode_throughput.py --tokens 512 --reps 5 --boto3

    --tokens is the number of tokens per run, --reps the runs per path.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ROOT,
    CpuWatch,
    converse_stream,
    foreign_cpu_note,
    machine_summary,
    median,
    outcrop_server,
    pinned_in_memory,
    server_log_tail,
    table,
)

from outcrop.engines import chat_template
from outcrop.engines.llamacpp.native import model_params

MODEL_ID = "bench.qwen2-5-0-5b-shape-v1:0"
DEFAULT_MODEL = ROOT / "benchmarks" / ".models" / "qwen2.5-0.5b-shape-q8_0.gguf"
TARGET_RATIO = 0.95
# The engine's sampler settings at temperature 0 (outcrop/engines/llamacpp.py).
SAMPLING: dict[str, float | int] = {"temp": 0.0, "top_p": 0.95, "top_k": 40, "min_p": 0.0, "repeat_penalty": 1.0}
SYSTEM = "You are a helpful assistant. Answer in plain prose, with no lists and no headings."
USER = (
    "Write a short story about a dog who finds a brass key in the park, follows the clues it leads "
    "to, and ends up at the house of an old clockmaker. Keep it warm and a little funny."
)


@dataclass
class Run:
    ttft_s: float
    tokens: int
    decode_s: float  # first token -> last token
    deltas: int = 0  # text pieces received (gateway)

    @property
    def tokens_per_s(self) -> float:
        return (self.tokens - 1) / self.decode_s if self.decode_s > 0 else float("nan")


def ensure_model(path: Path) -> None:
    if path.is_file():
        return
    if path != DEFAULT_MODEL:
        raise SystemExit(f"{path} does not exist")
    print(f"{path} is missing: building it with scripts/build_bench_model.py (about a minute)", flush=True)
    spec = importlib.util.spec_from_file_location("build_bench_model", ROOT / "scripts" / "build_bench_model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build(path)


def messages(run_id: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": f"Request {run_id}. {SYSTEM}"}, {"role": "user", "content": USER}]


def converse_body(run_id: int, n_tokens: int) -> dict[str, Any]:
    system, user = messages(run_id)
    return {
        "system": [{"text": system["content"]}],
        "messages": [{"role": "user", "content": [{"text": user["content"]}]}],
        "inferenceConfig": {"maxTokens": n_tokens, "temperature": 0.0},
        "additionalModelRequestFields": {"ignore_eos": True},
    }


class Direct:
    """llama-cpp-python in this process, doing what LlamaCppEngine does, minus the server."""

    def __init__(self, path: Path, *, n_ctx: int, n_threads: int, n_batch: int) -> None:
        import llama_cpp

        self._llama_cpp = llama_cpp
        with model_params(None):  # loaded as Outcrop loads it (no weight repacking on AMX CPUs)
            self.llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                n_batch=n_batch,
                verbose=False,
            )
        self.template = self.llm.metadata.get("tokenizer.chat_template") or chat_template.CHATML_TOOLS_TEMPLATE
        self.add_bos = bool(self.llm._model.add_bos_token())
        self.bos = self.llm.token_bos()
        eos = self.llm.token_eos()
        self.bos_text = self.llm.detokenize([self.bos], special=True).decode(errors="replace") if self.bos >= 0 else ""
        self.eos_text = self.llm.detokenize([eos], special=True).decode(errors="replace") if eos >= 0 else ""

    def prompt_tokens(self, msgs: list[dict[str, str]]) -> list[int]:
        text = chat_template.render(self.template, msgs, bos_token=self.bos_text, eos_token=self.eos_text)
        tokens = self.llm.tokenize(text.encode(), add_bos=False, special=True)
        if self.add_bos and self.bos >= 0 and (not tokens or tokens[0] != self.bos):
            tokens.insert(0, self.bos)
        return tokens

    def run(self, run_id: int, n_tokens: int) -> Run:
        t0 = time.perf_counter()
        tokens = self.prompt_tokens(messages(run_id))
        self.llm.set_seed(self._llama_cpp.LLAMA_DEFAULT_SEED)
        out = bytearray()
        n = 0
        first = last = t0
        gen = self.llm.generate(tokens, **SAMPLING)  # type: ignore[arg-type]
        try:
            for token in gen:  # end of sequence not honoured, like ignore_eos
                out += self.llm.detokenize([token])
                n += 1
                last = time.perf_counter()
                if n == 1:
                    first = last
                if n >= n_tokens:
                    break
        finally:
            gen.close()
        return Run(first - t0, n, last - first)


class ConverseStreamHttp:
    """ConverseStream over one keep-alive http.client connection, parsed with botocore's EventStreamBuffer."""

    def __init__(self, host: str, port: int, model_id: str) -> None:
        self.conn = http.client.HTTPConnection(host, port, timeout=600)
        self.path = f"/model/{model_id.replace(':', '%3A')}/converse-stream"
        self.input_tokens = 0

    def run(self, run_id: int, n_tokens: int) -> Run:
        read = converse_stream(self.conn, self.path, converse_body(run_id, n_tokens))
        self.input_tokens = read.input_tokens
        return Run(read.first - read.t0, read.output_tokens, read.last - read.first, read.deltas)

    def close(self) -> None:
        self.conn.close()


class ConverseStreamBoto3:
    def __init__(self, url: str, model_id: str) -> None:
        import boto3
        from botocore.config import Config

        self.model_id = model_id
        self.client = boto3.client(
            "bedrock-runtime",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="AKIDEXAMPLE",
            aws_secret_access_key="secret",
            config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=600),
        )

    def run(self, run_id: int, n_tokens: int) -> Run:
        t0 = time.perf_counter()
        reply = self.client.converse_stream(modelId=self.model_id, **converse_body(run_id, n_tokens))
        first = last = 0.0
        deltas = 0
        output_tokens = -1
        for event in reply["stream"]:
            if "contentBlockDelta" in event:
                last = time.perf_counter()
                deltas += 1
                if deltas == 1:
                    first = last
            elif "metadata" in event:
                output_tokens = int(event["metadata"]["usage"]["outputTokens"])
        return Run(first - t0, output_tokens, last - first, deltas)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tokens", type=int, default=128, help="tokens generated per run (default 128)")
    ap.add_argument("--reps", type=int, default=6, help="timed runs per path (default 6)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="n_threads on both paths (default: all)")
    ap.add_argument("--n-ctx", type=int, default=4096, help="context size on both paths (default 4096)")
    ap.add_argument("--n-batch", type=int, default=512, help="n_batch on both paths (default 512)")
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL, help=f"GGUF to run (default {DEFAULT_MODEL})")
    ap.add_argument("--boto3", action="store_true", help="also run boto3's converse_stream (informational)")
    ap.add_argument("--no-pin", action="store_true", help="do not mlock the model file's pages (see _common.py)")
    args = ap.parse_args()
    if args.tokens < 2:
        ap.error("--tokens must be at least 2")

    started = time.perf_counter()
    ensure_model(args.model)
    model = args.model.resolve()
    print(f"Decode throughput: ConverseStream on {model.name} vs llama-cpp-python directly")
    print(f"machine: {machine_summary()}")
    print(
        f"n_threads={args.threads} n_ctx={args.n_ctx} n_batch={args.n_batch} temperature=0, ignore_eos; "
        f"{args.tokens} tokens per run, {args.reps} timed runs per path, alternating (ABBA)"
    )
    spec = {
        "id": MODEL_ID,
        "path": str(model),
        "n_ctx": args.n_ctx,
        "n_threads": args.threads,
        "n_batch": args.n_batch,
    }
    with contextlib.ExitStack() as stack:
        pinned = False if args.no_pin else stack.enter_context(pinned_in_memory(model))
        print(f"model file pinned in memory: {'yes' if pinned else 'no'}")
        t_load = time.perf_counter()
        direct = Direct(model, n_ctx=args.n_ctx, n_threads=args.threads, n_batch=args.n_batch)
        n_prompt = len(direct.prompt_tokens(messages(0)))
        print(f"direct: model loaded in {time.perf_counter() - t_load:.1f}s; prompt {n_prompt} tokens")
        server = stack.enter_context(outcrop_server([spec]))
        gateway = ConverseStreamHttp(server.host, server.port, MODEL_ID)
        # (name, run, prompt group): the direct run and the http.client run of a rep share a prompt (they
        # run in different processes); boto3 gets its own, or it would find the server's cached prefix.
        paths: list[tuple[str, Callable[[int, int], Run], int]] = [
            ("direct llama-cpp-python (in-process)", direct.run, 0),
            ("Outcrop ConverseStream, http.client", gateway.run, 0),
        ]
        if args.boto3:
            paths.append(("Outcrop ConverseStream, boto3 (info)", ConverseStreamBoto3(server.url, MODEL_ID).run, 1))

        for i, (_, fn, _) in enumerate(paths):  # warm-up; its prompts never repeat a timed one
            fn(1_000_000 + i, min(8, args.tokens))

        runs: dict[str, list[Run]] = {name: [] for name, _, _ in paths}
        watch, timed_from = CpuWatch(server.process.pid), time.perf_counter()
        for rep in range(args.reps):
            order = paths if rep % 2 == 0 else paths[::-1]
            for name, fn, group in order:
                run = fn(rep * 10 + group, args.tokens)
                runs[name].append(run)
                note = f", {run.deltas} text deltas" if run.deltas else ""
                print(
                    f"  run {rep + 1}/{args.reps} {name}: TTFT {run.ttft_s * 1000:.0f} ms, "
                    f"{run.tokens} tokens{note}, decode {run.tokens_per_s:.2f} tokens/s",
                    flush=True,
                )
        foreign = watch.foreign_cores(time.perf_counter() - timed_from)
        if gateway.input_tokens != n_prompt:
            print(f"WARNING: prompt is {n_prompt} tokens direct but {gateway.input_tokens} via Outcrop")
        gateway.close()
        if server.process.poll() is not None:
            print("WARNING: the server exited during the run:\n" + server_log_tail(server))

    for name, rs in runs.items():
        wrong = [r.tokens for r in rs if r.tokens != args.tokens]
        if wrong:
            print(f"WARNING: {name} generated {wrong} tokens instead of {args.tokens}; rates are per token counted")

    base = median([r.tokens_per_s for r in runs[paths[0][0]]])
    base_ttft = median([r.ttft_s for r in runs[paths[0][0]]])
    rows = []
    for name, _, _ in paths:
        rates = [r.tokens_per_s for r in runs[name]]
        ttft = median([r.ttft_s for r in runs[name]])
        rows.append(
            [
                name,
                str(len(rates)),
                f"{ttft * 1000:.0f}",
                f"{(ttft - base_ttft) * 1000:+.0f}",
                f"{median(rates):.2f}",
                f"{min(rates):.2f}",
                f"{max(rates):.2f}",
                f"{median(rates) / base * 100:.1f} %",
            ]
        )
    print()
    print(
        table(
            ["path", "runs", "TTFT ms", "vs direct", "decode tok/s", "min", "max", "of direct"],
            rows,
        )
    )
    gw = runs[paths[1][0]]
    ratio = median([r.tokens_per_s for r in gw]) / base
    paired = median([g.tokens_per_s / d.tokens_per_s for g, d in zip(gw, runs[paths[0][0]], strict=True)])
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    print(
        f"\nOutcrop ConverseStream decode rate: {ratio * 100:.1f} % of direct (target >= {TARGET_RATIO * 100:.0f} %: "
        f"{verdict}); median of the per-rep ratios: {paired * 100:.1f} %"
    )
    print(foreign_cpu_note(foreign))
    print(f"\ntotal time {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
