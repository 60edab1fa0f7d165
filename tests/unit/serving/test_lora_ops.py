"""The batched LoRA op and the Linear wrapper against plain-torch references."""

from __future__ import annotations

import pytest
import torch
from loraland.serving.lora.layers import LoraSlotBank, choose_stacked
from loraland.serving.lora.loading import LoadedAdapter, ModuleWeights
from loraland.serving.lora.ops import (
    batched_lora_delta,
    gather_lora_delta,
    padded_gather_lora_delta,
    reference_lora_delta,
    rows_reference_lora_delta,
    segmented_lora_delta,
    slot_layout,
    stacked_rows_lora_delta,
)
from torch import nn


def slot_tensors(slots: int, rank: int, d_in: int, d_out: int) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(0)
    a = torch.randn(slots, rank, d_in)
    b = torch.randn(slots, d_out, rank)
    scale = torch.rand(slots) + 0.5
    a[0], b[0], scale[0] = 0, 0, 0  # slot 0: no adapter
    return a, b, scale


def batched(
    x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, idx: torch.Tensor
) -> torch.Tensor:
    """batched_lora_delta on ``[n, t, in]`` rows, the way the Linear wrapper calls it."""
    n, tokens, d_in = x.shape
    active, onehot = slot_layout(idx, x.dtype)
    delta = batched_lora_delta(
        x.reshape(n * tokens, d_in),
        a,
        b,
        scale,
        active,
        onehot.repeat_interleave(tokens, 0),
        idx.repeat_interleave(tokens, 0),
    )
    return delta.view(n, tokens, -1)


@pytest.mark.parametrize("tokens", [1, 5])
@pytest.mark.parametrize("op", [batched, gather_lora_delta])
def test_batched_ops_match_reference(tokens: int, op: object) -> None:
    a, b, scale = slot_tensors(5, 4, 16, 12)
    x = torch.randn(7, tokens, 16)
    idx = torch.tensor([3, 0, 1, 3, 4, 2, 0])
    fast = op(x, a, b, scale, idx)  # type: ignore[operator]
    assert fast.shape == (7, tokens, 12)
    torch.testing.assert_close(fast, reference_lora_delta(x, a, b, scale, idx))
    assert torch.equal(fast[1], torch.zeros_like(fast[1]))  # slot 0 adds exactly nothing


