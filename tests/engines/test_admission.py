"""engines.base.Admission: slots, a bounded fair queue, Overloaded past it, calls on behalf of a request first."""

from __future__ import annotations

import asyncio

import pytest

from outcrop import errors
from outcrop.engines.base import Admission, Background, Ticket, background, on_behalf


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


def _batch_acquire(adm: Admission, holder: Background | None = None) -> asyncio.Task[Ticket]:
    """A batch record's acquire, as the job runner makes it (its own task, `background` set)."""

    async def take() -> Ticket:
        background.set(holder or Background())
        return await adm.acquire()

    return asyncio.create_task(take())


def test_batch_records_take_free_slots_only_and_never_the_reserve_nor_a_queue_limit() -> None:
    async def main() -> None:
        adm = Admission("m", max_queue=0, slots=2, reserve=1)
        a, b = await _batch_acquire(adm), await _batch_acquire(adm)
        assert (adm.running, adm.batch_running) == (2, 2)
        third = _batch_acquire(adm)  # no slot: it waits (max_queue 0 refuses only interactive calls)
        await asyncio.sleep(0.01)
        assert not third.done() and adm.batch_waiting == 1 and adm.waiting == 0
        a.release()
        c = await asyncio.wait_for(third, 1)
        assert c.batch is not None and adm.batch_running == 2
        b.release()
        c.release()
        assert adm.running == 0

    run(main())


def test_an_interactive_request_preempts_the_youngest_batch_record_and_goes_before_waiting_batch() -> None:
    async def main() -> list[str]:
        adm = Admission("m", max_queue=4, slots=2)
        old, young = Background(), Background()
        t_old = await _batch_acquire(adm, old)
        t_young = await _batch_acquire(adm, young)
        waiting_batch = _batch_acquire(adm)
        await asyncio.sleep(0.01)
        order: list[str] = []
        interactive = asyncio.create_task(adm.acquire())
        await asyncio.sleep(0.01)
        assert young.preempted.is_set() and not old.preempted.is_set()  # the youngest gives its slot up
        assert not interactive.done()
        t_young.release()  # the runner closed the preempted record's stream
        ticket = await asyncio.wait_for(interactive, 1)
        order.append("interactive")
        assert ticket.batch is None and not waiting_batch.done()
        # a second interactive request while the first runs: the old record is asked too, not the waiting one
        second = asyncio.create_task(adm.acquire())
        await asyncio.sleep(0.01)
        assert old.preempted.is_set()
        t_old.release()
        (await asyncio.wait_for(second, 1)).release()
        order.append("second")
        ticket.release()
        (await asyncio.wait_for(waiting_batch, 1)).release()
        order.append("batch")
        return order

    assert run(main()) == ["interactive", "second", "batch"]


def test_a_waiting_batch_record_never_gets_a_slot_while_an_interactive_request_waits() -> None:
    async def main() -> None:
        adm = Admission("m", max_queue=4, slots=1)
        held = await adm.acquire()  # an interactive request runs
        batch = _batch_acquire(adm)
        await asyncio.sleep(0.01)
        interactive = asyncio.create_task(adm.acquire())  # arrives after the batch record, served before it
        await asyncio.sleep(0.01)
        held.release()
        second = await asyncio.wait_for(interactive, 1)
        await asyncio.sleep(0.01)
        assert not batch.done()
        second.release()
        (await asyncio.wait_for(batch, 1)).release()
        assert (adm.running, adm.batch_waiting) == (0, 0)

    run(main())


def test_a_call_on_behalf_of_a_batch_record_follows_the_nested_rules() -> None:
    async def main() -> None:
        adm = Admission("m", max_queue=0, slots=1, reserve=1)
        record = await _batch_acquire(adm)

        async def judge() -> Ticket:
            background.set(Background())
            on_behalf.set(True)
            return await adm.acquire()

        ticket = await asyncio.wait_for(asyncio.create_task(judge()), 1)  # the reserve slot, at once
        assert ticket.nested and ticket.batch is None and adm.batch_running == 1
        ticket.release()
        record.release()

    run(main())


def test_drain_refuses_waiting_batch_records_and_a_cancelled_one_leaves_the_queue() -> None:
    async def main() -> None:
        adm = Admission("m", max_queue=2, slots=1)
        held = await _batch_acquire(adm)
        gone, refused = _batch_acquire(adm), _batch_acquire(adm)
        await asyncio.sleep(0.01)
        gone.cancel()
        await asyncio.gather(gone, return_exceptions=True)
        assert adm.batch_waiting == 1
        drained = asyncio.create_task(adm.drain())
        await asyncio.sleep(0.01)
        with pytest.raises(errors.Overloaded, match="shutting down"):
            await refused
        held.release()
        await asyncio.wait_for(drained, 1)

    run(main())


def test_an_interactive_request_runs_at_once_on_the_reserve_while_a_batch_record_gives_its_slot_back() -> None:
    async def main() -> None:
        adm = Admission("m", max_queue=4, slots=2, reserve=1)
        old, young = Background(), Background()
        t_old, t_young = await _batch_acquire(adm, old), await _batch_acquire(adm, young)
        first = await asyncio.wait_for(adm.acquire(), 1)  # no wait for the record to stop
        assert adm.running == 3 and young.preempted.is_set() and not old.preempted.is_set()
        second = asyncio.create_task(adm.acquire())  # the reserve is taken: this one waits, and the old record goes
        await asyncio.sleep(0.01)
        assert not second.done() and old.preempted.is_set()
        t_young.release()
        await asyncio.sleep(0.01)
        assert not second.done()  # the reserve is given back first
        t_old.release()
        (await asyncio.wait_for(second, 1)).release()
        first.release()
        assert adm.running == 0

    run(main())
