"""RetrieveAndGenerate end to end, and where its time goes, on the built-in models.

A real server (uvicorn on 127.0.0.1, in this process's threads) serves the built-in llama.cpp chat model and the
built-in all-MiniLM-L6-v2 embeddings; a knowledge base made through boto3's bedrock-agent client holds --chunks
chunks written straight into its embedded store (paragraphs of this repository's Markdown, cut at CHUNK_CHARS
characters and repeated with a number when there are too few), each embedded by MiniLM. Then, for each of the
questions below, in turn, after --warmup untimed calls:

- RetrieveAndGenerate (boto3, KNOWLEDGE_BASE, numberOfResults 5, SEMANTIC, the default prompt template,
  maxTokens --max-tokens, temperature 0, no session): the client's wall time, and the server's own breakdown from
  its Server-Timing header: `session` (opening the session and storing the turn), `retrieve` (the query's
  embedding and the search), `prompt` (filling the template), `generate` (from handing the request to Inference
  to the model's last event: queueing, prompt processing, decoding, citation parsing).
- baseline, the same run: Converse (boto3) with the prompt RetrieveAndGenerate builds for that question (the
  passages a Retrieve call returns, filled into the same template) but with the passages in reverse order, same
  model, maxTokens and temperature: what generation alone costs. The order is reversed so that the prompt is not
  the one the RetrieveAndGenerate call left in llama.cpp's prompt cache (a cached prompt skips most of its
  processing); its length is the same. And Retrieve alone (boto3): what retrieval costs seen from a client.

The three run a round of the questions each in turn. Printed: p50 and p90 of each (ms), each step's share of the
RetrieveAndGenerate p50, and the ratio of RetrieveAndGenerate to the Converse baseline. The built-in model writes
maxTokens tokens every time (it is tiny and rarely stops), so both generate the same number of tokens.

    python benchmarks/knowledge_rag.py
    python benchmarks/knowledge_rag.py --chunks 5000 --rounds 5 --max-tokens 64
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, CpuWatch, foreign_cpu_note, machine_summary, percentile, table

CHUNK_CHARS = 600  # ~150 MiniLM tokens: five such passages fit the built-in model's 4,096-token context
QUESTIONS = [
    "How do I start the server?",
    "Which clients work against it unchanged?",
    "How are guardrails applied to a call?",
    "What does the built-in model do?",
    "How are API keys created?",
    "How is usage recorded?",
    "What is a knowledge base?",
    "How are quotas enforced?",
]


def paragraphs(limit: int) -> list[str]:
    """Paragraphs of the repository's Markdown files (prose of 8+ words), repeated with a number up to `limit`."""
    found: list[str] = []
    for path in sorted([ROOT / "README.md", *ROOT.glob("docs/**/*.md"), ROOT / "benchmarks" / "README.md"]):
        if not path.exists():
            continue
        for block in re.split(r"\n\s*\n", path.read_text(errors="replace")):
            text = " ".join(block.split())
            if len(text.split()) >= 8 and not text.startswith(("```", "|", "#")):
                found.append(text[:CHUNK_CHARS])
    out: list[str] = []
    copy = 0
    while len(out) < limit and found:
        out += [p if copy == 0 else f"({copy}) {p}" for p in found[: limit - len(out)]]
        copy += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="passes over the questions")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()

    from outcrop import store
    from outcrop.api.app import build_app
    from outcrop.config import Settings
    from outcrop.engines.embeddings import SentenceTransformerEmbedder
    from outcrop.knowledge import prompt
    from outcrop.knowledge.catalog import KnowledgeCatalog
    from outcrop.knowledge.service import index_name
    from outcrop.knowledge.vectors import Chunk
    from outcrop.models import BUILTIN_EMBEDDING_ID, BUILTIN_MODEL_ID
    from outcrop.registry import Registry
    from tests.conftest import client, serve_app

    tmp = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    embedder = SentenceTransformerEmbedder(None, name=BUILTIN_EMBEDDING_ID)
    settings = Settings(config_path=tmp / "c.toml", knowledge_dir=str(tmp / "knowledge"))
    registry = Registry(settings, {BUILTIN_EMBEDDING_ID: embedder})
    app = build_app(settings, registry, knowledge=KnowledgeCatalog(store.connect(f"sqlite:///{tmp / 'o.db'}")))
    with serve_app(app) as url:
        agent, runtime, chat = (client(s, url) for s in ("bedrock-agent", "bedrock-agent-runtime", "bedrock-runtime"))
        kb_id = agent.create_knowledge_base(name="bench", roleArn="arn:aws:iam::123456789012:role/kb",
            knowledgeBaseConfiguration={"type": "VECTOR", "vectorKnowledgeBaseConfiguration": {
                "embeddingModelArn": f"arn:aws:bedrock:us-east-1::foundation-model/{BUILTIN_EMBEDDING_ID}"}},
        )["knowledgeBase"]["knowledgeBaseId"]  # fmt: skip
        service = app.context.knowledge
        assert service is not None
        kb = service.catalog.get(kb_id)
        texts = paragraphs(args.chunks)
        began = time.perf_counter()
        for start in range(0, len(texts), 100):
            batch = texts[start : start + 100]
            vectors = embedder.vectors(batch)
            for i, (text, vector) in enumerate(zip(batch, vectors, strict=True)):
                doc = f"doc-{start + i}"
                service.store(kb).upsert_document(index_name(kb), doc, [Chunk(f"{doc}-0", doc, text, vector.tolist(),
                    {}, {"type": "S3", "s3Location": {"uri": f"s3://bench/{doc}.md"}})])  # fmt: skip
        print(f"{len(texts)} chunks embedded and stored in {time.perf_counter() - began:.1f} s")

        generation = {"inferenceConfig": {"textInferenceConfig": {"maxTokens": args.max_tokens, "temperature": 0}}}
        config: dict[str, Any] = {"type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration": {
            "knowledgeBaseId": kb_id, "modelArn": BUILTIN_MODEL_ID, "generationConfiguration": generation,
            "retrievalConfiguration": {"vectorSearchConfiguration": {"numberOfResults": 5}}}}  # fmt: skip

        retrieval = config["knowledgeBaseConfiguration"]["retrievalConfiguration"]

        def rag(question: str) -> tuple[float, dict[str, float]]:
            t0 = time.perf_counter()
            out = runtime.retrieve_and_generate(input={"text": question}, retrieveAndGenerateConfiguration=config)
            wall = (time.perf_counter() - t0) * 1000
            header = out["ResponseMetadata"]["HTTPHeaders"].get("server-timing", "")
            steps = {m[0]: float(m[1]) for m in re.findall(r"(\w+);dur=([\d.]+)", header)}
            return wall, steps

        def retrieve(question: str) -> tuple[float, list[str]]:
            t0 = time.perf_counter()
            out = runtime.retrieve(knowledgeBaseId=kb_id, retrievalQuery={"text": question},
                                   retrievalConfiguration=retrieval)  # fmt: skip
            return (time.perf_counter() - t0) * 1000, [r["content"]["text"] for r in out["retrievalResults"]]

        def converse(question: str, passages: list[str]) -> float:
            (message,) = prompt.build(None, question, passages)
            t0 = time.perf_counter()
            chat.converse(modelId=BUILTIN_MODEL_ID, messages=[{"role": "user", "content": [{"text": message.text}]}],
                          inferenceConfig={"maxTokens": args.max_tokens, "temperature": 0})  # fmt: skip
            return (time.perf_counter() - t0) * 1000

        for q in QUESTIONS[: args.warmup]:
            rag(q)
            converse(q, retrieve(q)[1][::-1])
        walls: list[float] = []
        steps: dict[str, list[float]] = {}
        base_converse: list[float] = []
        base_retrieve: list[float] = []
        watch = CpuWatch()
        t_run = time.perf_counter()
        for _ in range(args.rounds):
            for q in QUESTIONS:
                wall, parts = rag(q)
                walls.append(wall)
                for k, v in parts.items():
                    steps.setdefault(k, []).append(v)
            found = []
            for q in QUESTIONS:
                ms, passages = retrieve(q)
                base_retrieve.append(ms)
                found.append(passages)
            for q, passages in zip(QUESTIONS, found, strict=True):
                base_converse.append(converse(q, passages[::-1]))
        foreign = watch.foreign_cores(time.perf_counter() - t_run)

    rag_p50 = percentile(walls, 50)
    rows = []
    labels = {"session": "session (open + store the turn)", "retrieve": "retrieve (query embedding + search)",
              "prompt": "prompt (fill the template)", "generate": "generate (Inference, to the end)"}  # fmt: skip
    for name, label in labels.items():
        values = steps.get(name, [])
        rows.append([label, f"{percentile(values, 50):.1f}", f"{percentile(values, 90):.1f}",
                     f"{100 * percentile(values, 50) / rag_p50:.1f} %"])  # fmt: skip
    rows.append(["RetrieveAndGenerate, client wall time", f"{rag_p50:.1f}", f"{percentile(walls, 90):.1f}", "100 %"])
    conv_p50 = percentile(base_converse, 50)
    conv_p90 = percentile(base_converse, 90)
    rows.append(["baseline: Converse, same-size prompt (client)", f"{conv_p50:.1f}", f"{conv_p90:.1f}",
                 f"{100 * conv_p50 / rag_p50:.1f} %"])  # fmt: skip
    ret_p50 = percentile(base_retrieve, 50)
    rows.append(["baseline: Retrieve alone (client)", f"{ret_p50:.1f}", f"{percentile(base_retrieve, 90):.1f}",
                 f"{100 * ret_p50 / rag_p50:.1f} %"])  # fmt: skip
    print(f"\n{machine_summary()}")
    print(f"{len(texts)} chunks, {len(walls)} calls ({args.rounds} x {len(QUESTIONS)} questions), "
          f"maxTokens {args.max_tokens}, model {BUILTIN_MODEL_ID}; {foreign_cpu_note(foreign)}\n")  # fmt: skip
    print(table(["step", "p50 ms", "p90 ms", "of RAG p50"], rows))
    print(
        f"\nRetrieveAndGenerate / Converse of a same-size prompt (p50): {rag_p50 / conv_p50:.2f}x; "
        f"its overhead over generation alone: {rag_p50 - conv_p50:.1f} ms"
    )


if __name__ == "__main__":
    main()
