"""The built-in model: a tiny chat GGUF built by scripts/build_tiny_model.py, and its script."""

from pathlib import Path

BUILTIN_MODEL_ID = "outcrop.tiny-chat-v1:0"
BUILTIN_GGUF = Path(__file__).with_name("outcrop-tiny-chat.gguf")
