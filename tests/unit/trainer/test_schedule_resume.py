"""Step counts and the data order that makes a resumed run see what the full run saw."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from loraland.api.finetunejob import TrainingSpec
from loraland.trainer import checkpoint as ckpt
from loraland.trainer.errors import TrainerError
from loraland.trainer.schedule import DataOrder, total_steps, warmup_steps
from loraland.trainer.targets import (
    check_quantization,
    check_target_modules,
    default_target_modules,
)


@pytest.mark.parametrize(
    ("training", "examples", "expected"),
    [
        (TrainingSpec(max_steps=7), 1000, 7),
        (TrainingSpec(batch_size=8), 100, 13),  # one epoch by default, last step partial
        (TrainingSpec(batch_size=4, gradient_accumulation_steps=2, epochs=2), 100, 25),
        (TrainingSpec(batch_size=64, epochs=0.01), 10, 1),
    ],
)
def test_total_steps(training: TrainingSpec, examples: int, expected: int) -> None:
    assert total_steps(training, examples) == expected


def test_warmup_steps() -> None:
    assert warmup_steps(TrainingSpec(warmup_ratio=0.1), 25) == 3
    assert warmup_steps(TrainingSpec(warmup_ratio=0.0), 25) == 0


def test_each_epoch_is_a_permutation_and_seeded() -> None:
    order = DataOrder(examples=10, batch_size=2, accumulation=1, seed=3)
    first_epoch = [i for step in range(5) for batch in order.step_batches(step) for i in batch]
    second_epoch = [i for step in range(5, 10) for batch in order.step_batches(step) for i in batch]
    assert sorted(first_epoch) == sorted(second_epoch) == list(range(10))
    assert first_epoch != second_epoch
    again = DataOrder(examples=10, batch_size=2, accumulation=1, seed=3)
    assert [again.step_batches(s) for s in range(10)] == [order.step_batches(s) for s in range(10)]
    other = DataOrder(examples=10, batch_size=2, accumulation=1, seed=4)
    assert [other.step_batches(s) for s in range(5)] != [order.step_batches(s) for s in range(5)]


def test_step_batches_depend_only_on_the_step() -> None:
    """What resuming relies on: a fresh DataOrder gives step k's batches without history."""
    full = DataOrder(examples=7, batch_size=3, accumulation=2, seed=1)
    history = [full.step_batches(s) for s in range(6)]
    fresh = DataOrder(examples=7, batch_size=3, accumulation=2, seed=1)
    assert fresh.step_batches(4) == history[4]
    assert all(len(step) == 2 and all(len(b) == 3 for b in step) for step in history)
    assert full.epoch_after(7) == 6.0


def test_qlora_on_a_machine_without_cuda_is_refused_before_work() -> None:
    check_quantization("none", cuda_available=False)
    with pytest.raises(TrainerError, match="4bit \\(QLoRA\\) needs a CUDA GPU"):
        check_quantization("4bit", cuda_available=False)


def test_default_and_checked_target_modules() -> None:
    assert default_target_modules("llama") == ["q_proj", "v_proj"]
    assert default_target_modules("gpt2") == ["c_attn"]
    with pytest.raises(TrainerError, match="no default LoRA target modules for model type 'mamba'"):
        default_target_modules("mamba")
    names = ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj", "lm_head"]
    check_target_modules(["q_proj", "v_proj"], names)
    with pytest.raises(
        TrainerError, match="k_projj not found in the model \\(candidates: q_proj, v_proj"
    ):
        check_target_modules(["q_proj", "k_projj"], names)


class Tiny(torch.nn.Module):
    """A frozen 'base' (the same in every run, as loaded weights are) and a trainable part."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.frozen = torch.nn.Linear(4, 4)
        self.frozen.requires_grad_(False)
        torch.manual_seed(seed)
        self.lora = torch.nn.Linear(4, 2)


def _setup(seed: int) -> tuple[Tiny, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    model = Tiny(seed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    return model, optimizer, scheduler


def _train_step(
    model: Tiny, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler
) -> None:
    x = torch.randn(3, 4)
    loss = torch.nn.functional.dropout(model.lora(model.frozen(x)), 0.5).pow(2).sum()
    loss.backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


def test_checkpoint_roundtrip_continues_exactly(tmp_path: Path) -> None:
    model, optimizer, scheduler = _setup(0)
    for _ in range(2):
        _train_step(model, optimizer, scheduler)
    state = ckpt.CheckpointState(step=2, total_steps=4, fingerprint="job-a", loss=1.0)
    ckpt.save(tmp_path, state, model, optimizer, scheduler)
    for _ in range(2):
        _train_step(model, optimizer, scheduler)
    expected = model.lora.weight.detach().clone()

    fresh, fresh_opt, fresh_sched = _setup(99)  # different init: the checkpoint must override it
    found = ckpt.latest(tmp_path, "job-a")
    assert found is not None and found[1] == state
    ckpt.restore(found[0], fresh, fresh_opt, fresh_sched)
    for _ in range(2):
        _train_step(fresh, fresh_opt, fresh_sched)
    assert torch.equal(fresh.lora.weight, expected)


def test_checkpoints_are_pruned_and_other_jobs_refused(tmp_path: Path) -> None:
    model, optimizer, scheduler = _setup(0)
    for step in (1, 2, 3):
        ckpt.save(
            tmp_path, ckpt.CheckpointState(step, 3, "job-a", None), model, optimizer, scheduler
        )
    (tmp_path / ".step-00000004.tmp-123").mkdir()  # a write that was killed midway
    assert [p.name for p in ckpt.complete_checkpoints(tmp_path)] == [
        "step-00000002",
        "step-00000003",
    ]
    found = ckpt.latest(tmp_path, "job-a")
    assert found is not None and found[1].step == 3
    with pytest.raises(TrainerError, match="holds checkpoints of a different job"):
        ckpt.latest(tmp_path, "job-b")
    assert ckpt.latest(tmp_path / "none", "job-a") is None
