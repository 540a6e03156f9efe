"""Model ids and aliases -> engines, and the catalog every dialect lists from.

Callers name models the way Bedrock does, and we accept each form: base ids
(`anthropic.claude-3-haiku-20240307-v1:0`), cross-region inference-profile ids (`us.` + base id) and
ARNs of foundation models, inference profiles and the like. Engines load on first use.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from typing import Any, cast

from outcrop import errors
from outcrop.config import ModelSpec, Settings
from outcrop.engines.base import Embedder, Engine
from outcrop.models import BUILTIN_EMBEDDING_ID, BUILTIN_GGUF, BUILTIN_MODEL_ID, builtin_embedding_available

_ARN = re.compile(
    r"^arn:aws[a-z-]*:bedrock:[^:]*:[^:]*:"
    r"(?:foundation-model|inference-profile|application-inference-profile|custom-model|imported-model"
    r"|provisioned-model|custom-model-deployment|prompt-router)/(?P<id>.+)$"
)
_GEO = re.compile(r"^(?:us|eu|apac|global|us-gov|ca|jp|au)\.(?P<id>.+)$")

PROVIDER_NAMES = {
    "anthropic": "Anthropic",
    "meta": "Meta",
    "mistral": "Mistral AI",
    "amazon": "Amazon",
    "cohere": "Cohere",
    "ai21": "AI21 Labs",
    "deepseek": "DeepSeek",
    "qwen": "Qwen",
    "openai": "OpenAI",
    "outcrop": "Outcrop",
}


def provider_of(model_id: str) -> str:
    """The provider segment of a Bedrock-style id: `anthropic` for `us.anthropic.claude...`."""
    m = _GEO.match(model_id)
    base = m.group("id") if m else model_id
    return base.split(".", 1)[0] if "." in base else "custom"


def builtin_spec() -> ModelSpec:
    return ModelSpec(id=BUILTIN_MODEL_ID, path=str(BUILTIN_GGUF), n_ctx=4096)


def builtin_embedding_spec() -> ModelSpec:
    return ModelSpec(id=BUILTIN_EMBEDDING_ID, engine="sentence-transformers", kind="embedding", n_ctx=256)


@dataclass
class Entry:
    spec: ModelSpec
    engine: Engine | Embedder | None = None


class Registry:
    def __init__(self, settings: Settings, engines: dict[str, Engine | Embedder] | None = None) -> None:
        specs = list(settings.models)
        if settings.builtin_model and all(s.id != BUILTIN_MODEL_ID for s in specs):
            specs.insert(0, builtin_spec())
        if (
            settings.builtin_embedding_model
            and all(s.id != BUILTIN_EMBEDDING_ID for s in specs)
            and builtin_embedding_available()
        ):
            specs.append(builtin_embedding_spec())
        self.region = settings.region
        self._entries: dict[str, Entry] = {}
        self._names: dict[str, str] = {}
        for spec in specs:
            entry = Entry(spec, (engines or {}).get(spec.id))
            self._entries[spec.id] = entry
            for name in (spec.id, *spec.aliases):
                self._names[name] = spec.id
        self._loading: dict[str, asyncio.Lock] = {}

    def specs(self) -> list[ModelSpec]:
        return [e.spec for e in self._entries.values()]

    def names(self, kind: str | None = None) -> list[str]:
        """Every id a caller can use (model ids and their aliases), optionally of one kind."""
        return [n for n, mid in self._names.items() if kind is None or self._entries[mid].spec.kind == kind]

    def resolve(self, identifier: str) -> str:
        """The model id (after aliases) that `identifier` names, or NotFound."""
        candidates = [identifier]
        arn = _ARN.match(identifier)
        if arn:
            candidates.append(arn.group("id"))
        for name in list(candidates):
            geo = _GEO.match(name)
            if geo:
                candidates.append(geo.group("id"))
        for name in candidates:
            if name in self._names:
                return self._names[name]
        raise errors.NotFound(
            f"The model '{identifier}' is not served here. Served models: {', '.join(self._names)}. "
            "Add one with `outcrop models add FILE.gguf --id ID`."
        )

    def spec(self, model_id: str) -> ModelSpec:
        return self._entries[self.resolve(model_id)].spec

    def kind(self, identifier: str) -> str:
        return self.spec(identifier).kind

    async def engine(self, identifier: str) -> tuple[str, Engine]:
        """The chat engine for `identifier`; an embedding model is refused with a message."""
        model_id = self.resolve(identifier)
        if self._entries[model_id].spec.kind != "chat":
            raise errors.InvalidRequest(
                f"The model '{identifier}' is an embedding model: it does not generate text. "
                "Send it an embeddings request instead."
            )
        return model_id, await self._load(model_id)  # type: ignore[return-value]

    async def embedder(self, identifier: str) -> tuple[str, Embedder]:
        """The embedding engine for `identifier`; a chat model is refused with a message."""
        model_id = self.resolve(identifier)
        if self._entries[model_id].spec.kind != "embedding":
            raise errors.InvalidRequest(
                f"The model '{identifier}' is a chat model, not an embedding model. "
                f"Embedding models here: {', '.join(self.names('embedding')) or 'none'}."
            )
        return model_id, await self._load(model_id)  # type: ignore[return-value]

    async def _load(self, model_id: str) -> Engine | Embedder:
        entry = self._entries[model_id]
        if entry.engine is None:
            lock = self._loading.setdefault(model_id, asyncio.Lock())
            async with lock:
                if entry.engine is None:
                    try:
                        entry.engine = await asyncio.to_thread(load_engine, entry.spec)
                    except errors.OutcropError:
                        raise
                    except Exception as exc:  # llama.cpp says little more than "failed to load"
                        raise errors.ModelFailure(
                            f"The model '{model_id}' could not be loaded from {entry.spec.path}: {exc}"
                        ) from exc
        return entry.engine

    def loaded(self) -> dict[str, Engine | Embedder]:
        return {k: e.engine for k, e in self._entries.items() if e.engine is not None}

    def status(self) -> dict[str, dict[str, Any]]:
        """Each served model's state: engine, kind and aliases, and once it is loaded its engine's figures (slots,
        queue, counts, KV cache, prompt cache) with its context length (chat) or dimensions (embeddings)."""
        models: dict[str, dict[str, Any]] = {}
        for spec in self.specs():
            entry: dict[str, Any] = {"loaded": False, "kind": spec.kind, "engine": spec.engine,
                                     "aliases": list(spec.aliases)}  # fmt: skip
            engine = self._entries[spec.id].engine
            if engine is not None:
                s = engine.stats()
                entry.update(loaded=True, in_flight=s.in_flight, slots=s.slots, queued=s.queued,
                             max_queue=s.max_queue, completed=s.completed, cancelled=s.cancelled,
                             kv_cells=s.kv_cells, kv_cells_used=s.kv_cells_used, prompt_tokens=s.prompt_tokens,
                             prompt_cache_hit_tokens=s.prompt_cache_hit_tokens)  # fmt: skip
                if spec.kind == "embedding":
                    entry["dimensions"] = cast(Embedder, engine).dimensions
                else:
                    entry["context_length"] = cast(Engine, engine).capabilities.context_length
            models[spec.id] = entry
        return models

    def foundation_model(self, model_id: str) -> dict[str, Any]:
        """Bedrock's FoundationModelSummary for one served model."""
        provider = provider_of(model_id)
        embedding = self.spec(model_id).kind == "embedding"
        return {
            "modelArn": f"arn:aws:bedrock:{self.region}::foundation-model/{model_id}",
            "modelId": model_id,
            "modelName": model_id.split(".", 1)[-1],
            "providerName": PROVIDER_NAMES.get(provider, provider.capitalize()),
            "inputModalities": ["TEXT"],
            "outputModalities": ["EMBEDDING"] if embedding else ["TEXT"],
            "responseStreamingSupported": not embedding,
            "customizationsSupported": [],
            "inferenceTypesSupported": ["ON_DEMAND"],
            "modelLifecycle": {"status": "ACTIVE"},
        }

    async def close(self) -> None:
        for engine in self.loaded().values():
            await engine.close()


