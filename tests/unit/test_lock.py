"""One lock for everything: the venv, CI and the images install uv.lock, frozen.

`uv lock --check` fails when pyproject.toml changed without relocking; the Dockerfile and
the Makefile must install from the lock and never resolve on their own.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _uv() -> str:
    beside_python = Path(sys.executable).with_name("uv")
    found = str(beside_python) if beside_python.exists() else shutil.which("uv")
    assert found, "uv is a dev dependency: run `make venv`"
    return found


def test_lock_matches_pyproject() -> None:
    result = subprocess.run(
        [_uv(), "lock", "--check", "--offline"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"uv.lock is stale, run `uv lock`:\n{result.stderr}"


def test_locked_versions_meet_the_floors() -> None:
    """The floors in pyproject are what the lock (and so CI) runs, not older guesses."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = {
        p["name"]: p["version"]
        for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"]
        if "version" in p
    }
    requirements = [
        *project["dependencies"],
        *(r for extra in project["optional-dependencies"].values() for r in extra),
    ]
    for text in requirements:
        req = Requirement(text)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in locked, f"{name} is not in uv.lock"
        floors = [s.version for s in req.specifier if s.operator in (">=", "==")]
        assert floors, f"{text}: give a lower bound (the tested version)"
        assert req.specifier.contains(locked[name]), f"{name} {locked[name]} outside {text}"
        assert all(floor == locked[name] for floor in floors if req.specifier.contains(floor)), (
            f"{text}: the floor should be the locked version {locked[name]}"
        )


def test_images_install_only_from_the_lock() -> None:
    dockerfile = (ROOT / "images" / "Dockerfile").read_text()
    installs = re.findall(r"(?:pip|uv pip) install[^\n&]*", dockerfile)
    assert installs
    for line in installs:
        if '"uv==' in line:
            continue  # the installer itself, pinned
        assert "--no-deps" in line, f"resolves outside the lock: {line}"
    exports = re.findall(r"uv export[^\n]*", dockerfile)
    assert exports and all("--frozen" in e for e in exports)


def test_make_installs_the_venv_frozen() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"\$\(UV\) sync --frozen", makefile)
    assert "pip install" not in makefile.replace('pip install -q "uv==', "")
