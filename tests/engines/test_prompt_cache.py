"""engines.llamacpp.prompt_cache: which slot a request runs in and what of its prompt it reuses."""

from __future__ import annotations

import pytest

from outcrop.engines.llamacpp.prompt_cache import (
    MIN_GAIN,
    MIN_SAVE,
    RUN_COST,
    HostCache,
    SlotState,
    common_prefix,
    plan,
    runs,
)


@pytest.mark.parametrize(
    ("a", "b", "n"),
    [([], [], 0), ([1, 2, 3], [1, 2, 3], 3), ([1, 2, 3], [1, 2], 2), ([1, 2], [3], 0),
     (list(range(600)), [*range(599), 7], 599), (list(range(300)), [*list(range(300)), 1], 300)],
)  # fmt: skip
def test_common_prefix(a: list[int], b: list[int], n: int) -> None:
    assert common_prefix(a, b) == n == common_prefix(b, a)


def slots(*contents: list[int], busy: tuple[int, ...] = ()) -> list[SlotState]:
    return [SlotState(i, list(c), i in busy, last_used=float(i)) for i, c in enumerate(contents)]


def test_the_idle_slot_with_the_longest_prefix_wins() -> None:
    prompt = list(range(100))
    table = slots(list(range(10)), [*list(range(50)), 999], [])
    p = plan(prompt, table, None, 0.0)
    assert (p.slot.seq, p.reuse, p.copy_from, p.restore) == (1, 50, None, None)


def test_at_least_one_prompt_token_is_left_to_compute() -> None:
    prompt = list(range(40))
    p = plan(prompt, slots(list(range(80))), None, 0.0)
    assert p.reuse == 39


def test_no_shared_prefix_takes_an_empty_slot_then_the_least_recently_used() -> None:
    table = slots([5, 6], [7, 8], [])
    assert plan([1, 2, 3], table, None, 0.0).slot.seq == 2
    table = slots([5, 6], [7, 8])
    assert plan([1, 2, 3], table, None, 0.0).slot.seq == 0  # last used first


def test_a_live_cache_point_keeps_a_slot_from_being_chosen_for_other_prompts() -> None:
    table = slots([5, 6], [7, 8])
    table[0].pinned_until = 100.0
    assert plan([1, 2, 3], table, None, 50.0).slot.seq == 1
    assert plan([1, 2, 3], table, None, 150.0).slot.seq == 0  # expired


def test_a_busy_slot_with_a_much_longer_prefix_is_copied() -> None:
    prompt = list(range(200))
    table = slots(list(range(150)), [], busy=(0,))
    p = plan(prompt, table, None, 0.0)
    assert (p.slot.seq, p.copy_from.seq if p.copy_from else None, p.reuse) == (1, 0, 150)
    short = slots(list(range(MIN_GAIN - 1)), [], busy=(0,))
    assert plan(prompt, short, None, 0.0).copy_from is None  # not worth a copy


def test_host_memory_restores_a_longer_prefix_and_overwritten_prefixes_are_saved() -> None:
    host = HostCache(1000)
    assert host.put(list(range(300)), b"x" * 100, 0.0, now=1.0)
    prompt = [*range(250), 7, 7]
    table = slots(list(range(20)) + [5] * 100)
    p = plan(prompt, table, host, 2.0)
    assert p.restore is not None and p.reuse == 250 and p.copy_from is None
    # the slot's own 120 tokens are lost to the restore: worth saving (>= MIN_SAVE)
    assert p.save_first
    small = slots([1] * (MIN_SAVE - 1))
    assert not plan(prompt, small, host, 2.0).save_first


def test_host_cache_is_bounded_least_recently_used_first_pinned_last() -> None:
    host = HostCache(250)
    host.put([1, 1], b"a" * 100, pinned_until=100.0, now=1.0)
    host.put([2, 2], b"b" * 100, pinned_until=0.0, now=2.0)
    host.put([3, 3], b"c" * 100, pinned_until=0.0, now=3.0)  # over: the unpinned oldest goes
    assert [e.tokens for e in host.entries] == [[1, 1], [3, 3]] and host.bytes == 200
    host.put([4, 4], b"d" * 100, pinned_until=0.0, now=200.0)  # the pin has expired by now
    assert [e.tokens for e in host.entries] == [[3, 3], [4, 4]]
    assert not host.put([5], b"e" * 300, 0.0, now=201.0)  # bigger than the whole cache


def test_a_longer_entry_replaces_its_own_prefix() -> None:
    host = HostCache(1000)
    host.put([1, 2], b"a" * 10, 0.0, now=1.0)
    host.put([1, 2, 3], b"b" * 10, 0.0, now=2.0)
    assert [e.tokens for e in host.entries] == [[1, 2, 3]] and host.bytes == 10
    assert host.covers([1, 2]) is host.entries[0]


def test_runs() -> None:
    assert (runs([]), runs([3]), runs([0, 1, 2]), runs([2, 0]), runs([0, 1, 3, 4, 7])) == (0, 1, 1, 2, 3)


def test_a_new_request_keeps_the_busy_slots_together() -> None:
    """Busy slots {0, 1}: a new prompt that shares nothing goes to slot 2, not to a slot used longer ago."""
    table = slots([9], [9], [5], [5], [5], busy=(0, 1))
    table[2].last_used = 10.0  # the most recently used idle slot, which LRU alone would spare
    assert plan([1, 2, 3], table, None, 0.0).slot.seq == 2
    # a hole between busy slots is filled first: it joins two runs
    table = slots([9], [5], [9], [5], busy=(0, 2))
    assert plan([1, 2, 3], table, None, 0.0).slot.seq == 1


def test_a_long_enough_shared_prefix_is_worth_a_second_run() -> None:
    prompt = list(range(2000))
    table = slots([9], [5], [5], list(range(RUN_COST + 100)), busy=(0,))
    assert plan(prompt, table, None, 0.0).slot.seq == 3
    table = slots([9], [5], [5], list(range(RUN_COST - 100)), busy=(0,))
    p = plan(prompt, table, None, 0.0)
    assert p.slot.seq == 1 and p.copy_from is not None and p.copy_from.seq == 3  # copied next to the busy one