def load_engine(spec: ModelSpec) -> Engine | Embedder:
    if spec.kind == "embedding":
        from outcrop.engines.embeddings import LlamaCppEmbedder, SentenceTransformerEmbedder

        if spec.engine == "sentence-transformers":
            return SentenceTransformerEmbedder(spec.path, max_queue=spec.max_queue, name=spec.id)
        assert spec.path is not None
        return LlamaCppEmbedder(
            spec.path,
            n_ctx=spec.n_ctx,
            n_threads=spec.n_threads,
            max_queue=spec.max_queue,
            name=spec.id,
            repack=spec.repack,
        )
    if spec.engine == "openai":
        from outcrop.engines.openai_upstream import OpenAIUpstreamEngine

        assert spec.url is not None
        return OpenAIUpstreamEngine(
            spec.url,
            model=spec.upstream_model or spec.id,
            api_key=os.environ.get(spec.api_key_env) if spec.api_key_env else None,
            context_length=spec.n_ctx,
            max_queue=spec.max_queue,
            parallel=spec.parallel,
            max_tokens=spec.max_tokens,
        )
    if spec.engine == "echo":
        from outcrop.engines.echo import EchoEngine

        return EchoEngine(context_length=spec.n_ctx, max_queue=spec.max_queue)
    from outcrop.engines.llamacpp import LlamaCppEngine

    assert spec.path is not None
    return LlamaCppEngine(
        spec.path,
        name=spec.id,
        n_ctx=spec.n_ctx,
        n_threads=spec.n_threads,
        n_batch=spec.n_batch,
        max_queue=spec.max_queue,
        chat_template=spec.chat_template,
        parallel=spec.parallel,
        max_tokens=spec.max_tokens,
        prefill_chunk=spec.prefill_chunk,
        prompt_cache_mib=spec.prompt_cache_mib,
        repack=spec.repack,
        flash_attn=spec.flash_attn,
    )
