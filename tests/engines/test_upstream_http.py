"""engines.upstream_http and the upstream engine against a fake OpenAI-compatible server written for the test:
chunked SSE, kept-alive connections reused, a stale one retried, a caller that goes away closing the
upstream connection (how vLLM learns to stop), usage with cached tokens, tool calls, errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from outcrop import errors
from outcrop.conversation import (
    ChatRequest,
    Message,
    MessageStop,
    Sampling,
    Text,
    TextDelta,
    ToolUseDelta,
    ToolUseStart,
)
from outcrop.engines.openai_upstream import OpenAIUpstreamEngine
from outcrop.engines.upstream_http import UpstreamClient, UpstreamError


def sse(*chunks: dict[str, Any]) -> list[bytes]:
    return [b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]


def delta(**d: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": d, "finish_reason": None}]}


class Fake:
    """One HTTP/1.1 server: `answer(body)` gives the pieces of a chunked response; it records each request,
    counts connections, notices clients that hang up, and can close idle connections."""

    def __init__(self, answer: Callable[[dict[str, Any]], list[bytes]], *, status: int = 200,
                 delay_s: float = 0.0, close_after: int = 0) -> None:  # fmt: skip
        self.answer, self.status, self.delay_s, self.close_after = answer, status, delay_s, close_after
        self.head_delay_s = 0.0
        self.requests: list[dict[str, Any]] = []
        self.connections = 0
        self.hung_up = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")
                )
                body = json.loads(await reader.readexactly(length))
                self.requests.append(body)
                await asyncio.sleep(self.head_delay_s)
                writer.write(f"HTTP/1.1 {self.status} X\r\nContent-Type: text/event-stream\r\n"
                             "Transfer-Encoding: chunked\r\n\r\n".encode())  # fmt: skip
                for piece in self.answer(body):
                    writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    await writer.drain()
                    if self.delay_s:
                        await asyncio.sleep(self.delay_s)
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                served += 1
                if self.close_after and served >= self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            self.hung_up.set()
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def hello(**sampling: Any) -> ChatRequest:
    return ChatRequest(model="m", messages=(Message("user", (Text("Hello"),)),), sampling=Sampling(**sampling))


async def events(engine: OpenAIUpstreamEngine, request: ChatRequest) -> list[Any]:
    return [e async for e in engine.stream(request)]


TEXT = sse(delta(role="assistant", content="Hi"), delta(content=" there"),
           {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
           {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 2,
                                     "prompt_tokens_details": {"cached_tokens": 8}}})  # fmt: skip


def test_text_usage_and_cached_tokens_pass_through_and_connections_are_reused() -> None:
    async def main() -> None:
        fake = Fake(lambda body: TEXT)
        async with fake as url:
            engine = OpenAIUpstreamEngine(url, model="up", max_tokens=77)
            for _ in range(3):
                out = await events(engine, hello(temperature=0))
                assert "".join(e.text for e in out if isinstance(e, TextDelta)) == "Hi there"
                stop = out[-1]
                assert isinstance(stop, MessageStop)
                assert (stop.usage.input_tokens, stop.usage.output_tokens, stop.usage.cache_read_tokens) == (12, 2, 8)
            assert fake.connections == 1  # one kept-alive connection for all three
            body = fake.requests[0]
            assert body["model"] == "up" and body["stream"] is True and body["max_tokens"] == 77  # the default
            assert body["messages"] == [{"role": "user", "content": "Hello"}] and body["temperature"] == 0
            await engine.close()

    run(main())


def test_tool_calls_come_back_as_tool_use_blocks() -> None:
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    answer = sse(delta(role="assistant", tool_calls=[call]),
                 delta(tool_calls=[{"index": 0, "function": {"arguments": '{"city": '}}]),
                 delta(tool_calls=[{"index": 0, "function": {"arguments": '"Paris"}'}}]),
                 {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})  # fmt: skip

    async def main() -> None:
        async with Fake(lambda body: answer) as url:
            engine = OpenAIUpstreamEngine(url, model="up")
            out = await events(engine, hello())
            start = next(e for e in out if isinstance(e, ToolUseStart))
            args = "".join(e.partial_json for e in out if isinstance(e, ToolUseDelta))
            assert (start.id, start.name, json.loads(args)) == ("call_1", "get_weather", {"city": "Paris"})
            assert str(out[-1].stop_reason) == "tool_use"
            await engine.close()

    run(main())


def test_a_caller_that_goes_away_closes_the_upstream_connection() -> None:
    long = sse(*[delta(content=f"w{i} ") for i in range(200)])

    async def main() -> None:
        fake = Fake(lambda body: long, delay_s=0.01)
        async with fake as url:
            engine = OpenAIUpstreamEngine(url, model="up")
            stream = engine.stream(hello())
            seen = 0
            async for event in stream:
                seen += isinstance(event, TextDelta)
                if seen == 3:
                    break
            await stream.aclose()
            await asyncio.wait_for(fake.hung_up.wait(), 5)  # the upstream saw the connection go
            assert engine.stats().cancelled == 1 and engine.stats().in_flight == 0
            out = await events(engine, hello())  # and the next request gets a fresh connection
            assert sum(isinstance(e, TextDelta) for e in out) == 200 and fake.connections == 2
            await engine.close()

    run(main())


def test_a_kept_alive_connection_the_server_closed_is_retried_once() -> None:
    async def main() -> None:
        fake = Fake(lambda body: TEXT, close_after=1)
        async with fake as url:
            client = UpstreamClient(url)
            for _ in range(3):
                async with client.post_json("/chat/completions", {"stream": True}) as r:
                    assert r.status == 200 and "[DONE]" in "".join([line async for line in r.lines()])
                await asyncio.sleep(0.05)  # let the server's close arrive
            assert fake.connections == 3
            await client.aclose()

    run(main())


def test_errors_become_ours() -> None:
    async def main() -> None:
        async with Fake(lambda body: [b'{"error": {"message": "no such model"}}'], status=404) as url:
            with pytest.raises(errors.NotFound, match="no such model"):
                await events(OpenAIUpstreamEngine(url, model="up"), hello())
        async with Fake(lambda body: [b'{"error": {"message": "busy"}}'], status=503) as url:
            with pytest.raises(errors.Overloaded, match="busy"):
                await events(OpenAIUpstreamEngine(url, model="up"), hello())
        down = UpstreamClient("http://127.0.0.1:9/v1", connect_timeout_s=2)
        with pytest.raises(UpstreamError, match="could not connect"):
            async with down.post_json("/chat/completions", {}):
                pass
        with pytest.raises(errors.ModelFailure, match="Could not reach"):
            await events(OpenAIUpstreamEngine("http://127.0.0.1:9/v1", model="up"), hello())

    run(main())


def test_upstream_urls_must_be_http() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        UpstreamClient("ftp://example.com/v1")


def test_a_slow_upstream_times_out_once_and_is_not_sent_the_request_again() -> None:
    async def main() -> None:
        fake = Fake(lambda body: TEXT)
        async with fake as url:
            client = UpstreamClient(url, timeout_s=0.3)
            async with client.post_json("/chat/completions", {"stream": True}) as r:
                await r.read()  # one kept-alive connection in the pool
            fake.head_delay_s = 1.0  # now the answer's head comes after the timeout, on the kept-alive connection
            with pytest.raises(UpstreamError, match=r"did not answer within 0\.3 s"):
                async with client.post_json("/chat/completions", {"stream": True}) as r:
                    await r.read()
            await asyncio.sleep(1.2)
            assert len(fake.requests) == 2  # not resent on a new connection, as a closed one would be
            fake.head_delay_s, fake.delay_s = 0.0, 1.0  # and a body that stalls
            with pytest.raises(UpstreamError, match=r"stopped answering for 0\.3 s"):
                async with client.post_json("/chat/completions", {"stream": True}) as r:
                    await r.read()
            await client.aclose()

    run(main())


def test_an_error_answer_read_to_the_end_keeps_its_connection() -> None:
    async def main() -> None:
        fake = Fake(lambda body: [b'{"error": {"message": "bad"}}'], status=400)
        async with fake as url:
            engine = OpenAIUpstreamEngine(url, model="up")
            for _ in range(2):
                with pytest.raises(errors.InvalidRequest, match="bad"):
                    await events(engine, hello())
            assert fake.connections == 1
            await engine.close()

    run(main())


def test_ipv6_hosts_go_in_brackets() -> None:
    assert ("Host", "[::1]:8000") in UpstreamClient("http://[::1]:8000/v1").headers
    assert ("Host", "example.com") in UpstreamClient("https://example.com/v1").headers
