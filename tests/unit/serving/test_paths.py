"""Adapter ids from roots never escape them."""

from __future__ import annotations

from pathlib import Path

import pytest
from loraland.serving.lora.paths import UnsafeAdapterId, check_relative_id, resolve_in_roots


def make_adapter(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text("{}")
    return path


@pytest.mark.parametrize(
    "bad",
    ["", "../x", "a/../../b", "/etc/passwd", "~root", "a\\b", "a\x00b", "s3://bucket/x", "x" * 201],
)
def test_unsafe_ids_are_refused(bad: str) -> None:
    with pytest.raises(UnsafeAdapterId):
        check_relative_id(bad)


def test_resolves_nested_ids_in_the_first_root_that_has_them(tmp_path: Path) -> None:
    first, second = tmp_path / "r1", tmp_path / "r2"
    first.mkdir()
    target = make_adapter(second / "team" / "sql")
    assert resolve_in_roots("team/sql", [first, second]) == target.resolve()
    assert resolve_in_roots("team/none", [first, second]) is None


def test_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = make_adapter(tmp_path / "outside")
    (root / "sneaky").symlink_to(outside)
    with pytest.raises(UnsafeAdapterId, match="outside"):
        resolve_in_roots("sneaky", [root])
    inside = make_adapter(root / "real")
    (root / "alias").symlink_to(inside)
    assert resolve_in_roots("alias", [root]) == inside.resolve()


def test_the_root_itself_is_not_an_adapter(tmp_path: Path) -> None:
    make_adapter(tmp_path / "root")
    with pytest.raises(UnsafeAdapterId):
        resolve_in_roots(".", [tmp_path / "root"])
