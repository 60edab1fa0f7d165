"""The LoRA op as a native CPU kernel (``csrc/paged_lora.cpp``), built on first use.

On CPU the embedding_bag form of :func:`~loraland.serving.lora.ops.add_segmented_lora`
spends most of its time stepping through ``in`` bag entries of 8 floats per page, and
:func:`~loraland.serving.lora.ops.add_gathered_lora` copies each prefill row's pages;
the kernel reads each page once, contiguously, in place, for decode and prefill, and adds
the same sums (in another order: equal to float rounding). ``benchmarks/serving/lora_ops.py``
times the decode forms.

The kernel is compiled with torch's own extension builder (a C++ compiler and ninja) into
the cache, once per torch version, compiler flags and source, and registered as
``torch.ops.loraland.add_paged_lora``; later processes load the built library in
milliseconds. Where it cannot be built (no compiler in the image, a build error) or
``LORALAND_NATIVE_KERNELS=0``, :func:`paged_lora_op` says why and returns None, and the
engine keeps the torch forms (embedding bags, gathered pages), which it also runs on CUDA.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import shutil
import threading
import time
from pathlib import Path
from typing import Protocol

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).parent / "csrc" / "paged_lora.cpp"


class PagedLoraOp(Protocol):
    """``op(y, x, a_pages, b_rows, pages, owner, tokens=1) -> y``: see :func:`paged_lora_op`."""

    def __call__(
        self,
        y: torch.Tensor,
        x: torch.Tensor,
        a_pages: torch.Tensor,
        b_rows: torch.Tensor,
        pages: torch.Tensor,
        owner: torch.Tensor,
        tokens: int = 1,
    ) -> torch.Tensor: ...


_lock = threading.Lock()
_loaded: dict[Path, PagedLoraOp | None] = {}


def compile_flags() -> list[str]:
    """Flags for this CPU. AVX2 with FMA is as fast as the host's own ``-march`` here
    (AVX-512 included), and a library built into a cache that moves to another x86
    machine with AVX2 still runs."""
    flags = ["-O3", "-fopenmp"]  # OpenMP: at::parallel_for's backend in torch's wheels
    if platform.machine() in {"x86_64", "AMD64"} and torch.backends.cpu.get_cpu_capability() in {
        "AVX2",
        "AVX512",
    }:
        flags.append("-march=x86-64-v3")
    return flags


def build_dir(kernels_dir: Path) -> Path:
    """Where this torch, these flags and this source build: one directory each, so a
    cache shared between versions or machines never loads a library built for another."""
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join(compile_flags()).encode()).hexdigest()
    return kernels_dir / f"paged_lora-torch{torch.__version__}-{key[:12]}"


def missing_toolchain() -> str | None:
    """Why torch's extension builder cannot run here, or None."""
    from torch.utils.cpp_extension import get_cxx_compiler

    compiler: str = get_cxx_compiler()  # type: ignore[no-untyped-call]
    if shutil.which(compiler) is None:
        return f"no C++ compiler ({compiler!r}; set CXX)"
    if shutil.which("ninja") is None:
        return "no ninja"
    return None


def paged_lora_op(kernels_dir: Path, enabled: bool = True) -> PagedLoraOp | None:
    """``torch.ops.loraland.add_paged_lora``, built under ``kernels_dir`` if it is not
    there yet (tens of seconds, once), or None with the reason logged.

    The op adds ``B_p A_p x[r * tokens + t]`` into ``y[r * tokens + t]`` for each page
    ``p = pages[q]`` of batch row ``r = owner[q]`` and each of its ``tokens`` token rows
    (decode: 1), pages listed row after row (``owner`` non-decreasing); ``x`` and ``y``
    are ``[rows * tokens, in / out]``, every tensor contiguous, float32, on the CPU. It
    checks its arguments and raises on bad ones.
    """
    if not enabled:
        log.info("LoRA op: torch forms (native kernels disabled)")
        return None
    if not SOURCE.is_file():  # an install that left the package data out
        log.warning("LoRA op: torch forms, %s is missing", SOURCE)
        return None
    directory = build_dir(kernels_dir)
    with _lock:
        if directory not in _loaded:
            _loaded[directory] = _build(directory)
        return _loaded[directory]


def _build(directory: Path) -> PagedLoraOp | None:
    if hasattr(torch.ops.loraland, "add_paged_lora"):  # loaded from another directory
        return torch.ops.loraland.add_paged_lora
    reason = missing_toolchain()
    if reason is not None:  # expected where nothing is compiled (the images): not a warning
        log.info("LoRA op: torch forms, native kernel not built: %s", reason)
        return None
    from torch.utils.cpp_extension import load

    directory.mkdir(parents=True, exist_ok=True)
    begin = time.perf_counter()
    try:
        load(
            name="loraland_paged_lora",
            sources=[str(SOURCE)],
            extra_cflags=compile_flags(),
            extra_ldflags=["-fopenmp"],
            build_directory=str(directory),
            is_python_module=False,
        )
    except (OSError, RuntimeError, ImportError) as error:
        log.warning("LoRA op: torch forms, native kernel failed to build: %s", error)
        return None
    log.info("LoRA op: native CPU kernel from %s (%.1f s)", directory, time.perf_counter() - begin)
    return torch.ops.loraland.add_paged_lora
