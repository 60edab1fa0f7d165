"""Resumable checkpoints: trainable weights, optimizer, scheduler and RNG state.

A checkpoint is written into a temporary sibling directory and renamed into place, so a
process killed mid-write leaves either the previous checkpoints or a complete new one;
leftover temporary directories are ignored and cleaned up. ``state.json`` records the
step and the job fingerprint: checkpoints of a different job are refused, not loaded.
The data order needs no saving, it follows from the step (see :mod:`.schedule`).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from loraland.trainer.errors import TrainerError

STATE_FILE = "state.json"
WEIGHTS_FILE = "trainable.safetensors"
KEEP = 2


@dataclass(frozen=True)
class CheckpointState:
    step: int
    total_steps: int
    fingerprint: str
    loss: float | None


def _name(step: int) -> str:
    return f"step-{step:08d}"


def _trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad
    }


def save(
    root: Path,
    state: CheckpointState,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    final = root / _name(state.step)
    staging = root / f".{_name(state.step)}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    save_file(_trainable(model), str(staging / WEIGHTS_FILE))
    torch.save(optimizer.state_dict(), staging / "optimizer.pt")
    torch.save(scheduler.state_dict(), staging / "scheduler.pt")
    rng: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(rng, staging / "rng.pt")
    (staging / STATE_FILE).write_text(json.dumps(state.__dict__))
    if final.exists():
        shutil.rmtree(final)
    os.rename(staging, final)
    _prune(root)
    return final


def _prune(root: Path) -> None:
    complete = complete_checkpoints(root)
    for old in complete[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    for leftover in root.glob(".step-*.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def complete_checkpoints(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if (p / STATE_FILE).is_file())


def latest(root: Path, fingerprint: str) -> tuple[Path, CheckpointState] | None:
    found = complete_checkpoints(root)
    if not found:
        return None
    path = found[-1]
    state = CheckpointState(**json.loads((path / STATE_FILE).read_text()))
    if state.fingerprint != fingerprint:
        raise TrainerError(
            f"{root} holds checkpoints of a different job (fingerprint {state.fingerprint[:12]}, "
            f"this job {fingerprint[:12]}); use another --work-dir or delete it"
        )
    return path, state


def restore(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> None:
    weights = load_file(str(path / WEIGHTS_FILE))
    expected = {n for n, p in model.named_parameters() if p.requires_grad}
    if set(weights) != expected:
        raise TrainerError(f"{path}: checkpoint weights do not match the model's LoRA parameters")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor.to(params[name].device, params[name].dtype))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    rng = torch.load(path / "rng.pt", weights_only=False)
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