def test_slot_layout() -> None:
    active, onehot = slot_layout(torch.tensor([4, 2, 4, 7]), torch.float32)
    assert active.tolist() == [2, 4, 7]
    assert onehot.tolist() == [[0, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]


def test_single_adapter_batch_is_plain_lora() -> None:
    a, b, scale = slot_tensors(3, 4, 8, 6)
    x = torch.randn(4, 2, 8)
    idx = torch.tensor([2, 2, 2, 2])
    expected = (x @ a[2].T) @ b[2].T * scale[2]
    torch.testing.assert_close(batched(x, a, b, scale, idx), expected)


def test_zero_padding_to_a_larger_rank_changes_nothing() -> None:
    a, b, scale = slot_tensors(3, 4, 8, 8)
    padded_a = torch.cat([a, torch.zeros(3, 4, 8)], dim=1)
    padded_b = torch.cat([b, torch.zeros(3, 8, 4)], dim=2)
    x = torch.randn(3, 2, 8)
    idx = torch.tensor([1, 2, 0])
    torch.testing.assert_close(
        batched(x, padded_a, padded_b, scale, idx), batched(x, a, b, scale, idx)
    )


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
        m: ModuleWeights(a=torch.randn(rank, d_in), b=torch.randn(d_out, rank), scale=2.0 / rank)
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
            y = y + (x @ w.a.T) @ w.b.T * w.scale
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


def test_slot_out_of_range_is_refused() -> None:
    bank = LoraSlotBank(Tiny(), slots=1)
    with pytest.raises(ValueError, match="slot 2"):
        bank.write(2, adapter("x", 2, {"q_proj": (8, 6)}, seed=6))


# -- rank-row forms ---------------------------------------------------------------------


def rank_row_pool(ranks: list[int], d_in: int, d_out: int) -> tuple[torch.Tensor, ...]:
    """A pool holding one adapter per rank, rows scattered (not contiguous), row 0 zero."""
    torch.manual_seed(3)
    total = 1 + sum(ranks)
    a_rows = torch.randn(total, d_in)
    b_rows = torch.randn(total, d_out)
    scale_rows = torch.zeros(total)
    a_rows[0], b_rows[0] = 0, 0
    return a_rows, b_rows, scale_rows


def scattered(ranks: list[int], scale_rows: torch.Tensor) -> list[list[int]]:
    order = torch.randperm(len(scale_rows) - 1, generator=torch.Generator().manual_seed(5)) + 1
    adapters, start = [], 0
    for i, rank in enumerate(ranks):
        rows = order[start : start + rank].tolist()
        scale_rows[rows] = 0.5 + i
        adapters.append(rows)
        start += rank
    return adapters


def step_tensors(rows_of: list[list[int]]) -> dict[str, torch.Tensor]:
    widest = max(len(r) for r in rows_of)
    offsets, start = [], 0
    for rows in rows_of:
        offsets.append(start)
        start += len(rows)
    distinct: dict[tuple[int, ...], None] = {tuple(r): None for r in rows_of if r}
    active = [r for rows in distinct for r in rows]
    member = torch.zeros(len(rows_of), len(active))
    column = 0
    for rows in distinct:
        for i, own in enumerate(rows_of):
            if tuple(own) == rows:
                member[i, column : column + len(rows)] = 1
        column += len(rows)
    return {
        "row_ids": torch.tensor([r for rows in rows_of for r in rows], dtype=torch.long),
        "owner": torch.tensor([i for i, rows in enumerate(rows_of) for _ in rows]),
        "offsets": torch.tensor(offsets),
        "first_row": torch.tensor([rows[0] if rows else 0 for rows in rows_of]),
        "active_rows": torch.tensor(active, dtype=torch.long),
        "member": member,
        "row_matrix": torch.tensor([rows + [0] * (widest - len(rows)) for rows in rows_of]),
    }


@pytest.mark.parametrize("mix", [[8], [4, 8, 16, 64], [2, 2, 2]])
def test_rank_row_forms_match_the_reference(mix: list[int]) -> None:
    a_rows, b_rows, scale_rows = rank_row_pool(mix, 16, 12)
    adapters = scattered(mix, scale_rows)
    # Rows on every adapter, repeated adapters, and rows without any.
    rows_of = [adapters[i % len(adapters)] for i in range(7)] + [[]]
    t = step_tensors(rows_of)
    x = torch.randn(len(rows_of), 1, 16)
    want = rows_reference_lora_delta(x, a_rows, b_rows, scale_rows, rows_of)
    segmented = segmented_lora_delta(
        x[:, 0], a_rows, b_rows, scale_rows, t["row_ids"], t["owner"], t["offsets"], t["first_row"]
    )
    stacked = stacked_rows_lora_delta(
        x[:, 0], a_rows, b_rows, scale_rows, t["active_rows"], t["member"], t["first_row"]
    )
    # Sums in another order than the oracle's: fp32 rounding, relative to values ~100.
    close = {"rtol": 1e-5, "atol": 1e-4}
    torch.testing.assert_close(segmented, want[:, 0], **close)
    torch.testing.assert_close(stacked, want[:, 0], **close)
    assert torch.equal(segmented[-1], torch.zeros(12))  # no adapter: exactly nothing
    prompts = torch.randn(len(rows_of), 5, 16)
    gathered = padded_gather_lora_delta(prompts, a_rows, b_rows, scale_rows, t["row_matrix"])
    torch.testing.assert_close(
        gathered, rows_reference_lora_delta(prompts, a_rows, b_rows, scale_rows, rows_of), **close
    )


def test_cost_model_stacks_few_adapters_and_segments_many() -> None:
    assert choose_stacked(rows=32, distinct_rank_sum=8, rank_sum=32 * 8)  # one adapter
    assert not choose_stacked(rows=32, distinct_rank_sum=32 * 8, rank_sum=32 * 8)  # all distinct
    # Mixed ranks: the segmented form's work is the sum of the rows' own ranks.
    assert not choose_stacked(rows=32, distinct_rank_sum=8 * 92, rank_sum=8 * 92)


@pytest.mark.parametrize("decode", [True, False])
def test_bank_mixed_ranks_every_form(decode: bool) -> None:
    model = Tiny()
    bank = LoraSlotBank(model, slots=6)
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


def test_bank_frees_and_reuses_rank_rows_within_its_budget() -> None:
    bank = LoraSlotBank(Tiny(), slots=3, max_rows=12)
    bank.write(1, adapter("a", 8, {"q_proj": (8, 6)}, seed=1))
    bank.write(2, adapter("b", 4, {"q_proj": (8, 6)}, seed=2))
    assert bank.used_rows == 12
    with pytest.raises(ValueError, match="no room for 4 rank rows"):
        bank.write(3, adapter("c", 4, {"q_proj": (8, 6)}, seed=3))
    bank.free(1)
    assert bank.used_rows == 4
    narrow = adapter("c", 4, {"q_proj": (8, 6)}, seed=3)
    bank.write(3, narrow)
    model = bank.model
    x = torch.randn(2, 1, 8)
    bank.set_rows([3, 3])
    torch.testing.assert_close(model(x), expected(model, x, narrow))  # type: ignore[arg-type]


def test_bank_growth_stops_at_its_memory_budget_unless_admitted_rows_need_more() -> None:
    # One rank row of q_proj (8 in, 6 out, fp32) is 56 bytes: 20 rows fit 1120 bytes.
    bank = LoraSlotBank(Tiny(), slots=3, max_bytes=20 * 56)
    bank.write(1, adapter("a", 8, {"q_proj": (8, 6)}, seed=1))
    wrapper = bank.wrappers["q_proj"]
    assert wrapper.a_rows.shape[0] == 21  # 20 rows + the zero row, not the 256 minimum
    bank.write(2, adapter("b", 16, {"q_proj": (8, 6)}, seed=2))
    assert wrapper.a_rows.shape[0] == 25  # admitted by the registry: it gets its rows
    assert bank.used_rows == 24
