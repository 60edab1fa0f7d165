"""Adapter ids loaded on demand from configured roots, without escaping them. Torch-free.

LoRAX lets a request name any adapter by id; here an id is a relative path below one of
the server's ``adapter_roots``. Refused, before touching the file system beyond a
``realpath``: absolute ids, ``..`` segments, backslashes, control characters, and any id
whose real path (symlinks followed) lands outside the root it was joined to.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from loraland.api.adapter import PEFT_CONFIG_FILE


class UnsafeAdapterId(ValueError):
    """The id would leave the adapter roots (or is not a plain relative path)."""


def check_relative_id(adapter_id: str) -> PurePosixPath:
    """The id as a relative path, or :class:`UnsafeAdapterId` naming what is wrong."""
    if not adapter_id:
        raise UnsafeAdapterId("adapter id is empty")
    if len(adapter_id) > 200:
        raise UnsafeAdapterId("adapter id is longer than 200 characters")
    if any(ord(c) < 32 or c == "\x7f" for c in adapter_id):
        raise UnsafeAdapterId("adapter id contains control characters")
    if "\\" in adapter_id:
        raise UnsafeAdapterId("adapter id must use '/' as separator, not '\\'")
    path = PurePosixPath(adapter_id)
    if path.is_absolute() or adapter_id.startswith("~"):
        raise UnsafeAdapterId("adapter id must be relative to an adapter root, not absolute")
    if ".." in path.parts:
        raise UnsafeAdapterId("adapter id must not contain '..'")
    if ":" in adapter_id.split("/", 1)[0]:
        raise UnsafeAdapterId("adapter id must be a path, not a URI")
    return path


def resolve_in_roots(adapter_id: str, roots: Sequence[Path]) -> Path | None:
    """The adapter directory for ``adapter_id`` in the first root that has one.

    None if no root holds it; :class:`UnsafeAdapterId` if the id or a symlink escapes.
    """
    relative = check_relative_id(adapter_id)
    for root in roots:
        real_root = Path(os.path.realpath(root))
        candidate = Path(os.path.realpath(real_root / relative))
        if not candidate.is_relative_to(real_root):
            raise UnsafeAdapterId(
                f"adapter id '{adapter_id}' resolves outside the adapter root (via a symlink)"
            )
        if candidate == real_root:
            raise UnsafeAdapterId("adapter id names the adapter root itself")
        if (candidate / PEFT_CONFIG_FILE).is_file():
            return candidate
    return None
