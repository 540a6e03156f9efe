"""An agent's knowledge-base lookups: the model's `knowledge_base__<id>` call searched as Retrieve searches it
(knowledge.retrieval, with the knowledge base's retrievalConfiguration or the call's
sessionState.knowledgeBaseConfigurations), the passages numbered for the model across the whole turn, and the
answer's `[n]` markers read back as RetrieveAndGenerate's citations (knowledge.citations)."""

from __future__ import annotations

from typing import Any

from outcrop import errors
from outcrop.auth.principal import Principal
from outcrop.knowledge.citations import CitationParser
from outcrop.knowledge.rag import Cited
from outcrop.knowledge.retrieval import Passage, Retrieval, retrieve


def numbered(passages: list[Passage], start: int) -> str:
    """The observation the model reads: the passages numbered from `start` (the turn's earlier ones come first)."""
    if not passages:
        return "No results."
    return "\n".join(f"[{start + i}] {p.text}" for i, p in enumerate(passages))


async def search(knowledge: Any, knowledge_base_id: str, principal: Principal, query: str,
                 config: Retrieval | None) -> list[Passage]:  # fmt: skip
    """`knowledge` is the server's knowledge service (ctx.knowledge); None: a server with no store."""
    if knowledge is None:
        raise errors.InvalidRequest("This server has no store to keep knowledge bases in.")
    page = await retrieve(knowledge, knowledge_base_id, principal, query, config or Retrieval())
    return page.passages


def cite(text: str, passages: list[Passage]) -> tuple[str, tuple[Cited, ...]]:
    """The answer without its markers, and the spans that cite passages."""
    if not passages:
        return text.strip(), ()
    parser = CitationParser(len(passages), [p.text for p in passages])
    clean, done = parser.feed(text)
    rest, more = parser.finish()
    answer = clean + rest
    cited = tuple(Cited(answer[s.start : s.end], s.start, s.end, tuple(passages[r - 1] for r in s.refs))
                  for s in [*done, *more])  # fmt: skip
    return answer, cited
