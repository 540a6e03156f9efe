"""AWS event-stream framing (application/vnd.amazon.eventstream), as botocore/eventstream.py decodes it.

    uint32 total_length | uint32 headers_length | uint32 prelude_crc | headers | payload | uint32 message_crc

All integers big-endian; CRC32 is zlib's. Bedrock only uses string headers (type 7).
"""

from __future__ import annotations

import binascii
import json
import struct
from typing import Any

CONTENT_TYPE = "application/vnd.amazon.eventstream"


def _header(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    return struct.pack("!B", len(n)) + n + b"\x07" + struct.pack("!H", len(v)) + v


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    block = b"".join(_header(k, v) for k, v in headers.items())
    prelude = struct.pack("!II", 16 + len(block) + len(payload), len(block))
    prelude += struct.pack("!I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + block + payload
    return message + struct.pack("!I", binascii.crc32(message) & 0xFFFFFFFF)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def event(kind: str, payload: dict[str, Any]) -> bytes:
    """A normal event: `kind` is the member name of the operation's stream union."""
    return frame(
        {":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
        _dumps(payload),
    )


def exception(kind: str, payload: dict[str, Any]) -> bytes:
    """A modeled in-stream exception: `kind` is its camelCase stream member (throttlingException...)."""
    return frame(
        {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"},
        _dumps(payload),
    )
