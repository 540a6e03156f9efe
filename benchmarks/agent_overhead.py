"""One agent turn's overhead beyond the model calls it makes (target: at most 5 % of the turn), in this process, on
the built-in tiny llama.cpp model and on the Qwen2.5-0.5B-shaped Q8_0 model of scripts/build_bench_model.py (built
first if missing), with sessions in a SQLite store.

Two agents with the same instruction and one RETURN_CONTROL action group (one function):

- `inline`: InvokeInlineAgent's way: the definition is built from the request body (`from_inline_request`);
- `stored`: InvokeAgent's way: an agent made in the store's agent catalog, prepared, run through TSTALIASID; the
  definition is the catalog's, got as the route gets it (kept built while one read shows it unchanged).

Each runs --turns timed turns, each a new session, after --warmup untimed ones; when the model calls the tool, the
turn that returns control is followed by one carrying the result (its own timed turn). For each turn:

- `turn`: from getting the agent's definition to the stream's last event encoded as InvokeAgent's frame (what the
  route does, less HTTP), trace steps included when --trace;
- `model`: the time spent inside `Inference` (from handing it each ChatRequest to the model's last event:
  queueing, prompt processing, decoding), summed over the turn's model calls;
- `overhead` = turn - model: the definition, authorizing, the session's read and write, prompts and tools, tool
  calls parsed, traces, citations, frames.

Baseline, the same run: before each turn, a request built as the turn's first (the same system prompt and tools)
for another question sent alone through `Inference.complete` (the model call with nothing of the agent around
it; another question, so neither it nor the turn finds its whole prompt in the model's cache). Printed per model
and agent: p50 / p90 of each (ms), overhead as a share of the turn, and the turn / baseline ratio.

    python benchmarks/agent_overhead.py
    python benchmarks/agent_overhead.py --models tiny --turns 30 --max-tokens 48 --trace
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, CpuWatch, foreign_cpu_note, machine_summary, percentile, table
from decode_throughput import DEFAULT_MODEL, ensure_model

sys.path.insert(0, str(ROOT))

HALF_B = "bench.qwen2-5-0-5b-shape-v1:0"
INSTRUCTION = "You help the customers of a hardware shop with their orders. Be brief."
STATUS = {"name": "get_status", "description": "an order's status",
          "parameters": {"orderId": {"type": "string", "required": True}}}  # fmt: skip
ORDERS = {"actionGroupName": "orders", "actionGroupExecutor": {"customControl": "RETURN_CONTROL"},
          "functionSchema": {"functions": [STATUS]}}  # fmt: skip
QUESTIONS = ["Where is my order A1?", "What is the status of order B7?", "Has order C3 shipped yet?",
             "Tell me about order D9, please.", "Can you check order E2 for me?"]  # fmt: skip
ALONE = ["Is order F4 on its way?", "When will order G8 arrive?", "Did order H5 leave the warehouse?",
         "Could you look up order J6?", "What happened to order K2?"]  # fmt: skip


def _overrides(max_tokens: int) -> dict[str, Any]:
    config = {"maximumLength": max_tokens, "temperature": 0.0}
    return {"promptConfigurations": [{"promptType": "ORCHESTRATION", "inferenceConfiguration": config}]}


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


async def measure(model_id: str, kind: str, args: argparse.Namespace, inference: Any, agents: Any,
                  catalog: Any) -> dict[str, Any]:  # fmt: skip
    from outcrop.agents.definition import from_inline_request
    from outcrop.agents.events import ReturnControl
    from outcrop.agents.loop import ToolOutcome, Turn
    from outcrop.api.bedrock_agent_runtime.agent_convert import encode_event
    from outcrop.auth.principal import LOCAL
    from outcrop.conversation import Message, Text

    body = {"foundationModel": model_id, "instruction": INSTRUCTION, "actionGroups": [ORDERS],
            "promptOverrideConfiguration": _overrides(args.max_tokens)}  # fmt: skip
    agent_id = ""
    if kind == "stored":
        made = catalog.create({"agentName": f"bench-{uuid.uuid4().hex[:8]}", "foundationModel": model_id,
                               "instruction": INSTRUCTION,
                               "promptOverrideConfiguration": _overrides(args.max_tokens)})  # fmt: skip
        agent_id = made.id
        catalog.create_group(agent_id, {**ORDERS, "actionGroupState": "ENABLED"}, None)
        catalog.set_status(agent_id, "PREPARED")

    async def definition() -> Any:
        if kind == "stored":  # as the InvokeAgent route gets it (agent_routes._definition)
            kept = catalog.kept_definition(agent_id, "TSTALIASID")
            return kept or await asyncio.to_thread(catalog.definition, agent_id, "TSTALIASID")
        return from_inline_request(body)

    rows: list[dict[str, float]] = []
    baseline: list[float] = []

    async def turn(session: str, question: str, **kw: Any) -> tuple[float, Any, list[Any]]:
        began = time.perf_counter()
        d = await definition()
        stream = await agents.start(Turn(d, session, question, enable_trace=args.trace, **kw), LOCAL)
        events = []
        try:
            async for e in stream:
                encode_event(e, d, session)
                events.append(e)
        finally:
            await stream.aclose()
        return (time.perf_counter() - began) * 1000, stream, events

    async def one(i: int, timed: bool) -> None:
        d = await definition()
        first = agents.start  # the baseline: a request built as the turn's first, for another question
        stream = await first(Turn(d, f"alone-{uuid.uuid4()}", ALONE[i % len(ALONE)]), LOCAL)
        chat = stream._chat([Message("user", (Text(ALONE[i % len(ALONE)]),))])
        await stream.aclose()
        began = time.perf_counter()
        await inference.complete(chat, LOCAL)
        alone = (time.perf_counter() - began) * 1000
        session = str(uuid.uuid4())
        ms, s, events = await turn(session, QUESTIONS[i % len(QUESTIONS)])
        done = [(ms, s, 0.0)]
        rc = next((e for e in events if isinstance(e, ReturnControl)), None)
        if rc is not None:
            results = tuple(ToolOutcome("orders", "shipped on Monday", function="get_status") for _ in rc.calls)
            ms2, s2, _ = await turn(session, "", results=results, invocation_id=rc.invocation_id)
            done = [(ms, s, 1.0), (ms2, s2, 0.0)]
        if timed:
            baseline.append(alone)
            for ms, s, returned in done:
                t = s.timings
                rows.append({"turn": ms, "model": t.model_ms, "calls": t.model_calls, "session": t.session_ms,
                             "rc": returned})  # fmt: skip

    for i in range(args.warmup):
        await one(i, False)
    for i in range(args.turns):
        await one(i, True)
    return {"rows": rows, "baseline": baseline}


async def run(args: argparse.Namespace) -> None:
    from outcrop import store
    from outcrop.agents.catalog import AgentCatalog
    from outcrop.agents.loop import AgentRuntime
    from outcrop.agents.sessions import SqlSessions
    from outcrop.config import ModelSpec, Settings
    from outcrop.inference import Inference
    from outcrop.models import BUILTIN_MODEL_ID
    from outcrop.registry import Registry

    wanted = [m.strip() for m in args.models.split(",") if m.strip()]
    specs: tuple[ModelSpec, ...] = ()
    if "0.5b" in wanted:
        ensure_model(args.model)
        specs = (ModelSpec(id=HALF_B, path=str(args.model), n_ctx=4096, prompt_cache_mib=0),)
    tmp = Path(tempfile.mkdtemp(prefix="agent-bench-"))
    settings = Settings(config_path=tmp / "c.toml", models=specs, builtin_embedding_model=False)
    inference = Inference(Registry(settings))
    db = store.connect(f"sqlite:///{tmp / 'o.db'}")
    agents = AgentRuntime(inference, SqlSessions(db))
    catalog = AgentCatalog(db)
    ids = {"tiny": BUILTIN_MODEL_ID, "0.5b": HALF_B}
    print(machine_summary())
    print(f"at start: {_load()}")
    results: list[tuple[str, str, dict[str, Any]]] = []
    watch = CpuWatch()
    began = time.perf_counter()
    for name in wanted:
        for kind in ("inline", "stored"):
            print(f"{name} / {kind} ...", flush=True)
            results.append((name, kind, await measure(ids[name], kind, args, inference, agents, catalog)))
    cores = watch.foreign_cores(time.perf_counter() - began)
    print(f"at end: {_load()}")
    print(f"{args.turns} timed turns each (plus the continuations of returnControl), max tokens {args.max_tokens}, "
          f"trace {'on' if args.trace else 'off'}; sessions in SQLite")  # fmt: skip
    out = []
    for name, kind, r in results:
        rows, base = r["rows"], r["baseline"]

        def p(key: str, q: float, rows: list[dict[str, float]] = rows) -> float:
            return percentile([x[key] for x in rows], q)

        over = [x["turn"] - x["model"] for x in rows]
        share = [100 * (x["turn"] - x["model"]) / x["turn"] for x in rows]
        calls = sum(x["calls"] for x in rows) / max(1, len(rows))
        out.append([f"{name} {kind}", f"{len(rows)} ({sum(x['rc'] for x in rows):.0f})", f"{calls:.2f}",
                    f"{p('turn', 50):.1f} / {p('turn', 90):.1f}", f"{p('model', 50):.1f} / {p('model', 90):.1f}",
                    f"{percentile(over, 50):.2f} / {percentile(over, 90):.2f}", f"{p('session', 50):.2f}",
                    f"{percentile(share, 50):.2f} / {percentile(share, 90):.2f}",
                    f"{percentile(base, 50):.1f} / {percentile(base, 90):.1f}",
                    f"{p('turn', 50) / percentile(base, 50):.2f}x"])  # fmt: skip
    print(table(["model, agent", "turns (rc)", "calls/turn", "turn ms p50/p90", "model ms", "overhead ms",
                 "sessions ms p50", "overhead % p50/p90", "baseline ms", "turn/baseline p50"], out))  # fmt: skip
    print("target: overhead <= 5 % of the turn (p50)")
    print(foreign_cpu_note(cores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,0.5b", help="tiny, 0.5b or both (comma-separated)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="the 0.5B-shape GGUF")
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--trace", action="store_true", help="ask for trace steps (enableTrace)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
