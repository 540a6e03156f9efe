"""Run a Bedrock batch-inference input on a GPU cluster: the same JSONL records `outcrop serve` takes through
CreateModelInvocationJob, read by Ray Data and answered by vLLM, written in Bedrock's output format.

For the day one machine is not enough. The records are decoded and the answers encoded by Outcrop's own Bedrock
codecs (outcrop.api.bedrock.invoke: every InvokeModel body format the server accepts — Anthropic Messages, Llama,
Mistral, Titan Text), so an input file that runs on `outcrop serve` runs here unchanged and its output reads the
same: `{"recordId", "modelInput", "modelOutput"}` per record, `{"recordId", "modelInput", "error": {...}}` for a
record the model cannot take.

    pip install 'ray[data,llm]>=2.49' vllm outcrop      # on the cluster's image
    python examples/ray_vllm_batch.py --model Qwen/Qwen2.5-7B-Instruct \
        --model-id anthropic.claude-3-haiku-20240307-v1:0 \
        --input s3://my-bucket/batch/input/ --output s3://my-bucket/batch/output/ --gpus-per-replica 1 --replicas 4

`--model` is what vLLM loads (a Hugging Face id or a path); `--model-id` is the Bedrock model id the records were
written for (it picks the body format, as CreateModelInvocationJob's modelId does). Tool use, images and
guardrails are not carried over: those records should go through `outcrop serve`.

Without GPUs, `--engine llama-cpp --model path/to/model.gguf` swaps the vLLM stage for llama.cpp on the CPUs (the
rest of the pipeline is the same). Tested here: the record <-> engine-row conversions (tests/examples/), and the
whole Ray Data pipeline on a local Ray with the llama.cpp stage on the built-in tiny model (every record answered
once, bad lines as error lines). Not run here: the vLLM stage, which needs GPUs this project's CI does not have.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from outcrop import errors
from outcrop.api.bedrock import invoke
from outcrop.conversation import ChatResult, StopReason, Text, Usage


def to_engine_row(row: dict[str, Any], model_id: str) -> dict[str, Any]:
    """A JSONL record -> what ray.data.llm's vLLM stage reads (OpenAI-style `messages`, `sampling_params`); a
    record the model cannot take keeps its error in `error` and gets a one-token placeholder prompt."""
    record_id, body = row.get("recordId"), row.get("modelInput")
    out: dict[str, Any] = {"recordId": record_id, "modelInput": json.dumps(body), "error": None}
    try:
        if not isinstance(record_id, str) or not record_id:
            raise errors.InvalidRequest("The record has no recordId.")
        family, request = invoke.decode_request(model_id, body)
        if request.tools:
            raise errors.InvalidRequest("Tool use is not supported by this runner; send the record to outcrop serve.")
    except errors.OutcropError as exc:
        out.update(family="", messages=[{"role": "user", "content": "."}], sampling_params={"max_tokens": 1},
                   error=json.dumps({"errorCode": 400, "errorMessage": exc.message}))  # fmt: skip
        return out
    messages = [{"role": "system", "content": request.system}] if request.system else []
    messages += [{"role": m.role, "content": m.text} for m in request.messages]
    s = request.sampling
    params: dict[str, Any] = {"max_tokens": s.max_tokens or 4096}
    params.update({k: v for k, v in (("temperature", s.temperature), ("top_p", s.top_p), ("top_k", s.top_k),
                                     ("seed", s.seed)) if v is not None})  # fmt: skip
    if s.stop:
        params["stop"] = list(s.stop)
    out.update(family=family, messages=messages, sampling_params=params)
    return out


def to_output(row: dict[str, Any], model_id: str) -> dict[str, Any]:
    """An engine row after vLLM (`generated_text`, `num_input_tokens`, `num_generated_tokens`, and vLLM's
    `finish_reason` where it gives one) -> Bedrock's output line, as a dict with one `line` member."""
    body = json.loads(row["modelInput"])
    if row.get("error"):
        line = {"recordId": row["recordId"], "modelInput": body, "error": json.loads(row["error"])}
        return {"line": json.dumps(line, ensure_ascii=False)}
    reason = StopReason.MAX_TOKENS if row.get("finish_reason") == "length" else StopReason.END_TURN
    usage = Usage(int(row.get("num_input_tokens") or 0), int(row.get("num_generated_tokens") or 0))
    result = ChatResult((Text(str(row["generated_text"])),), reason, usage)
    output = invoke.encode_response(row["family"], model_id, result)
    line = {"recordId": row["recordId"], "modelInput": body, "modelOutput": output}
    return {"line": json.dumps(line, ensure_ascii=False)}


