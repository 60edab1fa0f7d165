"""The paged LoRA ops and the Linear wrapper against plain-torch references."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from loraland.serving.lora import bank as bank_module
from loraland.serving.lora import layers
from loraland.serving.lora.bank import LoraSlotBank, choose_stacked
from loraland.serving.lora.loading import LoadedAdapter, ModuleWeights
from loraland.serving.lora.native import PagedLoraOp
from loraland.serving.lora.ops import (
    PAGE,
    a_bag_index,
    add_gathered_lora,
    add_segmented_lora,
    add_stacked_lora,
    page_count_groups,
    page_rows,
    page_weights,
    pages_for,
    pages_reference_lora_delta,
    stacked_weights,
)
from torch import nn


@pytest.fixture(autouse=True)
def poisoned_pools(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fresh pools are NaN here rather than whatever the memory held: any page read before
    it was written turns an output NaN and fails the comparison."""

    def poisoned(like: torch.Tensor, rows: int, width: int) -> torch.Tensor:
        return like.new_full((rows, width), float("nan"))

    monkeypatch.setattr(layers, "untouched_pool", poisoned)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.q_proj = nn.Linear(8, 6, bias=False)
        self.v_proj = nn.Linear(8, 4, bias=False)
        self.other = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.q_proj(x), self.v_proj(x)], dim=-1)


def adapter(name: str, rank: int, modules: dict[str, tuple[int, int]], seed: int) -> LoadedAdapter:
    torch.manual_seed(seed)
    weights = {
        m: ModuleWeights.from_peft(torch.randn(rank, d_in), torch.randn(d_out, rank), 2.0 / rank)
        for m, (d_in, d_out) in modules.items()
    }
    return LoadedAdapter(name=name, path=None, weights=weights)  # type: ignore[arg-type]


def expected(model: Tiny, x: torch.Tensor, a: LoadedAdapter | None) -> torch.Tensor:
    """What PEFT computes for one adapter: base(x) + lora_B(lora_A(x)) * scaling."""
    outs = []
    for name in ("q_proj", "v_proj"):
        base = getattr(model, name)
        layer = base.base if hasattr(base, "base") else base
        y = layer(x)
        if a is not None and name in a.weights:
            w = a.weights[name]
            y = y + (x @ w.a.T) @ w.scaled_b.T
        outs.append(y)
    return torch.cat(outs, dim=-1)


def test_slot_bank_mixed_rows_match_each_adapter_alone() -> None:
    model = Tiny()
    bank = LoraSlotBank(model, slots=3)
    first = adapter("first", 2, {"q_proj": (8, 6)}, seed=2)
    second = adapter("second", 4, {"q_proj": (8, 6), "v_proj": (8, 4)}, seed=3)
    bank.write(1, first)
    bank.write(2, second)
    x = torch.randn(4, 3, 8)
    for slots in ([1, 0, 2, 1], [2, 2, 2, 2], [0, 0, 0, 0], [0, 2, 0, 0]):
        bank.set_rows(slots)
        got = model(x)
        for row, slot in enumerate(slots):
            want = expected(model, x[row : row + 1], {0: None, 1: first, 2: second}[slot])
            torch.testing.assert_close(got[row : row + 1], want)
    assert set(bank.wrappers) == {"q_proj", "v_proj"}  # "other" was never targeted


def test_rewriting_a_slot_clears_modules_the_new_adapter_lacks() -> None:
    model = Tiny()
    bank = LoraSlotBank(model, slots=1)
    bank.write(1, adapter("wide", 4, {"q_proj": (8, 6), "v_proj": (8, 4)}, seed=4))
    narrow = adapter("narrow", 2, {"q_proj": (8, 6)}, seed=5)
    bank.write(1, narrow)
    x = torch.randn(2, 1, 8)
    bank.set_rows([1, 1])
    torch.testing.assert_close(model(x), expected(model, x, narrow))


def test_stacked_weights_follow_a_slot_rewritten_between_steps() -> None:
    # One adapter for every row: the stacked form, whose gathered weights each wrapper
    # keeps while the distinct adapters stay the same. A new adapter in the same slot
    # (the same pages, reused) must not be served the old one's weights.
    model = Tiny()
    bank = LoraSlotBank(model, slots=1)
    first = adapter("first", 8, {"q_proj": (8, 6), "v_proj": (8, 4)}, seed=7)
    second = adapter("second", 8, {"q_proj": (8, 6), "v_proj": (8, 4)}, seed=8)
    x = torch.randn(3, 1, 8)
    bank.write(1, first)
    bank.set_rows([1, 1, 1])
    assert bank.context.step is not None and bank.context.step.stacked
    torch.testing.assert_close(model(x), expected(model, x, first))
    bank.write(1, second)
    bank.set_rows([1, 1, 1])
    torch.testing.assert_close(model(x), expected(model, x, second))


