"""The project's images, built here by hack/images.sh from images/Dockerfile, and run.

The session fixture runs hack/images.sh (a no-op when the cache holds images with the
current content hash) and hands out the three images. Containers run with Debian's buildah
(`buildah from` + `buildah run`, runc underneath): the image's own entrypoint environment,
user and filesystem, no Docker engine. Building needs root (buildah's storage, debootstrap).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "hack" / "images.sh"
#: A cold build downloads the locked set (torch with the CUDA libraries: several GB) into
#: two images; on a busy 2-core machine that took ~25 minutes. Warm, it takes seconds.
BUILD_TIMEOUT = 3600


@dataclass
class Images:
    """What hack/images.sh printed, plus a way to run commands in the images."""

    env: dict[str, str]
    containers: dict[str, str] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        return self.env["LORALAND_IMAGE_TAG"]

    def ref(self, name: str) -> str:
        return self.env[f"LORALAND_IMAGE_{name.upper()}"]

    def buildah(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        cmd = [
            "buildah",
            "--root",
            self.env["LORALAND_BUILDAH_ROOT"],
            "--runroot",
            self.env["LORALAND_BUILDAH_RUNROOT"],
            "--storage-driver",
            "overlay",
            *args,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)

    def run(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        network: str = "none",
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        """argv in a container of image ``name``, as the image's USER, in its WORKDIR."""
        flags = [f"--runtime={self.env['LORALAND_BUILDAH_RUNTIME']}", f"--network={network}"]
        for key, value in (env or {}).items():
            flags += ["--env", f"{key}={value}"]
        return self.buildah("run", *flags, self.containers[name], "--", *argv, timeout=timeout)

    def inspect(self, name: str) -> dict[str, object]:
        out = self.buildah("inspect", "--type", "image", self.local_ref(name))
        assert out.returncode == 0, out.stderr
        data: dict[str, object] = json.loads(out.stdout)
        return data

    def local_ref(self, name: str) -> str:
        suffix = "" if name == "operator" else "-cpu"
        return f"localhost/loraland/{name}:{self.tag}{suffix}"


def _parse_env(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@pytest.fixture(scope="session")
def images() -> Iterator[Images]:
    if os.geteuid() != 0:
        pytest.skip("building images with buildah and debootstrap needs root")
    # Local references: the tests run the images from buildah's storage, not a registry.
    env = {k: v for k, v in os.environ.items() if k not in {"REGISTRY", "LORALAND_IMAGES_OCI"}}
    built = subprocess.run(
        [str(SCRIPT)], env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False
    )
    assert built.returncode == 0, f"hack/images.sh failed:\n{built.stderr[-8000:]}"
    images = Images(env=_parse_env(built.stdout))
    try:
        for name in ("operator", "trainer", "server"):
            made = images.buildah("from", "--pull=never", images.local_ref(name))
            assert made.returncode == 0, made.stderr
            images.containers[name] = made.stdout.strip().splitlines()[-1]
        yield images
    finally:
        for container in images.containers.values():
            images.buildah("rm", container)
