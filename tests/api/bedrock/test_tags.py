"""InvokeModel input tags (api/bedrock/tags.py): what they mark, what the model sees, what is refused."""

from __future__ import annotations

import pytest

from outcrop import errors
from outcrop.api.bedrock import tags
from outcrop.conversation import ChatRequest, Message, Text, ToolUse

OPEN, CLOSE = "<amazon-bedrock-guardrails-guardContent_x1>", "</amazon-bedrock-guardrails-guardContent_x1>"


def test_split_takes_the_tags_out_and_marks_what_they_enclose() -> None:
    assert tags.split(f"Context. {OPEN}Question?{CLOSE} More {OPEN}two{CLOSE}", "x1") == [
        ("Context. ", False),
        ("Question?", True),
        (" More ", False),
        ("two", True),
    ]
    assert tags.split("no tags here", "x1") is None
    # another suffix is plain text (a user cannot close the caller's tag without knowing its suffix)
    other = "<amazon-bedrock-guardrails-guardContent_zz>hi</amazon-bedrock-guardrails-guardContent_zz>"
    assert tags.split(other, "x1") is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (f"{OPEN}never closed", "never closed"),
        (f"stray {CLOSE}", "without a matching"),
        (f"{OPEN}a {OPEN}b{CLOSE} c{CLOSE}", "nested"),
    ],
)
def test_malformed_tags_are_refused(text: str, says: str) -> None:
    with pytest.raises(errors.InvalidRequest, match=says):
        tags.split(text, "x1")


@pytest.mark.parametrize("suffix", ["", "a-b", "x" * 21, 7, None])
def test_suffix_must_be_short_and_alphanumeric(suffix: object) -> None:
    with pytest.raises(errors.InvalidRequest, match="tagSuffix"):
        tags.check_suffix(suffix)
    assert tags.check_suffix("abc123") == "abc123"


def test_apply_marks_message_parts_and_keeps_the_text_the_model_reads() -> None:
    tool = ToolUse("t1", "lookup", {})
    request = ChatRequest(
        model="m",
        system=f"Be brief. {OPEN}sys part{CLOSE}",
        messages=(
            Message("user", (Text("earlier turn"),)),
            Message("assistant", (tool,)),
            Message("user", (Text(f"Docs: ... Question: {OPEN}What is it?{CLOSE}"),)),
        ),
    )
    out = tags.apply(request, "x1")
    assert out.system == "Be brief. sys part"
    assert out.guarded_system == (Text("sys part", ("guard_content",)),)
    assert out.messages[0] == request.messages[0] and out.messages[1] == request.messages[1]
    assert out.messages[2].parts == (Text("Docs: ... Question: "), Text("What is it?", ("guard_content",)))
    assert out.messages[2].text == "Docs: ... Question: What is it?"


def test_apply_to_a_raw_prompt() -> None:
    out = tags.apply(ChatRequest(model="m", prompt=f"[INST] rules {OPEN}user says{CLOSE} [/INST]"), "x1")
    assert out.prompt == "[INST] rules user says [/INST]" and out.guarded_prompt == ((13, 22),)
    assert out.prompt[13:22] == "user says"
    same = ChatRequest(model="m", prompt="untagged")
    assert tags.apply(same, "x1") == same
