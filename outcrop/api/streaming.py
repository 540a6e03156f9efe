"""One way to stream an event stream to a client, for every dialect.

The dialect supplies how events become bytes, how an error becomes its in-stream error, and what
closes the stream. Whatever happens (the client goes away, the engine fails), the engine's stream
is closed, which stops generation and frees the model's slot.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from starlette.responses import StreamingResponse

from outcrop import errors
from outcrop.conversation import Event
from outcrop.inference import Stream

log = logging.getLogger("outcrop.streaming")


def event_response(
    stream: Stream,
    frames: Callable[[Event], list[bytes]],
    on_error: Callable[[errors.OutcropError], bytes],
    media_type: str,
    headers: dict[str, str] | None = None,
    closing: bytes = b"",
) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        try:
            async for event in stream:
                for frame in frames(event):
                    yield frame
            if closing:
                yield closing
        except errors.OutcropError as exc:
            yield on_error(exc)
        except Exception as exc:
            yield on_error(errors.model_failure("The stream failed", exc, log))
        finally:
            await stream.aclose()

    return StreamingResponse(body(), media_type=media_type, headers=headers)
