"""Batch inference: a CreateModelInvocationJob against the same records sent by clients, and what a running batch
does to interactive latency.

What it measures
    One real `outcrop serve` (subprocess, temporary home) with the Qwen2.5-0.5B-shaped Q8_0 model of
    scripts/build_bench_model.py (built first if missing), `parallel` --parallel slots of --n-ctx tokens. The
    same --records records (default 200), each an Anthropic Messages body with its own ~70-token prompt (its own
    number first, so no prompt is reused from the cache), max_tokens --tokens (default 24), temperature 0, go
    through the server three ways, one after the other:

    * sequential: one client, InvokeModel for one record after another (a keep-alive HTTP connection);
    * 8 clients: eight threads (--clients), each taking the next record and calling InvokeModel;
    * batch job: the records as a JSONL file in a local folder standing for a bucket, CreateModelInvocationJob
      through boto3; timed from the create call until GetModelInvocationJob (polled every 0.2 s) says
      Completed, so validation, the outputs' assembly and writing are included.

    For each: wall seconds, records/s, output tokens/s (the output tokens the answers report, over the wall
    time) and the ratio to the sequential loop and to the 8 clients.

    Then interactive latency: --probes ConverseStream calls (each a distinct ~70-token prompt, maxTokens 8, read
    over http.client as they arrive, one at a time with 0.3 s between them) against the idle server, then the same
    number while a second batch job runs (10x --records records of the same kind, so it outlasts the probes;
    probes start a second after it is InProgress; it is stopped after the last probe, and how long Stop took to
    reach Stopped is shown). TTFT is request sent -> first
    contentBlockDelta; the table shows p50 and p99 of each and the ratio under batch / idle (target: <= 1.5x).

    The load average at start and end and the CPU other processes used meanwhile are printed: run it on a quiet
    machine. Nothing is asserted.

How to run
    python benchmarks/batch_throughput.py                 # ~20 min on 2 cores (the sequential loop is most of it)
    python benchmarks/batch_throughput.py --records 50 --tokens 16 --probes 10
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    CpuWatch,
    JsonHttp,
    converse_stream,
    foreign_cpu_note,
    machine_summary,
    outcrop_server,
    percentile,
    table,
)
from decode_throughput import DEFAULT_MODEL, ensure_model

MODEL_ID = "bench.qwen2-5-0-5b-shape-v1:0"
BUCKET = "bench-batch"
TEXT = ("Summarise the following field note in one sentence. The basalt outcrop on the north ridge shows columnar "
        "jointing; samples of the lower flow hold olivine phenocrysts, and the upper flow is vesicular.")  # fmt: skip
FINISHED = ("Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired")


def body(i: int, tokens: int) -> dict[str, Any]:
    return {"anthropic_version": "bedrock-2023-05-31", "max_tokens": tokens, "temperature": 0,
            "messages": [{"role": "user", "content": f"Note {i}. {TEXT}"}]}  # fmt: skip


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


class Bench:
    def __init__(self, url: str, home: Path, records: int, tokens: int) -> None:
        import boto3
        from botocore.config import Config

        self.url = url
        self.host, port = url.removeprefix("http://").split(":")
        self.port = int(port)
        self.home = home
        self.records = records
        self.tokens = tokens
        self.path = f"/model/{quote(MODEL_ID, safe='')}"
        once = Config(retries={"total_max_attempts": 1})
        self.bedrock = boto3.client("bedrock", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x",
                                    aws_secret_access_key="x", config=once)  # fmt: skip

    def invoke(self, client: JsonHttp, i: int) -> int:
        return int(client.post(f"{self.path}/invoke", body(i, self.tokens))["usage"]["output_tokens"])

    def sequential(self) -> tuple[float, int]:
        client = JsonHttp(self.host, self.port)
        start = time.perf_counter()
        out = sum(self.invoke(client, i) for i in range(self.records))
        return time.perf_counter() - start, out

    def concurrent(self, n: int) -> tuple[float, int]:
        todo: queue.Queue[int] = queue.Queue()
        for i in range(self.records):
            todo.put(i)
        totals: list[int] = []
        lock = threading.Lock()

        def work() -> None:
            client = JsonHttp(self.host, self.port)
            mine = 0
            while True:
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    break
                mine += self.invoke(client, i)
            with lock:
                totals.append(mine)

        threads = [threading.Thread(target=work) for _ in range(n)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - start, sum(totals)

    def submit(self, name: str, source: str = "in.jsonl") -> str:
        return str(self.bedrock.create_model_invocation_job(
            jobName=name, roleArn="arn:aws:iam::123456789012:role/bench", modelId=MODEL_ID,
            inputDataConfig={"s3InputDataConfig": {"s3Uri": f"s3://{BUCKET}/{source}"}},
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{BUCKET}/out/"}})["jobArn"])  # fmt: skip

    def wait(self, arn: str, until: tuple[str, ...] = FINISHED) -> dict[str, Any]:
        while True:
            job = self.bedrock.get_model_invocation_job(jobIdentifier=arn)
            if job["status"] in until:
                return dict(job)
            time.sleep(0.2)

    def batch(self) -> tuple[float, int, dict[str, Any]]:
        start = time.perf_counter()
        arn = self.submit("throughput")
        job = self.wait(arn)
        wall = time.perf_counter() - start
        manifest = json.loads((self.home / "batch" / BUCKET / "out" / arn.rsplit("/", 1)[1] / "manifest.json.out")
                              .read_text())  # fmt: skip
        return wall, int(manifest["outputTokenCount"]), job

    def probe(self, n: int) -> float:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=300)
        converse = {"messages": [{"role": "user", "content": [{"text": f"Probe {n} {time.time_ns()}. {TEXT}"}]}],
                    "inferenceConfig": {"maxTokens": 8, "temperature": 0}}  # fmt: skip
        read = converse_stream(conn, f"{self.path}/converse-stream", converse)
        conn.close()
        return (read.first - read.t0) * 1000

    def probes(self, count: int, start: int) -> list[float]:
        out = []
        for k in range(count):
            out.append(self.probe(start + k))
            time.sleep(0.3)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200)
    ap.add_argument("--tokens", type=int, default=24, help="max_tokens of each record (default 24)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--parallel", type=int, default=8, help="the model's slots (default 8)")
    ap.add_argument("--n-ctx", type=int, default=512)
    ap.add_argument("--probes", type=int, default=20, help="interactive calls idle and under a batch (default 20)")
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    args = ap.parse_args()
    ensure_model(args.model)
    print(machine_summary())
    print(f"start: {load()}")
    lines = "".join(json.dumps({"recordId": f"B{i:05d}", "modelInput": body(i, args.tokens)}) + "\n"
                    for i in range(args.records))  # fmt: skip
    homes: list[Path] = []

    # the batch that runs under the probes: more records than they outlast (stopped after the last probe)
    load_lines = "".join(json.dumps({"recordId": f"L{i:05d}", "modelInput": body(i, args.tokens)}) + "\n"
                         for i in range(10 * args.records))  # fmt: skip

    def prepare(home: Path) -> None:
        (home / "batch" / BUCKET).mkdir(parents=True)
        (home / "batch" / BUCKET / "in.jsonl").write_text(lines)
        (home / "batch" / BUCKET / "load.jsonl").write_text(load_lines)
        homes.append(home)

    model = {"id": MODEL_ID, "path": str(args.model), "n_ctx": args.n_ctx, "parallel": args.parallel,
             "max_queue": 64, "prompt_cache_mib": 0}  # fmt: skip
    with outcrop_server([model], prepare=prepare) as server:
        watch = CpuWatch(server.process.pid)
        started = time.perf_counter()
        bench = Bench(server.url, homes[0], args.records, args.tokens)
        bench.invoke(JsonHttp(bench.host, bench.port), 10**6)  # warm-up (loads nothing new: the model is loaded)
        results: dict[str, tuple[float, int]] = {}
        print(f"sequential: {args.records} records ...", flush=True)
        results["sequential client loop"] = bench.sequential()
        print(f"  {results['sequential client loop'][0]:.1f} s; {args.clients} clients ...", flush=True)
        results[f"{args.clients} concurrent clients"] = bench.concurrent(args.clients)
        print(f"  {results[f'{args.clients} concurrent clients'][0]:.1f} s; batch job ...", flush=True)
        wall, out, job = bench.batch()
        results["batch job (create -> Completed)"] = (wall, out)
        print(f"  {wall:.1f} s; interactive probes, idle ...", flush=True)
        idle = bench.probes(args.probes, 0)
        print("interactive probes, under a batch job ...", flush=True)
        arn = bench.submit("under-load", "load.jsonl")
        bench.wait(arn, ("InProgress", *FINISHED))
        time.sleep(1.0)
        loaded = bench.probes(args.probes, 1000)
        busy = bench.bedrock.get_model_invocation_job(jobIdentifier=arn)
        stop_at = time.perf_counter()
        if busy["status"] == "InProgress":
            bench.bedrock.stop_model_invocation_job(jobIdentifier=arn)
        stopped = bench.wait(arn)
        stop_s = time.perf_counter() - stop_at
        foreign = watch.foreign_cores(time.perf_counter() - started)

    seq = results["sequential client loop"]
    conc = results[f"{args.clients} concurrent clients"]
    rows = []
    for name, (wall_s, tokens) in results.items():
        rps, tps = args.records / wall_s, tokens / wall_s
        rows.append([name, f"{wall_s:.1f}", f"{rps:.2f}", f"{tps:.1f}", f"{rps / (args.records / seq[0]):.2f}x",
                     f"{rps / (args.records / conc[0]):.2f}x"])  # fmt: skip
    print()
    print(f"{args.records} records, max_tokens {args.tokens}, model {MODEL_ID} ({args.parallel} slots, n_ctx "
          f"{args.n_ctx}); batch job: {job['successRecordCount']} succeeded, "
          f"{job['errorRecordCount']} failed")  # fmt: skip
    print(table(["way", "wall s", "records/s", "output tok/s", "vs sequential", f"vs {args.clients} clients"], rows))
    print()
    p50i, p99i, p50b, p99b = (percentile(idle, 50), percentile(idle, 99), percentile(loaded, 50),
                              percentile(loaded, 99))  # fmt: skip
    print(table(["interactive ConverseStream TTFT", "n", "p50 ms", "p99 ms"],
                [["idle server", str(len(idle)), f"{p50i:.0f}", f"{p99i:.0f}"],
                 ["while a batch job runs", str(len(loaded)), f"{p50b:.0f}", f"{p99b:.0f}"],
                 ["ratio (target <= 1.5x)", "", f"{p50b / p50i:.2f}x", f"{p99b / p99i:.2f}x"]]))  # fmt: skip
    print(f"the batch job under the probes: {busy.get('processedRecordCount', 0)} of {busy.get('totalRecordCount')} "
          f"records done while they ran ({busy['status']} at the last probe); Stop -> {stopped['status']} in "
          f"{stop_s:.2f} s (polled every 0.2 s)")  # fmt: skip
    print(foreign_cpu_note(foreign))
    print(f"end: {load()}")


if __name__ == "__main__":
    main()
