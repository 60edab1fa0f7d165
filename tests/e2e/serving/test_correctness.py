"""Greedy output in a mixed-adapter continuous batch equals transformers + peft alone."""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

import httpx
import pytest
from serving_helpers import GOOD_ADAPTERS, ServerProcess

PROMPTS = [
    "The capital of France is",
    "Write a short poem about the sea.",
    "1, 2, 3, 4,",
    "def fibonacci(n):",
]
ADAPTERS: list[str | None] = [None, *GOOD_ADAPTERS]


def _jobs() -> list[tuple[str, str | None, int]]:
    jobs = []
    for i, prompt in enumerate(PROMPTS):
        for j, adapter in enumerate(ADAPTERS):
            jobs.append((prompt, adapter, 6 + (i + j) % 3 * 3))
    return jobs  # 20 requests, 4 on the base model


def _ask(url: str, prompt: str, adapter: str | None, max_new_tokens: int) -> list[int]:
    parameters: dict[str, object] = {"max_new_tokens": max_new_tokens, "details": True}
    if adapter is not None:
        parameters["adapter_id"] = adapter
    response = httpx.post(
        f"{url}/generate", json={"inputs": prompt, "parameters": parameters}, timeout=120
    )
    assert response.status_code == 200, response.text
    return [t["id"] for t in response.json()["details"]["tokens"]]


@pytest.mark.timeout(400)
def test_mixed_batch_matches_peft_alone(
    server: ServerProcess, base_model_dir: Path, adapter_dirs: dict[str, Path]
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    jobs = _jobs()
    steps_before = server.metric("loraland_batch_size_count")
    rows_before = server.metric("loraland_batch_size_sum")
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = []
        for job in jobs:
            futures.append(pool.submit(_ask, server.url, *job))
            time.sleep(0.02)  # arrivals spread over several steps: rows join a running batch
        served = [f.result() for f in futures]
    steps = server.metric("loraland_batch_size_count") - steps_before
    rows = server.metric("loraland_batch_size_sum") - rows_before
    assert rows / steps > 2, "requests were not batched together"

    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    base = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32).eval()
    names = list(GOOD_ADAPTERS)
    model = PeftModel.from_pretrained(base, adapter_dirs[names[0]], adapter_name=names[0])
    for name in names[1:]:
        model.load_adapter(adapter_dirs[name], adapter_name=name)
    model.eval()

    mismatches = []
    changed: set[str] = set()
    base_outputs: dict[str, list[int]] = {}
    for (prompt, adapter, max_new_tokens), got in zip(jobs, served, strict=True):
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            if adapter is None:
                with model.disable_adapter():
                    out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False)
            else:
                model.set_adapter(adapter)
                out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False)
        expected = out[0, ids.shape[1] :].tolist()
        if got != expected:
            mismatches.append((prompt, adapter, expected, got))
        if adapter is None:
            base_outputs[prompt] = expected
        elif expected != base_outputs[prompt][: len(expected)]:
            changed.add(adapter)
    assert not mismatches, mismatches
    # Every adapter really changes some output, so matching it means something.
    assert changed == set(GOOD_ADAPTERS)
