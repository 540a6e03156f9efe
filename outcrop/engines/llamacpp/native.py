"""llama.cpp through llama-cpp-python's low-level (ctypes) API: one model, one context holding a KV
sequence per slot, one reusable batch, per-sequence samplers.

Everything here runs on the model's worker thread (the scheduler's), except loading and tokenizing,
which only read the model. ctypes releases the GIL for the duration of each llama.cpp call, so the
event loop keeps serving while a batch is decoded.

Weight repacking (llama.cpp's "extra buffer types") is off by default on CPUs with AMX: llama.cpp's
AMX matrix multiply crashes on Q8_0 weights there (ggml-org/llama.cpp#20824, seen on this project's
Xeon machines, in llama-server too), so `repack=None` means "on unless the CPU has AMX".
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from outcrop import errors


def _llama() -> Any:
    import llama_cpp
    from llama_cpp._logger import set_verbose

    set_verbose(False)  # llama.cpp's own log lines only for errors
    return llama_cpp


@functools.cache
def cpu_has_amx() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return " amx_int8" in line or " amx_tile" in line
    except OSError:
        pass
    return False


def default_repack() -> bool:
    return not cpu_has_amx()


_PARAMS = threading.Lock()


@contextlib.contextmanager
def model_params(repack: bool | None) -> Iterator[None]:
    """While in the block, llama-cpp-python's `Llama` loads models with weight repacking on or off as `repack`
    says (None: default_repack()). `Llama` has no option for it, so its default model parameters are wrapped,
    one load at a time."""
    import llama_cpp.llama_cpp as low

    use = default_repack() if repack is None else repack
    with _PARAMS:
        original = low.llama_model_default_params

        def params() -> Any:
            p = original()
            p.use_extra_bufts = use
            return p

        low.llama_model_default_params = params
        try:
            yield
        finally:
            low.llama_model_default_params = original


@dataclass(frozen=True)
class SamplerSettings:
    temperature: float
    top_p: float
    top_k: int
    min_p: float
    seed: int | None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    penalty_last_n: int = 64


class Sampler:
    """One sequence's sampler chain, and its grammar kept apart from the chain.

    With a grammar, the chain samples from the full logits first and the grammar only checks the one
    token it picked; the grammar filters the whole vocabulary only when it rejects that token (as
    llama.cpp's server does). Checking one token instead of ~150,000 is what makes JSON-schema decoding
    cost about as much as free decoding.
    """

    def __init__(self, model: Model, settings: SamplerSettings, grammar: str | None) -> None:
        ll = model.ll
        self._ll = ll
        self._model = model
        chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        self._penalties = bool(settings.frequency_penalty or settings.presence_penalty)
        if self._penalties:
            ll.llama_sampler_chain_add(
                chain,
                ll.llama_sampler_init_penalties(
                    model.n_vocab, settings.penalty_last_n, 1.0, settings.frequency_penalty, settings.presence_penalty
                ),
            )
        if settings.temperature <= 0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_greedy())
        else:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_k(settings.top_k))
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_p(settings.top_p, 1))
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_min_p(settings.min_p, 1))
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_temp(settings.temperature))
            seed = ll.LLAMA_DEFAULT_SEED if settings.seed is None else settings.seed & 0xFFFFFFFF
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_dist(seed))
        self._chain = chain
        self._grammar = None
        if grammar is not None:
            g = ll.llama_sampler_init_grammar(model.vocab, grammar.encode(), b"root")
            if not g:
                ll.llama_sampler_free(chain)
                self._chain = None
                raise errors.InvalidRequest("The grammar for this request's response format could not be compiled.")
            self._grammar = g
            self._one = ll.llama_token_data_array()
            self._one_data = ll.llama_token_data()
            self._one.data = ctypes.pointer(self._one_data)

    def sample(self, ctx: Any, index: int) -> int:
        """The next token from the logits of batch position `index`, accepted into the sampler's state."""
        ll = self._ll
        if self._grammar is None:
            return int(ll.llama_sampler_sample(self._chain, ctx, index))
        if not self._penalties:
            # llama_sampler_sample accepts the token into the chain, which only matters to stateful
            # samplers: without penalties the chain keeps no state, so a rejected pick costs nothing.
            token = int(ll.llama_sampler_sample(self._chain, ctx, index))
        else:
            token = self._apply_chain(ctx, index, grammar_first=False)
        if not self._allowed(token):
            token = self._apply_chain(ctx, index, grammar_first=True)
        ll.llama_sampler_accept(self._grammar, token)
        if self._penalties:
            ll.llama_sampler_accept(self._chain, token)
        return token

    def _allowed(self, token: int) -> bool:
        self._one_data.id = token
        self._one_data.logit = 1.0
        self._one_data.p = 0.0
        self._one.size = 1
        self._one.selected = -1
        self._one.sorted = False
        self._ll.llama_sampler_apply(self._grammar, ctypes.byref(self._one))
        return not math.isinf(self._one_data.logit)

    def _apply_chain(self, ctx: Any, index: int, *, grammar_first: bool) -> int:
        ll = self._ll
        candidates = self._model.candidates(ctx, index)
        if grammar_first:
            ll.llama_sampler_apply(self._grammar, ctypes.byref(candidates))
        ll.llama_sampler_apply(self._chain, ctypes.byref(candidates))
        return int(candidates.data[candidates.selected].id)

    def close(self) -> None:
        if self._chain:
            self._ll.llama_sampler_free(self._chain)
            self._chain = None
        if self._grammar:
            self._ll.llama_sampler_free(self._grammar)
            self._grammar = None


class Model:
    """A GGUF model and one context with `n_seq` KV sequences of `n_ctx_seq` tokens each."""

    def __init__(
        self,
        path: Path,
        *,
        n_ctx_seq: int,
        n_seq: int,
        n_threads: int | None,
        n_batch: int,
        repack: bool | None = None,
        flash_attn: bool = False,
    ) -> None:
        ll = _llama()
        self.ll = ll
        ll.llama_backend_init()
        params = ll.llama_model_default_params()
        params.use_extra_bufts = default_repack() if repack is None else repack
        self._model = ll.llama_model_load_from_file(str(path).encode(), params)
        if not self._model:
            raise RuntimeError("llama.cpp could not read it (not a GGUF model it can run?)")
        self.vocab = ll.llama_model_get_vocab(self._model)
        self.n_vocab = int(ll.llama_vocab_n_tokens(self.vocab))
        threads = n_threads or os.cpu_count() or 1
        cparams = ll.llama_context_default_params()
        cparams.n_ctx = n_ctx_seq * n_seq
        cparams.n_seq_max = n_seq
        cparams.n_batch = n_batch
        cparams.n_ubatch = n_batch
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        cparams.kv_unified = False  # a stream per sequence: each attends only to its own tokens
        cparams.no_perf = True
        # llama.cpp's "auto" turns flash attention on; on a CPU it decodes ~8 % slower alone and ~13 % slower
        # with 8 sequences (measured on this project's 0.5B-shape model), so it is opt-in here
        cparams.flash_attn_type = ll.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else ll.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self.ctx = ll.llama_init_from_model(self._model, cparams)
        if not self.ctx:
            ll.llama_model_free(self._model)
            raise RuntimeError(
                f"llama.cpp could not make a context of {n_seq} x {n_ctx_seq} tokens (not enough memory? "
                "lower n_ctx or parallel)"
            )
        self.n_ctx_seq = int(ll.llama_n_ctx_seq(self.ctx))
        self.n_seq = n_seq
        self.n_batch = n_batch
        self.memory = ll.llama_get_memory(self.ctx)
        self.batch = ll.llama_batch_init(n_batch, 0, 1)
        self._tokens = np.ctypeslib.as_array(self.batch.token, shape=(n_batch,))
        self._pos = np.ctypeslib.as_array(self.batch.pos, shape=(n_batch,))
        self._n_seq_id = np.ctypeslib.as_array(self.batch.n_seq_id, shape=(n_batch,))
        self._logits = np.ctypeslib.as_array(self.batch.logits, shape=(n_batch,))
        self._n_seq_id[:] = 1
        self._pieces: dict[int, bytes] = {}
        # the candidate array for grammar resampling, ids filled once
        self._cand_buf = (ll.llama_token_data * self.n_vocab)()
        dtype = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
        self._cand = np.frombuffer(self._cand_buf, dtype=dtype)
        self._ids = np.arange(self.n_vocab, dtype=np.int32)
        self._cand_array = ll.llama_token_data_array()
        self.add_bos = bool(ll.llama_vocab_get_add_bos(self.vocab))
        self.bos = int(ll.llama_vocab_bos(self.vocab))
        self.eos = int(ll.llama_vocab_eos(self.vocab))
        self.metadata = self._metadata()

    # --- model facts ------------------------------------------------------------------------------

    def _metadata(self) -> dict[str, str]:
        ll = self.ll
        out: dict[str, str] = {}
        buf = ctypes.create_string_buffer(1 << 16)
        for i in range(ll.llama_model_meta_count(self._model)):
            n = ll.llama_model_meta_key_by_index(self._model, i, buf, len(buf))
            if n < 0:
                continue
            key = buf.value.decode("utf-8", errors="replace")
            size = ll.llama_model_meta_val_str_by_index(self._model, i, None, 0)
            value = ctypes.create_string_buffer(max(size, 0) + 1)
            if ll.llama_model_meta_val_str_by_index(self._model, i, value, len(value)) >= 0:
                out[key] = value.value.decode("utf-8", errors="replace")
        return out

    # --- tokens -----------------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        ll = self.ll
        data = text.encode()
        room = len(data) + 8
        buf = (ll.llama_token * room)()
        n = ll.llama_tokenize(self.vocab, data, len(data), buf, room, False, True)
        if n < 0:
            room = -n
            buf = (ll.llama_token * room)()
            n = ll.llama_tokenize(self.vocab, data, len(data), buf, room, False, True)
        tokens = list(buf[:n])
        if self.add_bos and self.bos >= 0 and (not tokens or tokens[0] != self.bos):
            tokens.insert(0, self.bos)
        return tokens

    def piece(self, token: int, special: bool = False) -> bytes:
        if not special:
            cached = self._pieces.get(token)
            if cached is not None:
                return cached
        buf = ctypes.create_string_buffer(256)
        n = self.ll.llama_token_to_piece(self.vocab, token, buf, 256, 0, special)
        piece = buf.raw[: max(n, 0)]
        if not special:
            self._pieces[token] = piece
        return piece

    def is_eog(self, token: int) -> bool:
        return bool(self.ll.llama_vocab_is_eog(self.vocab, token))

    # --- the batch and the KV cache ---------------------------------------------------------------

    def set_batch(self, tokens: list[int], positions: list[int], seqs: list[int], logits: list[bool]) -> None:
        n = len(tokens)
        self._tokens[:n] = tokens
        self._pos[:n] = positions
        self._logits[:n] = logits
        seq_id = self.batch.seq_id
        for i, s in enumerate(seqs):
            seq_id[i][0] = s
        self.batch.n_tokens = n

    def decode(self) -> int:
        return int(self.ll.llama_decode(self.ctx, self.batch))

    def seq_rm(self, seq: int, p0: int, p1: int = -1) -> bool:
        return bool(self.ll.llama_memory_seq_rm(self.memory, seq, p0, p1))

    def seq_clear(self, seq: int) -> None:
        self.ll.llama_memory_seq_rm(self.memory, seq, -1, -1)

    def seq_copy(self, src: int, dst: int) -> None:
        """Make `dst` a copy of `src` (every cell; trim it with seq_rm). Across KV streams the data is
        copied at the next decode."""
        self.ll.llama_memory_seq_rm(self.memory, dst, -1, -1)
        self.ll.llama_memory_seq_cp(self.memory, src, dst, -1, -1)

    def state_size(self, seq: int) -> int:
        return int(self.ll.llama_state_seq_get_size(self.ctx, seq))

    def save(self, seq: int, size: int) -> bytearray | None:
        """The sequence's KV state (`size` from state_size), written straight into the buffer kept; None when
        llama.cpp wrote nothing."""
        buf = bytearray(size)
        view = (ctypes.c_uint8 * size).from_buffer(buf)
        written = int(self.ll.llama_state_seq_get_data(self.ctx, view, size, seq))
        del view  # release the export, so the buffer can shrink
        if written <= 0:
            return None
        if written < size:
            del buf[written:]
        return buf

    def restore(self, seq: int, data: bytearray) -> bool:
        view = (ctypes.c_uint8 * len(data)).from_buffer(data)
        try:
            return bool(self.ll.llama_state_seq_set_data(self.ctx, view, len(data), seq))
        finally:
            del view

    def candidates(self, ctx: Any, index: int) -> Any:
        """All tokens with the logits of batch position `index`, for a sampler to filter."""
        logits = self.ll.llama_get_logits_ith(ctx, index)
        # every field, every time: samplers sort the array in place (top-k, top-p), so ids move
        self._cand["id"] = self._ids
        self._cand["logit"] = np.ctypeslib.as_array(logits, shape=(self.n_vocab,))
        self._cand["p"] = 0.0
        arr = self._cand_array
        arr.data = ctypes.cast(self._cand_buf, ctypes.POINTER(self.ll.llama_token_data))
        arr.size = self.n_vocab
        arr.selected = -1
        arr.sorted = False
        return arr

    def sampler(self, settings: SamplerSettings, grammar: str | None) -> Sampler:
        return Sampler(self, settings, grammar)

    def close(self) -> None:
        ll = self.ll
        if self.batch is not None:
            ll.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx:
            ll.llama_free(self.ctx)
            self.ctx = None
        if self._model:
            ll.llama_model_free(self._model)
            self._model = None
