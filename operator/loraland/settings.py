"""Process-wide settings, parsed once at start-up and passed down.

Nothing reads the environment at import time: the CLI (or a test) calls
:meth:`Settings.from_env` once and hands the result to whatever needs it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs

#: Where the operator mounts a PersistentVolumeClaim named ``<claim>`` inside pods:
#: ``pvc://<claim>/<path>`` resolves to ``<PVC_MOUNT_ROOT>/<claim>/<path>``.
PVC_MOUNT_ROOT = Path("/mnt/pvc")


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    """A yes/no variable: 1/true/yes/on (any case) is yes; unset or empty, ``default``."""
    value = env.get(name, "").strip().lower()
    return default if not value else value in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """Locations loraland reads and writes outside the working directory."""

    cache_dir: Path
    pvc_root: Path = PVC_MOUNT_ROOT
    hf_offline: bool = False
    #: Read-only model caches searched before ``models_dir``: an image bakes the converted
    #: embedded model there, where a volume mounted over the writable cache can't hide it.
    preloaded_models_dirs: tuple[Path, ...] = ()
    #: Build and use native CPU kernels (``LORALAND_NATIVE_KERNELS=0``: torch ops only).
    native_kernels: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        cache = env.get("LORALAND_CACHE") or platformdirs.user_cache_dir("loraland")
        return cls(
            cache_dir=Path(cache).expanduser().absolute(),
            pvc_root=Path(env.get("LORALAND_PVC_ROOT", str(PVC_MOUNT_ROOT))),
            hf_offline=_flag(env, "HF_HUB_OFFLINE", default=False),
            preloaded_models_dirs=tuple(
                Path(p) for p in env.get("LORALAND_PRELOADED_MODELS", "").split(os.pathsep) if p
            ),
            native_kernels=_flag(env, "LORALAND_NATIVE_KERNELS", default=True),
        )

    @property
    def models_dir(self) -> Path:
        return self.cache_dir / "models"

    @property
    def kernels_dir(self) -> Path:
        return self.cache_dir / "kernels"
