"""A small HTTP/1.1 client for the upstream model servers `engine = "openai"` forwards to (vLLM, Ollama,
llama-server, another Outcrop): keep-alive connections in a last-in-first-out pool, each response body
streamed as it arrives, h11 for the protocol itself.

Why not httpx, which the rest of Outcrop uses for the odd outbound call: its connection pool (httpcore)
checks every idle connection for staleness with system calls on every request, which under 16 concurrent
requests was most of the gateway's CPU (benchmarks/gateway_litellm.py). Here a request takes the most
recently returned connection and nothing else is touched.

A connection goes back to the pool only when its response was read to the end; one whose caller stopped
reading (a client that went away) is closed, which is how vLLM and llama-server learn to stop generating.
A request on a reused connection that the server had closed meanwhile is retried once on a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import h11


class UpstreamError(Exception):
    """The upstream could not be reached or broke the protocol (the message says how)."""


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT)

    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()

    async def send(self, request: h11.Request, body: bytes) -> None:
        data = self.h11.send(request) or b""
        data += self.h11.send(h11.Data(data=body)) or b""
        data += self.h11.send(h11.EndOfMessage()) or b""
        self.writer.write(data)
        await self.writer.drain()

    async def event(self, timeout_s: float) -> Any:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await asyncio.wait_for(self.reader.read(65536), timeout_s)
            self.h11.receive_data(data)  # b"" is the end of the stream; h11 then says what it makes of that

    def reusable(self) -> bool:
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class Response:
    def __init__(self, connection: _Connection, status: int, timeout_s: float) -> None:
        self._connection = connection
        self.status = status
        self._timeout_s = timeout_s
        self.complete = False

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            event = await self._connection.event(self._timeout_s)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.complete = True
                return
            elif isinstance(event, h11.ConnectionClosed):
                raise UpstreamError("the upstream closed the connection in the middle of its answer")

    async def lines(self) -> AsyncIterator[str]:
        pending = b""
        async for chunk in self.chunks():
            pending += chunk
            *whole, pending = pending.split(b"\n")
            for line in whole:
                yield line.rstrip(b"\r").decode("utf-8", errors="replace")
        if pending:
            yield pending.decode("utf-8", errors="replace")

    async def read(self) -> bytes:
        return b"".join([c async for c in self.chunks()])


class UpstreamClient:
    def __init__(self, base_url: str, *, headers: dict[str, str] | None = None, timeout_s: float = 600.0,
                 connect_timeout_s: float = 10.0) -> None:  # fmt: skip
        url = urlsplit(base_url.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"an upstream URL must be http:// or https://, not {base_url!r}")
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.tls = ssl.create_default_context() if url.scheme == "https" else None
        self.prefix = url.path
        default_port = (url.scheme == "https" and self.port == 443) or (url.scheme == "http" and self.port == 80)
        name = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address goes in brackets
        host_header = name if default_port else f"{name}:{self.port}"
        accept = "application/json, text/event-stream"
        self.headers = [("Host", host_header), ("User-Agent", "outcrop"), ("Accept", accept), *(headers or {}).items()]
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._idle: list[_Connection] = []

    async def _connect(self) -> _Connection:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, ssl=self.tls, limit=1 << 20), self.connect_timeout_s
            )
        except (OSError, TimeoutError) as exc:
            raise UpstreamError(f"could not connect to {self.host}:{self.port}: {exc or type(exc).__name__}") from exc
        return _Connection(reader, writer)

    def _pooled(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if connection.usable():
                return connection
            connection.close()
        return None

    @contextlib.asynccontextmanager
    async def post_json(self, path: str, body: Any) -> AsyncIterator[Response]:
        """POST `body` as JSON to the base URL's path + `path`; the response's head is read, its body is the
        caller's to read (to the end, for the connection to be reused)."""
        data = json.dumps(body).encode()
        request = h11.Request(method="POST", target=self.prefix + path, headers=[
            *self.headers, ("Content-Type", "application/json"), ("Content-Length", str(len(data)))])  # fmt: skip
        connection = self._pooled()
        reused = connection is not None
        while True:
            if connection is None:
                connection = await self._connect()
            try:
                await connection.send(request, data)
                event = await connection.event(self.timeout_s)
                while isinstance(event, h11.InformationalResponse):
                    event = await connection.event(self.timeout_s)
                if not isinstance(event, h11.Response):
                    raise h11.RemoteProtocolError("the connection closed before an answer", 400)
                break
            except TimeoutError as exc:  # (an OSError too, so first): the upstream is slow, not gone; never resent
                connection.close()
                raise UpstreamError(f"{self.host}:{self.port} did not answer within {self.timeout_s:g} s") from exc
            except (OSError, h11.RemoteProtocolError, asyncio.IncompleteReadError) as exc:
                connection.close()
                if reused:  # a kept-alive connection the server had closed meanwhile: once more, on a new one
                    connection, reused = None, False
                    continue
                raise UpstreamError(f"the request to {self.host}:{self.port} failed: {exc}") from exc
            except BaseException:
                connection.close()
                raise
        response = Response(connection, event.status_code, self.timeout_s)
        try:
            yield response
        except TimeoutError as exc:
            connection.close()
            raise UpstreamError(f"{self.host}:{self.port} stopped answering for {self.timeout_s:g} s") from exc
        except (OSError, h11.RemoteProtocolError) as exc:
            connection.close()
            raise UpstreamError(f"the answer from {self.host}:{self.port} broke off: {exc}") from exc
        except BaseException:
            self._release(connection, response)  # an error answer read to the end keeps its connection
            raise
        self._release(connection, response)

    def _release(self, connection: _Connection, response: Response) -> None:
        if response.complete and connection.reusable():
            connection.h11.start_next_cycle()
            self._idle.append(connection)
        else:
            connection.close()

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop().close()
