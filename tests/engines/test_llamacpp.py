"""The llama.cpp engine with continuous batching, on the built-in tiny model (real llama.cpp, in process):
answers beside others equal answers alone, per-sequence sampling, cancellation, context errors, the
prompt cache and cache points, calls on behalf of a request, the default answer length."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from outcrop import errors
from outcrop.conversation import (
    CachePoint,
    ChatRequest,
    Message,
    MessageStart,
    MessageStop,
    ResponseFormat,
    Sampling,
    StopReason,
    Text,
    TextDelta,
    Tool,
    ToolChoice,
    ToolUseDelta,
)
from outcrop.engines.base import Background, background, on_behalf
from outcrop.engines.llamacpp import LlamaCppEngine
from outcrop.engines.llamacpp.prompt_cache import common_prefix
from outcrop.models import BUILTIN_GGUF
from outcrop.models.tiny_script import CASES, COUNT_ANSWER, WEATHER_TOOL, Case

T = TypeVar("T")
TEXT_CASES = [c for c in CASES if not c.tools and c.messages[-1]["role"] == "user"]


def request(case: Case, **sampling: Any) -> ChatRequest:
    system = next((m["content"] for m in case.messages if m["role"] == "system"), "")
    messages = tuple(Message(m["role"], (Text(m["content"]),)) for m in case.messages if m["role"] != "system")
    return ChatRequest(model="m", system=system, messages=messages, sampling=Sampling(temperature=0, **sampling))


def user(text: str, **sampling: Any) -> ChatRequest:
    return ChatRequest(model="m", messages=(Message("user", (Text(text),)),), sampling=Sampling(**sampling))


async def answer(engine: LlamaCppEngine, req: ChatRequest) -> tuple[str, MessageStop]:
    text, stop = [], None
    async for event in engine.stream(req):
        if isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, ToolUseDelta):
            text.append(event.partial_json)
        elif isinstance(event, MessageStop):
            stop = event
    assert stop is not None
    return "".join(text), stop


def with_engine(fn: Callable[[LlamaCppEngine], Awaitable[T]], **kwargs: Any) -> T:
    async def main() -> T:
        engine = LlamaCppEngine(BUILTIN_GGUF, name="tiny", n_ctx=kwargs.pop("n_ctx", 4096), **kwargs)
        try:
            return await fn(engine)
        finally:
            await engine.close()

    return asyncio.run(main())


def test_answers_beside_seven_others_equal_answers_alone() -> None:
    cases = (TEXT_CASES * 2)[:8]

    async def main(engine: LlamaCppEngine) -> None:
        alone = [await answer(engine, request(c)) for c in cases]
        together = await asyncio.gather(*[answer(engine, request(c)) for c in cases])
        for case, (a_text, a_stop), (t_text, t_stop) in zip(cases, alone, together, strict=True):
            assert a_text == t_text == case.answer
            assert a_stop.usage.output_tokens == t_stop.usage.output_tokens
            assert a_stop.usage.input_tokens == t_stop.usage.input_tokens
            assert t_stop.stop_reason == StopReason.END_TURN
        assert engine.stats().in_flight == 0

    with_engine(main, parallel=8)


def test_sampling_settings_stay_with_their_own_sequence() -> None:
    """A grammar, a stop sequence, a token limit and a seeded sample, all in one batch."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    json_req = ChatRequest(model="m", messages=(Message("user", (Text("Describe Paris as JSON."),)),),
                           sampling=Sampling(temperature=0), response_format=ResponseFormat("json_schema", schema))  # fmt: skip
    count = request(next(c for c in CASES if c.name == "count"))
    stopped = request(next(c for c in CASES if c.name == "count"), stop=("five",))
    limited = request(next(c for c in CASES if c.name == "count"), max_tokens=3)
    seeded = user("Tell me anything.", temperature=1.0, seed=42, max_tokens=30)
    penalized = user("Tell me anything.", temperature=0.7, seed=7, max_tokens=30, frequency_penalty=1.5,
                     presence_penalty=0.5)  # fmt: skip
    tool = Tool(WEATHER_TOOL["name"], WEATHER_TOOL["description"], WEATHER_TOOL["input_schema"])
    forced = ChatRequest(model="m", messages=(Message("user", (Text("Hello"),)),), tools=(tool,),
                         tool_choice=ToolChoice("tool", "get_weather"), sampling=Sampling(temperature=0))  # fmt: skip
    reqs = [json_req, count, stopped, limited, seeded, forced, penalized]

    async def main(engine: LlamaCppEngine) -> None:
        alone = [await answer(engine, r) for r in reqs]
        together = await asyncio.gather(*[answer(engine, r) for r in reqs])
        assert [t for t, _ in alone] == [t for t, _ in together]
        (j, _), (c, _), (s, s_stop), (_lim, l_stop), _, (f, f_stop), _ = together
        assert set(json.loads(j)) == {"city"}
        assert c == COUNT_ANSWER
        assert s == "one two three four " and s_stop.stop_reason == StopReason.STOP_SEQUENCE
        assert s_stop.stop_sequence == "five"
        assert l_stop.usage.output_tokens == 3 and l_stop.stop_reason == StopReason.MAX_TOKENS
        assert f_stop.stop_reason == StopReason.TOOL_USE and "city" in f

    with_engine(main, parallel=7)


