"""The HTTP server around the app: uvicorn's HTTP/1.1 protocol with the limits a server on a network needs.

- A client has `header_timeout_s` to send its request line and headers, on a new connection and before each
  further request on a kept-alive one: a slowloris connection is dropped, holding nothing (a model slot is
  only taken once a whole request has been read and checked).
- Headers larger than `max_header_kib` are refused with 431, and a request that is not HTTP at all with 400, in
  the envelope of the API its path names (uvicorn's own answer is a plain-text 400).
- An idle kept-alive connection is closed after `keep_alive_s`; on SIGTERM, answers in flight get
  `shutdown_grace_s` to finish.
The body's own pace (`body_timeout_s`) and size are watched by the app, which knows the dialect.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from outcrop import errors
from outcrop.api.app import App

log = logging.getLogger("outcrop")

_PREFIX = 2048  # the first bytes of a request head are kept to name the path of a request refused as a whole


def protocol(app: App) -> type[H11Protocol]:
    settings = app.context.settings
    header_limit = settings.max_header_kib * 1024

    class Protocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None
        _head = b""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self.conn.their_state is h11.IDLE and len(self._head) < _PREFIX:
                self._head += data[: _PREFIX - len(self._head)]
            super().data_received(data)
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self._arm()  # a request head is (still) on its way
            else:
                self._disarm()
                self._head = b""

        def on_response_complete(self) -> None:
            super().on_response_complete()  # arms the keep-alive timer for the next request, if any
            self._head = b""

        def _arm(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(settings.header_timeout_s, self._too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _too_slow(self) -> None:
            self._head_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                if self._head:  # (a connection that sent nothing at all is just closed)
                    log.info("dropped a connection that took over %ss to send its request head",
                             settings.header_timeout_s)  # fmt: skip
                self.transport.close()

        def send_400_response(self, msg: str) -> None:
            path = _path(self._head)
            error: errors.OutcropError
            if self.conn.their_state is h11.IDLE and _incomplete_head(self._head, header_limit):
                error = errors.HeadersTooLarge(
                    f"The request's headers are larger than this server takes ({settings.max_header_kib} KiB; "
                    "max_header_kib under [server] sets it)."
                )
            else:
                error = errors.InvalidRequest("The request is not valid HTTP/1.1.")
            response = app.encoders[app.dialect_for(path)](error)
            headers = [*response.raw_headers, (b"connection", b"close")]
            try:
                self.transport.write(self.conn.send(h11.Response(status_code=response.status_code, headers=headers)))
                self.transport.write(self.conn.send(h11.Data(data=bytes(response.body))))
                self.transport.write(self.conn.send(h11.EndOfMessage()))
            except h11.LocalProtocolError:  # h11 is past answering on this connection
                pass
            self.transport.close()

    return Protocol


def _path(head: bytes) -> str:
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    return parts[1].decode("latin-1").split("?", 1)[0] if len(parts) >= 2 else "/"


def _incomplete_head(head: bytes, limit: int) -> bool:
    """A head that has not ended within the bytes kept: it ran over the limit (not a malformed short one)."""
    return b"\r\n\r\n" not in head and len(head) >= min(limit, _PREFIX)


def config(app: App, host: str, port: int, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for `app`: the protocol above and the server's timeouts."""
    settings = app.context.settings
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol(app),
        timeout_keep_alive=settings.keep_alive_s,  # type: ignore[arg-type]  # typed int, used as seconds
        timeout_graceful_shutdown=settings.shutdown_grace_s,  # type: ignore[arg-type]
        h11_max_incomplete_event_size=settings.max_header_kib * 1024,
        access_log=False,
        **options,
    )
