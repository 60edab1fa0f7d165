"""Helpers for the serving e2e tests: test adapters made with peft, and a server process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from loraland.serving.process import ServerStartError, free_port, wait_until_healthy
from loraland.serving.process import stop as stop_server

#: name -> (rank, target modules); different ranks and targets on purpose.
GOOD_ADAPTERS: dict[str, tuple[int, list[str]]] = {
    "a1": (8, ["q_proj", "v_proj"]),
    "a2": (4, ["q_proj", "k_proj", "v_proj", "o_proj"]),
    "a3": (16, ["gate_proj", "up_proj", "down_proj"]),
    "a4": (8, ["q_proj", "v_proj", "up_proj"]),
}


def make_adapters(base_dir: Path, out: Path, base_uri: str) -> dict[str, Path]:
    """Save the good adapters (random non-zero B) plus broken variants under ``out``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    paths: dict[str, Path] = {}
    for seed, (name, (rank, targets)) in enumerate(GOOD_ADAPTERS.items()):
        torch.manual_seed(1000 + seed)
        config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets, lora_dropout=0.0)
        peft_model = get_peft_model(model, config)
        for param_name, param in peft_model.named_parameters():
            if "lora_B" in param_name:
                torch.nn.init.normal_(param, std=0.1)
        peft_model.save_pretrained(out / name)
        model = peft_model.unload()
        paths[name] = out / name
    # The same adapter with loraland metadata naming the served base model: loads fine.
    _copy(out / "a1", out / "a1-meta")
    _metadata(out / "a1-meta", base_uri)
    paths["a1-meta"] = out / "a1-meta"

    broken = {
        "bad-rank": "rank",
        "bad-shapes": "shapes",
        "bad-module": "module",
        "bad-corrupt": "corrupt",
        "bad-base": "base",
        "bad-config": "config",
    }
    for name, kind in broken.items():
        target = out / name
        _copy(out / "a1", target)
        weights = target / "adapter_model.safetensors"
        tensors = load_file(str(weights))
        if kind == "rank":
            torch.manual_seed(7)
            config = LoraConfig(r=32, lora_alpha=32, target_modules=["q_proj"], lora_dropout=0.0)
            peft_model = get_peft_model(model, config)
            peft_model.save_pretrained(target)
            model = peft_model.unload()
        elif kind == "shapes":  # as if trained on a model with a narrower hidden size
            save_file(
                {k: v[..., :64].contiguous() if "lora_A" in k else v for k, v in tensors.items()},
                str(weights),
            )
        elif kind == "module":
            save_file({k.replace("q_proj", "qq_proj"): v for k, v in tensors.items()}, str(weights))
        elif kind == "corrupt":
            weights.write_bytes(b"this is not a safetensors file")
        elif kind == "base":
            _metadata(target, "hf://someone/another-model")
        elif kind == "config":
            (target / "adapter_config.json").write_text("{not json")
        paths[name] = target
    return paths


def _copy(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for file in src.iterdir():
        (dst / file.name).write_bytes(file.read_bytes())


def _metadata(path: Path, base_uri: str) -> None:
    import hashlib

    weights = (path / "adapter_model.safetensors").read_bytes()
    (path / "loraland.json").write_text(
        json.dumps(
            {
                "name": path.name,
                "base_model": base_uri,
                "sha256": hashlib.sha256(weights).hexdigest(),
                "size_bytes": len(weights),
            }
        )
    )


@dataclass
class ServerProcess:
    """``loraland serve`` in a subprocess, configured through a YAML file."""

    config: dict[str, Any]
    workdir: Path
    #: Start with these CLI flags instead of a config file (port flags are added).
    flags: list[str] | None = None
    port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / f"server-{self.port}.log"

    def start(self, timeout: float = 120.0) -> ServerProcess:
        if self.flags is not None:
            ports = [
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--grpc-port",
                str(self.grpc_port),
            ]
            args = [*self.flags, *ports]
        else:
            config = {
                **self.config,
                "host": "127.0.0.1",
                "port": self.port,
                "grpc_port": self.grpc_port,
            }
            config_file = self.workdir / f"server-{self.port}.yaml"
            config_file.write_text(yaml.safe_dump(config))
            args = ["--config", str(config_file)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "loraland.cli", "serve", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        try:
            wait_until_healthy(self.url, self.process, self.log, timeout, poll_s=0.3)
        except ServerStartError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_server(self.process, grace_s=20)

    def wait_adapters(self, names: list[str], timeout: float = 60.0) -> dict[str, dict[str, Any]]:
        """Wait until every name has left Pending; returns name -> admin entry."""
        deadline = time.monotonic() + timeout
        while True:
            listing = httpx.get(f"{self.url}/admin/adapters", timeout=5).json()["adapters"]
            by_name = {a["name"]: a for a in listing}
            if all(n in by_name and by_name[n]["state"] != "Pending" for n in names):
                return by_name
            if time.monotonic() > deadline:
                raise TimeoutError(f"adapters still pending: {by_name}")
            time.sleep(0.2)

    def metric(self, name: str, labels: str = "") -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and (not labels or labels in line):
                key = line.split(" ")[0]
                if key.split("{")[0] == name:
                    total += float(line.rsplit(" ", 1)[1])
        return total
