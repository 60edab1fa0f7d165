"""The user-facing trainer error."""

from __future__ import annotations


class TrainerError(RuntimeError):
    """A job this trainer cannot run as specified (e.g. QLoRA without CUDA)."""
