"""Benchmark (a): how far a short CPU fine-tune lifts the embedded model on a synthetic task.

Runs ``loraland finetune`` on the embedded SmolLM2-135M-Instruct with a small step budget
(default: 40 steps of 8 examples, meant to fit in 5 minutes on 2 CPU cores), evaluates
base and adapter on the task's fixed evaluation set, and prints both scores, the lift in
points and the wall time of the training phase. Figures are printed, not asserted.

    LORALAND_CACHE=/tmp/llcache .venv/bin/python benchmarks/finetune_lift.py [--task intents]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="intents", help="a synthetic classification task")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--eval-samples", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2 = the target)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="lift-"))
    spec = {
        "baseModel": {"uri": "builtin://smollm2-135m-instruct"},
        "dataset": {"task": args.task, "maxSamples": args.steps * args.batch_size},
        "lora": {"rank": 8, "alpha": 16, "dropout": 0.05},
        "training": {
            "maxSteps": args.steps,
            "batchSize": args.batch_size,
            "learningRate": 0.002,
            "warmupRatio": 0.1,
            "maxSeqLength": 96,
            "checkpointEverySteps": 0,
            "seed": 0,
        },
        "evaluation": {"maxSamples": args.eval_samples, "batchSize": 50, "compareBase": True},
        "output": {"uri": str(root / "adapter")},
    }
    (root / "job.yaml").write_text(yaml.safe_dump(spec))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    command = [
        sys.executable,
        "-m",
        "loraland.cli",
        "finetune",
        "-f",
        str(root / "job.yaml"),
        "--work-dir",
        str(root / "work"),
    ]
    started = time.perf_counter()
    marks: dict[str, float] = {}
    last = ""
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            last = line.strip()
            event = json.loads(last)
            if event.get("event") == "progress":
                phase = event["phase"]
                if phase == "training" and event["step"] == 1:
                    marks.setdefault("training", time.perf_counter())
                marks.setdefault(phase, time.perf_counter())
    if proc.returncode != 0:
        print(f"finetune failed with exit code {proc.returncode}", file=sys.stderr)
        return 1
    total = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime
    result = json.loads(last)
    scores = result["scores"]
    train_seconds = marks["evaluating"] - marks["loading"]
    print(f"task: {args.task} ({scores['metric']}, {scores['samples']} eval samples)")
    print(
        f"fine-tune: {args.steps} steps x {args.batch_size} examples, {args.threads} threads, "
        f"training phase {train_seconds:.0f} s (incl. model load), whole command {total:.0f} s"
    )
    # Wall time depends on whatever else the machine runs; CPU time does not.
    print(
        f"CPU time of the command {cpu:.0f} s (= {cpu / args.threads:.0f} s of wall time on "
        f"{args.threads} idle cores); load average now {os.getloadavg()[0]:.1f}"
    )
    print(f"base accuracy:    {scores['base'] * 100:5.1f}")
    print(f"adapter accuracy: {scores['adapter'] * 100:5.1f}")
    print(
        f"lift:             {(scores['adapter'] - scores['base']) * 100:+5.1f} points "
        f"(target: >= +40 within 5 minutes of fine-tuning)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
