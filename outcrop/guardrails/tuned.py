"""The STANDARD tier's content filters read a fine-tuned MiniLM: the packaged model plus low-rank adapters.

scripts/finetune_guardrail_encoder.py trains adapters for every linear layer of all-MiniLM-L6-v2 together
with the classifier's head, and ships the adapters as data/content_encoder_lora.npz next to
content_classifier.npz (whose embedding_model then ends in "+lora"). The runtime loads a private copy of
MiniLM with the adapters added to its weights (engines/embeddings.merge_adapters) for the content
filters, and keeps the plain model for denied topics and grounding, whose thresholds were set on its
vectors. A classifier trained on the plain model's vectors (scripts/train_guardrail_classifier.py)
reads those instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from outcrop.guardrails.content import ContentClassifier

ADAPTERS = Path(__file__).parent / "data" / "content_encoder_lora.npz"
SUFFIX = "+lora"

Embed = Callable[[list[str]], Awaitable[Any]]


def needs_adapters(classifier: ContentClassifier) -> bool:
    """Whether `classifier` was trained on the adapted encoder's vectors."""
    return classifier.embedding_model.endswith(SUFFIX)


def content_embedder(max_queue: int = 64) -> Any:
    """A private SentenceTransformerEmbedder: the packaged MiniLM with the shipped adapters merged in."""
    from outcrop.engines.embeddings import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(None, max_queue=max_queue, name="guardrails-content", adapters=ADAPTERS)


def content_embed() -> Embed:
    """An embedding function for the content filters: the guardrail encoder (outcrop.guardrails.encoder, its
    default backend) with the adapters merged in, loaded on first use off the event loop."""
    from outcrop.guardrails.encoder import GuardrailEncoder

    return GuardrailEncoder(adapters=ADAPTERS).embed
