"""engines.base.Admission: slots, a bounded fair queue, Overloaded past it, calls on behalf of a request first."""

from __future__ import annotations

import asyncio

import pytest

from outcrop import errors
from outcrop.engines.base import Admission, on_behalf


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_slots_run_at_once_and_the_rest_wait_in_arrival_order() -> None:
    async def main() -> list[int]:
        adm = Admission("m", max_queue=4, slots=2)
        order: list[int] = []
        first = [await adm.acquire(), await adm.acquire()]
        assert (adm.running, adm.waiting) == (2, 0)

        async def waiter(i: int) -> None:
            ticket = await adm.acquire()
            order.append(i)
            await asyncio.sleep(0)
            ticket.release()

        tasks = [asyncio.create_task(waiter(i)) for i in range(4)]
        await asyncio.sleep(0.01)
        assert (adm.running, adm.waiting) == (2, 4)
        for t in first:
            t.release()
        await asyncio.gather(*tasks)
        assert (adm.running, adm.waiting) == (0, 0)
        return order

    assert run(main()) == [0, 1, 2, 3]


def test_past_the_queue_limit_overloaded_at_once() -> None:
    async def main() -> None:
        adm = Admission("m", max_queue=1, slots=1)
        held = await adm.acquire()
        queued = asyncio.create_task(adm.acquire())
        await asyncio.sleep(0.01)
        with pytest.raises(errors.Overloaded, match="queue limit 1"):
            await adm.acquire()
        held.release()
        (await queued).release()

    run(main())


def test_a_release_is_idempotent_and_a_cancelled_waiter_leaves_the_queue() -> None:
    async def main() -> None:
        adm = Admission("m", max_queue=2, slots=1)
        held = await adm.acquire()
        gone = asyncio.create_task(adm.acquire())
        await asyncio.sleep(0.01)
        gone.cancel()
        await asyncio.gather(gone, return_exceptions=True)
        assert adm.waiting == 0
        held.release()
        held.release()
        assert adm.running == 0

    run(main())


def test_calls_on_behalf_of_a_request_go_first_past_the_limit_onto_the_reserve() -> None:
    async def main() -> list[str]:
        adm = Admission("m", max_queue=0, slots=1, reserve=1)
        parent = await adm.acquire()
        with pytest.raises(errors.Overloaded):
            await adm.acquire()  # the queue is full for ordinary requests
        token = on_behalf.set(True)
        try:
            judge = await asyncio.wait_for(adm.acquire(), 1)  # the reserve slot: no wait on the parent
        finally:
            on_behalf.reset(token)
        assert judge.nested and adm.running == 2
        judge.release()
        parent.release()
        # with every slot taken, a nested call is served before ordinary ones that came first
        adm.max_queue = 4
        a, b = await adm.acquire(), await adm.acquire(nested=True)
        order: list[str] = []

        async def take(name: str, nested: bool) -> None:
            t = await adm.acquire(nested=nested)
            order.append(name)
            t.release()

        tasks = [asyncio.create_task(take("plain", False)), asyncio.create_task(take("nested", True))]
        await asyncio.sleep(0.01)
        a.release()
        b.release()
        await asyncio.gather(*tasks)
        return order

    assert run(main()) == ["nested", "plain"]


def test_drain_refuses_new_work_and_waits_for_the_running() -> None:
    async def main() -> None:
        adm = Admission("m", max_queue=2, slots=1)
        held = await adm.acquire()
        queued = asyncio.create_task(adm.acquire())
        await asyncio.sleep(0.01)
        drained = asyncio.create_task(adm.drain())
        await asyncio.sleep(0.01)
        assert not drained.done()
        with pytest.raises(errors.Overloaded, match="shutting down"):
            await queued
        held.release()
        await asyncio.wait_for(drained, 1)
        with pytest.raises(errors.Overloaded):
            await adm.acquire()

    run(main())
