"""Input tags: the parts of an InvokeModel prompt that a guardrail checks.

Bedrock lets an InvokeModel caller mark what a guardrail should evaluate inside a prompt that also
carries trusted text (instructions, retrieved documents, earlier turns):

    <amazon-bedrock-guardrails-guardContent_xyz>How many objects?</amazon-bedrock-guardrails-guardContent_xyz>

with the suffix named in the body, `"amazon-bedrock-guardrailConfig": {"tagSuffix": "xyz"}` (a
suffix chosen per request keeps a user from closing the tag in their own text). When the text has
such tags, only what they enclose is checked on input; text without them is checked whole, as
before. The tags are taken out before the model sees the text. Tags with another suffix are plain
text. An opening tag with no closing one, a closing tag with no opening one, or tags inside tags
are refused (ValidationException) rather than guessed at. Only input is tagged: the model's answer
is always checked whole.

`apply` works on the canonical request: a message's text part with tags becomes several parts, the
tagged ones marked `guard_content` (the engine joins a message's parts without separators, so the
model reads the same text, minus the tags); tags in the system prompt or a raw prompt leave the
text untagged in place and list the tagged pieces in `guarded_system` (as text) or `guarded_prompt` (as
spans of the prompt, so that masking changes exactly the tagged occurrence).
"""

from __future__ import annotations

import re
from dataclasses import replace

from outcrop import errors
from outcrop.conversation import ChatRequest, Message, Part, Text

PREFIX = "amazon-bedrock-guardrails-guardContent_"
_SUFFIX = re.compile(r"[A-Za-z0-9]{1,20}")
GUARD = ("guard_content",)


def check_suffix(value: object) -> str:
    if not isinstance(value, str) or not _SUFFIX.fullmatch(value):
        raise errors.InvalidRequest(
            "amazon-bedrock-guardrailConfig.tagSuffix must be 1 to 20 letters or digits, "
            f"as in <{PREFIX}abc123>; got {value!r}."
        )
    return value


def split(text: str, suffix: str) -> list[tuple[str, bool]] | None:
    """`text` as (piece, tagged) pairs with the tags taken out, or None when it has no tags."""
    opening, closing = f"<{PREFIX}{suffix}>", f"</{PREFIX}{suffix}>"
    if opening not in text and closing not in text:
        return None
    pieces: list[tuple[str, bool]] = []
    rest = text
    while rest:
        start = rest.find(opening)
        stray = rest.find(closing)
        if stray != -1 and (start == -1 or stray < start):
            raise errors.InvalidRequest(f"The input has {closing} without a matching {opening}.")
        if start == -1:
            pieces.append((rest, False))
            break
        end = rest.find(closing, start + len(opening))
        if end == -1:
            raise errors.InvalidRequest(f"The input has {opening} that is never closed with {closing}.")
        inner = rest[start + len(opening) : end]
        if opening in inner:
            raise errors.InvalidRequest(f"Input tags cannot be nested: {opening} inside another.")
        if start:
            pieces.append((rest[:start], False))
        pieces.append((inner, True))
        rest = rest[end + len(closing) :]
    return pieces


def _parts(part: Part, suffix: str) -> list[Part]:
    if not isinstance(part, Text):
        return [part]
    pieces = split(part.text, suffix)
    if pieces is None:
        return [part]
    return [Text(p, GUARD if tagged else part.qualifiers) for p, tagged in pieces if p or tagged]


def _untagged(text: str, suffix: str) -> tuple[str, tuple[str, ...], tuple[tuple[int, int], ...]]:
    """The text without its tags, the tagged pieces, and their (start, end) spans in that text."""
    pieces = split(text, suffix)
    if pieces is None:
        return text, (), ()
    spans: list[tuple[int, int]] = []
    at = 0
    for piece, tagged in pieces:
        if tagged:
            spans.append((at, at + len(piece)))
        at += len(piece)
    return "".join(p for p, _ in pieces), tuple(p for p, tagged in pieces if tagged), tuple(spans)


def apply(request: ChatRequest, suffix: str) -> ChatRequest:
    """The request with its input tags taken out and what they enclose marked for the guardrail."""
    messages = tuple(Message(m.role, tuple(q for p in m.parts for q in _parts(p, suffix))) for m in request.messages)
    system, guarded_system, _ = _untagged(request.system, suffix)
    out = replace(
        request,
        messages=messages,
        system=system,
        guarded_system=request.guarded_system + tuple(Text(t, GUARD) for t in guarded_system),
    )
    if request.prompt is not None:
        prompt, _, spans = _untagged(request.prompt, suffix)
        out = replace(out, prompt=prompt, guarded_prompt=spans)
    return out
