"""The third-party runtimes loraland drives, pinned in one place (pure data).

Each pin names the release whose source the operator's arguments were checked against,
and the command-line options of that release the operator may emit, copied from the
release's source (file and line cited per option). ``tests/unit/controller/test_upstream``
checks every argument :func:`loraland.controller.runtimes.plan` emits against these
tables, so bumping a version means re-reading the cited lines and updating the table.

Neither vLLM (a CUDA torch build) nor LoRAX (a Rust launcher) installs beside our torch,
so the tables are transcribed rather than imported:

- vLLM 0.33.0, read from the sdist ``vllm-0.33.0.tar.gz`` on PyPI.
- LoRAX 0.12.1, read from the ``v0.12.1`` tag of github.com/predibase/lorax (the image
  tag ``ghcr.io/predibase/lorax:0.12.1`` is the semver tag its build workflow pushes,
  ``.github/workflows/build.yaml`` lines 170-172).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ValueKind = Literal["flag", "str", "int"]


@dataclass(frozen=True)
class CliOption:
    """One option of a pinned runtime's command line."""

    name: str
    kind: ValueKind
    source: str  # file:line in the pinned release
    minimum: int | None = None
    choices: tuple[int, ...] | None = None


# --------------------------------------------------------------------------- vLLM

VLLM_VERSION = "0.33.0"
VLLM_IMAGE = f"vllm/vllm-openai:v{VLLM_VERSION}"

#: ``MaxLoRARanks`` in vllm/config/lora.py:27; ``--max-lora-rank`` takes only these.
VLLM_MAX_LORA_RANKS: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 320, 512)
#: ``LoRAConfig.max_loras`` default (vllm/config/lora.py:36): one adapter per batch.
VLLM_DEFAULT_MAX_LORAS = 1
#: ``LoRAConfig.max_lora_rank`` default (vllm/config/lora.py:34).
VLLM_DEFAULT_MAX_LORA_RANK = 16
#: vllm/envs.py:128 and its parser: "1" or "true" enables the load/unload routes
#: (vllm/entrypoints/serve/lora/api_router.py:29).
VLLM_RUNTIME_LORA_ENV = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"

#: ``vllm serve`` (the image's ENTRYPOINT, docker/Dockerfile:1344) options we emit.
VLLM_OPTIONS: dict[str, CliOption] = {
    o.name: o
    for o in (
        CliOption("--model", "str", "vllm/engine/arg_utils.py:969"),
        CliOption("--revision", "str", "vllm/engine/arg_utils.py:986"),
        CliOption("--max-model-len", "int", "vllm/engine/arg_utils.py:991", minimum=-1),
        CliOption("--served-model-name", "str", "vllm/engine/arg_utils.py:1031"),
        CliOption("--enable-lora", "flag", "vllm/engine/arg_utils.py:1610"),
        CliOption("--max-loras", "int", "vllm/engine/arg_utils.py:1614", minimum=1),
        CliOption(
            "--max-lora-rank",
            "int",
            "vllm/engine/arg_utils.py:1615",
            choices=VLLM_MAX_LORA_RANKS,
        ),
        CliOption("--max-cpu-loras", "int", "vllm/engine/arg_utils.py:1624", minimum=1),
        CliOption("--max-num-seqs", "int", "vllm/engine/arg_utils.py:1754", minimum=1),
        CliOption("--port", "int", "vllm/entrypoints/common/cli_args.py:295", minimum=0),
    )
}

# --------------------------------------------------------------------------- LoRAX

LORAX_VERSION = "0.12.1"
LORAX_IMAGE = f"ghcr.io/predibase/lorax:{LORAX_VERSION}"

#: The image sets ``HUGGINGFACE_HUB_CACHE=/data`` (Dockerfile:171); huggingface_hub
#: prefers it over ``HF_HOME``, so the operator sets it to the cache volume.
LORAX_HUB_CACHE_ENV = "HUGGINGFACE_HUB_CACHE"
#: launcher/src/main.rs:1610-1630: without a model config the defaults are at most
#: 4095 input and 4096 total tokens (max_position_embeddings when smaller).
LORAX_DEFAULT_TOKEN_CAP = 4096

#: ``lorax-launcher`` options we emit (launcher/src/main.rs, clap ``long`` names).
LORAX_OPTIONS: dict[str, CliOption] = {
    o.name: o
    for o in (
        CliOption("--model-id", "str", "launcher/src/main.rs:281"),
        CliOption("--revision", "str", "launcher/src/main.rs:318"),
        CliOption("--max-concurrent-requests", "int", "launcher/src/main.rs:397", minimum=0),
        CliOption("--max-input-length", "int", "launcher/src/main.rs:419", minimum=0),
        CliOption("--max-total-tokens", "int", "launcher/src/main.rs:431", minimum=0),
        CliOption("--max-active-adapters", "int", "launcher/src/main.rs:517", minimum=0),
        CliOption("--port", "int", "launcher/src/main.rs:536", minimum=0),
    )
}


def check_args(args: list[str], table: dict[str, CliOption]) -> dict[str, str | None]:
    """Parse ``args`` as the pinned CLI would; raise ValueError for what it would reject.

    Returns option -> value (None for flags).
    """
    seen: dict[str, str | None] = {}
    i = 0
    while i < len(args):
        flag = args[i]
        if flag not in table:
            raise ValueError(f"{flag} is not an option of the pinned release")
        if flag in seen:
            raise ValueError(f"{flag} given twice")
        option = table[flag]
        if option.kind == "flag":
            seen[flag] = None
            i += 1
            continue
        if i + 1 >= len(args) or args[i + 1].startswith("--"):
            raise ValueError(f"{flag} needs a value")
        value = args[i + 1]
        if option.kind == "int":
            number = int(value)
            if option.minimum is not None and number < option.minimum:
                raise ValueError(f"{flag} {number} is below {option.minimum}")
            if option.choices is not None and number not in option.choices:
                raise ValueError(f"{flag} {number} is not one of {option.choices}")
        seen[flag] = value
        i += 2
    return seen