class LlamaCppStage:
    """The engine stage on CPUs: llama.cpp answers the rows the vLLM stage would, with the same columns out
    (`generated_text`, `num_input_tokens`, `num_generated_tokens`, `finish_reason`). For a cluster without GPUs,
    and how this example is tested (tests/examples/test_ray_batch_run.py runs it on a local Ray)."""

    def __init__(self, model_path: str, n_ctx: int = 4096) -> None:
        from llama_cpp import Llama

        self.llm = Llama(model_path=model_path, n_ctx=n_ctx, verbose=False)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        if row.get("error"):
            return row | {"generated_text": "", "num_input_tokens": 0, "num_generated_tokens": 0, "finish_reason": ""}
        params = json.loads(row["sampling_params"])
        out: Any = self.llm.create_chat_completion(messages=json.loads(row["messages"]), **params)
        choice, usage = out["choices"][0], out["usage"]
        answer = {"generated_text": choice["message"]["content"] or "", "finish_reason": choice["finish_reason"]}
        return (
            row
            | answer
            | {"num_input_tokens": usage["prompt_tokens"], "num_generated_tokens": usage["completion_tokens"]}
        )


def read_records(path: str) -> Any:
    """The JSONL records as a Ray dataset of `{"recordId", "modelInput"}` rows. Read as text and parsed here, not by
    Arrow's JSON reader, so that model inputs of different shapes (and a malformed line) reach the codecs as they
    are: a line that is not a JSON object becomes a record without a recordId, answered by an error line."""
    import ray

    def parse(row: dict[str, Any]) -> dict[str, Any]:
        try:
            record = json.loads(row["text"])
        except ValueError:
            record = None
        if not isinstance(record, dict):
            return {"recordId": "", "modelInput": "null"}
        return {"recordId": str(record.get("recordId") or ""), "modelInput": json.dumps(record.get("modelInput"))}

    return ray.data.read_text(path).filter(lambda row: bool(row["text"].strip())).map(parse)


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    return {"recordId": row["recordId"] or None, "modelInput": json.loads(row["modelInput"])}


def main(argv: list[str] | None = None) -> None:
    import ray

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="what the engine loads (vLLM: a Hugging Face id or path; "
                                                       "llama-cpp: a GGUF file)")  # fmt: skip
    parser.add_argument("--model-id", required=True, help="the Bedrock model id the records were written for")
    parser.add_argument("--input", required=True, help="a JSONL file or folder (local, s3://, gs://)")
    parser.add_argument("--output", required=True, help="a folder for the output lines")
    parser.add_argument("--engine", choices=("vllm", "llama-cpp"), default="vllm",
                        help="vllm on GPUs (default), or llama-cpp on CPUs")  # fmt: skip
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--gpus-per-replica", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs a local Ray may use (default: all)")
    args = parser.parse_args(argv)

    ray.init(num_cpus=args.num_cpus, include_dashboard=False)
    try:
        records = read_records(args.input)
        if args.engine == "vllm":  # pragma: no cover - needs vLLM and GPUs
            from ray.data import llm

            # build_processor since Ray 2.5x; build_llm_processor before
            build: Any = getattr(llm, "build_processor", None) or getattr(llm, "build_llm_processor")  # noqa: B009

            config = llm.vLLMEngineProcessorConfig(
                model_source=args.model,
                engine_kwargs={"tensor_parallel_size": args.gpus_per_replica, "enable_prefix_caching": True},
                concurrency=args.replicas,
                batch_size=args.batch_size,
            )
            processor = build(
                config,
                preprocess=lambda row: to_engine_row(_decoded(row), args.model_id),
                postprocess=lambda row: to_output(row, args.model_id),
            )
            answered = processor(records)
        else:

            def engine_row(row: dict[str, Any]) -> dict[str, Any]:
                # Ray's Arrow blocks want one type per column: the nested lists and maps travel as JSON text.
                out = to_engine_row(_decoded(row), args.model_id)
                return out | {
                    "messages": json.dumps(out["messages"]),
                    "sampling_params": json.dumps(out["sampling_params"]),
                }

            answered = (
                records.map(engine_row)
                .map(LlamaCppStage, fn_constructor_kwargs={"model_path": args.model}, concurrency=args.replicas)
                .map(lambda row: to_output(row, args.model_id))
            )
        answered.write_json(args.output)  # one `{"line": ...}` object per record; `jq -r .line` unwraps it
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
