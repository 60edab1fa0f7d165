"""Reading a PEFT LoRA adapter from disk and checking it fits the served base model.

Every way an adapter can be wrong ends in :class:`AdapterLoadError` with a reason a
person can act on (the file, the value, the limit), so one bad adapter fails its own
load and nothing else. Checked: the files exist and parse; it is plain LoRA (no DoRA,
biases, ``modules_to_save``, embedding LoRA); its rank is within ``max_rank``; every
module it targets exists in the base model as a Linear with matching shapes (a LoRA
trained on another base model fails here); the weights are finite; and, when
``loraland.json`` is present, its ``base_model`` is the served one.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from pydantic import ValidationError

from loraland.api.adapter import METADATA_FILE, PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE, AdapterMetadata
from loraland.serving.lora.ops import PAGE, pages_for

_KEY_RE = re.compile(
    r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$"
)
#: A checked module: its path, PEFT's A and B, and its scaling.
Member = tuple[str, torch.Tensor, torch.Tensor, float]


class ShapeGroup(NamedTuple):
    """Modules with one (rank, in, out), their A and B stacked."""

    members: list[Member]
    a: torch.Tensor  # [M, rank, in]
    b: torch.Tensor  # [M, out, rank]


class AdapterLoadError(Exception):
    """The adapter cannot be served; the message says why."""


def page_layout(
    a: torch.Tensor, b: torch.Tensor, scales: list[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """PEFT's weights of ``M`` modules of one shape, ``a: [M, rank, in]`` and
    ``b: [M, out, rank]``, in the pools' page layout: ``[M, pages, in, PAGE]`` (A
    transposed) and ``[M, pages, PAGE, out]`` (B transposed, times each module's scale),
    rank rows past ``rank`` zero. Modules of one shape go through together: an adapter has
    a hundred or more, and per module these few ops were most of a load's CPU time."""
    m, rank, d_in = a.shape
    d_out = b.shape[1]
    pages = pages_for(rank)
    padding = pages * PAGE - rank
    # The scales in fp32, as a Python float scalar would be: bf16 weights then round once.
    scale = torch.tensor(scales, dtype=torch.float32).view(m, 1, 1)
    b_t = (b.transpose(1, 2) * scale).to(b.dtype)
    if padding:
        a = torch.cat([a, a.new_zeros(m, padding, d_in)], dim=1)
        b_t = torch.cat([b_t, b_t.new_zeros(m, padding, d_out)], dim=1)
    a_pages = a.reshape(m, pages, PAGE, d_in).transpose(2, 3).contiguous()
    return a_pages, b_t.contiguous().view(m, pages, PAGE, d_out)


@dataclass(frozen=True)
class ModuleWeights:
    """One module's LoRA weights in the device pools' page layout (see ``ops.py``), so
    entering a device slot, on the engine thread, is a plain copy of whole pages; the
    transposing, padding and scaling happen here, on the load pool."""

    a_pages: torch.Tensor  # [pages, in, PAGE]: A transposed; rank rows past ``rank`` zero
    b_pages: torch.Tensor  # [pages, PAGE, out]: B transposed, times ``scale``; likewise
    rank: int
    scale: float

    @classmethod
    def from_peft(cls, a: torch.Tensor, b: torch.Tensor, scale: float) -> ModuleWeights:
        """From PEFT's ``lora_A.weight: [rank, in]``, ``lora_B.weight: [out, rank]`` and
        the module's scaling (``lora_alpha / r``, or its rsLoRA form), which is folded into
        B once here rather than applied at every forward."""
        a_pages, b_pages = page_layout(a.unsqueeze(0), b.unsqueeze(0), [scale])
        return cls(a_pages=a_pages[0], b_pages=b_pages[0], rank=int(a.shape[0]), scale=scale)

    @property
    def a(self) -> torch.Tensor:
        """``lora_A.weight``, ``[rank, in]`` (a view)."""
        return self.a_pages.transpose(1, 2).reshape(-1, self.a_pages.shape[1])[: self.rank]

    @property
    def scaled_b(self) -> torch.Tensor:
        """``lora_B.weight * scale``, ``[out, rank]`` (a view)."""
        return self.b_pages.reshape(-1, self.b_pages.shape[2])[: self.rank].T


@dataclass(frozen=True)
class LoadedAdapter:
    name: str
    path: Path
    weights: dict[str, ModuleWeights]

    @property
    def max_rank(self) -> int:
        return max((w.rank for w in self.weights.values()), default=0)

    @property
    def nbytes(self) -> int:
        """Host memory held, whole pages included."""
        return sum(
            t.numel() * t.element_size()
            for w in self.weights.values()
            for t in (w.a_pages, w.b_pages)
        )


@dataclass(frozen=True)
class BaseModelShape:
    """What an adapter is checked against: the served base model's Linear modules."""

    uri: str
    linears: dict[str, tuple[int, int]]  # module path -> (in_features, out_features)
    dtype: torch.dtype
    device: torch.device

    @classmethod
    def of(cls, uri: str, model: torch.nn.Module) -> BaseModelShape:
        linears = {
            name: (m.in_features, m.out_features)
            for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear)
        }
        param = next(model.parameters())
        return cls(uri=uri, linears=linears, dtype=param.dtype, device=param.device)


