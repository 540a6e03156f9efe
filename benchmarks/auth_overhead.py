"""What authentication, access control, quotas and usage metering cost per request.

Two `outcrop serve` processes on the echo engine (no model: the request path alone), side by side:

- off: `auth = "local"`, no quotas, `record_usage = false`
- on:  `auth = "keys"` (a Bedrock API key, `Authorization: Bearer`, looked up in the SQLite store), the model
       in early access with a grant to the caller's group (a store read per request), a quota rule with
       limits too high to hit (a conditional UPDATE per request plus the token settle), and usage records
       (buffered, written each second)

Each is driven open-loop at a fixed rate (default 200 requests/s) with Converse requests over keep-alive
connections; the servers take turns in blocks so both see the same machine. Prints p50/p90/p99 of both
and the added latency. The issue's target: at most 1 ms added at the median.

    python benchmarks/auth_overhead.py                 # 200 req/s, 2 x 3 blocks of 5 s
    python benchmarks/auth_overhead.py --rate 100 --block-s 10 --rounds 4
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from pathlib import Path

from _common import CpuWatch, foreign_cpu_note, machine_summary, median, outcrop_server, percentile, table

MODEL = "test.echo-v1:0"
PATH = "/model/test.echo-v1%3A0/converse"
BODY = json.dumps({"messages": [{"role": "user", "content": [{"text": "one two three four"}]}]}).encode()


def make_key(home: Path, holder: dict[str, str]) -> None:
    from outcrop import store
    from outcrop.auth.access import AccessControl
    from outcrop.auth.keys import Keyring

    engine = store.connect(f"sqlite:///{home / 'outcrop.db'}")
    keyring = Keyring(engine, home / "secret.key")
    keyring.ensure_principal("bench", group_names=("bench-group",))
    holder["key"] = keyring.create_api_key("bench")[1]
    AccessControl(engine, {MODEL: "early"}).grant(MODEL, "group:bench-group", "benchmark")


def drive(host: str, port: int, headers: dict[str, str], rate: float, seconds: float, workers: int = 4) -> list[float]:
    """Open loop: request i is due at start + i / rate; latency is measured from when it was sent."""
    latencies: list[float] = []
    lock = threading.Lock()
    start = time.perf_counter() + 0.05
    total = int(rate * seconds)
    counter = iter(range(total))

    def worker() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            due = start + i / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            t0 = time.perf_counter()
            conn.request("POST", PATH, body=BODY, headers={"Content-Type": "application/json", **headers})
            response = conn.getresponse()
            response.read()
            elapsed = (time.perf_counter() - t0) * 1000
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}")
            with lock:
                latencies.append(elapsed)
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=200.0, help="requests per second (default 200)")
    ap.add_argument("--block-s", type=float, default=5.0, help="seconds per block (default 5)")
    ap.add_argument("--rounds", type=int, default=3, help="blocks per server (default 3)")
    args = ap.parse_args()

    model = {"id": MODEL, "engine": "echo", "n_ctx": 512, "max_queue": 64}
    quotas = "\n[[quotas]]\nrequests_per_minute = 10000000\ntokens_per_minute = 1000000000\n"
    holder: dict[str, str] = {}
    print(machine_summary())
    print(
        f"echo engine, Converse, {args.rate:.0f} requests/s open loop, {args.rounds} x {args.block_s:.0f} s per server"
    )
    started = time.perf_counter()
    with (
        outcrop_server([model], server={"auth": "local", "record_usage": False}) as off,
        outcrop_server([{**model, "access": "early"}], server={"auth": "keys"}, extra=quotas,
                       prepare=lambda home: make_key(home, holder)) as on,
    ):  # fmt: skip
        auth = {"Authorization": f"Bearer {holder['key']}"}
        results: dict[str, list[float]] = {"off": [], "on": []}
        for srv, headers in ((off, {}), (on, auth)):
            drive(srv.host, srv.port, headers, args.rate, 1.0)  # warm-up
        watch = CpuWatch(off.process.pid, on.process.pid)
        t0 = time.perf_counter()
        for r in range(args.rounds):
            order = [("off", off, {}), ("on", on, auth)]
            for name, srv, headers in order if r % 2 == 0 else order[::-1]:
                results[name] += drive(srv.host, srv.port, headers, args.rate, args.block_s)
        foreign = watch.foreign_cores(time.perf_counter() - t0)
    rows = []
    for name, label in (
        ("off", "auth, access, quotas, metering off"),
        ("on", "all on (API key, early access, quota, usage)"),
    ):
        lat = results[name]
        rows.append(
            [label, str(len(lat)), f"{median(lat):.2f}", f"{percentile(lat, 90):.2f}", f"{percentile(lat, 99):.2f}"]
        )
    print(table(["server", "n", "p50 ms", "p90 ms", "p99 ms"], rows))
    added50 = median(results["on"]) - median(results["off"])
    added99 = percentile(results["on"], 99) - percentile(results["off"], 99)
    verdict = "met" if added50 <= 1.0 else "NOT met"
    print(f"\nadded by auth + access + quota + metering: median {added50:+.2f} ms (target <= 1 ms: {verdict}), "
          f"p99 {added99:+.2f} ms")  # fmt: skip
    print(foreign_cpu_note(foreign))
    print(f"total time {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
