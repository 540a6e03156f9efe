"""The longer fuzzing run: every route of all three dialects (the server's /openapi.json and the Bedrock document
generated from botocore's service models, /openapi/bedrock.json) fuzzed with schemathesis, positive and negative
cases, against the whole server as `outcrop serve` assembles it (keys, SQLite store, guardrails, usage, invocation
logs) with an administrator's key. CI runs the same with a small budget (tests/api/test_fuzz.py).

Prints, per API: cases tried and failures found (a 5xx, a refusal outside the API's envelope, a traceback in the
server's log); the answers by status class; then the first few failures in full.

    python benchmarks/fuzz.py                      # 100 examples per operation and mode
    python benchmarks/fuzz.py --examples 300
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

from _common import machine_summary, table

ECHO = "test.echo-v1:0"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=100, help="examples per operation and generation mode")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="outcrop-fuzz-"))
    os.environ["OUTCROP_HOME"] = str(home)
    from outcrop.cli import assemble
    from outcrop.config import ModelSpec, Settings
    from outcrop.engines.echo import EchoEngine
    from tests.conftest import serve_app
    from tests.fuzzing import fuzz

    settings = Settings(config_path=home / "config.toml", auth="keys", builtin_embedding_model=False,
                        models=(ModelSpec(id=ECHO, engine="echo", n_ctx=4096, max_queue=64),))  # fmt: skip
    app, keyring = assemble(settings, "keys", {ECHO: EchoEngine(context_length=4096, max_queue=64)})
    keyring.ensure_principal("fuzzer", admin=True)
    _, token = keyring.create_api_key("fuzzer")
    pins = {"modelId": [ECHO], "model": [ECHO], "modelIdentifier": [ECHO]}
    with serve_app(app) as url:
        tally = fuzz(url, pins, args.examples, headers={"Authorization": f"Bearer {token}"})

    print(machine_summary())
    print(f"schemathesis, {args.examples} examples per operation and mode (positive and negative), "
          f"{tally.seconds:.0f} s\n")  # fmt: skip
    found = Counter(f.api for f in tally.findings)
    rows = []
    for api in ("bedrock", "openai", "anthropic", "outcrop", "server"):  # server: tracebacks in its log
        rows.append([api, str(tally.cases.get(api, 0)), str(found.get(api, 0))])
    rows.append(["all", str(sum(tally.cases.values())), str(len(tally.findings))])
    print(table(["API", "cases", "failures"], rows))
    classes: Counter[str] = Counter()
    for status, n in tally.statuses.items():
        classes[f"{status[0]}xx"] += n
    print("\nanswers: " + ", ".join(f"{k} {v}" for k, v in sorted(classes.items())))
    for f in tally.findings[:10]:
        print(f"\n{f.api} {f.operation} [{f.mode}]: {f.problem}\n    {f.request}")
    return 1 if tally.findings else 0


if __name__ == "__main__":
    sys.exit(main())
