"""``loraland serve``: flags, or a config file, or both (flags that are given win)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from loraland.serving.errors import ServerConfigError

serve_help = "Serve a base model and many LoRA adapters (TGI/LoRAX, OpenAI, gRPC, metrics)."


def _adapter_flags(values: list[str]) -> list[dict[str, str]]:
    adapters = []
    for value in values:
        name, sep, uri = value.partition("=")
        if not sep or not name or not uri:
            raise ServerConfigError(f"--adapter expects NAME=URI, got {value!r}")
        adapters.append({"name": name, "uri": uri})
    return adapters


def serve(
    ctx: typer.Context,
    base_model: Annotated[str | None, typer.Option("--base-model", help="Base model URI.")] = None,
    adapter: Annotated[
        list[str] | None, typer.Option("--adapter", help="NAME=URI, repeatable.")
    ] = None,
    adapter_root: Annotated[
        list[Path] | None,
        typer.Option(
            "--adapter-root", help="Directory whose sub-directories load on demand by id."
        ),
    ] = None,
    adapters_file: Annotated[
        Path | None,
        typer.Option("--adapters-file", help="YAML/JSON list of {name, uri}, watched for changes."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-f", help="YAML/JSON ServerConfig file.")
    ] = None,
    host: Annotated[str | None, typer.Option("--host")] = None,
    port: Annotated[int | None, typer.Option("--port")] = None,
    grpc_port: Annotated[
        int | None, typer.Option("--grpc-port", help="Also serve gRPC here.")
    ] = None,
    precision: Annotated[
        str | None, typer.Option("--precision", help="auto | fp32 | bf16 | fp16")
    ] = None,
    device: Annotated[str | None, typer.Option("--device")] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="torch CPU threads (e.g. the CPU limit).")
    ] = None,
    max_batch_size: Annotated[int | None, typer.Option("--max-batch-size")] = None,
    max_input_tokens: Annotated[int | None, typer.Option("--max-input-tokens")] = None,
    max_total_tokens: Annotated[int | None, typer.Option("--max-total-tokens")] = None,
    max_concurrent_requests: Annotated[
        int | None, typer.Option("--max-concurrent-requests")
    ] = None,
    max_queue_length: Annotated[int | None, typer.Option("--max-queue-length")] = None,
    max_loaded_adapters: Annotated[int | None, typer.Option("--max-loaded-adapters")] = None,
    max_host_adapters: Annotated[int | None, typer.Option("--max-host-adapters")] = None,
    max_lora_rank: Annotated[int | None, typer.Option("--max-lora-rank")] = None,
) -> None:
    """Serve a base model and many LoRA adapters (TGI/LoRAX, OpenAI, gRPC, metrics)."""
    from loraland.serving.torch_defaults import apply_serve_defaults

    apply_serve_defaults()  # before anything imports torch (see serving/torch_defaults.py)
    from loraland.serving.config import ServerConfig
    from loraland.serving.server import Server

    flags: dict[str, Any] = {
        "base_model": base_model,
        "adapter_roots": [str(p) for p in adapter_root or []] or None,
        "adapters_file": str(adapters_file) if adapters_file else None,
        "host": host,
        "port": port,
        "grpc_port": grpc_port,
        "precision": precision,
        "device": device,
        "threads": threads,
        "max_batch_size": max_batch_size,
        "max_input_tokens": max_input_tokens,
        "max_total_tokens": max_total_tokens,
        "max_concurrent_requests": max_concurrent_requests,
        "max_queue_length": max_queue_length,
        "max_loaded_adapters": max_loaded_adapters,
        "max_host_adapters": max_host_adapters,
        "max_lora_rank": max_lora_rank,
    }
    overrides = {k: v for k, v in flags.items() if v is not None}
    if adapter:
        overrides["adapters"] = _adapter_flags(adapter)
    if config is not None:
        server_config = ServerConfig.from_file(config, overrides)
    elif "base_model" not in overrides:
        raise ServerConfigError("give --base-model (or a --config file that sets base_model)")
    else:
        server_config = ServerConfig.build(overrides)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = ctx.obj.settings
    Server(server_config, settings).run()
