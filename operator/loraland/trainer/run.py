"""One training run: load the base model, add LoRA, train (resuming if it can), save.

Returns the in-memory PeftModel as well as the saved adapter directory, so the caller
(:mod:`loraland.pipeline`) can score it without loading the weights again.
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from loraland.api.adapter import PEFT_CONFIG_FILE
from loraland.api.finetunejob import FineTuneJobSpec
from loraland.api.progress import TrainingProgress
from loraland.data.loading import DatasetBundle
from loraland.modeling import load_base_model, pick_device, pick_dtype
from loraland.settings import PVC_MOUNT_ROOT, Settings
from loraland.storage import Scheme, parse_uri
from loraland.trainer import checkpoint as ckpt
from loraland.trainer.encoding import encode_examples
from loraland.trainer.errors import TrainerError
from loraland.trainer.loop import LoopConfig, LoopStats, train_loop
from loraland.trainer.schedule import DataOrder, total_steps, warmup_steps
from loraland.trainer.stopping import StopSignal
from loraland.trainer.targets import (
    check_quantization,
    check_target_modules,
    default_target_modules,
)
from loraland.trainer.workdir import fingerprint

Log = Callable[[str], None]


@dataclass
class TrainedModel:
    model: Any  # peft.PeftModel with the adapter "default"
    tokenizer: Any
    adapter_dir: Path
    base_path: Path
    steps: int
    resumed_from: int | None
    truncated: int
    train_samples: int
    stats: LoopStats
    hyperparameters: dict[str, Any]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def preflight(spec: FineTuneJobSpec) -> None:
    """Checks that need no data and no weights, run before anything slow."""
    check_quantization(spec.lora.quantization, torch.cuda.is_available())


def _quantization_config(spec: FineTuneJobSpec, compute: torch.dtype) -> Any:
    if spec.lora.quantization == "none":
        return None
    from transformers import BitsAndBytesConfig

    if spec.lora.quantization == "4bit":
        return BitsAndBytesConfig(  # type: ignore[no-untyped-call]
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
    return BitsAndBytesConfig(load_in_8bit=True)  # type: ignore[no-untyped-call]


def adapter_base_name(uri: str, local_path: Path) -> str:
    """What adapter_config.json names as the base: a name PEFT, vLLM and LoRAX can read.

    The hub id for ``hf://`` bases (what LoRAX's ``--model-id`` and vLLM's ``--model``
    are for that base, so LoRAX skips its architecture check, utils/adapter.py:166 at
    0.12.1); the path serving pods mount a ``pvc://`` claim at, a local path as given;
    and for ``builtin://`` and ``s3://`` the directory the trainer loaded, as PEFT itself
    records. Never a loraland URI: ``AutoConfig.from_pretrained`` cannot read one.
    loraland.json keeps the URI (``base_model``).
    """
    parsed = parse_uri(uri)
    if parsed.scheme is Scheme.HF:
        return parsed.location
    if parsed.scheme is Scheme.PVC:
        return str(PurePosixPath(PVC_MOUNT_ROOT, parsed.location, parsed.path))
    if parsed.scheme is Scheme.FILE:
        return str(Path(parsed.location).expanduser().absolute())
    return str(local_path)


def base_model_uri(spec: FineTuneJobSpec) -> str:
    """The base URI with ``baseModel.revision`` applied (hub models only have revisions)."""
    uri, revision = spec.base_model.uri, spec.base_model.revision
    parsed = parse_uri(uri)
    if revision is None or parsed.scheme is not Scheme.HF:
        return uri
    return f"hf://{parsed.location}@{revision}"


def hyperparameters(spec: FineTuneJobSpec, targets: list[str], steps: int) -> dict[str, Any]:
    return {
        "lora": {**spec.lora.model_dump(mode="json", by_alias=True), "targetModules": targets},
        "training": {
            **spec.training.model_dump(mode="json", by_alias=True, exclude_none=True),
            "totalSteps": steps,
        },
    }


def train(
    spec: FineTuneJobSpec,
    bundle: DatasetBundle,
    settings: Settings,
    work_dir: Path,
    emit: Callable[[TrainingProgress], None],
    log: Log = _stderr,
    stop: StopSignal | None = None,
) -> TrainedModel:
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import get_scheduler

    preflight(spec)
    training = spec.training
    device = pick_device()
    dtype = pick_dtype(training.precision, device)
    torch.manual_seed(training.seed)
    loaded = load_base_model(
        base_model_uri(spec),
        settings,
        precision=training.precision,
        quantization_config=_quantization_config(spec, dtype),
    )
    model: Any = loaded.model
    tokenizer = loaded.tokenizer
    if spec.lora.quantization != "none":
        model = prepare_model_for_kbit_training(  # type: ignore[no-untyped-call]
            model, use_gradient_checkpointing=training.gradient_checkpointing
        )
    elif training.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()

    targets = spec.lora.target_modules or default_target_modules(model.config.model_type)
    check_target_modules(targets, (name for name, _ in model.named_modules()))
    torch.manual_seed(training.seed)  # LoRA A matrices start from the same draw every run
    lora_config = LoraConfig(
        r=spec.lora.rank,
        lora_alpha=spec.lora.alpha,
        lora_dropout=spec.lora.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        # peft still calls a transformers property deprecated in v5; nothing for users to do.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        model = get_peft_model(model, lora_config)

    encoded = encode_examples(
        tokenizer,
        bundle.train,
        max_len=training.max_seq_length,
        completion_only=training.completion_only_loss,
        chat=spec.dataset.chat_template,
    )
    truncated = sum(e.truncated for e in encoded)
    if truncated:
        log(
            f"{truncated} of {len(encoded)} examples were longer than maxSeqLength="
            f"{training.max_seq_length} tokens and were truncated"
        )
    steps = total_steps(training, len(encoded))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=training.learning_rate, weight_decay=training.weight_decay
    )
    scheduler = get_scheduler(
        "constant_with_warmup" if training.scheduler == "constant" else training.scheduler,
        optimizer,
        num_warmup_steps=warmup_steps(training, steps),
        num_training_steps=steps,
    )

    job = fingerprint(spec)
    checkpoints = work_dir / "checkpoints"
    start, resumed_from = 0, None
    found = ckpt.latest(checkpoints, job)
    if found is not None:
        path, state = found
        ckpt.restore(path, model, optimizer, scheduler)
        start = resumed_from = state.step
        log(f"resuming from {path} (step {state.step} of {steps})")

    def save_checkpoint(step: int, loss: float | None) -> None:
        ckpt.save(
            checkpoints, ckpt.CheckpointState(step, steps, job, loss), model, optimizer, scheduler
        )

    loop_config = LoopConfig(
        total_steps=steps,
        max_grad_norm=training.max_grad_norm,
        log_every=training.log_every_steps,
        checkpoint_every=training.checkpoint_every_steps,
        pad_id=int(tokenizer.pad_token_id),
        device=device,
        autocast_dtype=dtype if dtype != torch.float32 and device.startswith("cuda") else None,
    )
    order = DataOrder(
        len(encoded), training.batch_size, training.gradient_accumulation_steps, training.seed
    )
    with (stop or StopSignal()).deferred() as should_stop:
        stats = train_loop(
            model,
            optimizer,
            scheduler,
            encoded,
            order,
            loop_config,
            start_step=start,
            emit=emit,
            checkpoint=save_checkpoint,
            should_stop=should_stop,
        )
    model.eval()
    adapter_dir = work_dir / "adapter"
    shutil.rmtree(adapter_dir, ignore_errors=True)
    model.save_pretrained(str(adapter_dir))
    _set_base_name(adapter_dir, adapter_base_name(spec.base_model.uri, loaded.path))
    return TrainedModel(
        model=model,
        tokenizer=tokenizer,
        adapter_dir=adapter_dir,
        base_path=loaded.path,
        steps=stats.steps,
        resumed_from=resumed_from,
        truncated=truncated,
        train_samples=len(encoded),
        stats=stats,
        hyperparameters=hyperparameters(spec, targets, steps),
    )


def _set_base_name(adapter_dir: Path, name: str) -> None:
    """Record :func:`adapter_base_name` instead of whatever PEFT wrote."""
    path = adapter_dir / PEFT_CONFIG_FILE
    if not path.is_file():
        raise TrainerError(f"peft did not write {path}")
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = name
    path.write_text(json.dumps(config, indent=2, sort_keys=True))
