"""The generation prompt of RetrieveAndGenerate: a prompt template with Bedrock's placeholders, filled in.

    $search_results$                the retrieved passages, numbered [1], [2], ... (required, as on Bedrock)
    $query$                         the caller's question (without it, the question follows the template)
    $output_format_instructions$    how to cite: a [n] after each sentence that uses passage n. Bedrock's rule
                                    holds: a template without it asks for no citation markers (citations are
                                    then attributed by overlap, citations.py)

The filled template is the last user message; earlier turns of the session come before it as plain user and
assistant messages. Its parts are marked for guardrails as Bedrock's knowledge bases mark them: the question is
the guarded content and the query of contextual grounding, the passages are its grounding source; the template's
own words are not checked.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from outcrop.conversation import Message, Text
from outcrop.errors import InvalidRequest

SEARCH_RESULTS = "$search_results$"
QUERY = "$query$"
FORMAT = "$output_format_instructions$"
TEMPLATE_FIELD = "generationConfiguration.promptTemplate.textPromptTemplate"

DEFAULT_TEMPLATE = (
    "You answer a question using only the search results below. If they do not contain the answer, say that you "
    "could not find it. Do not take a claim in the question as true unless the search results support it.\n\n"
    "Search results:\n" + SEARCH_RESULTS + "\n\n" + FORMAT + "\n\nQuestion: " + QUERY
)
FORMAT_INSTRUCTIONS = (
    "Answer in plain sentences. End every sentence that uses a search result with that result's number in square "
    "brackets, like [1], or [1][2] when it uses several. Use only numbers of the search results above."
)
_PLACEHOLDER = re.compile(r"\$(search_results|query|output_format_instructions)\$")


def check_template(template: str, where: str = TEMPLATE_FIELD) -> str:
    if SEARCH_RESULTS not in template:
        raise InvalidRequest(f"{where} must contain the placeholder {SEARCH_RESULTS}, where the search results go.")
    return template


def search_results(passages: Sequence[str]) -> str:
    return "\n\n".join(f"[{i}] {p.strip()}" for i, p in enumerate(passages, start=1)) or "(no search results)"


def asks_for_citations(template: str) -> bool:
    return FORMAT in template


def build(
    template: str | None, question: str, passages: Sequence[str], history: Sequence[tuple[str, str]] = ()
) -> tuple[Message, ...]:
    """The conversation for the model: the session's earlier (question, answer) turns, then the filled template."""
    template = check_template(template) if template is not None else DEFAULT_TEMPLATE
    parts: list[Text] = []
    at = 0
    for m in _PLACEHOLDER.finditer(template):
        if m.start() > at:
            parts.append(Text(template[at : m.start()]))
        name = m.group(1)
        if name == "search_results":
            parts.append(Text(search_results(passages), ("grounding_source",)))
        elif name == "query":
            parts.append(Text(question, ("guard_content", "query")))
        else:
            parts.append(Text(FORMAT_INSTRUCTIONS))
        at = m.end()
    if at < len(template):
        parts.append(Text(template[at:]))
    if QUERY not in template:
        parts += [Text("\n\n"), Text(question, ("guard_content", "query"))]
    turns: list[Message] = []
    for asked, answered in history:
        turns += [Message("user", (Text(asked),)), Message("assistant", (Text(answered),))]
    return (*turns, Message("user", tuple(parts)))