def test_callers_that_go_away_free_their_slots_and_the_others_finish() -> None:
    long = user("Count from one to twenty.", temperature=0, max_tokens=1500, ignore_eos=True)

    async def main(engine: LlamaCppEngine) -> None:
        async def quit_early(n: int) -> None:
            events = engine.stream(long)
            async for event in events:
                if isinstance(event, TextDelta):
                    n -= 1
                    if n == 0:
                        break
            await events.aclose()

        results = await asyncio.gather(*[answer(engine, long) for _ in range(4)], *[quit_early(5) for _ in range(4)])
        for _, stop in results[:4]:
            assert stop.usage.output_tokens == 1500
        for _ in range(100):  # the worker drops a job at its next step
            if engine.stats().in_flight == 0:
                break
            await asyncio.sleep(0.01)
        s = engine.stats()
        assert (s.in_flight, s.queued, s.cancelled, s.completed) == (0, 0, 4, 4)

    with_engine(main, parallel=8)


def test_a_prompt_longer_than_a_slot_fails_alone() -> None:
    async def main(engine: LlamaCppEngine) -> None:
        ok = asyncio.ensure_future(answer(engine, request(TEXT_CASES[1])))
        with pytest.raises(errors.ContextWindowExceeded, match="context window of 256 tokens"):
            await answer(engine, user("word " * 400))
        text, _ = await ok
        assert text == TEXT_CASES[1].answer

    with_engine(main, parallel=2, n_ctx=256)


def test_the_queue_beyond_the_slots_is_bounded() -> None:
    long = user("Count from one to twenty.", temperature=0, max_tokens=400, ignore_eos=True)

    async def main(engine: LlamaCppEngine) -> None:
        running = [asyncio.ensure_future(answer(engine, long)) for _ in range(3)]  # 2 slots + 1 waiting
        await asyncio.sleep(0.05)
        assert (engine.stats().in_flight, engine.stats().queued) == (2, 1)
        with pytest.raises(errors.Overloaded):
            await answer(engine, long)
        await asyncio.gather(*running)

    with_engine(main, parallel=2, max_queue=1)


