"""The native decode kernel (csrc/paged_lora.cpp) against the plain-torch oracle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from loraland.serving.lora.native import PagedLoraOp, missing_toolchain, paged_lora_op
from loraland.serving.lora.ops import PAGE, pages_for, pages_reference_lora_delta
from loraland.settings import Settings


@pytest.fixture(params=[1, 2, 3], ids=lambda n: f"{n}-threads")
def threads(request: pytest.FixtureRequest) -> Iterator[int]:
    """Chunks of pages per thread start and end inside rows of several pages."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def scattered_pool(
    ranks: list[int], d_in: int, d_out: int
) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    """A pool holding one adapter per rank on scattered pages, page 0 zero, the rank rows
    past each adapter's rank zero (as the bank writes them); and each adapter's pages."""
    generator = torch.Generator().manual_seed(11)
    total = 1 + sum(pages_for(r) for r in ranks)
    a_pages = torch.randn(total * d_in, PAGE, generator=generator)
    b_rows = torch.randn(total * PAGE, d_out, generator=generator)
    a_pages[:d_in], b_rows[:PAGE] = 0, 0
    order = (torch.randperm(total - 1, generator=generator) + 1).tolist()
    adapters = []
    for rank in ranks:
        pages, order = order[: pages_for(rank)], order[pages_for(rank) :]
        used = rank - PAGE * (len(pages) - 1)
        a_pages.view(-1, d_in, PAGE)[pages[-1], :, used:] = 0
        b_rows.view(-1, PAGE, d_out)[pages[-1], used:] = 0
        adapters.append(pages)
    return a_pages, b_rows, adapters


def flat(pages_of: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The op's ``pages`` and ``owner``: every row's pages, row after row."""
    pages = [p for own in pages_of for p in own]
    owner = [row for row, own in enumerate(pages_of) for _ in own]
    return torch.tensor(pages, dtype=torch.long), torch.tensor(owner, dtype=torch.long)


@pytest.mark.parametrize(
    "ranks", [[8], [4, 8, 16, 64], [64, 64, 1], [2, 9]], ids=lambda r: "r" + "-".join(map(str, r))
)
@pytest.mark.parametrize("d_in", [29, 32])  # the unrolled loops over `in`, with and without tails
# Decode; prefill in blocks of four token rows, whole (4), then 3 (7), 2 (6) or 1 (9) left.
@pytest.mark.parametrize("tokens", [1, 4, 6, 7, 9])
def test_kernel_matches_the_reference(
    native_lora_op: PagedLoraOp, threads: int, ranks: list[int], d_in: int, tokens: int
) -> None:
    a_pages, b_rows, adapters = scattered_pool(ranks, d_in, 19)
    # Rows on every adapter, repeats, and rows on no adapter (no pages) among them.
    pages_of = [adapters[i % len(adapters)] if i % 5 else [] for i in range(13)]
    x = torch.randn(len(pages_of), tokens, d_in)
    y = torch.randn(len(pages_of), tokens, 19)
    want = y + pages_reference_lora_delta(x, a_pages, b_rows, pages_of)
    got = y.clone()
    native_lora_op(got.view(-1, 19), x.view(-1, d_in), a_pages, b_rows, *flat(pages_of), tokens)
    # Sums in another order than the oracle's: fp32 rounding, relative to values ~30.
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    bare = [row for row, own in enumerate(pages_of) if not own]
    assert torch.equal(got[bare], y[bare])  # no adapter: exactly nothing added


def test_kernel_adds_in_place_and_returns_y(native_lora_op: PagedLoraOp) -> None:
    a_pages, b_rows, adapters = scattered_pool([8], 8, 4)
    y = torch.zeros(2, 4)
    out = native_lora_op(y, torch.randn(2, 8), a_pages, b_rows, *flat([adapters[0]] * 2))
    assert out.data_ptr() == y.data_ptr() and y.abs().sum() > 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pages": torch.tensor([99])}, "page 99 outside the pool's"),
        ({"pages": torch.tensor([1, 1]), "owner": torch.tensor([1, 0])}, "in order"),
        ({"owner": torch.tensor([2])}, r"rows in \[0, 2\)"),
        ({"x": torch.randn(2, 8, dtype=torch.float64)}, "float32"),
        ({"pages": torch.tensor([1, 1])}, "one length"),
        ({"b_rows": torch.randn(16, 5)}, "pools must be"),
        ({"tokens": 3}, r"\[rows \* tokens, in\]"),
    ],
)
def test_bad_arguments_are_refused(
    native_lora_op: PagedLoraOp, change: dict[str, torch.Tensor | int], message: str
) -> None:
    a_pages, b_rows, _ = scattered_pool([8], 8, 4)
    args: dict[str, torch.Tensor | int] = {
        "y": torch.zeros(2, 4),
        "x": torch.randn(2, 8),
        "a_pages": a_pages,
        "b_rows": b_rows,
        "pages": torch.tensor([1]),
        "owner": torch.tensor([0]),
        "tokens": 1,
    } | change
    with pytest.raises(RuntimeError, match=message):
        native_lora_op(*args.values())


def test_disabled_kernels_are_not_built(tmp_path: Path) -> None:
    assert paged_lora_op(tmp_path, enabled=False) is None
    assert not any(tmp_path.iterdir())


def test_a_missing_compiler_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    assert missing_toolchain() == "no C++ compiler ('/nonexistent/c++'; set CXX)"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, True), ("", True), ("0", False), ("false", False), ("1", True), ("On", True)],
)
def test_native_kernels_setting(value: str | None, expected: bool) -> None:
    environ = {} if value is None else {"LORALAND_NATIVE_KERNELS": value}
    assert Settings.from_env(environ).native_kernels is expected
    assert Settings.from_env({"HF_HUB_OFFLINE": "yes"}).hf_offline
    assert not Settings.from_env({}).hf_offline
