"""Benchmark (b): training tokens/s of loraland's trainer vs a plain transformers + peft loop.

Both train the same LoRA (rank 8 on q_proj/v_proj) of the embedded model on the same
examples (the synthetic ``intents`` task), same batch size, sequence limit, optimizer and
schedule, in one process. Runs alternate (ours, plain, ours, plain, ...) so that load from
other processes on the machine hits both alike; each reports non-padding tokens per second
of its training steps (model loading excluded). Prints the medians and their ratio.

    LORALAND_CACHE=/tmp/llcache .venv/bin/python benchmarks/train_throughput.py
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch


def loraland_run(steps: int, batch: int, max_len: int, settings, work: Path) -> float:  # type: ignore[no-untyped-def]
    from loraland.api.finetunejob import FineTuneJobSpec
    from loraland.data.loading import load_training_data
    from loraland.trainer.run import train

    spec = FineTuneJobSpec.model_validate(
        {
            "baseModel": {"uri": "builtin://smollm2-135m-instruct"},
            "dataset": {"task": "intents", "maxSamples": steps * batch},
            "lora": {"rank": 8, "alpha": 16, "dropout": 0.05},
            "training": {"maxSteps": steps, "batchSize": batch, "maxSeqLength": max_len,
                         "learningRate": 2e-4, "warmupRatio": 0.1, "checkpointEverySteps": 0},
            "output": {"uri": str(work / "out")},
        }
    )
    bundle = load_training_data(spec.dataset, spec.training.seed, settings)
    trained = train(spec, bundle, settings, work, emit=lambda _: None, log=lambda _: None)
    return trained.stats.tokens_per_second


def plain_run(steps: int, batch: int, max_len: int, settings) -> float:  # type: ignore[no-untyped-def]
    """The loop most people write: tokenize prompt + completion, mask the prompt, model(labels=...)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_scheduler

    from loraland.api.finetunejob import DatasetSpec
    from loraland.data.loading import load_training_data
    from loraland.storage import resolve

    path = resolve("builtin://smollm2-135m-instruct", settings)
    tokenizer = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(42)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05,
                                             target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    model.train()
    examples = load_training_data(DatasetSpec(task="intents", max_samples=steps * batch), 42, settings).train
    rows = []
    for ex in examples:
        prompt = tokenizer(ex.prompt)["input_ids"]
        completion = tokenizer(" " + ex.completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = (prompt + completion)[-max_len:]
        labels = ([-100] * len(prompt) + completion)[-max_len:]
        rows.append((ids, labels))
    random.Random(42).shuffle(rows)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=max(1, steps // 10), num_training_steps=steps)
    tokens, seconds = 0, 0.0
    for step in range(steps):
        started = time.perf_counter()  # both sides time whole steps, batching included
        chunk = rows[step * batch : (step + 1) * batch]
        width = max(len(ids) for ids, _ in chunk)
        input_ids = torch.full((len(chunk), width), tokenizer.pad_token_id)
        labels = torch.full((len(chunk), width), -100)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, (ids, labs) in enumerate(chunk):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            labels[i, : len(labs)] = torch.tensor(labs)
            mask[i, : len(ids)] = 1
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        seconds += time.perf_counter() - started
        tokens += int(mask.sum())
    return tokens / seconds


def main() -> None:
    from loraland.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = Settings.from_env()
    ours, plain = [], []
    for round_ in range(args.rounds):
        with tempfile.TemporaryDirectory() as work:
            ours.append(loraland_run(args.steps, args.batch_size, args.max_seq_length, settings, Path(work)))
        plain.append(plain_run(args.steps, args.batch_size, args.max_seq_length, settings))
        print(f"round {round_ + 1}: loraland {ours[-1]:.1f} tok/s, plain transformers+peft {plain[-1]:.1f} tok/s")
    ratio = statistics.median(ours) / statistics.median(plain)
    print(f"median: loraland {statistics.median(ours):.1f} tok/s, plain {statistics.median(plain):.1f} tok/s")
    print(f"ratio loraland / plain: {ratio:.2f}x (target: >= 0.95x)")


if __name__ == "__main__":
    main()
