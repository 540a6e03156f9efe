"""Gateway overhead: the latency Outcrop adds to a Converse call, over calling llama-cpp-python directly.

What it measures
    The same generation two ways, many times, and the latency of each:

    * direct: in this process, llama-cpp-python on the built-in tiny model
      (outcrop/models/outcrop-tiny-chat.gguf): render the conversation with the model's chat
      template (outcrop.engines.chat_template.render, as the engine does), tokenize it, generate
      greedily (temperature 0, the engine's sampler settings) until end of turn or the token
      budget, detokenize. Timed from before rendering to the last token's text.
    * gateway: POST /model/outcrop.tiny-chat-v1%3A0/converse to a real `outcrop serve` (uvicorn
      on 127.0.0.1, started by this script in a subprocess with a temporary config) over one
      keep-alive http.client connection; timed from building the JSON body to the parsed reply.

    Both load the same GGUF with the same n_ctx, n_threads (also for batches) and n_batch, and
    generate the same tokens from the same prompt tokens (the script checks the texts and token
    counts agree and warns if not). The tiny model answers "Hello" in 12 tokens in about 2 ms, so
    what the gateway adds (HTTP, JSON, validation, the hop to the model's worker thread and back)
    is not lost in generation time. The server runs in its own process, so the client does not
    share a GIL with it; the two never generate at the same time (one request at a time).

    For information (not part of the target), two more rows: the same call through boto3's
    bedrock-runtime client (SigV4 signing, botocore parsing: what most callers pay), and the
    gateway floor, Converse on an echo engine served by the same server (no llama.cpp at all).

    Paths are interleaved after a warm-up: each round runs a block of --block requests on every
    path, in an order rotated every round (ABC, BCA, CAB, ...), so drift and noise fall on all paths
    alike. Blocks rather than strict ABAB because on a small machine strict alternation measures
    the two processes disturbing each other: after a generation llama.cpp's OpenMP workers keep
    spinning for ~10 ms, on the cores the other process is about to need (on 2 cores strict ABAB
    inflated the direct median by ~60 % and the gateway's by ~50 %). So before each block the
    script pauses 30 ms, and the first --settle requests of each block are run but not timed (they
    also absorb waking up from the pause); `--block 1 --settle 0` gives strict ABAB (with pauses).

    The model file's pages are pinned in memory while it runs (mmap + mlock; --no-pin to skip), so
    page-cache reclaim cannot make one path read weights from disk (see _common.pinned_in_memory).

    The table gives n, median, p90 and p99 in ms, the ratio to direct, and the added latency
    (gateway - direct) at the median and at p99, next to the targets (median <= 2 ms, p99 <= 10 ms).
    Nothing is asserted: it is a measurement.

How to run
    python benchmarks/gateway_overhead.py                    # ~10 s on 2 cores
    python benchmarks/gateway_overhead.py -n 3000 --warmup 100 --case capital --no-boto3

    -n / --requests is the number of timed requests per path; --max-tokens the token budget of each.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    CpuWatch,
    foreign_cpu_note,
    machine_summary,
    median,
    outcrop_server,
    percentile,
    pinned_in_memory,
    server_log_tail,
    table,
)

from outcrop.engines import chat_template
from outcrop.engines.llamacpp.native import model_params
from outcrop.models import BUILTIN_GGUF, BUILTIN_MODEL_ID
from outcrop.models.tiny_script import CASES, Case

ECHO_ID = "bench.echo-v1:0"
TARGET_MEDIAN_MS = 2.0
# Pause before each block, so the previous path's OpenMP workers have stopped spinning (~10 ms).
SWITCH_PAUSE_S = 0.03
TARGET_P99_MS = 10.0
# The engine's sampler settings at temperature 0 (outcrop/engines/llamacpp.py).
SAMPLING: dict[str, float | int] = {"temp": 0.0, "top_p": 0.95, "top_k": 40, "min_p": 0.0, "repeat_penalty": 1.0}

Result = tuple[str, int]  # generated text, output tokens


def text_cases() -> dict[str, Case]:
    return {c.name: c for c in CASES if not c.tools}


def converse_body(case: Case, max_tokens: int) -> dict[str, Any]:
    system = [m["content"] for m in case.messages if m["role"] == "system"]
    body: dict[str, Any] = {
        "messages": [
            {"role": m["role"], "content": [{"text": m["content"]}]} for m in case.messages if m["role"] != "system"
        ],
        "inferenceConfig": {"maxTokens": max_tokens, "temperature": 0.0},
    }
    if system:
        body["system"] = [{"text": s} for s in system]
    return body


def reply_text(reply: dict[str, Any]) -> Result:
    content = reply["output"]["message"]["content"]
    return "".join(block.get("text", "") for block in content), int(reply["usage"]["outputTokens"])


class Direct:
    """llama-cpp-python in this process, doing what LlamaCppEngine does for one request."""

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
        self.vocab = self.llm._model.vocab
        self.template = self.llm.metadata.get("tokenizer.chat_template") or chat_template.CHATML_TOOLS_TEMPLATE
        self.add_bos = bool(self.llm._model.add_bos_token())
        bos, eos = self.llm.token_bos(), self.llm.token_eos()
        self.bos = bos
        self.bos_text = self.llm.detokenize([bos], special=True).decode(errors="replace") if bos >= 0 else ""
        self.eos_text = self.llm.detokenize([eos], special=True).decode(errors="replace") if eos >= 0 else ""

    def prompt_tokens(self, messages: list[dict[str, Any]]) -> list[int]:
        text = chat_template.render(self.template, messages, bos_token=self.bos_text, eos_token=self.eos_text)
        tokens = self.llm.tokenize(text.encode(), add_bos=False, special=True)
        if self.add_bos and self.bos >= 0 and (not tokens or tokens[0] != self.bos):
            tokens.insert(0, self.bos)
        return tokens

    def generate(self, messages: list[dict[str, Any]], max_tokens: int) -> Result:
        tokens = self.prompt_tokens(messages)
        self.llm.set_seed(self._llama_cpp.LLAMA_DEFAULT_SEED)
        out = bytearray()
        n = 0
        gen = self.llm.generate(tokens, **SAMPLING)  # type: ignore[arg-type]
        try:
            for token in gen:
                if self._llama_cpp.llama_vocab_is_eog(self.vocab, token):
                    break
                n += 1
                out += self.llm.detokenize([token])
                if n >= max_tokens:
                    break
        finally:
            gen.close()
        return out.decode(errors="replace"), n


class ConverseHttp:
    """Converse over one keep-alive http.client connection (the path percent-encoded, as botocore does)."""

    def __init__(self, host: str, port: int, model_id: str) -> None:
        self.conn = http.client.HTTPConnection(host, port, timeout=120)
        self.path = f"/model/{model_id.replace(':', '%3A')}/converse"
        self.input_tokens = 0

    def call(self, body: dict[str, Any]) -> Result:
        data = json.dumps(body).encode()
        try:
            response = self._post(data)
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The server closed the idle connection (uvicorn's keep-alive timeout is 5 s): reconnect.
            self.conn.close()
            response = self._post(data)
        raw = response.read()
        if response.status != 200:
            raise RuntimeError(f"Converse answered {response.status}: {raw[:500]!r}")
        reply = json.loads(raw)
        self.input_tokens = int(reply["usage"]["inputTokens"])
        return reply_text(reply)

    def _post(self, data: bytes) -> http.client.HTTPResponse:
        self.conn.request("POST", self.path, body=data, headers={"Content-Type": "application/json"})
        return self.conn.getresponse()

    def close(self) -> None:
        self.conn.close()


def boto3_runtime(url: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "bedrock-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=120),
    )


def fmt(ms: float) -> str:
    return f"{ms:.2f}"


def main() -> int:
    cases = text_cases()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", "--requests", type=int, default=1000, help="timed requests per path (default 1000)")
    ap.add_argument("--warmup", type=int, default=30, help="untimed requests per path first (default 30)")
    ap.add_argument("--block", type=int, default=20, help="requests per path in a row (default 20; 1 = ABAB)")
    ap.add_argument("--settle", type=int, default=3, help="untimed requests at the start of each block (default 3)")
    ap.add_argument("--case", choices=sorted(cases), default="hello", help="tiny-model conversation (default hello)")
    ap.add_argument("--max-tokens", type=int, default=64, help="token budget per request (default 64)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="n_threads on both paths (default: all)")
    ap.add_argument("--n-ctx", type=int, default=4096, help="context size on both paths (default 4096)")
    ap.add_argument("--no-boto3", action="store_true", help="skip the informational boto3 row")
    ap.add_argument("--no-pin", action="store_true", help="do not mlock the model file's pages (see _common.py)")
    ap.add_argument("--no-echo", action="store_true", help="skip the informational echo-engine (gateway floor) row")
    args = ap.parse_args()
    if not 0 <= args.settle < args.block:
        ap.error("--settle must be at least 0 and less than --block")

    case = cases[args.case]
    body = converse_body(case, args.max_tokens)
    echo_body = {**converse_body(case, args.max_tokens), "messages": [{"role": "user", "content": [{"text": "Hi"}]}]}
    n_batch = 512
    started = time.perf_counter()

    models: list[dict[str, Any]] = [
        {
            "id": BUILTIN_MODEL_ID,
            "path": str(BUILTIN_GGUF),
            "n_ctx": args.n_ctx,
            "n_threads": args.threads,
            "n_batch": n_batch,
        },
    ]
    if not args.no_echo:
        models.append({"id": ECHO_ID, "engine": "echo", "n_ctx": args.n_ctx})

    print(f"Gateway overhead: Converse {case.name!r} on {BUILTIN_MODEL_ID} ({BUILTIN_GGUF.name})")
    print(f"machine: {machine_summary()}")
    print(
        f"n_threads={args.threads} n_ctx={args.n_ctx} n_batch={n_batch} maxTokens={args.max_tokens} temperature=0; "
        f"{args.warmup} warm-up + {args.requests} timed requests per path, "
        f"interleaved in blocks of {args.block} ({args.settle} untimed)"
    )

    with contextlib.ExitStack() as stack:
        if not args.no_pin:
            stack.enter_context(pinned_in_memory(BUILTIN_GGUF))
        direct = Direct(BUILTIN_GGUF, n_ctx=args.n_ctx, n_threads=args.threads, n_batch=n_batch)
        n_prompt = len(direct.prompt_tokens(case.messages))
        server = stack.enter_context(outcrop_server(models))
        gateway = ConverseHttp(server.host, server.port, BUILTIN_MODEL_ID)
        echo = ConverseHttp(server.host, server.port, ECHO_ID)
        runtime = None if args.no_boto3 else boto3_runtime(server.url)

        def via_boto3() -> Result:
            assert runtime is not None
            reply = runtime.converse(modelId=BUILTIN_MODEL_ID, **body)
            return reply_text(reply)

        paths: list[tuple[str, Callable[[], Result]]] = [
            ("direct llama-cpp-python (in-process)", lambda: direct.generate(case.messages, args.max_tokens)),
            ("Outcrop Converse, http.client keep-alive", lambda: gateway.call(body)),
        ]
        if runtime is not None:
            paths.append(("Outcrop Converse, boto3 (info)", via_boto3))
        if not args.no_echo:
            paths.append(("Outcrop Converse, echo engine: floor (info)", lambda: echo.call(echo_body)))

        # Warm up, and check both paths do the same work.
        results: dict[str, Result] = {}
        for i in range(args.warmup):
            for name, fn in paths[i % len(paths) :] + paths[: i % len(paths)]:
                results[name] = fn()
        d_text, d_n = results[paths[0][0]] if results else direct.generate(case.messages, args.max_tokens)
        g_text, g_n = results[paths[1][0]] if results else gateway.call(body)
        print(
            f"prompt: {n_prompt} tokens direct, {gateway.input_tokens} via Outcrop; "
            f"output: {d_n} tokens direct, {g_n} via Outcrop: {g_text!r}"
        )
        if (d_text, d_n) != (g_text, g_n) or n_prompt != gateway.input_tokens:
            print(f"WARNING: the paths differ (direct {d_text!r}, {d_n} tokens); the comparison is not like for like")
        if d_text != case.answer:
            print(f"WARNING: expected the tiny model to answer {case.answer!r}")

        # Timed rounds: each path runs a block of requests, in an order rotated every round (ABC, BCA,
        # CAB, ...); the first --settle requests of a block are not timed (see the docstring).
        times: dict[str, list[float]] = {name: [] for name, _ in paths}
        clock = time.perf_counter_ns
        watch, timed_from = CpuWatch(server.process.pid), time.perf_counter()
        timed_per_block = args.block - args.settle
        rounds = -(-args.requests // timed_per_block)
        for i in range(rounds):
            k = i % len(paths)
            for name, fn in paths[k:] + paths[:k]:
                time.sleep(SWITCH_PAUSE_S)
                for j in range(args.block):
                    t0 = clock()
                    fn()
                    elapsed = (clock() - t0) / 1e6
                    if j >= args.settle and len(times[name]) < args.requests:
                        times[name].append(elapsed)

        foreign = watch.foreign_cores(time.perf_counter() - timed_from)
        gateway.close()
        echo.close()
        if server.process.poll() is not None:
            print("WARNING: the server exited during the run:\n" + server_log_tail(server))

    base = times[paths[0][0]]
    b_med, b_p99 = median(base), percentile(base, 99)
    rows = []
    for idx, (name, _) in enumerate(paths):
        t = times[name]
        med, p90, p99 = median(t), percentile(t, 90), percentile(t, 99)
        added = idx > 0 and "floor" not in name
        rows.append(
            [
                name,
                str(len(t)),
                fmt(med),
                fmt(p90),
                fmt(p99),
                f"{med / b_med:.2f}x",
                f"{med - b_med:+.2f}" if added else "-",
                f"{p99 - b_p99:+.2f}" if added else "-",
            ]
        )
    print()
    print(table(["path", "n", "median ms", "p90 ms", "p99 ms", "vs direct", "added median", "added p99"], rows))

    g = times[paths[1][0]]
    added_rows: list[tuple[str, float, float]] = [
        ("median", median(g) - b_med, TARGET_MEDIAN_MS),
        ("p99", percentile(g, 99) - b_p99, TARGET_P99_MS),
    ]
    print()
    print("Added latency, Outcrop (http.client) - direct, against the issue's targets:")
    print(
        table(
            ["", "measured ms", "target ms", ""],
            [[q, f"{m:+.2f}", f"<= {t:.0f}", "met" if m <= t else "NOT met"] for q, m, t in added_rows],
        )
    )
    print(foreign_cpu_note(foreign))
    print(f"\ntotal time {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
