"""Adapter validation on small synthetic PEFT directories, and the KV slab operations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from loraland.serving.engine.kv import SlabCache
from loraland.serving.lora.loading import AdapterLoadError, BaseModelShape, load_adapter
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


def test_kv_merge_left_pads_and_select_trims() -> None:
    def cache(rows: int, length: int, value: float) -> SlabCache:
        c = SlabCache.empty(
            2, rows, 1, 2, capacity=4, dtype=torch.float32, device=torch.device("cpu")
        )
        for layer in c.slabs:
            layer.update(
                torch.full((rows, 1, length, 2), value), torch.full((rows, 1, length, 2), -value)
            )
        return c

    short, long = cache(1, 2, 1.0), cache(2, 5, 2.0)  # the long one outgrows its capacity
    merged = SlabCache.merge(short, long)
    assert merged.length == 5
    keys = merged.slabs[0].keys
    assert keys.shape == (3, 1, 5, 2)
    assert torch.equal(keys[0, 0, :3], torch.zeros(3, 2)) and torch.equal(
        keys[0, 0, 3:], torch.ones(2, 2)
    )
    kept = merged.select(torch.tensor([0]), drop_front=3)
    assert kept.length == 2 and torch.equal(kept.slabs[1].keys, torch.ones(1, 1, 2, 2))
    kept.slabs[0].update(torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1, 2))
    assert kept.length == 3 and kept.get_seq_length() == 3
