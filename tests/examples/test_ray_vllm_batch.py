"""examples/ray_vllm_batch.py's conversions, without Ray or vLLM: a Bedrock batch record becomes the vLLM stage's
row and the generated text becomes Bedrock's output line, through the server's own codecs (the Ray run needs GPUs)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("ray_vllm_batch", ROOT / "examples" / "ray_vllm_batch.py")
assert _spec is not None and _spec.loader is not None
example: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(example)

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
LLAMA = "meta.llama3-1-8b-instruct-v1:0"


def test_an_anthropic_record_round_trips() -> None:
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 32, "temperature": 0.2, "system": "Be brief.",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Capital of France?"}]}]}  # fmt: skip
    row = example.to_engine_row({"recordId": "r1", "modelInput": body}, CLAUDE)
    assert row["error"] is None
    assert row["messages"] == [{"role": "system", "content": "Be brief."},
                               {"role": "user", "content": "Capital of France?"}]  # fmt: skip
    assert row["sampling_params"] == {"max_tokens": 32, "temperature": 0.2}
    out = example.to_output(row | {"generated_text": "Paris.", "num_input_tokens": 12, "num_generated_tokens": 2},
                            CLAUDE)  # fmt: skip
    line = json.loads(out["line"])
    assert line["recordId"] == "r1" and line["modelInput"] == body
    assert line["modelOutput"]["content"] == [{"type": "text", "text": "Paris."}]
    assert line["modelOutput"]["usage"]["input_tokens"] == 12 and line["modelOutput"]["stop_reason"] == "end_turn"


def test_a_llama_record_and_a_length_stop() -> None:
    body = {"prompt": "Say hi", "max_gen_len": 5}
    row = example.to_engine_row({"recordId": "r2", "modelInput": body}, LLAMA)
    assert row["sampling_params"]["max_tokens"] == 5
    out = example.to_output(row | {"generated_text": "Hi there friend", "finish_reason": "length"}, LLAMA)
    output = json.loads(out["line"])["modelOutput"]
    assert output["generation"] == "Hi there friend" and output["stop_reason"] == "length"


def test_a_record_the_model_cannot_take_is_an_error_line() -> None:
    for record in ({"recordId": "r3", "modelInput": {"messages": "not a list"}}, {"modelInput": {"prompt": "x"}}):
        row = example.to_engine_row(record, CLAUDE)
        assert row["error"] is not None
        line = json.loads(example.to_output(row | {"generated_text": "."}, CLAUDE)["line"])
        assert "modelOutput" not in line and line["error"]["errorCode"] == 400 and line["error"]["errorMessage"]