def test_a_call_on_behalf_of_a_request_does_not_wait_for_its_parent() -> None:
    long = user("Count from one to twenty.", temperature=0, max_tokens=3000, ignore_eos=True)

    async def main(engine: LlamaCppEngine) -> None:
        parent = engine.stream(long)
        await anext(parent)  # the only slot is taken
        token = on_behalf.set(True)
        try:
            text, _ = await asyncio.wait_for(answer(engine, request(TEXT_CASES[1])), 30)
        finally:
            on_behalf.reset(token)
        assert text == TEXT_CASES[1].answer
        assert engine.stats().in_flight == 1  # the parent is still generating
        await parent.aclose()

    with_engine(main, parallel=1, max_queue=0)


def test_a_request_without_a_limit_gets_the_models_default() -> None:
    async def main(engine: LlamaCppEngine) -> None:
        _, stop = await answer(engine, user("Count from one to twenty.", temperature=0))
        assert stop.usage.output_tokens == 5 and stop.stop_reason == StopReason.MAX_TOKENS

    with_engine(main, max_tokens=5)


def _conversation(turns: int) -> ChatRequest:
    messages = []
    for i in range(turns):
        messages.append(Message("user", (Text(f"Question {i}: what is the capital of France?"),)))
        if i < turns - 1:
            messages.append(Message("assistant", (Text("The capital of France is Paris."),)))
    return ChatRequest(model="m", system="You answer questions about geography. " * 20, messages=tuple(messages),
                       sampling=Sampling(temperature=0, max_tokens=10))  # fmt: skip


def test_the_next_turn_reuses_the_cached_prefix_exactly() -> None:
    async def main(engine: LlamaCppEngine) -> None:
        first = _conversation(1)
        _, stop1 = await answer(engine, first)
        assert stop1.usage.cache_read_tokens == 0
        slot = next(s for s in engine._scheduler.slots if s.tokens)
        held = list(slot.tokens)
        second = _conversation(2)
        prompt = engine.tokenize(engine.render(second))
        expected = min(common_prefix(held, prompt), len(prompt) - 1)
        _, stop2 = await answer(engine, second)
        assert stop2.usage.input_tokens == len(prompt)
        assert stop2.usage.cache_read_tokens == expected > len(engine.tokenize(engine.render(first))) - 5
        s = engine.stats()
        assert s.prompt_cache_hit_tokens == expected and s.prompt_tokens == stop1.usage.input_tokens + len(prompt)

    with_engine(main, parallel=2)


def test_host_memory_keeps_prefixes_evicted_from_the_slots() -> None:
    a, b = _conversation(2), user("Tell me about dogs. " * 30, temperature=0, max_tokens=5)

    async def main(engine: LlamaCppEngine) -> tuple[int, int, int]:
        await answer(engine, a)
        for slot in engine._scheduler.slots:  # the slot kept for calls on behalf of others: taken too
            slot.busy = slot.busy or not slot.tokens
        await answer(engine, b)  # the one free slot: a's prefix leaves it
        _, again = await answer(engine, a)
        tok_a, tok_b = engine.tokenize(engine.render(a)), engine.tokenize(engine.render(b))
        return again.usage.cache_read_tokens, len(tok_a), common_prefix(tok_a, tok_b)

    read, n_a, shared = with_engine(main, parallel=1, prompt_cache_mib=64)
    assert read == n_a - 1
    read, _, shared = with_engine(main, parallel=1, prompt_cache_mib=0)
    assert read == shared < 5  # what b happens to share with a (the chat template's opening)


def test_cache_points_report_the_tokens_written_then_read() -> None:
    base = _conversation(2)
    marked = ChatRequest(model="m", system=base.system, messages=base.messages, sampling=base.sampling,
                         cache_points=(CachePoint("system", ttl_s=3600),))  # fmt: skip

    async def main(engine: LlamaCppEngine) -> None:
        system_only = engine.tokenize(engine.render(ChatRequest(model="m", system=base.system),
                                                    add_generation_prompt=False))  # fmt: skip
        prompt = engine.tokenize(engine.render(base))
        mark = common_prefix(system_only, prompt)
        events = [e async for e in engine.stream(marked)]
        start, stop = events[0], events[-1]
        assert isinstance(start, MessageStart) and isinstance(stop, MessageStop)
        assert (start.cache_read_tokens, start.cache_write_tokens, start.cache_write_ttl_s) == (0, mark, 3600)
        assert (stop.usage.cache_read_tokens, stop.usage.cache_write_tokens) == (0, mark)
        _, again = await answer(engine, marked)
        assert again.usage.cache_read_tokens == len(prompt) - 1 and again.usage.cache_write_tokens == 0
        slot = next(s for s in engine._scheduler.slots if s.tokens)
        assert slot.pinned_until > 0  # kept in preference to others for the TTL

    with_engine(main, parallel=2)


