"""A real server for the bedrock-agent-runtime tests: the built-in MiniLM embeddings, a scripted chat engine whose
answers are written per test (citation mapping is checked exactly), the built-in llama.cpp model for one real
generation, guardrails and knowledge bases in one SQLite store. Knowledge bases are made through boto3's
bedrock-agent client; their chunks are written straight into their vector store (ingestion is tested apart)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from outcrop import store
from outcrop.api.app import App, build_app
from outcrop.config import ModelSpec, Settings
from outcrop.conversation import ChatRequest
from outcrop.engines.echo import EchoEngine
from outcrop.engines.embeddings import SentenceTransformerEmbedder
from outcrop.guardrails.store import GuardrailStore
from outcrop.knowledge.catalog import KnowledgeCatalog
from outcrop.knowledge.service import index_name
from outcrop.knowledge.vectors import Chunk
from outcrop.models import BUILTIN_EMBEDDING_ID
from outcrop.registry import Registry
from tests.conftest import client, serve_app

SCRIPTED = "test.scripted-v1:0"
EMBED_ARN = f"arn:aws:bedrock:us-east-1::foundation-model/{BUILTIN_EMBEDDING_ID}"
ROLE = "arn:aws:iam::123456789012:role/kb-role"
DATA_SOURCE = "DS00000001"
BLOCKED_IN = "Sorry, that question cannot be answered."
BLOCKED_OUT = "Sorry, that answer cannot be shown."

Script = Callable[[ChatRequest], str]


class ScriptedEngine(EchoEngine):
    """Answers with `script(request)` (a word at a time, as the echo engine streams), recording each request."""

    def __init__(self) -> None:
        super().__init__(context_length=16384, max_queue=8)
        self.script: Script | None = None
        self.requests: list[ChatRequest] = []

    def _answer(self, request: ChatRequest) -> str:
        self.requests.append(request)
        return self.script(request) if self.script else super()._answer(request)


def numbered(request: ChatRequest) -> dict[int, str]:
    """The passages the prompt gave the model: {number: text} (the last one runs on to the template's end)."""
    pieces = re.split(r"^\[(\d+)\] ", request.messages[-1].text, flags=re.M)
    return {int(n): text for n, text in zip(pieces[1::2], pieces[2::2], strict=True)}


def number_of(request: ChatRequest, needle: str) -> int:
    """The number the prompt gave the passage holding `needle`."""
    return next(n for n, t in numbered(request).items() if needle in t)


@dataclass
class Env:
    url: str
    app: App
    agent: Any
    runtime: Any
    control: Any
    engine: ScriptedEngine
    embedder: SentenceTransformerEmbedder
    guardrails: dict[str, str] = field(default_factory=dict)

    def knowledge_base(self, name: str) -> str:
        made = self.agent.create_knowledge_base(name=name, roleArn=ROLE, knowledgeBaseConfiguration={
            "type": "VECTOR", "vectorKnowledgeBaseConfiguration": {"embeddingModelArn": EMBED_ARN}})  # fmt: skip
        return str(made["knowledgeBase"]["knowledgeBaseId"])

    def add(self, kb_id: str, document_id: str, texts: list[str], **attributes: Any) -> None:
        """A document of `texts` (one chunk each) in S3 at s3://docs/<document_id>, with these attributes."""
        service = self.app.context.knowledge
        assert service is not None
        kb = service.catalog.get(kb_id)
        vectors = self.embedder.vectors(texts)
        uri = f"s3://docs/{document_id}"
        meta = {**attributes, "x-amz-bedrock-kb-source-uri": uri, "x-amz-bedrock-kb-data-source-id": DATA_SOURCE}
        location = {"type": "S3", "s3Location": {"uri": uri}}
        chunks = [Chunk(f"{document_id}-{i}", document_id, t, v.tolist(), meta, location)
                  for i, (t, v) in enumerate(zip(texts, vectors, strict=True))]  # fmt: skip
        service.store(kb).upsert_document(index_name(kb), document_id, chunks)


@pytest.fixture(scope="package")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = Path(tmp_path_factory.mktemp("rag"))
    engine = ScriptedEngine()
    embedder = SentenceTransformerEmbedder(None, name=BUILTIN_EMBEDDING_ID)
    settings = Settings(config_path=tmp / "c.toml", models=(ModelSpec(id=SCRIPTED, engine="echo", n_ctx=16384),),
                        knowledge_dir=str(tmp / "knowledge"))  # fmt: skip
    registry = Registry(settings, {SCRIPTED: engine, BUILTIN_EMBEDDING_ID: embedder})
    db = store.connect(f"sqlite:///{tmp / 'o.db'}")
    app = build_app(settings, registry, guardrails=GuardrailStore(db), knowledge=KnowledgeCatalog(db))
    with serve_app(app) as url:
        control = client("bedrock", url)
        words = control.create_guardrail(name="words", blockedInputMessaging=BLOCKED_IN,
                                         blockedOutputsMessaging=BLOCKED_OUT,
                                         wordPolicyConfig={"wordsConfig": [{"text": "frobnicator"}]})  # fmt: skip
        yield Env(url, app, client("bedrock-agent", url), client("bedrock-agent-runtime", url), control, engine,
                  embedder, {"words": words["guardrailId"]})  # fmt: skip