def test_slot_out_of_range_is_refused() -> None:
    bank = LoraSlotBank(Tiny(), slots=1)
    with pytest.raises(ValueError, match="slot 2"):
        bank.write(2, adapter("x", 2, {"q_proj": (8, 6)}, seed=6))


# -- paged forms ---------------------------------------------------------------------------


def page_pool(ranks: list[int], d_in: int, d_out: int) -> tuple[torch.Tensor, ...]:
    """A pool holding one adapter per rank, pages scattered (not contiguous), page 0 zero,
    and each adapter's rank rows past its rank zero, as the bank writes them."""
    torch.manual_seed(3)
    total = 1 + sum(pages_for(r) for r in ranks)
    a_pages = torch.randn(total * d_in, PAGE)
    b_rows = torch.randn(total * PAGE, d_out)
    a_pages[:d_in], b_rows[:PAGE] = 0, 0
    return a_pages, b_rows


def scattered(ranks: list[int], pool: tuple[torch.Tensor, ...]) -> list[list[int]]:
    a_pages, b_rows = pool
    total = b_rows.shape[0] // PAGE
    d_in = a_pages.shape[0] // total
    order = torch.randperm(total - 1, generator=torch.Generator().manual_seed(5)) + 1
    adapters, start = [], 0
    for rank in ranks:
        pages = order[start : start + pages_for(rank)].tolist()
        last = pages[-1]
        used = rank - PAGE * (len(pages) - 1)  # rank rows the last page holds
        a_pages.view(-1, d_in, PAGE)[last, :, used:] = 0
        b_rows.view(-1, PAGE, b_rows.shape[1])[last, used:] = 0
        adapters.append(pages)
        start += len(pages)
    return adapters


def step_tensors(pages_of: list[list[int]], d_in: int) -> dict[str, torch.Tensor]:
    pages = torch.tensor([p for own in pages_of for p in own], dtype=torch.long)
    offsets, start = [], 0
    for own in pages_of:
        offsets.append(start * PAGE)
        start += len(own)
    distinct: dict[tuple[int, ...], None] = {tuple(p): None for p in pages_of if p}
    active = [p for own in distinct for p in own]
    member = torch.zeros(len(pages_of), PAGE * len(active))
    column = 0
    for own in distinct:
        for i, row in enumerate(pages_of):
            if tuple(row) == own:
                member[i, column : column + PAGE * len(own)] = 1
        column += PAGE * len(own)
    a_index, a_offsets = a_bag_index(pages, d_in)
    return {
        "page_owner": torch.tensor([i for i, own in enumerate(pages_of) for _ in own]),
        "a_index": a_index,
        "a_offsets": a_offsets,
        "b_index": page_rows(pages),
        "b_offsets": torch.tensor(offsets),
        "active_pages": torch.tensor(active, dtype=torch.long),
        "member": member,
    }


def test_page_layout_round_trips_an_adapter() -> None:
    d_in, d_out = 5, 3
    a_pages, b_rows = page_pool([12], d_in, d_out)
    a, b = torch.randn(12, d_in), torch.randn(d_out, 12)
    a_pages.view(-1, d_in, PAGE)[[2, 1]] = (
        torch.cat([a.T, torch.zeros(d_in, 4)], 1).view(d_in, 2, PAGE).transpose(0, 1)
    )
    b_rows[page_rows(torch.tensor([2, 1]))] = torch.cat([b.T, torch.zeros(4, d_out)])
    got_a, got_b = page_weights(a_pages, b_rows, [2, 1])
    assert torch.equal(got_a[:12], a) and torch.equal(got_b[:, :12], b)
    assert page_rows(torch.tensor([2, 0])).tolist() == [*range(16, 24), *range(8)]


