"""Soak: many mixed requests against one `outcrop serve` (the built-in llama.cpp model, keys, SQLite store, usage
records, a guardrail), and what the process looks like afterwards.

The mix, in turn, over keep-alive connections from `--concurrency` workers:
  Bedrock Converse and ConverseStream, OpenAI chat completions streamed and not, Anthropic messages streamed
  and not, a stream hung up half-way (each dialect in turn), a bad body (each dialect in turn: not JSON, wrong
  types), and a guardrailed Converse whose word filter intervenes.

Prints: answers by kind and status; the server's resident memory, open file descriptors and threads after the
warm-up (the first tenth) and at the end, with the growth; and the metering check: every request that reached
the model (all but the bad bodies) has exactly one usage record.
The issue's targets: RSS growth after warm-up <= 10 %, descriptors and threads flat, zero 5xx, each request
metered once.

    python benchmarks/soak.py                       # 10,000 requests at concurrency 8
    python benchmarks/soak.py --requests 2000
"""

from __future__ import annotations

import argparse
import http.client
import json
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _common import machine_summary, outcrop_server, table

from outcrop.models import BUILTIN_GGUF, BUILTIN_MODEL_ID

MODEL = BUILTIN_MODEL_ID
QUOTED = MODEL.replace(":", "%3A")
KINDS = ("converse", "converse-stream", "openai", "openai-stream", "anthropic", "anthropic-stream", "hang-up",
         "bad-body", "guardrailed")  # fmt: skip
PROMPT = "Tell me about the sea."
# Before each measurement: the last usage records written (each second), connections the clients closed gone
# and idle keep-alive ones timed out (keep_alive_s, 5 s)
SETTLE_S = 6.0


def make_key(home: Path, holder: dict[str, str]) -> None:
    from outcrop import store
    from outcrop.auth.keys import Keyring

    keyring = Keyring(store.connect(f"sqlite:///{home / 'outcrop.db'}"), home / "secret.key")
    keyring.ensure_principal("soak", admin=True)
    holder["key"] = keyring.create_api_key("soak")[1]
    holder["home"] = str(home)


def request_for(kind: str, i: int, guardrail: str) -> tuple[str, bytes, bool]:
    """(path, body, streams) for request i of `kind`."""
    bedrock = {"messages": [{"role": "user", "content": [{"text": PROMPT}]}], "inferenceConfig": {"maxTokens": 12}}
    openai = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 12}
    anthropic = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 12}
    if kind == "converse":
        return f"/model/{QUOTED}/converse", json.dumps(bedrock).encode(), False
    if kind == "converse-stream":
        return f"/model/{QUOTED}/converse-stream", json.dumps(bedrock).encode(), True
    if kind == "openai":
        return "/v1/chat/completions", json.dumps(openai).encode(), False
    if kind == "openai-stream":
        return "/v1/chat/completions", json.dumps({**openai, "stream": True}).encode(), True
    if kind == "anthropic":
        return "/v1/messages", json.dumps(anthropic).encode(), False
    if kind == "anthropic-stream":
        return "/v1/messages", json.dumps({**anthropic, "stream": True}).encode(), True
    if kind == "hang-up":
        long = {"maxTokens": 200}
        which = i % 3
        if which == 0:
            return f"/model/{QUOTED}/converse-stream", json.dumps({**bedrock, "inferenceConfig": long}).encode(), True
        if which == 1:
            return "/v1/chat/completions", json.dumps({**openai, "stream": True, "max_tokens": 200}).encode(), True
        return "/v1/messages", json.dumps({**anthropic, "stream": True, "max_tokens": 200}).encode(), True
    if kind == "bad-body":
        which = i % 3
        bad = [b"{not json", json.dumps({"model": MODEL, "messages": "hello"}).encode(),
               json.dumps({"model": MODEL, "max_tokens": "many", "messages": []}).encode()]  # fmt: skip
        path = [f"/model/{QUOTED}/converse", "/v1/chat/completions", "/v1/messages"][which]
        return path, bad[which], False
    body = {"messages": [{"role": "user", "content": [{"text": "I would like a pineapple pizza."}]}],
            "inferenceConfig": {"maxTokens": 12},
            "guardrailConfig": {"guardrailIdentifier": guardrail, "guardrailVersion": "DRAFT"}}  # fmt: skip
    return f"/model/{QUOTED}/converse", json.dumps(body).encode(), False


