"""examples/ray_vllm_batch.py run for real on a local Ray cluster, with its CPU engine stage (llama.cpp on the
built-in tiny model): the pipeline a GPU cluster runs with vLLM (read the JSONL records, decode them with the
server's codecs, answer, encode Bedrock's output lines, write) minus the vLLM stage, which needs GPUs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from outcrop.models import BUILTIN_GGUF

ROOT = Path(__file__).resolve().parents[2]
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"


def _record(i: int) -> dict[str, object]:
    return {"recordId": f"r{i:03d}", "modelInput": {
        "anthropic_version": "bedrock-2023-05-31", "max_tokens": 16, "temperature": 0,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]}]}}  # fmt: skip


def test_every_record_comes_back_once_in_bedrock_output_format(tmp_path: Path) -> None:
    records = [_record(i) for i in range(20)]
    lines = [json.dumps(r) for r in records[:10]]
    lines += [json.dumps({"recordId": "bad", "modelInput": {"messages": "not a list"}}), "not json at all", ""]
    lines += [json.dumps(r) for r in records[10:]]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "records.jsonl").write_text("\n".join(lines) + "\n")
    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "ray_vllm_batch.py"), "--engine", "llama-cpp",
         "--model", str(BUILTIN_GGUF), "--model-id", CLAUDE, "--input", str(tmp_path / "in"),
         "--output", str(tmp_path / "out"), "--num-cpus", "2"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    out = [json.loads(json.loads(line)["line"]) for f in sorted((tmp_path / "out").iterdir())
           for line in f.read_text().splitlines()]  # fmt: skip
    answered = {o["recordId"]: o for o in out if "modelOutput" in o}
    assert sorted(answered) == [r["recordId"] for r in records] and len(out) == 22
    for o in answered.values():
        assert o["modelInput"] == _record(int(o["recordId"][1:]))["modelInput"]
        message = o["modelOutput"]
        assert message["type"] == "message" and message["model"] == CLAUDE
        assert message["content"] == [{"type": "text", "text": "The capital of France is Paris."}]
        assert message["stop_reason"] == "end_turn" and message["usage"]["output_tokens"] > 0
    failed = [o for o in out if "error" in o]
    assert len(failed) == 2 and all(o["error"]["errorCode"] == 400 for o in failed)
    assert {o["recordId"] for o in failed} == {"bad", None}
