"""Build a random-weight GGUF with the exact shape of Qwen2.5-0.5B-Instruct, quantized Q8_0.

Benchmarks need a model as heavy as a real small chat model, but nothing can be downloaded here, so
this script makes one: llama.cpp arch ``qwen2``, 24 layers, n_embd 896, 14 query heads, 2 KV heads,
FFN 4864, q/k/v biases, tied embeddings, rope theta 1e6, vocabulary 151936, every matrix Q8_0
(about 0.5 GB on disk, like the published Q8_0 file). The weights are random, so the text it
writes is gibberish: only its speed is meaningful.

The tokenizer is the built-in tiny model's byte-level BPE (read from
outcrop/models/outcrop-tiny-chat.gguf, so build that first) padded with plain filler tokens up to
151936, with the same ChatML chat template, so llama-cpp-python loads it and generates normally.

Run it (a minute or so on 2 CPU cores)::

    pip install -e .[build-model]
    python scripts/build_bench_model.py            # writes benchmarks/.models/qwen2.5-0.5b-shape-q8_0.gguf
    python scripts/build_bench_model.py --force    # rebuild even if the file exists

It then loads the file with llama-cpp-python, generates a few tokens and prints tokens/s.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from gguf.quants import quantize

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from outcrop.engines.chat_template import CHATML_TOOLS_TEMPLATE  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / ".models" / "qwen2.5-0.5b-shape-q8_0.gguf"
TINY_MODEL = ROOT / "outcrop" / "models" / "outcrop-tiny-chat.gguf"

# Qwen2.5-0.5B-Instruct's config.json.
N_VOCAB = 151936
N_EMBD = 896
N_LAYER = 24
N_HEAD = 14
N_HEAD_KV = 2
N_FF = 4864
N_CTX = 32768
ROPE_BASE = 1_000_000.0
RMS_EPS = 1e-6
HEAD_DIM = N_EMBD // N_HEAD  # 64
SEED = 0
Q8_0 = gguf.GGMLQuantizationType.Q8_0


def log(msg: str) -> None:
    print(msg, flush=True)


def tiny_vocab(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise SystemExit(f"{path} is missing: run scripts/build_tiny_model.py first")
    r = gguf.GGUFReader(str(path))

    def get(key: str) -> Any:
        return r.fields[key].contents()

    tokens: list[str] = list(get("tokenizer.ggml.tokens"))
    types: list[int] = [int(t) for t in get("tokenizer.ggml.token_type")]
    known = set(tokens)
    # Filler tokens decode to " tok<N>" (byte-level pieces; no merge produces them, so they only
    # ever come out of the model, never out of the tokenizer).
    i = 0
    while len(tokens) < N_VOCAB:
        piece = f"\u0120tok{i}"
        i += 1
        if piece not in known:
            tokens.append(piece)
            types.append(int(gguf.TokenType.NORMAL))
    return {
        "tokens": tokens,
        "types": types,
        "merges": list(get("tokenizer.ggml.merges")),
        "eos": int(get("tokenizer.ggml.eos_token_id")),
        "bos": int(get("tokenizer.ggml.bos_token_id")),
        "pre": str(get("tokenizer.ggml.pre")),
    }


def build(out: Path) -> None:
    t0 = time.time()
    vocab = tiny_vocab(TINY_MODEL)
    rng = np.random.default_rng(SEED)

    def matrix(rows: int, cols: int) -> np.ndarray:
        # numpy (rows, cols) row-major is ggml ne = [cols, rows], llama.cpp's {n_in, n_out}.
        return quantize(rng.standard_normal((rows, cols), dtype=np.float32) * 0.02, Q8_0)

    def vector(n: int, value: float | None = None) -> np.ndarray:
        if value is not None:
            return np.full(n, value, dtype=np.float32)
        return rng.standard_normal(n, dtype=np.float32) * 0.02

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".gguf.tmp")
    w = gguf.GGUFWriter(str(tmp), arch="qwen2")
    w.add_name("Qwen2.5-0.5B shape, random weights (Outcrop benchmark)")
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_layer_norm_rms_eps(RMS_EPS)
    w.add_rope_freq_base(ROPE_BASE)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(vocab["pre"])
    w.add_token_list(vocab["tokens"])
    w.add_token_types(vocab["types"])
    w.add_token_merges(vocab["merges"])
    w.add_bos_token_id(vocab["bos"])
    w.add_eos_token_id(vocab["eos"])
    w.add_pad_token_id(vocab["bos"])
    w.add_add_bos_token(False)
    w.add_chat_template(CHATML_TOOLS_TEMPLATE)

    def add(name: str, arr: np.ndarray) -> None:
        if arr.dtype == np.uint8:
            w.add_tensor(name, arr, raw_dtype=Q8_0)
        else:
            w.add_tensor(name, arr)

    kv = N_HEAD_KV * HEAD_DIM
    add("token_embd.weight", matrix(N_VOCAB, N_EMBD))  # tied: llama.cpp reuses it as output
    for i in range(N_LAYER):
        add(f"blk.{i}.attn_norm.weight", vector(N_EMBD, 1.0))
        add(f"blk.{i}.attn_q.weight", matrix(N_EMBD, N_EMBD))
        add(f"blk.{i}.attn_q.bias", vector(N_EMBD))
        add(f"blk.{i}.attn_k.weight", matrix(kv, N_EMBD))
        add(f"blk.{i}.attn_k.bias", vector(kv))
        add(f"blk.{i}.attn_v.weight", matrix(kv, N_EMBD))
        add(f"blk.{i}.attn_v.bias", vector(kv))
        add(f"blk.{i}.attn_output.weight", matrix(N_EMBD, N_EMBD))
        add(f"blk.{i}.ffn_norm.weight", vector(N_EMBD, 1.0))
        add(f"blk.{i}.ffn_gate.weight", matrix(N_FF, N_EMBD))
        add(f"blk.{i}.ffn_up.weight", matrix(N_FF, N_EMBD))
        add(f"blk.{i}.ffn_down.weight", matrix(N_EMBD, N_FF))
    add("output_norm.weight", vector(N_EMBD, 1.0))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(out)
    log(f"wrote {out} ({out.stat().st_size / 1e6:.0f} MB) in {time.time() - t0:.0f}s")


def bench(path: Path, n_gen: int, threads: int) -> None:
    """Load the file in Outcrop's llama.cpp engine and generate: a greedy answer, then timed prompt and decode."""
    import asyncio

    from outcrop.conversation import ChatRequest, Message, MessageStop, Sampling, Text, TextDelta
    from outcrop.engines.llamacpp import LlamaCppEngine

    request = ChatRequest(
        model="bench",
        system="You are a helpful assistant.",
        messages=(Message("user", (Text("Write a short story about a dog who finds a key in the park."),)),),
        sampling=Sampling(temperature=0, max_tokens=n_gen, ignore_eos=True),
    )

    async def run() -> None:
        t0 = time.time()
        engine = LlamaCppEngine(path, name="bench", n_ctx=2048, n_threads=threads, parallel=1)
        log(f"loaded in {time.time() - t0:.1f}s ({threads} threads)")
        try:
            start = time.perf_counter()
            first = last = None
            text, usage = [], None
            async for event in engine.stream(request):
                if isinstance(event, TextDelta):
                    last = time.perf_counter()
                    first = first or last
                    text.append(event.text)
                elif isinstance(event, MessageStop):
                    usage = event.usage
        finally:
            await engine.close()
        assert usage is not None and first is not None and last is not None
        log(f"answer ({usage.output_tokens} tokens): {''.join(text)[:100]!r}")
        log(f"prompt: {usage.input_tokens} tokens, first token after {first - start:.2f}s")
        if usage.output_tokens > 1:
            log(f"generation: {(usage.output_tokens - 1) / (last - first):.1f} tokens/s")

    asyncio.run(run())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output GGUF (default: {DEFAULT_OUT})")
    ap.add_argument("--force", action="store_true", help="rebuild even if the output exists")
    ap.add_argument("--no-bench", action="store_true", help="skip the load-and-generate check")
    ap.add_argument("--n-gen", type=int, default=20, help="tokens to generate in the check")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    if args.out.exists() and not args.force:
        log(f"{args.out} exists; skipping the build (--force rebuilds it)")
    else:
        build(args.out)
    if not args.no_bench:
        bench(args.out, args.n_gen, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
