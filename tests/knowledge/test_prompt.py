"""RetrieveAndGenerate's prompt: Bedrock's placeholders filled in, the parts marked for guardrails, earlier turns
before the question."""

from __future__ import annotations

import pytest

from outcrop.conversation import Text
from outcrop.errors import InvalidRequest
from outcrop.knowledge import prompt


def test_default_template() -> None:
    (message,) = prompt.build(None, "How tall is it?", ["It is 54 metres tall.", "It was built in 1904."])
    assert message.role == "user"
    assert "[1] It is 54 metres tall.\n\n[2] It was built in 1904." in message.text
    assert prompt.FORMAT_INSTRUCTIONS in message.text and message.text.endswith("Question: How tall is it?")
    marked = {p.text: p.qualifiers for p in message.parts if isinstance(p, Text) and p.qualifiers}
    assert marked == {"[1] It is 54 metres tall.\n\n[2] It was built in 1904.": ("grounding_source",),
                      "How tall is it?": ("guard_content", "query")}  # fmt: skip


def test_template_without_query_gets_the_question_after_it_and_no_citing_instructions() -> None:
    history = [("How tall is it?", "54 metres."), ("When was it built?", "In 1904.")]
    messages = prompt.build("Use these:\n$search_results$", "Who built it?", ["Built by Trinity House."], history)
    assert [m.role for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert [m.text for m in messages[:4]] == ["How tall is it?", "54 metres.", "When was it built?", "In 1904."]
    assert messages[-1].text == "Use these:\n[1] Built by Trinity House.\n\nWho built it?"
    assert not prompt.asks_for_citations("Use these:\n$search_results$")


def test_template_must_hold_search_results() -> None:
    with pytest.raises(InvalidRequest, match=r"\$search_results\$"):
        prompt.build("Answer: $query$", "q", ["p"])
    assert prompt.search_results([]) == "(no search results)"