class Worker(threading.Thread):
    def __init__(self, port: int, key: str, jobs: list[int], guardrail: str, results: list[tuple[str, int]]) -> None:
        super().__init__(daemon=True)
        self.port, self.key, self.jobs, self.guardrail, self.results = port, key, jobs, guardrail, results
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def one(self, i: int) -> tuple[str, int]:
        kind = KINDS[i % len(KINDS)]
        path, body, _ = request_for(kind, i, self.guardrail)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.key}",
                   "anthropic-version": "2023-06-01"}  # fmt: skip
        for attempt in (0, 1):  # a kept-alive connection the server closed while idle: once more on a new one
            try:
                self.conn.request("POST", path, body=body, headers=headers)
                response = self.conn.getresponse()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                if attempt:
                    raise
        if kind == "hang-up" and response.status == 200:
            response.read1(64)  # the first bytes of the stream, then hang up
            self.conn.close()
            return kind, -response.status  # negative: hung up on purpose
        response.read()  # the whole answer, streamed or not
        return kind, response.status

    def run(self) -> None:
        for i in self.jobs:
            try:
                self.results.append(self.one(i))
            except Exception as exc:  # a failed request is counted, not fatal
                self.results.append((f"error {type(exc).__name__}", 0))
                self.conn.close()


def process_state(pid: int) -> dict[str, Any]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    kinds = Counter(_fd_kind(fd) for fd in Path(f"/proc/{pid}/fd").iterdir())
    return {
        "fd_kinds": kinds,  # type: ignore[dict-item]
        "rss_mib": int(fields["VmRSS"].split()[0]) / 1024,
        "fds": len(list(Path(f"/proc/{pid}/fd").iterdir())),
        "threads": int(fields["Threads"]),
    }


def _fd_kind(fd: Path) -> str:
    try:
        target = str(fd.readlink())
    except OSError:
        return "gone"
    return target.split(":", 1)[0] if ":" in target else Path(target).suffix or target.rsplit("/", 1)[-1]


def create_guardrail(port: int, key: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = {"name": "soak", "blockedInputMessaging": "Blocked.", "blockedOutputsMessaging": "Blocked.",
            "wordPolicyConfig": {"wordsConfig": [{"text": "pineapple"}]}}  # fmt: skip
    conn.request("POST", "/guardrails", body=json.dumps(body),
                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})  # fmt: skip
    response = conn.getresponse()
    made = json.loads(response.read())
    if response.status >= 300:
        raise RuntimeError(f"CreateGuardrail answered {response.status}: {made}")
    return str(made["guardrailId"])


def run_block(port: int, key: str, guardrail: str, start: int, count: int, concurrency: int) -> list[tuple[str, int]]:
    results: list[tuple[str, int]] = []
    jobs = [list(range(start + w, start + count, concurrency)) for w in range(concurrency)]
    workers = [Worker(port, key, j, guardrail, results) for j in jobs]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for w in workers:
        w.conn.close()
    return results


