"""The checked-in gRPC code matches the proto; ``loraland serve`` reports config errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from loraland.cli import main
from loraland.serving.grpc import codegen


def test_generated_grpc_code_is_up_to_date(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    for fresh in codegen.generate(tmp_path):
        checked_in = codegen.GENERATED / fresh.name
        assert checked_in.read_text() == fresh.read_text(), (
            f"{checked_in} is stale: run python -m loraland.serving.grpc.codegen"
        )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve"], "--base-model"),
        (["serve", "--base-model", "x", "--adapter", "noequals"], "NAME=URI"),
        (["serve", "--base-model", "x", "--max-input-tokens", "9000"], "max_input_tokens"),
    ],
)
def test_serve_config_errors_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_serve_config_file_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text("base_model: x\nmax_batch_size: 0\n")
    assert main(["serve", "--config", str(config)]) == 2
    assert "max_batch_size" in capsys.readouterr().err
