"""Our frames, decoded by botocore's own event-stream decoder (the source of truth)."""

from __future__ import annotations

import json

from botocore.eventstream import EventStreamBuffer

from outcrop.api.bedrock import eventstream


def _decode(data: bytes, split: int = 7) -> list:  # type: ignore[type-arg]
    buf = EventStreamBuffer()
    out = []
    for i in range(0, len(data), split):  # messages may straddle HTTP chunks arbitrarily
        buf.add_data(data[i : i + split])
        out.extend(buf)
    return out


def test_event_frames_round_trip() -> None:
    data = eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "héllo"}})
    data += eventstream.event("messageStop", {"stopReason": "end_turn"})
    first, second = _decode(data)
    assert first.headers == {
        ":event-type": "contentBlockDelta",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    assert json.loads(first.payload) == {"contentBlockIndex": 0, "delta": {"text": "héllo"}}
    assert json.loads(second.payload) == {"stopReason": "end_turn"}
    assert first.to_response_dict()["status_code"] == 200


def test_exception_frame() -> None:
    [msg] = _decode(eventstream.exception("throttlingException", {"message": "slow down"}))
    assert msg.headers[":message-type"] == "exception"
    assert msg.headers[":exception-type"] == "throttlingException"
    assert msg.to_response_dict()["status_code"] == 400
    assert json.loads(msg.payload) == {"message": "slow down"}
