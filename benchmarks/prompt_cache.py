"""The prompt cache: time to first token of a long conversation's next turn, cold against cached.

What it measures
    A conversation of about 2,000 tokens (a system prompt and a dozen turns) on the Qwen2.5-0.5B-shaped
    Q8_0 model (scripts/build_bench_model.py), through a real `outcrop serve`, streamed:

    * cold: its next turn sent as the first request of a conversation nobody has sent before (a distinct
      number at the start of the system prompt), so every prompt token is computed;
    * cached: the same conversation's previous turn first (not timed), then its next turn with the answer
      the model gave appended, as a chat client sends it; the slot that served the previous turn still
      holds its KV state, so only the tokens after the shared prefix are computed.

    Each in three dialects in turn: Bedrock ConverseStream (with a `cachePoint` after the system prompt),
    Anthropic Messages (`cache_control` on the system prompt) and OpenAI chat completions. Per dialect:
    median TTFT cold and cached and their ratio (target, issue 12: cached >= 5x faster). Cold and cached runs
    alternate (ABBA). With llama-server built (benchmarks/_servers.py), the same cold and cached turns
    through its OpenAI API, for information.

    Then the counts: one and the same conversation, its previous turn then its next turn, in each dialect,
    each on a freshly started server, and the prompt tokens, cache reads and cache writes each dialect
    reported. The previous turn is cold (Bedrock and Anthropic write the system prompt at its cache point);
    the next turn finds the previous one's prefix, so all three must report the same numbers, each in its
    own way (tests/sdk/test_concurrency.py checks them against the engine's own slots). The prefix ends where
    the previous answer starts: the model's own tokens for its answer are not always the tokens its text
    turns into when the client sends it back (the random-weight model picks odd spellings of words).

How to run
    python benchmarks/prompt_cache.py               # ~3 min on 2 cores
    python benchmarks/prompt_cache.py --reps 4 --skip-llama-server
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

from _common import CpuWatch, Server, foreign_cpu_note, machine_summary, median, outcrop_server, table
from _servers import LLAMA_SERVER, llama_server
from decode_throughput import DEFAULT_MODEL, ensure_model

MODEL_ID = "anthropic.qwen2-5-0-5b-shape-v1:0"  # an Anthropic-family id, so both Anthropic APIs take it
TOPICS = ["rivers", "mountains", "deserts", "islands", "forests", "glaciers", "volcanoes", "lakes", "canyons"]
SYSTEM = (
    "You are a patient geography tutor. You answer in plain prose, two or three sentences, without lists, and "
    "you always mention one surprising fact. When the student asks a follow-up, you build on what you said "
    "before instead of repeating it. "
) * 4


def history(run: int) -> tuple[str, list[tuple[str, str]]]:
    """(system prompt, [(user, assistant), ...]) of about 2,000 tokens; `run` makes it unlike any other."""
    turns = []
    for i, topic in enumerate(TOPICS[:-1]):
        turns.append((
            f"Tell me something about {topic}, please, and how they shape the places around them ({i}).",
            f"{topic.capitalize()} shape the land around them over long stretches of time, and people settle "
            f"where they make life easier. A surprising fact: some {topic} change faster than you would think, "
            f"within a single human lifetime, which is why maps of them are redrawn every few decades.",
        ))  # fmt: skip
    return f"Conversation {run}. {SYSTEM}", turns


def question(run: int) -> str:
    return f"And what about {TOPICS[-1]}? ({run})"


# --- the three dialects, streamed over http.client -----------------------------------------------------


def _post(server: Server, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=600)
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    if response.status != 200:
        raise RuntimeError(f"{path}: HTTP {response.status}: {response.read()[:300]!r}")
    return conn, response


def bedrock(server: Server, system: str, turns: list[tuple[str, str]], last: str) -> tuple[float, str, dict[str, int]]:
    from botocore.eventstream import EventStreamBuffer

    messages = []
    for u, a in turns:
        messages += [{"role": "user", "content": [{"text": u}]}, {"role": "assistant", "content": [{"text": a}]}]
    messages.append({"role": "user", "content": [{"text": last}]})
    body = {"system": [{"text": system}, {"cachePoint": {"type": "default"}}], "messages": messages,
            "inferenceConfig": {"maxTokens": 16, "temperature": 0}}  # fmt: skip
    t0 = time.perf_counter()
    conn, response = _post(server, f"/model/{MODEL_ID}/converse-stream", body)
    buffer, first, text, usage = EventStreamBuffer(), None, [], {}
    while chunk := response.read1(65536):
        buffer.add_data(chunk)
        for message in buffer:
            kind = message.headers.get(":event-type")
            payload = json.loads(message.payload)
            if kind == "contentBlockDelta":
                first = first or time.perf_counter()
                text.append(payload["delta"].get("text", ""))
            elif kind == "metadata":
                u = payload["usage"]
                read, write = u.get("cacheReadInputTokens", 0), u.get("cacheWriteInputTokens", 0)
                usage = {"prompt": u["inputTokens"] + read + write, "read": read, "write": write}
    conn.close()
    return (first or time.perf_counter()) - t0, "".join(text), usage


def _sse(response: Any) -> Any:
    for raw in response:
        line = raw.decode().strip()
        if line.startswith("data:") and line[5:].strip() != "[DONE]":
            yield json.loads(line[5:])


def anthropic(
    server: Server, system: str, turns: list[tuple[str, str]], last: str
) -> tuple[float, str, dict[str, int]]:
    messages = []
    for u, a in turns:
        messages += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
    messages.append({"role": "user", "content": last})
    body = {"model": MODEL_ID, "max_tokens": 16, "temperature": 0, "stream": True, "messages": messages,
            "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]}  # fmt: skip
    t0 = time.perf_counter()
    conn, response = _post(server, "/v1/messages", body, {"anthropic-version": "2023-06-01", "x-api-key": "x"})
    first, text, usage = None, [], {}
    for event in _sse(response):
        if event["type"] == "message_start":
            u = event["message"]["usage"]
            read, write = u["cache_read_input_tokens"], u["cache_creation_input_tokens"]
            usage = {"prompt": u["input_tokens"] + read + write, "read": read, "write": write}
        elif event["type"] == "content_block_delta":
            first = first or time.perf_counter()
            text.append(event["delta"].get("text", ""))
    conn.close()
    return (first or time.perf_counter()) - t0, "".join(text), usage


def openai(server: Server, system: str, turns: list[tuple[str, str]], last: str,
           model: str = MODEL_ID) -> tuple[float, str, dict[str, int]]:  # fmt: skip
    messages = [{"role": "system", "content": system}]
    for u, a in turns:
        messages += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
    messages.append({"role": "user", "content": last})
    body = {"model": model, "max_tokens": 16, "temperature": 0, "stream": True, "messages": messages,
            "stream_options": {"include_usage": True}}  # fmt: skip
    t0 = time.perf_counter()
    conn, response = _post(server, "/v1/chat/completions", body)
    first, text, usage = None, [], {}
    for chunk in _sse(response):
        for choice in chunk.get("choices") or []:
            if (choice.get("delta") or {}).get("content"):
                first = first or time.perf_counter()
                text.append(choice["delta"]["content"])
        if chunk.get("usage"):
            u = chunk["usage"]
            read = (u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
            usage = {"prompt": u["prompt_tokens"], "read": read, "write": 0}
    conn.close()
    return (first or time.perf_counter()) - t0, "".join(text), usage


Call = Callable[[Server, str, list[tuple[str, str]], str], tuple[float, str, dict[str, int]]]


def cold(call: Call, server: Server, run: int) -> tuple[float, dict[str, int]]:
    system, turns = history(run)
    ttft, _, usage = call(server, system, turns, question(run))
    return ttft, usage


def cached(call: Call, server: Server, run: int) -> tuple[float, dict[str, int]]:
    system, turns = history(run)
    *before, (last_user, _) = turns
    _, answer, _ = call(server, system, before, last_user)  # the previous turn (not timed)
    ttft, _, usage = call(server, system, [*before, (last_user, answer)], question(run))
    return ttft, usage


def cold_and_cached(name: str, call: Call, server: Server, reps: int, run: int) -> tuple[list[str], int]:
    """Cold and cached runs alternating (ABBA): the table row (median TTFTs and their ratio), the next run id."""
    results: dict[str, list[float]] = {"cold": [], "cached": []}
    for rep in range(reps):
        for kind in ("cold", "cached") if rep % 2 == 0 else ("cached", "cold"):
            run += 1
            ttft, usage = (cold if kind == "cold" else cached)(call, server, run)
            results[kind].append(ttft)
            print(f"  {name} {kind}: TTFT {ttft * 1000:.0f} ms, {usage}", flush=True)
    c, w = median(results["cold"]), median(results["cached"])
    return [name, f"{c * 1000:.0f}", f"{w * 1000:.0f}", f"{c / w:.1f}x"], run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--reps", type=int, default=2, help="cold and cached runs per dialect (default 2)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--skip-llama-server", action="store_true")
    args = ap.parse_args()
    ensure_model(args.model)
    model = args.model.resolve()
    started = time.perf_counter()
    print(f"Prompt cache: a ~2,000-token conversation's next turn, cold vs cached, on {model.name}")
    print(f"machine: {machine_summary()}")
    spec = {"id": MODEL_ID, "path": str(model), "n_ctx": 4096, "n_threads": args.threads, "parallel": 4}
    dialects: dict[str, Call] = {"Bedrock ConverseStream": bedrock, "Anthropic Messages": anthropic,
                                 "OpenAI chat completions": openai}  # fmt: skip
    rows: list[list[str]] = []
    counts: list[list[str]] = []
    run = 0
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(outcrop_server([spec]))
        openai(server, "warm-up", [], "hi")
        watch, timed_from = CpuWatch(server.process.pid), time.perf_counter()
        for name, call in dialects.items():
            row, run = cold_and_cached(name, call, server, args.reps, run)
            rows.append(row)
        foreign = watch.foreign_cores(time.perf_counter() - timed_from)
        if not args.skip_llama_server and LLAMA_SERVER.is_file():
            ls = stack.enter_context(llama_server(LLAMA_SERVER, model, parallel=4, n_ctx=4096, threads=args.threads))

            def via_llama_server(s: Server, system: str, turns: list[tuple[str, str]], last: str) -> Any:
                return openai(s, system, turns, last, model="model")

            row, run = cold_and_cached("llama-server, OpenAI API (info)", via_llama_server, ls, args.reps, run)
            rows.append(row)
    system, turns = history(-1)
    *before, (last_user, _) = turns
    nexts = []
    for name, call in dialects.items():
        with outcrop_server([spec]) as fresh:
            _, answer, prev = call(fresh, system, before, last_user)
            _, _, nxt = call(fresh, system, [*before, (last_user, answer)], question(-1))
        nexts.append(nxt)
        counts.append([name, *(str(u[k]) for u in (prev, nxt) for k in ("prompt", "read", "write"))])
    print()
    print(table(["path", "TTFT cold ms", "TTFT cached ms", "cold / cached"], rows))
    print("\none conversation, previous turn then next turn, each dialect on a fresh server: tokens as reported")
    print(table(["dialect", "prev: prompt", "read", "written", "next: prompt", "read", "written"], counts))
    same = len({(u["prompt"], u["read"]) for u in nexts}) == 1
    print(f"next turn: {'the same prompt and cache-read counts in every dialect' if same else 'counts DIFFER'}")
    worst = min(float(r[3][:-1]) for r in rows[:3])
    print(f"cached TTFT speed-up, worst dialect: {worst:.1f}x (target >= 5x)")
    print(foreign_cpu_note(foreign))
    print(f"total time {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
