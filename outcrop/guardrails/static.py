"""Static sentence embeddings distilled from all-MiniLM-L6-v2: the fast (CLASSIC) tier of guardrails.

Every token of MiniLM's vocabulary is run through MiniLM once, alone (`[CLS] token [SEP]`, mean-pooled):
that gives one 384-number vector per token. A text's vector is then the mean of its tokens' vectors,
centred and normalized: a table lookup instead of six transformer layers, about a hundred times faster, at some cost
in accuracy (word order and context are lost). This is the distillation model2vec popularised, done
here with nothing but the installed MiniLM, so nothing is downloaded.

The table (30,522 x 384, float16, 23 MB) is built on first use (tens of seconds on one core) and kept
under `$OUTCROP_HOME/cache/`; `outcrop serve` builds it in the background at startup when guardrails exist.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

VERSION = "minilm-static-v1"  # bump when the distillation changes: classifiers are trained on these vectors
MAX_TOKENS = 512  # a window longer than this is read up to here
_FIRST_WORD = 1996  # the first whole word of the vocabulary ("the"); before it: specials, unused slots, characters
_lock = threading.Lock()
_loaded: StaticEmbedder | None = None


def _cache_dir() -> Path:
    from outcrop import config

    return Path(os.environ.get("OUTCROP_STATIC_CACHE") or config.home() / "cache")


def build_table(model_path: str) -> np.ndarray:
    """One vector per vocabulary token: MiniLM's mean-pooled output for `[CLS] token [SEP]`."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path, device="cpu")
    encoder: Any = model[0].auto_model
    tokenizer = model.tokenizer
    size, cls, sep = tokenizer.vocab_size, tokenizer.cls_token_id, tokenizer.sep_token_id
    table = np.zeros((size, encoder.config.hidden_size), np.float32)
    with torch.inference_mode():
        for start in range(0, size, 1024):
            ids = torch.arange(start, min(size, start + 1024))
            batch = torch.stack([torch.full_like(ids, cls), ids, torch.full_like(ids, sep)], dim=1)
            table[start : start + len(ids)] = encoder(input_ids=batch).last_hidden_state.mean(dim=1).numpy()
    return table.astype(np.float16)


class StaticEmbedder:
    def __init__(self, table: np.ndarray, tokenizer: Any) -> None:
        self.table = table.astype(np.float32)
        # Every token vector shares a large common direction; without removing it all texts look alike
        # (cosines of 0.8-0.9 between unrelated sentences).
        self.center = self.table.mean(axis=0)
        self.tokenizer = tokenizer
        self.dimensions = int(table.shape[1])
        # Weights for `embed(..., weighted=True)`: MiniLM's uncased vocabulary lists whole words roughly
        # from the most frequent ("the" is 1996), so an id's rank stands in for its frequency, and
        # log(1 + rank)^2 lets rare, topical words outweigh "what should I" (the Zipf weighting of
        # model2vec, squared: chosen on the development topics of benchmarks/data/topics.json).
        ranks = np.maximum(np.arange(self.table.shape[0]) - _FIRST_WORD + 1, 1)
        self.weights = (np.log1p(ranks) ** 2).astype(np.float32)

    @classmethod
    def load(cls) -> StaticEmbedder:
        """The process's one instance; builds and caches the table the first time on this machine."""
        global _loaded
        with _lock:
            if _loaded is None:
                from tokenizers import Tokenizer

                from outcrop.engines.embeddings import _default_model_path

                model_path = _default_model_path()
                path = _cache_dir() / f"{VERSION}.npy"
                if path.is_file():
                    table = np.load(path)
                else:
                    table = build_table(model_path)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
                    np.save(tmp, table)
                    tmp.replace(path)
                tokenizer = Tokenizer.from_file(str(Path(model_path) / "tokenizer.json"))
                tokenizer.no_padding()
                tokenizer.no_truncation()
                _loaded = cls(table, tokenizer)
            return _loaded

    def embed(self, texts: list[str], weighted: bool = False) -> np.ndarray:
        """Normalized mean token vectors, one row a text (a text with no tokens gets a zero row); `weighted`
        weighs rare tokens more (denied topics; the content classifier was trained on the plain mean)."""
        out = np.zeros((len(texts), self.dimensions), np.float32)
        for i, encoding in enumerate(self.tokenizer.encode_batch(texts, add_special_tokens=False)):
            ids = encoding.ids[:MAX_TOKENS]
            if ids and weighted:
                w = self.weights[ids]
                out[i] = w @ self.table[ids] / w.sum() - self.center
            elif ids:
                out[i] = self.table[ids].mean(axis=0) - self.center
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-9)
