"""The prompt cache: which slot a new request runs in, and how much of its prompt is already computed.

Every slot keeps the KV state of the tokens it processed after its request ends. A new request goes to
the idle slot holding the longest prefix of its prompt (the next turn of a conversation finds its own
earlier turns there), else to an empty slot, else to the one used longest ago. When another slot, busy or
idle, or an entry in host memory holds a clearly longer prefix, the plan copies it in first: cheaper than
computing the tokens again.

Where the busy slots lie matters too. Each slot is a KV stream of its own, and llama.cpp decodes a batch
in one graph only over a run of consecutive sequence ids: busy slots {0, 2} cost two graphs a step, twice
the time of {0, 1} (measured on the 0.5B-shape model). So a slot that would split the busy slots into more
runs counts as holding RUN_COST fewer tokens, and one that joins two runs as holding RUN_COST more.

Host memory (`HostCache`, optional, bounded in bytes) keeps the KV state of prefixes that were about to
be overwritten in a slot, most recently used first. Prefixes a caller marked with a cache point (Bedrock
`cachePoint`, Anthropic `cache_control`) are kept there, and in their slot, ahead of the others until
their TTL runs out.

Pure bookkeeping, no llama.cpp: the scheduler carries the plans out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

MIN_GAIN = 32  # tokens a copy must save over reusing the chosen slot's own prefix to be worth it
MIN_SAVE = 64  # tokens of a slot's prefix that are worth keeping in host memory when overwritten
RUN_COST = 256  # tokens of shared prefix one more run of busy slots is worth giving up


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens `a` and `b` share (slice comparisons run in C, 256 tokens at a time)."""
    n = min(len(a), len(b))
    i = 0
    while i < n:
        j = min(i + 256, n)
        if a[i:j] == b[i:j]:
            i = j
            continue
        while i < j and a[i] == b[i]:
            i += 1
        return i
    return n


def runs(seqs: Iterable[int]) -> int:
    """Runs of consecutive ids: {0, 1, 2} is one, {0, 2} two."""
    ordered = sorted(seqs)
    return sum(1 for i, s in enumerate(ordered) if i == 0 or s != ordered[i - 1] + 1)


@dataclass
class SlotState:
    seq: int  # the llama.cpp sequence id
    tokens: list[int] = field(default_factory=list)  # tokens whose KV the sequence holds, from position 0
    busy: bool = False
    last_used: float = 0.0
    pinned_until: float = 0.0  # a cache point's TTL: keep this slot's first `pinned` tokens before others
    pinned: int = 0


@dataclass
class Saved:
    tokens: list[int]
    data: bytearray
    pinned_until: float
    last_used: float


@dataclass(frozen=True)
class Plan:
    slot: SlotState  # where the request runs
    reuse: int  # leading prompt tokens whose KV is taken instead of computed
    copy_from: SlotState | None = None  # copy this slot's sequence first
    restore: Saved | None = None  # or load this state from host memory first
    save_first: bool = False  # put the slot's current prefix in host memory before it is overwritten


class HostCache:
    """KV states of prefixes in host memory, at most `max_bytes`, least recently used out first (prefixes
    under a live cache point after all others)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.entries: list[Saved] = []
        self.bytes = 0
        self.hits = 0

    def best(self, prompt: list[int]) -> tuple[Saved | None, int]:
        best: tuple[Saved | None, int] = (None, 0)
        for entry in self.entries:
            n = common_prefix(entry.tokens, prompt)
            if n > best[1]:
                best = (entry, n)
        return best

    def covers(self, tokens: list[int]) -> Saved | None:
        """An entry that already holds all of `tokens` (as its prefix)."""
        for entry in self.entries:
            if len(entry.tokens) >= len(tokens) and common_prefix(entry.tokens, tokens) == len(tokens):
                return entry
        return None

    def fits(self, size: int) -> bool:
        return size <= self.max_bytes

    def put(self, tokens: list[int], data: bytearray, pinned_until: float, now: float) -> bool:
        if not self.fits(len(data)):
            return False
        # an entry this one extends is redundant now
        kept = []
        for entry in self.entries:
            if len(entry.tokens) <= len(tokens) and common_prefix(entry.tokens, tokens) == len(entry.tokens):
                self.bytes -= len(entry.data)
                pinned_until = max(pinned_until, entry.pinned_until)
            else:
                kept.append(entry)
        self.entries = kept
        self.entries.append(Saved(list(tokens), data, pinned_until, now))
        self.bytes += len(data)
        self._evict(now)
        return any(e.data is data for e in self.entries)

    def touch(self, entry: Saved, now: float) -> None:
        entry.last_used = now
        self.hits += 1

    def _evict(self, now: float) -> None:
        if self.bytes <= self.max_bytes:
            return
        # unpinned (or expired) first, then pinned; least recently used first within each
        order = sorted(self.entries, key=lambda e: (e.pinned_until > now, e.last_used))
        while self.bytes > self.max_bytes and order:
            victim = order.pop(0)
            self.entries.remove(victim)
            self.bytes -= len(victim.data)


def plan(prompt: list[int], slots: Sequence[SlotState], host: HostCache | None, now: float) -> Plan:
    """Where a request with `prompt` runs and what of it is reused. At least one prompt token is always
    left to compute: its logits give the first answer token."""
    limit = len(prompt) - 1
    free = [s for s in slots if not s.busy]
    if not free:
        raise RuntimeError("no free slot: admission lets in no more requests than there are slots")
    shares = {s.seq: min(common_prefix(s.tokens, prompt), limit) for s in slots}
    busy = {s.seq for s in slots if s.busy}
    base = runs(busy)

    def rank(s: SlotState) -> tuple[int, bool, bool, float]:
        # the longest shared prefix, less what splitting the busy slots costs; then an empty slot; then one
        # whose cache point has expired; then the least recently used
        placed = shares[s.seq] - RUN_COST * (runs(busy | {s.seq}) - base)
        return (placed, not s.tokens, s.pinned_until <= now, -s.last_used)

    target = max(free, key=rank)
    reuse = shares[target.seq]
    copy_from = restore = None
    donor = max((s for s in slots if s is not target), key=lambda s: shares[s.seq], default=None)
    if donor is not None and shares[donor.seq] >= reuse + MIN_GAIN:
        copy_from, reuse = donor, shares[donor.seq]
    if host is not None:
        entry, n = host.best(prompt)
        n = min(n, limit)
        if entry is not None and n >= reuse + MIN_GAIN:
            copy_from, restore, reuse = None, entry, n
    kept = reuse if copy_from is None and restore is None else 0
    loses = len(target.tokens) - min(kept, len(target.tokens))
    save = (
        host is not None
        and host.max_bytes > 0
        and loses >= MIN_SAVE
        and host.covers(target.tokens) is None
        and not any(s is not target and common_prefix(s.tokens, target.tokens) == len(target.tokens) for s in slots)
    )
    return Plan(target, reuse, copy_from, restore, save)
