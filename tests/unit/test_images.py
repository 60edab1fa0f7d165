"""What can be checked about the images without a Docker engine.

Every COPY source exists in the build context and every target's ENTRYPOINT + CMD is a real
`loraland` command whose flags parse. That the images install from uv.lock, as CI does, is
checked in tests/unit/test_lock.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer.main
from loraland.cli import app

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "images" / "Dockerfile"


@dataclass
class Stage:
    name: str
    parent: str
    copies: list[str] = field(default_factory=list)
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None


def parse_dockerfile(text: str) -> dict[str, Stage]:
    """Stages by name, with COPY sources and exec-form ENTRYPOINT/CMD (inherited)."""
    logical = re.sub(r"\\\n", " ", text)
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for raw in logical.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = rest.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else f"#{len(stages)}"
            parent = stages.get(words[0])
            current = Stage(name=name, parent=words[0])
            if parent is not None:
                current.entrypoint, current.cmd = parent.entrypoint, parent.cmd
            stages[name] = current
        elif current is None:
            continue
        elif instruction == "COPY" and "--from=" not in rest:
            current.copies.extend(rest.split()[:-1])
        elif instruction in {"ENTRYPOINT", "CMD"}:
            value = json.loads(rest)
            assert isinstance(value, list), f"{instruction} must use the exec form: {rest}"
            if instruction == "ENTRYPOINT":
                current.entrypoint, current.cmd = value, None
            else:
                current.cmd = value
    return stages


STAGES = parse_dockerfile(DOCKERFILE.read_text())
RUNNABLE = {name: s for name, s in STAGES.items() if s.entrypoint}


def test_the_three_images_are_targets() -> None:
    assert {"operator", "trainer", "server"} <= set(RUNNABLE)


@pytest.mark.parametrize("stage", sorted({s for st in STAGES.values() for s in st.copies}))
def test_copy_sources_exist(stage: str) -> None:
    assert (ROOT / stage).exists(), f"COPY source {stage} is missing from the build context"


@pytest.mark.parametrize("target", sorted(RUNNABLE))
def test_entrypoint_is_a_real_command_with_valid_flags(target: str) -> None:
    stage = RUNNABLE[target]
    argv = [*(stage.entrypoint or []), *(stage.cmd or [])]
    assert argv[0] == "loraland"
    # typer ships its own copy of click, so walk the tree by duck typing, not isinstance.
    command: Any = typer.main.get_command(app)
    args = argv[1:]
    while hasattr(command, "commands"):
        name, command, args = command.resolve_command(command.context_class(command), args)
        assert command is not None, f"{target}: no command {name!r}"
    # make_context parses and validates every option without running the command.
    ctx = command.make_context(" ".join(argv[:2]), list(args))
    assert ctx.params


def test_containers_run_as_non_root() -> None:
    text = DOCKERFILE.read_text()
    for target in ("operator", "trainer", "server"):
        body = text.split(f" AS {target}\n", 1)[1].split("\nFROM ", 1)[0]
        assert re.search(r"^USER 10001", body, re.M), f"{target} must switch to a non-root USER"
