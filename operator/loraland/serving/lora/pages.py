"""Which pages of the LoRA pools an adapter gets: each adapter's pages one run of
consecutive pages, in address order, wherever the pool allows it.

The decode kernel reads every row's pages one after another, each page its A block then
its B rows. An adapter whose pages are consecutive is two sequential streams the
hardware prefetchers follow across page boundaries; pages scattered over the pool are a
new stream every page. Scattered pages are what a full pool leaves: evicting rank-8
adapters frees single pages here and there, and a rank-64 adapter loaded next took eight
of them. ``benchmarks/serving/lora_step.py --mixed`` measures both placements.

:class:`PagePool` keeps the free pages sorted and hands out:

- a single page: the lowest free one, so single pages fill the holes low in the pool and
  leave the free space above in one piece;
- several pages: the lowest free run of that length; failing that, a window of that
  length whose other pages belong to single-page adapters, those moved to free pages
  outside it (:class:`Compaction`: the caller copies them, a few page copies at load
  time for every later step's contiguous read); failing that, the lowest free pages.

Pure bookkeeping over page numbers: :class:`~loraland.serving.lora.bank.LoraSlotBank`
does the copies and holds the lock.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Compaction:
    """``pages``: the run the adapter gets; ``moves``: ``(from, to)`` pages whose owners
    move out of the run first (their contents copied, their page lists updated)."""

    pages: list[int]
    moves: list[tuple[int, int]]


class PagePool:
    """The free pages of pools holding ``capacity`` pages; page 0 (the zero page that
    padding points at) is never free."""

    def __init__(self) -> None:
        self.capacity = 1
        self._free: list[int] = []  # ascending

    @property
    def free_count(self) -> int:
        return len(self._free)

    def extend(self, capacity: int) -> None:
        """The pools now hold ``capacity`` pages: the new ones are free."""
        if capacity > self.capacity:
            self._free.extend(range(self.capacity, capacity))
            self.capacity = capacity

    def release(self, pages: Iterable[int]) -> None:
        for page in pages:
            bisect.insort(self._free, page)

    def take(self, count: int, movable: frozenset[int] = frozenset()) -> Compaction:
        """``count`` free pages (the caller grew the pool first: ``free_count >= count``),
        in a run where one exists or ``movable`` occupied pages can make one."""
        if count > len(self._free):
            raise ValueError(f"{count} pages asked, {len(self._free)} free")
        if count == 0:
            return Compaction([], [])
        start = self._free_run(count)  # a single free page is a run of one
        if start is None:
            return self._compact(count, movable)
        pages = self._free[start : start + count]
        del self._free[start : start + count]
        return Compaction(pages, [])

    def _free_run(self, count: int) -> int | None:
        """Index in the free list of the lowest run of ``count`` consecutive pages."""
        free = self._free
        for i in range(len(free) - count + 1):
            if free[i + count - 1] - free[i] == count - 1:
                return i
        return None

    def _compact(self, count: int, movable: frozenset[int]) -> Compaction:
        start = self._best_window(count, movable)
        if start is None:  # no window: the lowest free pages, scattered
            pages = self._free[:count]
            del self._free[:count]
            return Compaction(pages, [])
        window = range(start, start + count)
        occupied = []
        for page in window:
            i = bisect.bisect_left(self._free, page)
            if i < len(self._free) and self._free[i] == page:
                del self._free[i]
            else:
                occupied.append(page)
        destinations = self._free[: len(occupied)]  # the lowest free pages outside it
        del self._free[: len(occupied)]
        return Compaction(list(window), list(zip(occupied, destinations, strict=True)))

    def _best_window(self, count: int, movable: frozenset[int]) -> int | None:
        """Start of the window of ``count`` pages, each free or movable, with the fewest
        pages to move (the lowest of equals), or None."""
        free = set(self._free)
        best: tuple[int, int] | None = None
        blocked_until = 1  # windows must start past the last page that can neither
        moves = 0  # occupied pages in the current window
        for page in range(1, self.capacity):
            if page not in free and page not in movable:
                blocked_until = page + 1
            if page not in free:
                moves += 1
            leaving = page - count
            if leaving >= 1 and leaving not in free:
                moves -= 1
            start = page - count + 1
            if start >= blocked_until and (best is None or moves < best[0]):
                best = (moves, start)
        return None if best is None else best[1]