def load_adapter(name: str, path: Path, base: BaseModelShape, max_rank: int) -> LoadedAdapter:
    """Read and validate the adapter in ``path``; host (CPU) tensors in the base model's
    dtype."""
    if not path.is_dir():
        raise AdapterLoadError(f"{path} is not a directory")
    config = _read_config(path)
    _check_metadata(path, base.uri)
    _check_config(config, max_rank)
    tensors = _read_weights(path)
    pairs = _pair_up(tensors)
    alpha = float(config.get("lora_alpha", 8))
    checked: list[Member] = []
    for module, (a, b) in sorted(pairs.items()):
        if module not in base.linears:
            short = module.rsplit(".", 1)[-1]
            raise AdapterLoadError(
                f"targets module '{module}' ({short}), which the base model {base.uri} does "
                "not have as a Linear layer; was it trained on another base model?"
            )
        in_features, out_features = base.linears[module]
        rank = a.shape[0]
        if (
            a.dim() != 2
            or b.dim() != 2
            or a.shape[1] != in_features
            or b.shape != (out_features, rank)
        ):
            raise AdapterLoadError(
                f"shape mismatch at {module}: lora_A {tuple(a.shape)}, lora_B {tuple(b.shape)}, "
                f"but the base layer is {in_features} -> {out_features}; "
                "was it trained on another base model?"
            )
        if rank > max_rank:
            raise AdapterLoadError(
                f"rank {rank} at {module} exceeds the server's max_lora_rank {max_rank}"
            )
        checked.append((module, a, b, _scale(config, module, rank, alpha)))
    if not checked:
        raise AdapterLoadError(f"{PEFT_WEIGHTS_FILE} holds no LoRA weights")
    # After the per-module checks, as when it was one of them: a wrong module or shape is
    # the error to report first.
    groups = _same_shape_groups(checked)
    _check_finite(groups)
    weights: dict[str, ModuleWeights] = {}
    for group in groups:
        a_pages, b_pages = page_layout(
            group.a.to(base.dtype), group.b.to(base.dtype), [scale for *_, scale in group.members]
        )
        a_pages, b_pages = _host_copy(a_pages, base), _host_copy(b_pages, base)
        for i, (module, a, _, scale) in enumerate(group.members):
            weights[module] = ModuleWeights(a_pages[i], b_pages[i], int(a.shape[0]), scale)
    return LoadedAdapter(name=name, path=path, weights=weights)


def _host_copy(pages: torch.Tensor, base: BaseModelShape) -> torch.Tensor:
    """The host tier's copy: CPU memory, page-locked when the model is on a GPU, so the
    copy into a device slot is a DMA that does not wait for the CPU (and the host tier
    does not take GPU memory)."""
    return pages.pin_memory() if base.device.type == "cuda" else pages


def _same_shape_groups(checked: list[Member]) -> list[ShapeGroup]:
    """The modules by (rank, in, out) (a rank-8 adapter on q/k/v/o of a GQA model is two
    groups)."""
    by_shape: dict[tuple[int, ...], list[Member]] = {}
    for member in checked:
        _, a, b, _ = member
        by_shape.setdefault((*a.shape, b.shape[0]), []).append(member)
    return [
        ShapeGroup(
            members,
            torch.stack([a for _, a, _, _ in members]),
            torch.stack([b for _, _, b, _ in members]),
        )
        for members in by_shape.values()
    ]


