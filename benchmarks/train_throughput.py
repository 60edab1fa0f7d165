"""Benchmark (b): training tokens/s of loraland's trainer vs a plain transformers + peft loop.

Both train the same LoRA (rank 8 on q_proj/v_proj, dropout 0.05) of the embedded model on
the same examples (the synthetic ``intents`` task) with the same batch size, sequence
limit, AdamW, linear warmup/decay and gradient clipping, in one process. The two loops are
interleaved step by step: after each loraland step (inside its progress callback, which
the trainer's own timing excludes) the plain loop runs one step. So whatever else runs on
the machine slows both alike, which matters on a shared 2-core box. Each side reports
non-padding tokens per second over the wall time of its steps (batching included, model
loading excluded). Prints both and the ratio; nothing is asserted.

    LORALAND_CACHE=/tmp/llcache .venv/bin/python benchmarks/train_throughput.py
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from loraland.api.finetunejob import FineTuneJobSpec
from loraland.api.progress import TrainingProgress
from loraland.data.loading import load_training_data
from loraland.settings import Settings
from loraland.storage import resolve
from loraland.trainer.run import train


class PlainLoop:
    """The loop most people write: prompt + completion ids, prompt masked, model(labels=...)."""

    def __init__(
        self, settings: Settings, examples: list[Any], batch: int, max_len: int, steps: int
    ) -> None:
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer, get_scheduler

        path = resolve("builtin://smollm2-135m-instruct", settings)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        torch.manual_seed(42)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        config = LoraConfig(
            r=8,
            lora_alpha=16,
            lora_dropout=0.05,
            target_modules=["q_proj", "v_proj"],
            task_type="CAUSAL_LM",
        )
        self.model = get_peft_model(model, config)
        self.model.train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=2e-4)
        self.scheduler = get_scheduler(
            "linear", self.optimizer, num_warmup_steps=max(1, steps // 10), num_training_steps=steps
        )
        eos = self.tokenizer.eos_token_id
        self.rows = []
        for ex in examples:
            prompt = self.tokenizer(ex.prompt)["input_ids"]
            completion = self.tokenizer(" " + ex.completion, add_special_tokens=False)[
                "input_ids"
            ] + [eos]
            self.rows.append(
                ((prompt + completion)[-max_len:], ([-100] * len(prompt) + completion)[-max_len:])
            )
        random.Random(42).shuffle(self.rows)
        self.batch = batch
        self.done = 0
        self.tokens = 0
        self.seconds = 0.0

    def step(self) -> None:
        started = time.perf_counter()
        start = (self.done * self.batch) % len(self.rows)
        chunk = self.rows[start : start + self.batch]
        width = max(len(ids) for ids, _ in chunk)
        input_ids = torch.full((len(chunk), width), self.tokenizer.pad_token_id)
        labels = torch.full((len(chunk), width), -100)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, (ids, labs) in enumerate(chunk):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            labels[i, : len(labs)] = torch.tensor(labs)
            mask[i, : len(ids)] = 1
        loss = self.model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.seconds += time.perf_counter() - started
        self.tokens += int(mask.sum())
        self.done += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-seq-length", type=int, default=64)
    args = parser.parse_args()
    settings = Settings.from_env()
    spec = FineTuneJobSpec.model_validate(
        {
            "baseModel": {"uri": "builtin://smollm2-135m-instruct"},
            "dataset": {"task": "intents", "maxSamples": args.steps * args.batch_size},
            "lora": {"rank": 8, "alpha": 16, "dropout": 0.05},
            "training": {
                "maxSteps": args.steps,
                "batchSize": args.batch_size,
                "maxSeqLength": args.max_seq_length,
                "learningRate": 2e-4,
                "warmupRatio": 0.1,
                "checkpointEverySteps": 0,
            },
            "output": {"uri": "/unused"},
        }
    )
    bundle = load_training_data(spec.dataset, spec.training.seed, settings)
    plain = PlainLoop(settings, bundle.train, args.batch_size, args.max_seq_length, args.steps)

    def interleave(progress: TrainingProgress) -> None:
        if progress.phase == "training":
            plain.step()

    with tempfile.TemporaryDirectory() as work:
        trained = train(spec, bundle, settings, Path(work), emit=interleave, log=lambda _: None)
    ours = trained.stats.tokens_per_second
    theirs = plain.tokens / plain.seconds
    print(
        f"{args.steps} steps x {args.batch_size} examples, maxSeqLength {args.max_seq_length}, "
        f"{torch.get_num_threads()} threads, interleaved step by step"
    )
    print(f"loraland finetune trainer:     {ours:8.1f} tokens/s ({trained.stats.tokens} tokens)")
    print(f"plain transformers+peft loop:  {theirs:8.1f} tokens/s ({plain.tokens} tokens)")
    print(f"ratio loraland / plain: {ours / theirs:.2f}x (target: >= 0.95x)")


if __name__ == "__main__":
    main()
