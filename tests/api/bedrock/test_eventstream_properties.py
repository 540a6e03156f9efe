"""Property tests of the AWS event-stream encoder against botocore, the decoder boto3 users run: whatever
headers and payload a frame carries come back identically, with valid CRCs, however the bytes are split
into HTTP chunks; and Converse / InvokeModel streams parse, through botocore's own service model, into
exactly the text and tool input that went in."""

from __future__ import annotations

import binascii
import itertools
import json
import random
import struct
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.eventstream import EventStream, EventStreamBuffer
from botocore.exceptions import EventStreamError
from botocore.parsers import EventStreamJSONParser
from hypothesis import example, given, settings
from hypothesis import strategies as st

from outcrop import errors
from outcrop.api.bedrock import converse, eventstream, routes
from outcrop.api.bedrock.errors import encode_stream_error
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

SETTINGS = settings(max_examples=100, deadline=None, database=None)

# What the framing allows: a header name is 1-255 UTF-8 bytes, a string value at most 65,535, all headers
# together at most 128 KiB (botocore's limit), the payload at most 24 MiB.
HEADER_NAME = st.text(min_size=1, max_size=40).filter(lambda s: len(s.encode()) <= 255)
HEADER_VALUE = st.text(max_size=200)
HEADERS = st.dictionaries(HEADER_NAME, HEADER_VALUE, max_size=6)
PAYLOAD = st.binary(max_size=2000) | st.text(max_size=500).map(str.encode)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` cut at the given offsets (taken modulo its length), as HTTP chunks may cut it."""
    at = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(at)]


def _decode(chunks: list[bytes]) -> list[Any]:
    buf = EventStreamBuffer()
    out = []
    for chunk in chunks:
        buf.add_data(chunk)
        out.extend(buf)
    return out


def _check_crcs(frame: bytes) -> None:
    total, headers_len, prelude_crc = struct.unpack("!III", frame[:12])
    assert total == len(frame)
    assert prelude_crc == binascii.crc32(frame[:8]) & 0xFFFFFFFF
    assert struct.unpack("!I", frame[-4:])[0] == binascii.crc32(frame[:-4]) & 0xFFFFFFFF
    assert headers_len <= total - 16


@SETTINGS
@given(
    frames=st.lists(st.tuples(HEADERS, PAYLOAD), min_size=1, max_size=4),
    cuts=st.lists(st.integers(min_value=0), max_size=12),
)
def test_frames_round_trip_through_botocore(frames: list[tuple[dict[str, str], bytes]], cuts: list[int]) -> None:
    encoded = [eventstream.frame(h, p) for h, p in frames]
    for frame in encoded:
        _check_crcs(frame)
    messages = _decode(_split(b"".join(encoded), cuts))
    assert [(m.headers, m.payload) for m in messages] == frames


@settings(max_examples=8, deadline=None, database=None)
@example(size=3 * 1024 * 1024, seed=0, cuts=[1, 11, 12, 13, 2**20, 3 * 2**20 + 15])
@given(size=st.integers(min_value=64 * 1024, max_value=3 * 1024 * 1024), seed=st.integers(), cuts=st.lists(st.integers(min_value=0), max_size=20))  # fmt: skip
def test_large_payloads_round_trip(size: int, seed: int, cuts: list[int]) -> None:
    payload = random.Random(seed).randbytes(size)
    frame = eventstream.frame({":event-type": "chunk"}, payload)
    _check_crcs(frame)
    [message] = _decode(_split(frame, cuts))
    assert message.payload == payload


@SETTINGS
@given(kind=st.text(min_size=1, max_size=50), payload=st.dictionaries(st.text(max_size=10), JSON, max_size=5))
def test_events_and_exceptions_carry_any_json(kind: str, payload: dict[str, Any]) -> None:
    event, exception = _decode([eventstream.event(kind, payload) + eventstream.exception(kind, payload)])
    assert event.headers[":event-type"] == kind and event.to_response_dict()["status_code"] == 200
    assert exception.headers[":exception-type"] == kind and exception.to_response_dict()["status_code"] == 400
    assert json.loads(event.payload) == payload == json.loads(exception.payload)


# --- whole streams, parsed the way boto3 parses them -----------------------------------------------------

_MODEL = botocore.session.get_session().get_service_model("bedrock-runtime")


class _Raw:
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    def stream(self) -> Iterator[bytes]:
        yield from self._chunks


def _stream_shape(operation: str) -> Any:
    return _MODEL.operation_model(operation).get_event_stream_output()


def _boto3(operation: str, data: bytes, cuts: list[int]) -> list[dict[str, Any]]:
    return list(EventStream(_Raw(_split(data, cuts)), _stream_shape(operation), EventStreamJSONParser(), operation))


TEXTS = st.lists(st.text(max_size=40), min_size=1, max_size=8)
USAGE = Usage(input_tokens=3, output_tokens=2)


@SETTINGS
@given(
    texts=TEXTS,
    tool=st.tuples(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20), st.lists(st.text(max_size=20))),
    cuts=st.lists(st.integers(min_value=0), max_size=12),
)
def test_converse_stream_gives_back_exactly_the_text(
    texts: list[str], tool: tuple[str, str, list[str]], cuts: list[int]
) -> None:
    tool_id, name, pieces = tool
    events: list[Event] = [MessageStart(input_tokens=3)]
    events += [TextDelta(0, t) for t in texts] + [BlockStop(0), ToolUseStart(1, tool_id, name)]
    events += [ToolUseDelta(1, p) for p in pieces] + [BlockStop(1), MessageStop(StopReason.TOOL_USE, USAGE)]
    data = b"".join(frame for e in events for frame in converse.encode_event(e, 7))
    out = _boto3("ConverseStream", data, cuts)
    deltas = [e["contentBlockDelta"] for e in out if "contentBlockDelta" in e]
    assert [d["delta"]["text"] for d in deltas if d["contentBlockIndex"] == 0] == texts
    assert [d["delta"]["toolUse"]["input"] for d in deltas if d["contentBlockIndex"] == 1] == pieces
    [start] = [e["contentBlockStart"]["start"]["toolUse"] for e in out if "contentBlockStart" in e]
    assert start == {"toolUseId": tool_id, "name": name}
    assert out[-2] == {"messageStop": {"stopReason": "tool_use"}}
    assert out[-1]["metadata"]["usage"]["outputTokens"] == 2


@SETTINGS
@given(chunks=st.lists(st.dictionaries(st.text(max_size=10), JSON, max_size=4), min_size=1, max_size=5),
       cuts=st.lists(st.integers(min_value=0), max_size=12))  # fmt: skip
def test_invoke_stream_chunks_give_back_exactly_the_json(chunks: list[dict[str, Any]], cuts: list[int]) -> None:
    out = _boto3("InvokeModelWithResponseStream", b"".join(routes._chunk(c) for c in chunks), cuts)
    assert [json.loads(e["chunk"]["bytes"]) for e in out] == chunks  # botocore has taken off the base64


ERRORS = [errors.InvalidRequest, errors.Overloaded, errors.QuotaExceeded, errors.ModelFailure,
          errors.InternalFailure, errors.AccessDenied, errors.NotFound, errors.ContextWindowExceeded]  # fmt: skip


@pytest.mark.parametrize("operation", ["ConverseStream", "InvokeModelWithResponseStream"])
@settings(max_examples=40, deadline=None, database=None)
@given(cls=st.sampled_from(ERRORS), message=st.text(min_size=1, max_size=200), cuts=st.lists(st.integers(min_value=0)))
def test_stream_errors_are_modeled_exceptions_with_the_message(
    operation: str, cls: type[errors.OutcropError], message: str, cuts: list[int]
) -> None:
    """Every error mid-stream is an exception member of both stream unions, so boto3 raises it by name."""
    first = converse.encode_event(MessageStart(1), 0)[0] if operation == "ConverseStream" else routes._chunk({})
    data = first + encode_stream_error(cls(message))
    shape = _stream_shape(operation)
    stream = iter(EventStream(_Raw(_split(data, cuts)), shape, EventStreamJSONParser(), operation))
    assert next(stream) is not None
    with pytest.raises(EventStreamError) as raised:
        next(stream)
    code = raised.value.response["Error"]["Code"]
    assert shape.members[code[0].lower() + code[1:]].metadata.get("exception")
    assert raised.value.response["Error"]["Message"] == message
