"""What the Knowledge bases page's test panel shows of Retrieve's and RetrieveAndGenerate's answers: their wire
bodies (bedrock-agent-runtime's, as the API gives them) read into ranked results and an answer cut into segments,
each cited segment pointing at the numbered chunks it cites. Pure: wire dicts in, plain dicts out (JSON for the
page's script)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from outcrop.knowledge.retrieval import CHUNK_ID, source_uri


def location(raw: Mapping[str, Any]) -> str:
    """A RetrievalResultLocation in a few words: its URI or URL, else the custom document's id, else its type."""
    uri = source_uri(raw)
    if uri:
        return uri
    custom = raw.get("customDocumentLocation") or {}
    if custom.get("id"):
        return f"document {custom['id']}"
    return str(raw.get("type") or "unknown")


def _chunk(reference: Mapping[str, Any]) -> dict[str, Any]:
    metadata = dict(reference.get("metadata") or {})
    shown = {k: v for k, v in metadata.items() if not str(k).startswith("x-amz-bedrock-kb-")}
    return {"text": (reference.get("content") or {}).get("text", ""),
            "location": location(reference.get("location") or {}),
            "chunk": str(metadata.get(CHUNK_ID, "")), "metadata": shown}  # fmt: skip


def results(wire: Mapping[str, Any]) -> dict[str, Any]:
    """Retrieve's answer as ranked results: rank, score, text, source location."""
    ranked = []
    for rank, r in enumerate(wire.get("retrievalResults") or (), 1):
        ranked.append({"rank": rank, "score": r.get("score"), **_chunk(r)})
    return {"results": ranked, "guardrail": wire.get("guardrailAction")}


def answer(wire: Mapping[str, Any]) -> dict[str, Any]:
    """RetrieveAndGenerate's answer cut into segments in order: plain text, or a cited span with the numbers of
    the chunks it cites (`sources`, numbered from 1 in the order they are first cited; one chunk cited twice has
    one number). A span's `end` is inclusive on the wire (api/bedrock_agent_runtime/convert.py)."""
    text = str((wire.get("output") or {}).get("text", ""))
    sources: list[dict[str, Any]] = []
    numbers: dict[tuple[str, str, str], int] = {}
    spans: list[tuple[int, int, list[int]]] = []
    for citation in wire.get("citations") or ():
        part = (citation.get("generatedResponsePart") or {}).get("textResponsePart") or {}
        span = part.get("span") or {}
        refs = []
        for reference in citation.get("retrievedReferences") or ():
            chunk = _chunk(reference)
            key = (chunk["chunk"], chunk["location"], chunk["text"])
            if key not in numbers:
                sources.append({"number": len(sources) + 1, **chunk})
                numbers[key] = len(sources)
            refs.append(numbers[key])
        if refs and "start" in span and "end" in span:
            spans.append((int(span["start"]), int(span["end"]) + 1, refs))
    segments: list[dict[str, Any]] = []
    at = 0
    for start, end, refs in sorted(spans):
        start, end = max(start, at), min(end, len(text))
        if start >= end:
            continue
        if start > at:
            segments.append({"text": text[at:start], "refs": []})
        segments.append({"text": text[start:end], "refs": refs})
        at = end
    if at < len(text):
        segments.append({"text": text[at:], "refs": []})
    return {"text": text, "segments": segments, "sources": sources, "sessionId": wire.get("sessionId"),
            "guardrail": wire.get("guardrailAction")}  # fmt: skip
