"""Which input text a guardrail checks, and masked text put back where it came from (runtime helpers)."""

from __future__ import annotations

from outcrop.api.bedrock import tags
from outcrop.conversation import ChatRequest, Message, Text
from outcrop.guardrails.runtime import _input_texts, _masked

TAG = "<amazon-bedrock-guardrails-guardContent_s1>{}</amazon-bedrock-guardrails-guardContent_s1>"


def test_a_whole_prompt_is_checked_and_masked() -> None:
    request = ChatRequest(model="m", prompt="call 555-0100")
    guarded = _input_texts(request)
    assert guarded.texts == ["call 555-0100"]
    assert _masked(request, guarded, ["call {PHONE}"]).prompt == "call {PHONE}"


def test_masking_a_tagged_span_changes_that_occurrence_only() -> None:
    """The same text outside the tags stays as it is: only the tagged occurrence was checked."""
    request = tags.apply(ChatRequest(model="m", prompt="Paris? or " + TAG.format("Paris?") + " ok"), "s1")
    guarded = _input_texts(request)
    assert guarded.texts == ["Paris?"]
    assert _masked(request, guarded, ["{city}?"]).prompt == "Paris? or {city}? ok"


def test_two_tagged_spans_of_different_lengths() -> None:
    request = tags.apply(ChatRequest(model="m", prompt=TAG.format("a@b.co") + " and " + TAG.format("x")), "s1")
    guarded = _input_texts(request)
    assert guarded.texts == ["a@b.co", "x"]
    assert _masked(request, guarded, ["{EMAIL}", "y"]).prompt == "{EMAIL} and y"


def test_tagged_message_parts_are_the_only_ones_checked() -> None:
    request = tags.apply(
        ChatRequest(model="m", messages=(Message("user", (Text("docs " + TAG.format("question")),)),)), "s1"
    )
    guarded = _input_texts(request)
    assert guarded.texts == ["question"]
    masked = _masked(request, guarded, ["{NAME}"])
    assert masked.messages[0].text == "docs {NAME}"