@pytest.mark.parametrize("mix", [[8], [4, 8, 16, 64], [2, 2, 2], [9]])
@pytest.mark.parametrize("bare_row", [True, False])
def test_paged_forms_match_the_reference(mix: list[int], bare_row: bool) -> None:
    a_pages, b_rows = pool = page_pool(mix, 16, 12)
    adapters = scattered(mix, pool)
    # Rows on every adapter and repeated adapters, with or without a row on no adapter
    # (without one, rank <= 8 gives every row exactly one page: the form's fast path).
    pages_of = [adapters[i % len(adapters)] for i in range(7)] + ([[]] if bare_row else [])
    t = step_tensors(pages_of, 16)
    one_page_each = all(len(own) == 1 for own in pages_of)
    x = torch.randn(len(pages_of), 1, 16)
    want = pages_reference_lora_delta(x, a_pages, b_rows, pages_of)
    base = torch.randn(len(pages_of), 12)
    segmented = add_segmented_lora(
        base.clone(),
        x[:, 0],
        a_pages,
        b_rows,
        None if one_page_each else t["page_owner"],
        t["a_index"],
        t["a_offsets"],
        t["b_index"],
        t["b_offsets"],
    )
    a, b = stacked_weights(a_pages, b_rows, t["active_pages"])
    member = None if len(adapters) == 1 and not bare_row else t["member"]
    stacked = add_stacked_lora(base.clone(), x[:, 0], a, b, member)
    # Sums in another order than the oracle's: fp32 rounding, relative to values ~100.
    close = {"rtol": 1e-5, "atol": 1e-4}
    torch.testing.assert_close(segmented, base + want[:, 0], **close)
    torch.testing.assert_close(stacked, base + want[:, 0], **close)
    if bare_row:  # no adapter: exactly nothing added
        assert torch.equal(segmented[-1], base[-1]) and torch.equal(stacked[-1], base[-1])
    prompts = torch.randn(len(pages_of), 5, 16)
    prompt_base = torch.randn(len(pages_of), 5, 12)
    gathered = prompt_base.clone()
    for rows, pages in page_count_groups(pages_of):
        every_row = len(rows) == len(pages_of)  # the form's in-place path
        add_gathered_lora(
            gathered,
            prompts,
            a_pages,
            b_rows,
            torch.tensor(pages),
            None if every_row else torch.tensor(rows),
        )
    torch.testing.assert_close(
        gathered,
        prompt_base + pages_reference_lora_delta(prompts, a_pages, b_rows, pages_of),
        **close,
    )


def test_prefill_groups_rows_by_page_count_without_padding() -> None:
    pages_of = [[3], [5, 6, 7, 8], [], [4], [9, 10]]
    assert page_count_groups(pages_of) == [
        ([0, 3], [[3], [4]]),
        ([1], [[5, 6, 7, 8]]),
        ([4], [[9, 10]]),
    ]
    assert page_count_groups([[], []]) == []


def test_cost_model_stacks_few_adapters_and_segments_many() -> None:
    assert choose_stacked(rows=32, distinct_rank_sum=8, rank_sum=32 * 8)  # one adapter
    assert choose_stacked(rows=32, distinct_rank_sum=8 * 8, rank_sum=32 * 8)  # eight
    assert not choose_stacked(rows=32, distinct_rank_sum=16 * 8, rank_sum=32 * 8)
    assert not choose_stacked(rows=32, distinct_rank_sum=32 * 8, rank_sum=32 * 8)  # all distinct
    # Mixed ranks: the segmented form's work is the sum of the rows' own ranks.
    assert not choose_stacked(rows=32, distinct_rank_sum=8 * 92, rank_sum=8 * 92)
    # The native kernel segments from fewer distinct adapters.
    native = bank_module.NATIVE_SEGMENT_COST
    assert choose_stacked(rows=32, distinct_rank_sum=8, rank_sum=32 * 8, segment_cost=native)
    # On a GPU, stacking holds through 32 distinct adapters (mixed ranks too) in 32 rows.
    gpu = bank_module.GATHERED_SEGMENT_COST
    assert choose_stacked(rows=32, distinct_rank_sum=32 * 8, rank_sum=32 * 8, segment_cost=gpu)
    mixed = 8 * (4 + 8 + 16 + 64)
    assert choose_stacked(rows=32, distinct_rank_sum=mixed, rank_sum=mixed, segment_cost=gpu)
    assert not choose_stacked(rows=64, distinct_rank_sum=64 * 8, rank_sum=64 * 8, segment_cost=gpu)
    assert not choose_stacked(
        rows=32, distinct_rank_sum=4 * 8, rank_sum=32 * 8, segment_cost=native
    )


