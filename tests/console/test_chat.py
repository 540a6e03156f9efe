"""The playground's wire format (chat.py) without a server: decoding, and what a guardrail trace becomes."""

from __future__ import annotations

import pytest

from outcrop import errors
from outcrop.console.chat import chat_request, decode, guardrail_summary
from outcrop.conversation import GuardrailTrace, Text


def test_a_request_decodes_to_the_canonical_chat_request() -> None:
    body = decode({"model": "m", "system": "s", "temperature": 0.2, "topP": 0.5, "maxTokens": 9,
                   "messages": [{"role": "user", "text": "a"}, {"role": "assistant", "text": "b"},
                                {"role": "user", "text": "c"}], "guardrail": {"id": "g"}})  # fmt: skip
    chat = chat_request(body)
    assert [(m.role, m.parts) for m in chat.messages] == [("user", (Text("a"),)), ("assistant", (Text("b"),)),
                                                          ("user", (Text("c"),))]  # fmt: skip
    assert (chat.system, chat.sampling.temperature, chat.sampling.top_p, chat.sampling.max_tokens) == ("s", 0.2, 0.5, 9)
    assert [(g.identifier, g.version, g.trace) for g in chat.guardrails] == [("g", "DRAFT", "enabled")]


@pytest.mark.parametrize("bad", [{}, {"model": "m"}, {"model": "", "messages": [{"role": "user", "text": "x"}]},
                                 {"model": "m", "messages": [{"role": "system", "text": "x"}]},
                                 {"model": "m", "messages": [{"role": "user", "text": "x"}], "maxTokens": 0}])  # fmt: skip
def test_bad_requests_are_invalid(bad: dict[str, object]) -> None:
    with pytest.raises(errors.InvalidRequest):
        decode(bad)


def test_a_trace_becomes_the_entries_that_acted_of_every_policy() -> None:
    trace = GuardrailTrace(
        intervened=True,
        input_assessment={"g1": {
            "contentPolicy": {"filters": [{"type": "INSULTS", "confidence": "HIGH", "action": "BLOCKED"},
                                          {"type": "HATE", "confidence": "NONE", "action": "NONE"}]},
            "sensitiveInformationPolicy": {"piiEntities": [{"type": "EMAIL", "match": "a@b.c", "action": "ANONYMIZED"}],
                                           "regexes": []},
            "invocationMetrics": {"guardrailProcessingLatency": 3},
        }},
        output_assessments={"g1": ({"constitutionPolicy": {"rule": "Be kind", "reason": "rude", "action": "BLOCKED"}},)},
        action_reason="Guardrail blocked.",
        trace="enabled",
    )  # fmt: skip
    summary = guardrail_summary(trace)
    assert summary is not None and summary["action"] == "INTERVENED" and summary["reason"] == "Guardrail blocked."
    assert [(f["where"], f["policy"], f["item"], f["action"]) for f in summary["findings"]] == [
        ("input", "contentPolicy", "INSULTS", "BLOCKED"),
        ("input", "sensitiveInformationPolicy", "EMAIL", "ANONYMIZED"),
        ("output", "constitutionPolicy", "Be kind", "BLOCKED"),
    ]
    assert summary["findings"][2]["reason"] == "rude"
    assert guardrail_summary(None) is None
    assert guardrail_summary(GuardrailTrace(intervened=False)) == {"action": "NONE", "reason": None, "findings": []}