def test_a_sampled_grammar_request_leaves_later_greedy_ones_alone() -> None:
    """Samplers sort the candidate array in place: reused without resetting its ids, it paired logits with
    the wrong tokens for every request after the first grammar resample."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}

    def ask(temperature: float, seed: int | None = None) -> ChatRequest:
        return ChatRequest(model="m", messages=(Message("user", (Text("Describe Paris as JSON."),)),),
                           sampling=Sampling(temperature=temperature, seed=seed, max_tokens=40),
                           response_format=ResponseFormat("json_schema", schema))  # fmt: skip

    async def main(engine: LlamaCppEngine) -> None:
        before, _ = await answer(engine, ask(0))
        for seed in range(4):
            await answer(engine, ask(1.0, seed))
        after, _ = await answer(engine, ask(0))
        assert after == before and json.loads(before) == {"city": "Paris"}

    with_engine(main, parallel=2)


def test_an_empty_prompt_is_refused_and_the_model_keeps_serving() -> None:
    async def main(engine: LlamaCppEngine) -> None:
        with pytest.raises(errors.InvalidRequest, match="prompt is empty"):
            await answer(engine, ChatRequest(model="m", prompt="", sampling=Sampling(max_tokens=5)))
        text, _ = await answer(engine, request(TEXT_CASES[1]))
        assert text == TEXT_CASES[1].answer

    with_engine(main, parallel=2)


def test_n_batch_must_hold_a_token_for_every_slot() -> None:
    with pytest.raises(errors.InvalidRequest, match="n_batch"):
        LlamaCppEngine(BUILTIN_GGUF, name="tiny", n_ctx=512, parallel=8, n_batch=4)


def test_batch_records_beside_interactive_requests_answer_as_alone_and_give_their_slot_up() -> None:
    cases = (TEXT_CASES * 2)[:6]
    long = user("Count from one to twenty.", temperature=0, max_tokens=3000, ignore_eos=True)

    async def as_batch(req: ChatRequest, holder: Background | None = None) -> tuple[str, MessageStop]:
        background.set(holder or Background())
        return await answer(engine_ref[0], req)

    engine_ref: list[LlamaCppEngine] = []

    async def main(engine: LlamaCppEngine) -> None:
        engine_ref.append(engine)
        alone = [await answer(engine, request(c)) for c in cases]
        mixed = await asyncio.gather(*[as_batch(request(c)) if i % 2 else answer(engine, request(c))
                                       for i, c in enumerate(cases)])  # fmt: skip
        for case, (a_text, a_stop), (m_text, m_stop) in zip(cases, alone, mixed, strict=True):
            assert a_text == m_text == case.answer  # a batch record sitting steps out decodes the same
            assert a_stop.usage.output_tokens == m_stop.usage.output_tokens
        holder = Background()
        record = asyncio.create_task(as_batch(long, holder))
        while engine.stats().in_flight == 0:
            await asyncio.sleep(0.01)
        text, _ = await answer(engine, request(TEXT_CASES[0]))  # the only slot is the record's: the reserve, at once
        assert text == TEXT_CASES[0].answer and holder.preempted.is_set() and not record.done()
        record.cancel()
        await asyncio.gather(record, return_exceptions=True)

    with_engine(main, parallel=1)
