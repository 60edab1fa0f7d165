"""Page placement in the LoRA pools: runs of consecutive pages, compaction, reuse."""

from __future__ import annotations

import random

import pytest
from loraland.serving.lora.pages import Compaction, PagePool


def pool_of(capacity: int, taken: set[int]) -> PagePool:
    pool = PagePool()
    pool.extend(capacity)
    pool.take(capacity - 1)
    pool.release(page for page in range(1, capacity) if page not in taken)
    return pool


def test_single_pages_come_lowest_first_and_never_page_zero() -> None:
    pool = PagePool()
    pool.extend(5)
    assert [pool.take(1).pages for _ in range(4)] == [[1], [2], [3], [4]]
    with pytest.raises(ValueError, match="1 pages asked, 0 free"):
        pool.take(1)


def test_several_pages_come_as_the_lowest_free_run_in_address_order() -> None:
    pool = pool_of(12, taken={2, 5, 6})  # free: 1, 3, 4, 7..11
    assert pool.take(3) == Compaction([7, 8, 9], [])
    assert pool.take(2) == Compaction([3, 4], [])
    assert pool.take(1).pages == [1]  # the hole below, not the run above
    assert pool.free_count == 2


def test_released_pages_are_free_again_in_order() -> None:
    pool = PagePool()
    pool.extend(9)
    first, second = pool.take(4).pages, pool.take(4).pages
    assert (first, second) == ([1, 2, 3, 4], [5, 6, 7, 8])
    pool.release(reversed(first))
    assert pool.take(4).pages == [1, 2, 3, 4]


def test_no_free_run_moves_the_fewest_single_pages_out_of_a_window() -> None:
    # Free 1, 3, 5, 8, 9; 2, 4, 6, 7 held by single-page adapters; 10 by a larger one.
    pool = pool_of(11, taken={2, 4, 6, 7, 10})
    taken = pool.take(3, movable=frozenset({2, 4, 6, 7}))
    # Windows of 3 that need one move: 1-3 (moves 2), 3-5 (4), 7-9 (7). The lowest wins.
    assert taken.pages == [1, 2, 3]
    assert taken.moves == [(2, 5)]  # to the lowest free page outside the window
    assert pool.free_count == 2
    assert pool.take(2).pages == [8, 9]


def test_pages_that_cannot_move_are_never_in_the_window() -> None:
    pool = pool_of(7, taken={2, 4, 6})  # free 1, 3, 5
    taken = pool.take(2, movable=frozenset({4}))  # 2 and 6 belong to larger adapters
    assert taken == Compaction([3, 4], [(4, 1)])


def test_without_any_window_the_lowest_free_pages_are_taken_scattered() -> None:
    pool = pool_of(7, taken={2, 4, 6})
    assert pool.take(3) == Compaction([1, 3, 5], [])


def test_random_takes_and_releases_keep_every_page_owned_once() -> None:
    rng = random.Random(7)
    pool = PagePool()
    pool.extend(65)
    owned: dict[int, list[int]] = {}
    for step in range(2000):
        if owned and (pool.free_count < 8 or rng.random() < 0.45):
            pool.release(owned.pop(rng.choice(list(owned))))
            continue
        count = rng.choice([1, 1, 1, 2, 8])
        singles = {pages[0]: key for key, pages in owned.items() if len(pages) == 1}
        taken = pool.take(count, frozenset(singles) if count > 1 else frozenset())
        for old, new in taken.moves:
            assert owned[singles[old]] == [old]
            owned[singles[old]] = [new]
        if taken.moves:
            assert taken.pages == list(range(taken.pages[0], taken.pages[0] + count))
        owned[step] = taken.pages
        held = [page for pages in owned.values() for page in pages]
        assert len(held) == len(set(held)) and 0 not in held
        assert len(held) + pool.free_count == 64
