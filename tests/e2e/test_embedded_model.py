"""The embedded base model end to end: conversion, concurrency, loading, and a real answer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from loraland.modeling import load_base_model
from loraland.settings import Settings
from loraland.storage import StorageError


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "loraland.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_greedy_answer_names_paris(settings: Settings, base_model_uri: str) -> None:
    loaded = load_base_model(base_model_uri, settings, precision="fp32", device="cpu")
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = loaded.tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    output = loaded.model.generate(**inputs, max_new_tokens=16, do_sample=False)
    answer = loaded.tokenizer.decode(
        output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True
    )
    assert "Paris" in answer


def test_two_processes_convert_into_one_cache(tmp_path: Path) -> None:
    """Both first resolves succeed, agree, and leave no staging directory behind."""
    env = {**os.environ, "LORALAND_CACHE": str(tmp_path / "cache")}
    first = _cli("models", "resolve", "builtin://smollm2-135m-instruct", env=env)
    second = _cli("models", "resolve", "builtin://smollm2-135m-instruct", env=env)
    results = [p.communicate(timeout=300) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], results
    paths = {stdout.strip().splitlines()[-1] for stdout, _ in results}
    assert len(paths) == 1
    converted = Path(paths.pop())
    assert (converted / "config.json").is_file()
    assert (converted / "model.safetensors").is_file()
    leftovers = [p.name for p in converted.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    load_base_model(str(converted), Settings(cache_dir=tmp_path / "cache"), device="cpu")


def test_corrupt_weights_fail_with_the_uri(base_model_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(base_model_dir / name, broken / name)
    (broken / "model.safetensors").write_bytes(b"\x00not a safetensors file" * 10)
    with pytest.raises(StorageError) as info:
        load_base_model(str(broken), Settings(cache_dir=tmp_path), device="cpu")
    assert str(broken) in str(info.value)
    assert "cannot load the model weights" in str(info.value)


def test_directory_without_config_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(StorageError, match=r"has no config\.json"):
        load_base_model(str(tmp_path / "empty"), Settings(cache_dir=tmp_path), device="cpu")


def test_cli_resolve_prints_directory_last(settings: Settings, base_model_dir: Path) -> None:
    env = {**os.environ, "LORALAND_CACHE": str(settings.cache_dir)}
    proc = _cli("models", "resolve", "builtin://smollm2-135m-instruct", env=env)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert Path(stdout.strip().splitlines()[-1]) == base_model_dir


def test_cli_errors_are_one_line_unless_debug(tmp_path: Path) -> None:
    env = {**os.environ, "LORALAND_CACHE": str(tmp_path)}
    proc = _cli("models", "resolve", "gs://bucket/model", env=env)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert stderr.strip().count("\n") == 0
    assert "unknown scheme 'gs://'" in stderr
    proc = _cli("--debug", "models", "resolve", "gs://bucket/model", env=env)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "Traceback" in stderr
