"""An instant OpenAI-compatible upstream for gateway benchmarks: answers POST /v1/chat/completions at once
with a fixed two-token answer (JSON, or SSE when the body asks for `stream`), over HTTP/1.1 keep-alive.
Raw asyncio, no framework, so that what a gateway in front of it adds is what gets measured.

    python benchmarks/_instant_upstream.py PORT
"""

from __future__ import annotations

import asyncio
import json
import sys

ANSWER = {
    "id": "chatcmpl-instant",
    "object": "chat.completion",
    "created": 0,
    "model": "instant",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
}
_BASE = {"id": "chatcmpl-instant", "object": "chat.completion.chunk", "created": 0, "model": "instant"}
CHUNKS = [
    {**_BASE, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": None}]},
    {**_BASE, "choices": [{"index": 0, "delta": {"content": " there"}, "finish_reason": None}]},
    {**_BASE, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    {**_BASE, "choices": [], "usage": ANSWER["usage"]},
]
JSON_BODY = json.dumps(ANSWER).encode()
SSE_BODY = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in CHUNKS) + b"data: [DONE]\n\n"
MODELS = json.dumps({"object": "list", "data": [{"id": "instant", "object": "model", "owned_by": "bench"}]}).encode()


def _response(status: str, body: bytes, content_type: str) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            if method == "GET":
                writer.write(_response("200 OK", MODELS, "application/json"))
            elif b'"stream": true' in body or b'"stream":true' in body:
                writer.write(_response("200 OK", SSE_BODY, "text/event-stream"))
            else:
                writer.write(_response("200 OK", JSON_BODY, "application/json"))
            await writer.drain()
            if path == "/quit":
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=512)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
