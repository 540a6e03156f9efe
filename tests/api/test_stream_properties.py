"""Property tests of the server-sent events the OpenAI and Anthropic dialects stream: whatever text, tool
input, model name or error message an event carries comes back exactly through the official SDKs' own
SSE decoders and through a strict reading of the specification, however the bytes are split into chunks.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator

import pytest
from anthropic._streaming import SSEDecoder as AnthropicSSEDecoder
from hypothesis import example, given, settings
from hypothesis import strategies as st
from openai._streaming import SSEDecoder as OpenAISSEDecoder

from outcrop import errors
from outcrop.api.anthropic import convert as anthropic_convert
from outcrop.api.openai import convert as openai_convert
from outcrop.conversation import (
    BlockStop,
    Event,
    MessageStart,
    MessageStop,
    StopReason,
    TextDelta,
    ToolUseDelta,
    ToolUseStart,
    Usage,
)

SETTINGS = settings(max_examples=60, deadline=None, database=None)

# (event name, data) pairs, as a client reads them from the bytes
Parsed = list[tuple[str | None, str]]


def _spec(chunks: list[bytes]) -> Parsed:
    """The event-stream interpretation of the HTML specification, strictly: UTF-8 (a decoding error fails the
    test), lines end in CRLF, LF or CR, an event ends at a blank line, and our streams use no fields but
    `event` and `data`."""
    text = b"".join(chunks).decode("utf-8").removeprefix("\ufeff")
    out: Parsed = []
    name: str | None = None
    data: list[str] = []
    for line in re.split(r"\r\n|\r|\n", text):
        if not line:
            if data:
                out.append((name, "\n".join(data)))
            name, data = None, []
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        assert field in ("event", "data"), line
        if field == "event":
            name = value
        else:
            data.append(value)
    assert not data and name is None, "the stream ends inside an event"
    return out


def _openai_sdk(chunks: list[bytes]) -> Parsed:
    return [(e.event, e.data) for e in OpenAISSEDecoder().iter_bytes(iter(chunks))]


def _anthropic_sdk(chunks: list[bytes]) -> Parsed:
    return [(e.event, e.data) for e in AnthropicSSEDecoder().iter_bytes(iter(chunks))]


DECODERS: dict[str, Callable[[list[bytes]], Parsed]] = {
    "spec": _spec,
    "openai-sdk": _openai_sdk,
    "anthropic-sdk": _anthropic_sdk,
}

# Text with what could break a line-based format: line ends of every kind, Unicode line separators (which
# JSON leaves unescaped), NUL, a byte-order mark, and what looks like SSE fields.
TRICKY = st.text(alphabet='\r\n\u2028\u2029\x85\x0b\x0c\x00\ufeff :data:event{}[]"\\\U0001f600é', max_size=20)
TEXT = st.text(max_size=40) | TRICKY | st.sampled_from(["", "[DONE]", "data: [DONE]\n\n", "\r\n\r\n", "\n", "\r"])
CUTS = st.lists(st.integers(min_value=0), max_size=12)
USAGE = Usage(input_tokens=3, output_tokens=2)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    at = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(at)]


def _events(texts: list[str], tool: tuple[str, str, list[str]]) -> Iterator[Event]:
    tool_id, name, pieces = tool
    yield MessageStart(input_tokens=3)
    yield from (TextDelta(0, t) for t in texts)
    yield BlockStop(0)
    yield ToolUseStart(1, tool_id, name)
    yield from (ToolUseDelta(1, p) for p in pieces)
    yield BlockStop(1)
    yield MessageStop(StopReason.TOOL_USE, USAGE)


TOOL = st.tuples(TEXT, TEXT, st.lists(TEXT, max_size=4))


@pytest.mark.parametrize("decoder", sorted(DECODERS))
@SETTINGS
@example(model="m", texts=["a\r\nb", "\u2028", ""], tool=("\r", "\n", ['{"a": "\r"}']), include_usage=True, cuts=[1])
@given(model=TEXT, texts=st.lists(TEXT, max_size=6), tool=TOOL, include_usage=st.booleans(), cuts=CUTS)
def test_openai_chat_chunks_give_back_exactly_what_went_in(
    decoder: str, model: str, texts: list[str], tool: tuple[str, str, list[str]], include_usage: bool, cuts: list[int]
) -> None:
    encode = openai_convert.ChatStream(model, include_usage)
    data = b"".join(frame for e in _events(texts, tool) for frame in encode(e)) + openai_convert.DONE
    parsed = DECODERS[decoder](_split(data, cuts))
    assert parsed[-1] == (None, "[DONE]")
    chunks = [json.loads(d) for _, d in parsed[:-1]]
    assert all(c["model"] == model and c["object"] == "chat.completion.chunk" for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": "", "refusal": None}
    assert [d["content"] for d in deltas[1:] if "content" in d] == texts
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert (calls[0]["id"], calls[0]["function"]["name"]) == tool[:2]
    assert [c["function"]["arguments"] for c in calls[1:]] == tool[2]
    assert (chunks[-1].get("usage") or {}).get("completion_tokens") == (2 if include_usage else None)


@pytest.mark.parametrize("decoder", sorted(DECODERS))
@SETTINGS
@given(model=TEXT, texts=st.lists(TEXT, max_size=6), cuts=CUTS)
def test_openai_completion_chunks_give_back_exactly_the_text(
    decoder: str, model: str, texts: list[str], cuts: list[int]
) -> None:
    encode = openai_convert.CompletionStream(model, include_usage=False)
    events = [MessageStart(3), *(TextDelta(0, t) for t in texts), MessageStop(StopReason.END_TURN, USAGE)]
    data = b"".join(frame for e in events for frame in encode(e)) + openai_convert.DONE
    parsed = DECODERS[decoder](_split(data, cuts))
    assert [json.loads(d)["choices"][0]["text"] for _, d in parsed[:-1]] == [*texts, ""]


@pytest.mark.parametrize("decoder", sorted(DECODERS))
@SETTINGS
@example(model="m", texts=["a\r\nb", "\u2028", ""], tool=("\r", "\n", ['{"a": "\r"}']), cuts=[1])
@given(model=TEXT, texts=st.lists(TEXT, max_size=6), tool=TOOL, cuts=CUTS)
def test_anthropic_events_give_back_exactly_what_went_in(
    decoder: str, model: str, texts: list[str], tool: tuple[str, str, list[str]], cuts: list[int]
) -> None:
    encode = anthropic_convert.StreamEncoder(model)
    data = b"".join(frame for e in _events(texts, tool) for frame in encode(e))
    parsed = DECODERS[decoder](_split(data, cuts))
    objs = [json.loads(d) for _, d in parsed]
    assert [name for name, _ in parsed] == [o["type"] for o in objs]  # the SDK dispatches on the event name
    assert objs[0]["message"]["model"] == model
    deltas = [o["delta"] for o in objs if o["type"] == "content_block_delta"]
    assert [d["text"] for d in deltas if d["type"] == "text_delta"] == texts
    assert [d["partial_json"] for d in deltas if d["type"] == "input_json_delta"] == tool[2]
    [tool_block] = [o["content_block"] for o in objs if o["type"] == "content_block_start" and o["index"] == 1]
    assert (tool_block["id"], tool_block["name"]) == tool[:2]
    assert [o["type"] for o in objs[-2:]] == ["message_delta", "message_stop"]


ERRORS = [errors.InvalidRequest, errors.Overloaded, errors.QuotaExceeded, errors.ModelFailure, errors.InternalFailure]


@pytest.mark.parametrize("decoder", sorted(DECODERS))
@SETTINGS
@given(cls=st.sampled_from(ERRORS), message=TEXT, cuts=CUTS)
def test_stream_errors_give_back_exactly_the_message(
    decoder: str, cls: type[errors.OutcropError], message: str, cuts: list[int]
) -> None:
    [(_, openai_data)] = DECODERS[decoder](_split(openai_convert.encode_stream_error(cls(message)), cuts))
    assert json.loads(openai_data)["error"]["message"] == message
    [(name, anthropic_data)] = DECODERS[decoder](_split(anthropic_convert.encode_stream_error(cls(message)), cuts))
    assert name == "error" and json.loads(anthropic_data) == {"type": "error", "error": {
        "type": json.loads(anthropic_data)["error"]["type"], "message": message}}  # fmt: skip