def usage_rows(home: str) -> tuple[int, int, Counter[str]]:
    """(usage records of the soak principal, request ids written twice, records by status)."""
    db = sqlite3.connect(f"{home}/outcrop.db")
    try:
        statuses = Counter(dict(db.execute("SELECT status, count(*) FROM usage_records GROUP BY status").fetchall()))
        total = sum(statuses.values())
        columns = {row[1] for row in db.execute("PRAGMA table_info(usage_records)")}
        twice = 0
        if "request_id" in columns:
            twice = db.execute("SELECT count(*) FROM (SELECT request_id FROM usage_records WHERE request_id IS NOT "
                               "NULL GROUP BY request_id HAVING count(*) > 1)").fetchone()[0]  # fmt: skip
        return total, twice, statuses
    finally:
        db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    holder: dict[str, str] = {}
    model = {"id": MODEL, "path": str(BUILTIN_GGUF), "n_ctx": 4096, "max_queue": 64}
    with outcrop_server([model], server={"auth": "keys"},
                        prepare=lambda home: make_key(home, holder)) as server:  # fmt: skip
        pid = server.process.pid
        guardrail = create_guardrail(server.port, holder["key"])
        warm = max(args.requests // 10, len(KINDS) * args.concurrency)
        started = time.perf_counter()
        results = run_block(server.port, holder["key"], guardrail, 0, warm, args.concurrency)
        time.sleep(SETTLE_S)
        after_warmup = process_state(pid)
        samples = [after_warmup]
        done = warm
        step = max((args.requests - warm) // 9, 1)
        while done < args.requests:
            n = min(step, args.requests - done)
            results += run_block(server.port, holder["key"], guardrail, done, n, args.concurrency)
            done += n
            samples.append(process_state(pid))
        seconds = time.perf_counter() - started
        time.sleep(SETTLE_S)
        end = process_state(pid)
        rows, twice, by_status = usage_rows(holder["home"])

    print(machine_summary())
    print(f"{len(results)} requests at concurrency {args.concurrency} in {seconds:.0f} s "
          f"({len(results) / seconds:.1f} req/s), model {MODEL}\n")  # fmt: skip
    counts: Counter[tuple[str, int]] = Counter(results)
    rows_out = [[kind, ", ".join(f"{'hung up' if s < 0 else s} x{n}" for (k, s), n in sorted(counts.items())
                                 if k == kind)]
                for kind in sorted({k for k, _ in counts})]  # fmt: skip
    print(table(["kind", "answers"], rows_out))
    fivexx = sum(n for (_, s), n in counts.items() if s >= 500 or s == 0)
    print()
    growth = (end["rss_mib"] - after_warmup["rss_mib"]) / after_warmup["rss_mib"] * 100
    print(table(["", "after warm-up", "end", "min..max during", "growth"], [
        ["RSS (MiB)", f"{after_warmup['rss_mib']:.0f}", f"{end['rss_mib']:.0f}",
         f"{min(s['rss_mib'] for s in samples):.0f}..{max(s['rss_mib'] for s in samples):.0f}", f"{growth:+.1f} %"],
        ["open fds", f"{after_warmup['fds']:.0f}", f"{end['fds']:.0f}",
         f"{min(s['fds'] for s in samples):.0f}..{max(s['fds'] for s in samples):.0f}",
         f"{end['fds'] - after_warmup['fds']:+.0f}"],
        ["threads", f"{after_warmup['threads']:.0f}", f"{end['threads']:.0f}",
         f"{min(s['threads'] for s in samples):.0f}..{max(s['threads'] for s in samples):.0f}",
         f"{end['threads'] - after_warmup['threads']:+.0f}"],
    ]))  # fmt: skip
    print(
        "at each tenth (during the run): fds "
        + " ".join(str(x["fds"]) for x in samples)
        + ", RSS MiB "
        + " ".join(f"{x['rss_mib']:.0f}" for x in samples)
    )
    print(f"descriptors after warm-up {dict(after_warmup['fd_kinds'])}, at the end {dict(end['fd_kinds'])}")
    reached = sum(n for (k, s), n in counts.items() if k != "bad-body" and s != 0)
    print(f"\n5xx or no answer: {fivexx}")
    print(f"usage records: {rows} for {reached} requests that reached the model "
          f"({'exactly one each' if rows == reached else f'{rows - reached:+d} off'}); request ids written twice: "
          f"{twice}; by status: {dict(by_status)}")  # fmt: skip
    ok = fivexx == 0 and rows == reached and twice == 0 and growth <= 10
    print(f"\ntargets (RSS growth <= 10 %, zero 5xx, each request metered once): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