def _read_config(path: Path) -> dict[str, Any]:
    file = path / PEFT_CONFIG_FILE
    if not file.is_file():
        raise AdapterLoadError(f"missing {PEFT_CONFIG_FILE} in {path}")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AdapterLoadError(f"{PEFT_CONFIG_FILE} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise AdapterLoadError(f"{PEFT_CONFIG_FILE} must hold a JSON object")
    return config


def _check_config(config: dict[str, Any], max_rank: int) -> None:
    peft_type = str(config.get("peft_type", "")).upper()
    if peft_type != "LORA":
        raise AdapterLoadError(
            f"peft_type is {config.get('peft_type')!r}; only LORA adapters are served"
        )
    rank = config.get("r")
    if not isinstance(rank, int) or rank < 1:
        raise AdapterLoadError(f"adapter_config.json: r must be a positive integer, got {rank!r}")
    if rank > max_rank:
        raise AdapterLoadError(f"rank {rank} exceeds the server's max_lora_rank {max_rank}")
    unsupported = {
        "use_dora": bool(config.get("use_dora")),
        "bias": config.get("bias", "none") not in ("none", None),
        "modules_to_save": bool(config.get("modules_to_save")),
        "fan_in_fan_out": bool(config.get("fan_in_fan_out")),
        "target_parameters": bool(config.get("target_parameters")),
    }
    bad = [k for k, on in unsupported.items() if on]
    if bad:
        raise AdapterLoadError(f"unsupported LoRA options: {', '.join(bad)} (plain LoRA only)")
    for key in ("lora_alpha",):
        value = config.get(key, 8)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise AdapterLoadError(f"adapter_config.json: {key} must be a number, got {value!r}")


def _check_metadata(path: Path, served_uri: str) -> None:
    file = path / METADATA_FILE
    if not file.exists():
        return
    try:
        metadata = AdapterMetadata.model_validate_json(file.read_bytes())
    except (OSError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise AdapterLoadError(f"{METADATA_FILE} is invalid: {first}") from None
    if metadata.base_model.rstrip("/") != served_uri.rstrip("/"):
        raise AdapterLoadError(
            f"trained on base model {metadata.base_model}, but this server serves {served_uri}"
        )


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    file = path / PEFT_WEIGHTS_FILE
    if not file.is_file():
        if (path / "adapter_model.bin").is_file():
            raise AdapterLoadError(
                "adapter_model.bin found; only adapter_model.safetensors is served"
            )
        raise AdapterLoadError(f"missing {PEFT_WEIGHTS_FILE} in {path}")
    try:
        # One read, then parsing in memory: half the time of load_file's per-tensor reads
        # (an adapter is a few MB to a few hundred; the bytes live only through the load).
        return load(file.read_bytes())
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise AdapterLoadError(f"{PEFT_WEIGHTS_FILE} is corrupt or unreadable: {exc}") from None


def _check_finite(groups: list[ShapeGroup]) -> None:
    """NaN or infinite weights are refused, naming the module.

    The sum of all weights is finite exactly when every weight is, unless finite weights
    overflow it (only for absurd magnitudes, which the exact search below then accepts).
    A sum per stacked group is a tenth of the cost of ``isfinite`` over the same weights
    on the CPU, where the check took a third of a load; the search runs only when a sum
    is not finite.
    """
    if all(bool((group.a.sum() + group.b.sum()).isfinite()) for group in groups):
        return
    members = sorted((m for group in groups for m in group.members), key=lambda m: m[0])
    for module, a, b, _ in members:
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            raise AdapterLoadError(f"weights at {module} contain NaN or infinite values")


def _pair_up(tensors: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    halves: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        match = _KEY_RE.match(key)
        if match is None:
            raise AdapterLoadError(
                f"unsupported tensor '{key}' in {PEFT_WEIGHTS_FILE} (plain LoRA only)"
            )
        halves.setdefault(match["module"], {})[match["ab"]] = tensor
    pairs = {}
    for module, half in halves.items():
        if set(half) != {"A", "B"}:
            missing = "lora_B" if "A" in half else "lora_A"
            raise AdapterLoadError(f"{module} has no {missing} weight")
        pairs[module] = (half["A"].float(), half["B"].float())
    return pairs


def _pattern_value(patterns: dict[str, Any], module: str) -> Any:
    """PEFT's rule: a pattern applies when the module path ends with it (after a dot)."""
    for pattern, value in patterns.items():
        if re.match(rf"(.*\.)?({pattern})$", module):
            return value
    return None


def _scale(config: dict[str, Any], module: str, rank: int, alpha: float) -> float:
    patterned = _pattern_value(config.get("alpha_pattern") or {}, module)
    if patterned is not None:
        alpha = float(patterned)
    if config.get("use_rslora"):
        return alpha / math.sqrt(rank)
    return alpha / rank