@pytest.mark.parametrize("decode", [True, False])
@pytest.mark.parametrize("form", ["bags", "native", "gathered"])
def test_bank_mixed_ranks_every_form(
    decode: bool, form: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = Tiny()
    calls: list[int] = []
    op = None
    if form == "native":
        kernel: PagedLoraOp = request.getfixturevalue("native_lora_op")

        def op(*args: Any) -> torch.Tensor:
            calls.append(1)
            return kernel(*args)

    gathered: list[int] = []
    gather = layers.add_gathered_lora

    def counted_gather(*args: Any) -> torch.Tensor:
        gathered.append(1)
        return gather(*args)

    monkeypatch.setattr(layers, "add_gathered_lora", counted_gather)
    # The torch forms segment every decode step here, so the bags and the gathered pages
    # both run (at the engine's cost, six rows over these ranks would stack).
    monkeypatch.setattr(bank_module, "SEGMENT_COST", 0.5)
    monkeypatch.setattr(bank_module, "GATHERED_SEGMENT_COST", 0.5)
    bank = LoraSlotBank(model, slots=6, native=op)
    # What a model on a GPU sets: decode's segmented form gathers pages.
    bank.context.gathered_decode = form == "gathered"
    adapters = {
        slot: adapter(f"r{rank}", rank, {"q_proj": (8, 6), "v_proj": (8, 4)}, seed=10 + slot)
        for slot, rank in enumerate([4, 8, 16, 2, 1], start=1)
    }
    for slot, a in adapters.items():
        bank.write(slot, a)
    tokens = 1 if decode else 3
    for slots in ([1, 2, 3, 4, 5, 0], [2, 2, 2, 2, 2, 2], [1, 2, 1, 2, 0, 0]):
        x = torch.randn(len(slots), tokens, 8)
        bank.set_rows(slots, decode=decode)
        got = model(x)
        for row, slot in enumerate(slots):
            want = expected(model, x[row : row + 1], adapters.get(slot))
            torch.testing.assert_close(got[row : row + 1], want)
    # The kernel segments the five distinct adapters (q_proj and v_proj: two calls a step)
    # and stacks the rest; every prefill runs the kernel where there is one. Gathering
    # goes per group of rows with as many pages (ranks 4, 8, 2, 1 take one page, 16 two):
    # two groups in the first batch, one in each of the others, for both modules.
    assert len(calls) == (0 if form != "native" else 2 if decode else 6)
    gathers = 2 * (2 + 1 + 1)
    assert (
        len(gathered)
        == {
            "bags": 0 if decode else gathers,
            "native": 0,
            "gathered": gathers,
        }[form]
    )


def test_bank_keeps_the_native_kernel_for_float32_on_cpu_only() -> None:
    def kernel(*args: torch.Tensor) -> torch.Tensor:
        raise AssertionError("not for this model")

    assert LoraSlotBank(Tiny(), slots=1, native=kernel).native is kernel
    assert not LoraSlotBank(Tiny(), slots=1).context.gathered_decode
    # Off the CPU (a GPU; "meta" stands in for one here) decode gathers pages, no bags.
    off_cpu = LoraSlotBank(Tiny().to("meta"), slots=1, native=kernel)
    assert off_cpu.native is None and off_cpu.context.gathered_decode
    bank = LoraSlotBank(Tiny().to(torch.float64), slots=1, native=kernel)
    assert bank.native is None and bank.context.native is None
    bank.write(1, adapter("a", 8, {"q_proj": (8, 6)}, seed=1))
    for slots in ([1, 0], [1, 1]):
        bank.set_rows(slots)
        bank.model(torch.randn(2, 1, 8, dtype=torch.float64))


def test_bank_frees_and_reuses_pages_within_its_budget() -> None:
    bank = LoraSlotBank(Tiny(), slots=3, max_rows=24)
    bank.write(1, adapter("a", 9, {"q_proj": (8, 6)}, seed=1))  # two pages
    bank.write(2, adapter("b", 4, {"q_proj": (8, 6)}, seed=2))  # one, half of it padding
    assert bank.used_rows == 24
    with pytest.raises(ValueError, match="no room for 8 rank rows"):
        bank.write(3, adapter("c", 4, {"q_proj": (8, 6)}, seed=3))
    bank.free(1)
    assert bank.used_rows == 8
    narrow = adapter("c", 4, {"q_proj": (8, 6)}, seed=3)
    bank.write(3, narrow)
    model = bank.model
    x = torch.randn(2, 1, 8)
    bank.set_rows([3, 3])
    torch.testing.assert_close(model(x), expected(model, x, narrow))  # type: ignore[arg-type]


def test_a_multi_page_adapter_gets_a_run_and_the_adapters_moved_for_it_still_compute(
    native_lora_op: PagedLoraOp,
) -> None:
    model = Tiny()
    bank = LoraSlotBank(model, slots=8, max_rows=8 * PAGE, native=native_lora_op)
    singles = {s: adapter(f"s{s}", 8, {"q_proj": (8, 6), "v_proj": (8, 4)}, s) for s in range(1, 8)}
    for slot, a in singles.items():
        bank.write(slot, a)
    for slot in (2, 4, 6):  # single holes between the survivors: no two free pages meet
        bank.free(slot)
        del singles[slot]
    wide = adapter("wide", 24, {"q_proj": (8, 6)}, seed=9)  # three pages
    bank.write(2, wide)
    pages = bank._pages_of[2]
    assert pages == list(range(pages[0], pages[0] + 3))
    slots = [2, *singles]
    x = torch.randn(len(slots), 1, 8)
    for decode in (True, False):
        bank.set_rows(slots, decode=decode)
        got = model(x)
        for row, slot in enumerate(slots):
            want = expected(model, x[row : row + 1], wide if slot == 2 else singles[slot])
            torch.testing.assert_close(got[row : row + 1], want)  # type: ignore[arg-type]


def test_a_module_wrapped_later_adds_nothing_for_the_adapters_already_resident() -> None:
    model = Tiny()
    bank = LoraSlotBank(model, slots=2)
    only_q = adapter("q", 8, {"q_proj": (8, 6)}, seed=5)
    only_v = adapter("v", 16, {"v_proj": (8, 4)}, seed=6)
    bank.write(1, only_q)
    bank.write(2, only_v)  # wraps v_proj, where only_q's page must read as zero
    x = torch.randn(3, 2, 8)
    for decode, tokens in ((True, 1), (False, 2)):
        bank.set_rows([1, 2, 0], decode=decode)
        got = model(x[:, :tokens])
        for row, a in enumerate([only_q, only_v, None]):
            torch.testing.assert_close(
                got[row : row + 1], expected(model, x[row : row + 1, :tokens], a)
            )


def test_a_memory_budget_is_taken_at_once_and_never_regrown() -> None:
    # One page of q_proj (8 rank rows, 8 in, 6 out, fp32) is 448 bytes: 10 fit 4480 bytes.
    bank = LoraSlotBank(Tiny(), slots=10, max_bytes=10 * 448)
    bank.write(1, adapter("a", 8, {"q_proj": (8, 6)}, seed=1))
    wrapper = bank.wrappers["q_proj"]
    assert wrapper.pages == 11  # the whole budget and the zero page, on the first write
    pools = wrapper.a_pages
    for slot in range(2, 11):
        bank.write(slot, adapter(f"a{slot}", 8, {"q_proj": (8, 6)}, seed=slot))
    assert wrapper.a_pages is pools and bank.used_rows == 80


def test_bank_growth_stops_at_its_memory_budget_unless_admitted_pages_need_more() -> None:
    # One page of q_proj (8 rank rows, 8 in, 6 out, fp32) is 448 bytes: 3 fit 1344 bytes.
    bank = LoraSlotBank(Tiny(), slots=3, max_bytes=3 * 448)
    bank.write(1, adapter("a", 8, {"q_proj": (8, 6)}, seed=1))
    wrapper = bank.wrappers["q_proj"]
    assert wrapper.pages == 4  # 3 pages + the zero page, not the 32 minimum
    assert wrapper.a_pages.shape == (4 * 8, PAGE)
    bank.write(2, adapter("b", 32, {"q_proj": (8, 6)}, seed=2))
    assert wrapper.pages == 6  # admitted by the registry: it gets its pages
    assert bank.used_rows == 40


def test_long_prefills_take_the_gathered_form(
    native_lora_op: PagedLoraOp, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def op(*args: Any) -> torch.Tensor:
        calls.append(args[-1])
        return native_lora_op(*args)

    monkeypatch.setattr(layers, "NATIVE_PREFILL_TOKENS", 3)
    model = Tiny()
    bank = LoraSlotBank(model, slots=2, native=op)
    first = adapter("a", 4, {"q_proj": (8, 6)}, seed=1)
    second = adapter("b", 16, {"q_proj": (8, 6)}, seed=2)
    bank.write(1, first)
    bank.write(2, second)
    bank.set_rows([1, 2], decode=False)
    for tokens in (3, 4):
        x = torch.randn(2, tokens, 8)
        got = model(x)
        for row, a in enumerate([first, second]):
            torch.testing.assert_close(got[row : row + 1], expected(model, x[row : row + 1], a))
    assert calls == [3]  # the 4-token prefill went through the gathered pages
