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


# --- COMPREHENSIVE (enforced guardrails) reads everything; SELECTIVE only what was marked ------------


def test_comprehensive_reads_the_whole_prompt_and_keeps_the_tags_in_place() -> None:
    request = tags.apply(ChatRequest(model="m", prompt="Paris and " + TAG.format("Rome") + " too"), "s1")
    assert _input_texts(request, messages="SELECTIVE").texts == ["Rome"]
    whole = _input_texts(request, messages="COMPREHENSIVE")
    assert whole.texts == ["Paris and Rome too"]
    masked = _masked(request, whole, ["{city} and {city} too"])
    assert masked.prompt == "{city} and {city} too" and masked.guarded_prompt == ()  # tag places are gone
    # a SELECTIVE mask keeps the tagged span where the text now is, for a guardrail that runs next
    first = _input_texts(request)
    moved = _masked(request, first, ["Napoli"])
    assert moved.prompt == "Paris and Napoli too" and _input_texts(moved).texts == ["Napoli"]


def test_comprehensive_reads_unmarked_messages_and_the_system_prompt() -> None:
    request = ChatRequest(
        model="m",
        system="You are a pirate. Guarded rule.",
        guarded_system=(Text("Guarded rule."),),
        messages=(Message("user", (Text("not marked"), Text("marked", ("guard_content",)),
                                   Text("the source", ("grounding_source",)))),),
    )  # fmt: skip
    assert _input_texts(request).texts == ["Guarded rule.", "marked"]
    everything = _input_texts(request, system="COMPREHENSIVE", messages="COMPREHENSIVE")
    # every text the model reads, a grounding source too (it could carry anything past the check otherwise)
    assert everything.texts == ["You are a pirate. Guarded rule.", "not marked", "marked", "the source"]
    assert everything.grounding_source == "the source"
    masked = _masked(request, everything, ["You are a {X}. Guarded rule.", "not {Y}", "marked", "the source"])
    assert masked.system == "You are a {X}. Guarded rule." and masked.messages[0].parts[0] == Text("not {Y}")
    # an unmarked conversation: SELECTIVE reads every message but no system prompt, COMPREHENSIVE both
    plain = ChatRequest(model="m", system="sys", messages=(Message("user", (Text("hi"),)),))
    assert _input_texts(plain).texts == ["hi"]
    assert _input_texts(plain, system="COMPREHENSIVE").texts == ["sys", "hi"]


def test_guardrails_in_sequence_see_each_others_masks_in_the_system_prompt() -> None:
    """A second guardrail reads what the first masked, and its own mask reaches the prompt too."""
    request = ChatRequest(model="m", system="Rules. mail bob@x.com", guarded_system=(Text("mail bob@x.com"),),
                          messages=(Message("user", (Text("hi"),)),))  # fmt: skip
    first = _input_texts(request)  # SELECTIVE: the guardContent block
    once = _masked(request, first, ["mail {EMAIL}"])
    assert once.system == "Rules. mail {EMAIL}" and _input_texts(once).texts == ["mail {EMAIL}"]
    twice = _masked(once, _input_texts(once), ["{X} {EMAIL}"])
    assert twice.system == "Rules. {X} {EMAIL}"
    # after a COMPREHENSIVE mask of the whole prompt, a SELECTIVE guardrail reads the whole masked prompt
    whole = _input_texts(request, system="COMPREHENSIVE")
    assert whole.texts == ["Rules. mail bob@x.com"]  # marked: SELECTIVE messages read no unmarked message
    masked = _masked(request, whole, ["{RULES} mail {EMAIL}"])
    assert masked.system == "{RULES} mail {EMAIL}" and _input_texts(masked).texts == ["{RULES} mail {EMAIL}"]
