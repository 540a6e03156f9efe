"""One agent turn's overhead beyond the model calls it makes (target: at most 5 % of the turn), on the built-in
llama.cpp model, in this process.

An inline agent (the instruction, one RETURN_CONTROL action group with one function) runs --turns turns through
`AgentRuntime` (outcrop/agents/loop.py) with its sessions in a SQLite store, each a new session, after --warmup
untimed turns; when the model calls the tool, the turn that returns control is followed by one carrying the result
(its own timed turn). For each turn:

- `turn`: from `AgentRuntime.start` (authorizing the model, opening the session) to the stream's last event, trace
  steps included when --trace;
- `model`: the time spent inside `Inference` (from handing it each ChatRequest to the model's last event:
  queueing, prompt processing, decoding), summed over the turn's model calls;
- `overhead` = turn - model: building prompts and tools, parsing tool calls, sessions, traces, citations.

Baseline, the same run: the turn's first ChatRequest sent alone through `Inference.complete` (the model call with
nothing of the agent around it), so the two model figures can be compared. Printed: p50 / p90 of each (ms),
overhead as a share of the turn, the ratio of the turn's model time to the baseline.

    python benchmarks/agent_overhead.py
    python benchmarks/agent_overhead.py --turns 30 --max-tokens 48 --trace
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, CpuWatch, foreign_cpu_note, machine_summary, percentile, table

sys.path.insert(0, str(ROOT))

QUESTIONS = ["Where is my order A1?", "What is the status of order B7?", "Has order C3 shipped yet?",
             "Tell me about order D9, please.", "Can you check order E2 for me?"]  # fmt: skip


def _body(max_tokens: int) -> dict[str, Any]:
    return {
        "foundationModel": "",
        "instruction": "You help the customers of a hardware shop with their orders. Be brief.",
        "actionGroups": [{"actionGroupName": "orders", "actionGroupExecutor": {"customControl": "RETURN_CONTROL"},
                          "functionSchema": {"functions": [{"name": "get_status", "description": "an order's status",
                                             "parameters": {"orderId": {"type": "string", "required": True}}}]}}],
        "promptOverrideConfiguration": {"promptConfigurations": [
            {"promptType": "ORCHESTRATION", "inferenceConfiguration": {"maximumLength": max_tokens,
                                                                       "temperature": 0.0}}]},
    }  # fmt: skip


async def run(args: argparse.Namespace) -> None:
    from outcrop import store
    from outcrop.agents.definition import from_inline_request
    from outcrop.agents.events import ReturnControl
    from outcrop.agents.loop import AgentRuntime, ToolOutcome, Turn, TurnStream
    from outcrop.agents.sessions import SqlSessions
    from outcrop.auth.principal import LOCAL
    from outcrop.config import Settings
    from outcrop.conversation import Message, Text
    from outcrop.inference import Inference
    from outcrop.models import BUILTIN_MODEL_ID
    from outcrop.registry import Registry

    tmp = Path(tempfile.mkdtemp(prefix="agent-bench-"))
    settings = Settings(config_path=tmp / "c.toml")
    inference = Inference(Registry(settings))
    agents = AgentRuntime(inference, SqlSessions(store.connect(f"sqlite:///{tmp / 'o.db'}")))
    definition = from_inline_request({**_body(args.max_tokens), "foundationModel": BUILTIN_MODEL_ID})
    rows: list[dict[str, float]] = []
    baseline: list[float] = []

    async def turn(t: Turn) -> tuple[TurnStream, list[Any]]:
        stream = await agents.start(t, LOCAL)
        try:
            events = [e async for e in stream]
        finally:
            await stream.aclose()
        return stream, events

    async def one(i: int, timed: bool) -> None:
        session = str(uuid.uuid4())
        q = QUESTIONS[i % len(QUESTIONS)]
        stream, events = await turn(Turn(definition, session, q, enable_trace=args.trace))
        chat = stream._chat([Message("user", (Text(q),))])  # the turn's first request, for the baseline
        turns = [stream]
        rc = next((e for e in events if isinstance(e, ReturnControl)), None)
        if rc is not None:
            results = tuple(ToolOutcome("orders", "shipped on Monday", function="get_status") for _ in rc.calls)
            nxt, _ = await turn(Turn(definition, session, "", enable_trace=args.trace, results=results,
                                     invocation_id=rc.invocation_id))  # fmt: skip
            turns.append(nxt)
        began = asyncio.get_running_loop().time()
        await inference.complete(chat, LOCAL)
        alone = (asyncio.get_running_loop().time() - began) * 1000
        if timed:
            baseline.append(alone)
            for s in turns:
                t = s.timings
                returned = 1.0 if s is turns[0] and rc is not None else 0.0
                rows.append({"turn": t.total_ms, "model": t.model_ms, "calls": t.model_calls,
                             "session": t.session_ms, "rc": returned})  # fmt: skip

    for i in range(args.warmup):
        await one(i, False)
    watch = CpuWatch()
    began = time.perf_counter()
    for i in range(args.turns):
        await one(i, True)
    cores = watch.foreign_cores(time.perf_counter() - began)

    def p(key: str, q: float) -> float:
        return percentile([r[key] for r in rows], q)

    overhead = [r["turn"] - r["model"] for r in rows]
    share = [100 * (r["turn"] - r["model"]) / r["turn"] for r in rows]
    print(machine_summary())
    print(f"{len(rows)} timed turns ({sum(r['rc'] for r in rows):.0f} ended in returnControl), built-in model "
          f"{BUILTIN_MODEL_ID}, max tokens {args.max_tokens}, trace {'on' if args.trace else 'off'}; "
          f"model calls per turn {sum(r['calls'] for r in rows) / max(1, len(rows)):.2f}")  # fmt: skip
    print(table(["", "p50 ms", "p90 ms"], [
        ["turn (start -> last event)", f"{p('turn', 50):.1f}", f"{p('turn', 90):.1f}"],
        ["model (inside Inference)", f"{p('model', 50):.1f}", f"{p('model', 90):.1f}"],
        ["overhead (turn - model)", f"{percentile(overhead, 50):.2f}", f"{percentile(overhead, 90):.2f}"],
        ["  of which sessions", f"{p('session', 50):.2f}", f"{p('session', 90):.2f}"],
        ["overhead share of the turn (%)", f"{percentile(share, 50):.2f}", f"{percentile(share, 90):.2f}"],
        ["baseline: first request alone", f"{percentile(baseline, 50):.1f}", f"{percentile(baseline, 90):.1f}"],
    ]))  # fmt: skip
    print(f"target: overhead <= 5 % of the turn; p50 {percentile(share, 50):.2f} %")
    print(foreign_cpu_note(cores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--trace", action="store_true", help="ask for trace steps (enableTrace)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
