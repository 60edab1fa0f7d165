"""Adapter validation on small synthetic PEFT directories, and the KV slab operations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from loraland.serving.engine.kv import SlabCache
from loraland.serving.lora.loading import (
    AdapterLoadError,
    BaseModelShape,
    ModuleWeights,
    load_adapter,
)
from loraland.serving.lora.ops import PAGE
from safetensors.torch import save_file

BASE = BaseModelShape(
    uri="builtin://tiny",
    linears={"model.layers.0.self_attn.q_proj": (8, 8), "model.layers.0.self_attn.v_proj": (8, 4)},
    dtype=torch.float32,
    device=torch.device("cpu"),
)
PREFIX = "base_model.model.model.layers.0.self_attn"


def write(
    path: Path,
    config: dict[str, object] | None = None,
    tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    cfg = {
        "peft_type": "LORA",
        "r": 2,
        "lora_alpha": 4,
        "target_modules": ["q_proj", "v_proj"],
        **(config or {}),
    }
    (path / "adapter_config.json").write_text(json.dumps(cfg))
    if tensors is None:
        tensors = {
            f"{PREFIX}.q_proj.lora_A.weight": torch.ones(2, 8),
            f"{PREFIX}.q_proj.lora_B.weight": torch.ones(8, 2),
            f"{PREFIX}.v_proj.lora_A.weight": torch.ones(2, 8),
            f"{PREFIX}.v_proj.lora_B.weight": torch.ones(4, 2),
        }
    save_file(tensors, str(path / "adapter_model.safetensors"))
    return path


def test_loads_a_valid_adapter(tmp_path: Path) -> None:
    adapter = load_adapter("ok", write(tmp_path / "ok"), BASE, max_rank=8)
    assert set(adapter.weights) == {
        "model.layers.0.self_attn.q_proj",
        "model.layers.0.self_attn.v_proj",
    }
    assert adapter.max_rank == 2
    assert adapter.weights["model.layers.0.self_attn.q_proj"].scale == 2.0
    rslora = load_adapter("rs", write(tmp_path / "rs", {"use_rslora": True}), BASE, max_rank=8)
    assert abs(rslora.weights["model.layers.0.self_attn.q_proj"].scale - 4 / 2**0.5) < 1e-9


@pytest.mark.parametrize(
    ("config", "tensors", "reason"),
    [
        ({"r": 16}, None, "rank 16 exceeds the server's max_lora_rank 8"),
        ({"peft_type": "IA3"}, None, "only LORA"),
        ({"use_dora": True}, None, "use_dora"),
        ({"modules_to_save": ["lm_head"]}, None, "modules_to_save"),
        (
            None,
            {
                f"{PREFIX}.k_proj.lora_A.weight": torch.ones(2, 8),
                f"{PREFIX}.k_proj.lora_B.weight": torch.ones(8, 2),
            },
            "k_proj",
        ),
        (
            None,
            {
                f"{PREFIX}.q_proj.lora_A.weight": torch.ones(2, 16),
                f"{PREFIX}.q_proj.lora_B.weight": torch.ones(8, 2),
            },
            "shape mismatch",
        ),
        (None, {f"{PREFIX}.q_proj.lora_A.weight": torch.ones(2, 8)}, "no lora_B"),
        (
            None,
            {
                f"{PREFIX}.q_proj.lora_A.weight": torch.full((2, 8), float("nan")),
                f"{PREFIX}.q_proj.lora_B.weight": torch.ones(8, 2),
            },
            "NaN",
        ),
        (
            None,
            {
                f"{PREFIX}.q_proj.lora_A.weight": torch.ones(2, 8),
                f"{PREFIX}.q_proj.lora_B.weight": torch.tensor([[float("inf")], [-float("inf")]])
                .expand(2, 8)
                .T.contiguous(),
            },
            r"q_proj contain NaN or infinite",
        ),
        (None, {f"{PREFIX}.q_proj.lora_magnitude_vector": torch.ones(8)}, "unsupported tensor"),
    ],
)
def test_bad_adapters_fail_with_a_reason(
    tmp_path: Path,
    config: dict[str, object] | None,
    tensors: dict[str, torch.Tensor] | None,
    reason: str,
) -> None:
    with pytest.raises(AdapterLoadError, match=reason):
        load_adapter("bad", write(tmp_path / "bad", config, tensors), BASE, max_rank=8)


def test_huge_but_finite_weights_load(tmp_path: Path) -> None:
    """Their sum overflows (the fast finiteness check fails), but each weight is finite."""
    big = {
        f"{PREFIX}.q_proj.lora_A.weight": torch.full((2, 8), 3e38),
        f"{PREFIX}.q_proj.lora_B.weight": torch.ones(8, 2),
    }
    adapter = load_adapter("big", write(tmp_path / "big", None, big), BASE, max_rank=8)
    assert adapter.weights["model.layers.0.self_attn.q_proj"].rank == 2


def test_missing_or_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(AdapterLoadError, match="not a directory"):
        load_adapter("x", tmp_path / "nothing", BASE, max_rank=8)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AdapterLoadError, match=r"missing adapter_config\.json"):
        load_adapter("x", empty, BASE, max_rank=8)
    corrupt = write(tmp_path / "corrupt")
    (corrupt / "adapter_model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(AdapterLoadError, match="corrupt"):
        load_adapter("x", corrupt, BASE, max_rank=8)
    meta = write(tmp_path / "meta")
    (meta / "loraland.json").write_text(
        json.dumps({"name": "m", "base_model": "hf://other/model", "sha256": "0", "size_bytes": 1})
    )
    with pytest.raises(AdapterLoadError, match="hf://other/model"):
        load_adapter("x", meta, BASE, max_rank=8)


def _cache(rows: int, length: int, value: float, capacity: int = 4) -> SlabCache:
    """A 2-layer cache whose row ``i`` holds keys ``value + i`` (values negated)."""
    c = SlabCache.empty(
        2, rows, 1, 2, capacity=capacity, dtype=torch.float32, device=torch.device("cpu")
    )
    for layer in c.slabs:
        keys = (value + torch.arange(rows, dtype=torch.float32)).view(rows, 1, 1, 1)
        keys = keys.expand(rows, 1, length, 2).contiguous()
        layer.update(keys, -keys)
    return c


def test_kv_append_right_aligns_shorter_rows_and_gaps_older_ones() -> None:
    short, long = _cache(1, 2, 1.0), _cache(2, 5, 10.0)  # the long one outgrows its capacity
    short.append(long)
    assert short.length == 5 and short.rows == 3
    keys = short.slabs[0].keys
    assert keys.shape == (3, 1, 5, 2)
    # The old row keeps its tokens where they were, then a zeroed gap up to the new length.
    assert torch.equal(keys[0, 0, :2], torch.ones(2, 2))
    assert torch.equal(keys[0, 0, 2:], torch.zeros(3, 2))
    assert torch.equal(keys[1, 0], torch.full((5, 2), 10.0))
    assert torch.equal(short.slabs[1].values[2, 0], torch.full((5, 2), -11.0))
    # A shorter newcomer is right-aligned, zeros before it.
    short.append(_cache(1, 2, 7.0))
    keys = short.slabs[0].keys
    assert torch.equal(keys[3, 0, :3], torch.zeros(3, 2))
    assert torch.equal(keys[3, 0, 3:], torch.full((2, 2), 7.0))


def test_kv_append_with_room_copies_only_the_new_rows() -> None:
    running = _cache(3, 4, 0.0, capacity=64)
    running.append(_cache(1, 1, 5.0))  # grows the row capacity (3 -> 6)
    slab = running.slabs[0].buf_k
    before = slab[:4].clone()
    running.append(_cache(2, 3, 8.0))  # fits: written in place
    assert running.slabs[0].buf_k is slab
    assert torch.equal(slab[:4, :, :4], before[:, :, :4])
    assert torch.equal(running.slabs[0].keys[5, 0, 1:], torch.full((3, 2), 9.0))


def test_kv_remove_moves_only_the_last_rows_into_the_holes() -> None:
    c = _cache(5, 3, 0.0, capacity=64)  # row i holds i
    slab = c.slabs[0].buf_k
    order = c.remove([1, 4])
    # Row 4 went, row 3 (past the new end) moved into hole 1; rows 0 and 2 stayed put.
    assert order == [0, 3, 2]
    assert c.slabs[0].buf_k is slab and c.rows == 3
    assert [float(c.slabs[0].keys[i, 0, 0, 0]) for i in range(3)] == [0.0, 3.0, 2.0]
    assert [float(c.slabs[1].values[i, 0, 2, 1]) for i in range(3)] == [-0.0, -3.0, -2.0]
    assert c.remove([2]) == [0, 1]  # the last row: nothing moves
    c.slabs[0].update(torch.zeros(2, 1, 1, 2), torch.zeros(2, 1, 1, 2))
    assert c.length == 4 and c.get_seq_length() == 4 and c.slabs[0].keys.shape[0] == 2


def test_kv_drop_front_keeps_the_rest() -> None:
    c = _cache(2, 5, 1.0)
    c.drop_front(3)
    assert c.length == 2 and torch.equal(c.slabs[1].keys[1, 0], torch.full((2, 2), 2.0))


@pytest.mark.parametrize("rank", [1, 4, 8, 9, 64])
def test_module_weights_keep_peft_weights_in_whole_zero_padded_pages(rank: int) -> None:
    a, b = torch.randn(rank, 6), torch.randn(5, rank)
    original_b = b.clone()
    weights = ModuleWeights.from_peft(a, b, 0.3)
    pages = -(-rank // PAGE)
    assert weights.a_pages.shape == (pages, 6, PAGE) and weights.a_pages.is_contiguous()
    assert weights.b_pages.shape == (pages, PAGE, 5) and weights.b_pages.is_contiguous()
    # The scaling is folded into B (once, here), and PEFT's own tensors are left alone.
    assert torch.equal(weights.a, a) and torch.equal(weights.scaled_b, b * 0.3)
    assert torch.equal(b, original_b)
    assert weights.rank == rank and weights.scale == 0.3
    # Page p, lane j holds rank row p * PAGE + j: A's row transposed, B's column.
    assert torch.equal(weights.a_pages[0, :, 0], a[0])
    assert torch.equal(weights.b_pages[0, 0], b[:, 0] * 0.3)
    padding = pages * PAGE - rank
    if padding:
        assert not weights.a_pages.transpose(1, 2).reshape(-1, 6)[rank:].any()
        assert not weights.b_pages.reshape(-1, 5)[rank:].any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_modules_of_one_shape_load_together_each_with_its_own_weights(
    tmp_path: Path, dtype: torch.dtype
) -> None:
    """q and o (same shape, same rank) go through the page layout as one stack; v has
    another rank and o another alpha: every module still gets exactly PEFT's A and its own
    scaled B, in the base model's dtype, as one module alone would."""
    layer = "model.layers.0.self_attn"
    base = BaseModelShape(
        uri="builtin://tiny",
        linears={f"{layer}.q_proj": (8, 8), f"{layer}.o_proj": (8, 8), f"{layer}.v_proj": (8, 4)},
        dtype=dtype,
        device=torch.device("cpu"),
    )
    torch.manual_seed(0)
    tensors = {
        f"{PREFIX}.q_proj.lora_A.weight": torch.randn(2, 8),
        f"{PREFIX}.q_proj.lora_B.weight": torch.randn(8, 2),
        f"{PREFIX}.o_proj.lora_A.weight": torch.randn(2, 8),
        f"{PREFIX}.o_proj.lora_B.weight": torch.randn(8, 2),
        f"{PREFIX}.v_proj.lora_A.weight": torch.randn(3, 8),
        f"{PREFIX}.v_proj.lora_B.weight": torch.randn(4, 3),
    }
    config = {"target_modules": ["q_proj", "o_proj", "v_proj"], "alpha_pattern": {"o_proj": 3}}
    adapter = load_adapter("grouped", write(tmp_path / "g", config, tensors), base, max_rank=8)
    scales = {"q_proj": 4 / 2, "o_proj": 3 / 2, "v_proj": 4 / 3}
    for short, scale in scales.items():
        weights = adapter.weights[f"{layer}.{short}"]
        a = tensors[f"{PREFIX}.{short}.lora_A.weight"].to(dtype)
        b = tensors[f"{PREFIX}.{short}.lora_B.weight"].to(dtype)
        assert weights.a_pages.dtype == dtype and weights.a_pages.is_contiguous()
        assert weights.rank == a.shape[0] and weights.scale == scale
        assert torch.equal(weights.a, a)
        # A Python float times the weights: computed in fp32, rounded once to the dtype.
        assert torch.equal(weights.scaled_b, (b.float() * scale).to(dtype))
        alone = ModuleWeights.from_peft(a, b, scale)
        assert torch.equal(weights.a_pages, alone.a_pages)
        assert torch.equal(weights.b_pages, alone.b_pages)
    q, o = adapter.weights[f"{layer}.q_proj"], adapter.weights[f"{layer}.o_proj"]
    assert q.a_pages.untyped_storage().data_ptr() == o.a_pages.untyped_storage().data_ptr()
