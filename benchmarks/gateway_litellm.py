"""Gateway overhead against the LiteLLM proxy: both in front of the same instant OpenAI-compatible upstream.

What it measures
    An upstream that answers POST /v1/chat/completions at once with a fixed answer
    (benchmarks/_instant_upstream.py, raw asyncio, its own process), and three paths to it, each a
    non-streaming chat completion over HTTP/1.1 keep-alive:

    * direct: the client talks to the upstream itself (the floor);
    * Outcrop: `outcrop serve` with a model of `engine = "openai"` pointing at the upstream (its defaults:
      local mode, usage metering to SQLite, Prometheus metrics, its admission queue);
    * LiteLLM: the LiteLLM proxy (`litellm --config`, one worker, no database, no callbacks: its leanest
      setup), in its own virtual environment (benchmarks/_servers.py installs it on first use).

    c=1: --requests per path, in blocks of --block rotated every round (ABC, BCA, CAB) so drift falls on all
    alike; median, p90, p99 latency and the latency each gateway adds at the median (path - direct).
    c=16: --concurrency client threads, each with its own keep-alive connection, for --seconds per path
    (twice, rotated); requests/s and the median latency. The client threads share this process, so the
    direct row shows what the client itself can drive.

    Targets (issue 12): Outcrop's added median <= 1/5 of LiteLLM's, and its requests/s at c=16 >= 5x
    LiteLLM's. Nothing is asserted.

How to run
    python benchmarks/gateway_litellm.py                   # ~2 min on 2 cores once LiteLLM is installed
    python benchmarks/gateway_litellm.py --requests 3000 --seconds 20
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    CpuWatch,
    Server,
    foreign_cpu_note,
    free_port,
    machine_summary,
    median,
    outcrop_server,
    percentile,
    table,
)
from _servers import LITELLM_KEY, litellm_proxy

MODEL = "bench.instant-v1:0"
UPSTREAM_MODEL = "instant"


@contextlib.contextmanager
def instant_upstream() -> Iterator[Server]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "_instant_upstream.py"), str(port)])
    server = Server(f"http://127.0.0.1:{port}", "127.0.0.1", port, proc, Path("/dev/null"))
    deadline = time.monotonic() + 30
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v1/models")
            conn.getresponse().read()
            conn.close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        yield server
    finally:
        proc.terminate()
        proc.wait()


class Client:
    def __init__(self, server: Server, model: str) -> None:
        self.server = server
        self.body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 16})
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=60)

    def call(self) -> float:
        t0 = time.perf_counter()
        for attempt in (0, 1):
            try:
                # the LiteLLM master key for every path: the upstream and Outcrop's local mode ignore it
                headers = {"Content-Type": "application/json", "Authorization": f"Bearer {LITELLM_KEY}"}
                self.conn.request("POST", "/v1/chat/completions", body=self.body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()  # an idle keep-alive connection the server closed: reconnect once
                if attempt:
                    raise
        if response.status != 200:
            raise RuntimeError(f"{self.server.url}: HTTP {response.status}: {data[:300]!r}")
        answer = json.loads(data)
        assert answer["choices"][0]["message"]["content"] == "Hi there", answer
        return time.perf_counter() - t0

    def close(self) -> None:
        self.conn.close()


def load(server: Server, model: str, threads: int, seconds: float) -> tuple[int, float, list[float]]:
    """(requests completed, wall seconds, latencies) with `threads` clients for `seconds`."""
    stop = time.perf_counter() + seconds
    counts, latencies = [0] * threads, [[] for _ in range(threads)]  # type: list[int], list[list[float]]
    go = threading.Barrier(threads + 1)

    def worker(i: int) -> None:
        client = Client(server, model)
        client.call()
        go.wait()
        while time.perf_counter() < stop:
            latencies[i].append(client.call())
            counts[i] += 1
        client.close()

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    go.wait()
    t0 = time.perf_counter()
    for t in pool:
        t.join()
    return sum(counts), time.perf_counter() - t0, [x for xs in latencies for x in xs]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", "--requests", type=int, default=1500, help="timed requests per path at c=1 (default 1500)")
    ap.add_argument("--block", type=int, default=100, help="requests per path per round at c=1 (default 100)")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds per path and round at c=16 (default 10)")
    args = ap.parse_args()
    started = time.perf_counter()
    print("Gateway overhead: Outcrop and the LiteLLM proxy in front of one instant OpenAI-compatible upstream")
    print(f"machine: {machine_summary()}")
    with contextlib.ExitStack() as stack:
        upstream = stack.enter_context(instant_upstream())
        spec = {"id": MODEL, "engine": "openai", "url": f"{upstream.url}/v1", "upstream_model": UPSTREAM_MODEL,
                "parallel": 64, "max_queue": 256}  # fmt: skip
        ours = stack.enter_context(outcrop_server([spec]))
        lite = stack.enter_context(litellm_proxy(f"{upstream.url}/v1", UPSTREAM_MODEL))
        paths = [("direct (upstream itself)", upstream, UPSTREAM_MODEL), ("Outcrop", ours, MODEL),
                 ("LiteLLM proxy", lite, UPSTREAM_MODEL)]  # fmt: skip
        clients = {name: Client(server, model) for name, server, model in paths}
        for client in clients.values():  # warm-up
            for _ in range(50):
                client.call()
        watch, timed_from = CpuWatch(upstream.process.pid, ours.process.pid, lite.process.pid), time.perf_counter()
        lat: dict[str, list[float]] = {name: [] for name, _, _ in paths}
        rounds = max(1, args.requests // args.block)
        for r in range(rounds):
            order = paths[r % 3 :] + paths[: r % 3]
            for name, _, _ in order:
                lat[name].extend(clients[name].call() for _ in range(args.block))
        for client in clients.values():
            client.close()
        through: dict[str, list[tuple[int, float, list[float]]]] = {name: [] for name, _, _ in paths}
        for r in range(2):
            for name, server, model in paths if r == 0 else paths[::-1]:
                through[name].append(load(server, model, args.concurrency, args.seconds))
                n, wall, _ = through[name][-1]
                print(f"  c={args.concurrency} {name}: {n / wall:.0f} requests/s", flush=True)
        foreign = watch.foreign_cores(time.perf_counter() - timed_from)

    base = median(lat[paths[0][0]]) * 1000
    rows = []
    for name, _, _ in paths:
        xs = [x * 1000 for x in lat[name]]
        rps = sum(n for n, _, _ in through[name]) / sum(w for _, w, _ in through[name])
        c16 = median([x * 1000 for _, _, ls in through[name] for x in ls])
        rows.append([name, str(len(xs)), f"{median(xs):.2f}", f"{percentile(xs, 90):.2f}", f"{percentile(xs, 99):.2f}",
                     f"{median(xs) - base:+.2f}", f"{rps:.0f}", f"{c16:.1f}"])  # fmt: skip
    print()
    print(table(["path", "n (c=1)", "median ms", "p90", "p99", "added median", f"req/s c={args.concurrency}",
                 f"median ms c={args.concurrency}"], rows))  # fmt: skip
    added = {r[0]: float(r[5]) for r in rows}
    rps = {r[0]: float(r[6]) for r in rows}
    o, lt = added["Outcrop"], added["LiteLLM proxy"]
    print(f"\nadded median: Outcrop {o:.2f} ms, LiteLLM {lt:.2f} ms: Outcrop's is {o / lt:.2f} of LiteLLM's "
          f"(target <= 0.20: {'met' if o <= lt / 5 else 'NOT met'})")  # fmt: skip
    ratio = rps["Outcrop"] / rps["LiteLLM proxy"]
    print(f"requests/s at c={args.concurrency}: Outcrop {ratio:.1f}x LiteLLM's "
          f"(target >= 5x: {'met' if ratio >= 5 else 'NOT met'})")  # fmt: skip
    print(foreign_cpu_note(foreign))
    print(f"total time {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
