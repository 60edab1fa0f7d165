"""A real ``loraland serve`` on the embedded model with two programmatic PEFT adapters.

The adapters are made here (peft ``get_peft_model`` + ``save_pretrained``, random non-zero
B so they change the output) because the load tests need adapters to mix, not trained ones.
The server admits at most 3 concurrent requests, so a run with more users than that gets
real 429 answers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from loraland.serving.process import ServerStartError, free_port, wait_until_healthy
from loraland.serving.process import stop as stop_server

# pytest runs with --import-mode=importlib (sys.path untouched): make the support module
# beside this file importable for the test module.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from loadtest_e2e_support import ADAPTERS, MAX_CONCURRENT, Server  # noqa: E402


@pytest.fixture(scope="session")
def lora_adapters(
    tmp_path_factory: pytest.TempPathFactory, base_model_dir: Path
) -> dict[str, Path]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("adapters")
    model = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32)
    paths = {}
    for seed, name in enumerate(ADAPTERS):
        torch.manual_seed(seed)
        config = LoraConfig(
            r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0
        )
        peft_model = get_peft_model(model, config)
        for param_name, param in peft_model.named_parameters():
            if "lora_B" in param_name:
                torch.nn.init.normal_(param, std=0.02)
        peft_model.save_pretrained(out / name)
        model = peft_model.unload()
        paths[name] = out / name
    return paths


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, base_model_uri: str, lora_adapters: dict[str, Path]
) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("server")
    port, grpc_port = free_port(), free_port()
    command = [
        sys.executable, "-m", "loraland.cli", "serve",
        "--base-model", base_model_uri,
        *[arg for name, path in lora_adapters.items() for arg in ("--adapter", f"{name}={path}")],
        "--host", "127.0.0.1", "--port", str(port), "--grpc-port", str(grpc_port),
        "--precision", "fp32", "--max-concurrent-requests", str(MAX_CONCURRENT),
    ]  # fmt: skip
    log = workdir / "server.log"
    with log.open("wb") as handle:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    server = Server(f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}", log)
    try:
        try:
            wait_until_healthy(server.url, process, log, timeout_s=240)
        except ServerStartError as exc:
            pytest.fail(str(exc))
        yield server
    finally:
        stop_server(process)
