"""`loraland demo --quick` end to end: three adapters, scores, one server, a sweep, a report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from loraland.api.adapter import METADATA_FILE, AdapterMetadata
from loraland.demo.plan import DemoPlan
from loraland.settings import Settings


# The demo's own subprocess timeouts (1500 s + 600 s) bound it; pytest's default 600 s
# did not, on a busy machine.
@pytest.mark.timeout(2400)
def test_quick_demo_writes_a_complete_report(tmp_path: Path, settings: Settings) -> None:
    out = tmp_path / "demo"
    env = {**os.environ, "LORALAND_CACHE": str(settings.cache_dir)}
    command = [sys.executable, "-m", "loraland.cli", "demo", "--quick", "--out", str(out)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "report: " in proc.stdout
    assert "/playground" in proc.stdout  # the URL of the page, printed while serving

    tasks = DemoPlan.quick().tasks
    for task in tasks:
        meta = AdapterMetadata.model_validate_json(
            (out / "adapters" / task / METADATA_FILE).read_text()
        )
        assert meta.scores is not None and meta.scores.task == task
        assert meta.scores.base is not None
        # Even the quick preset trains long enough for each adapter to beat its base.
        assert meta.scores.adapter > meta.scores.base, meta.scores
    served = json.loads((out / "logs" / "adapters.json").read_text())
    states = {a["name"]: a["state"] for a in served["adapters"]}
    assert all(states[task] == "Loaded" for task in tasks), states

    summary = json.loads((out / "loadtest" / "summary.json").read_text())
    assert [lvl["users"] for lvl in summary["levels"]] == DemoPlan.quick().users
    assert all(lvl["completed"] > 0 for lvl in summary["levels"])

    report = (out / "report.md").read_text()
    for task in tasks:
        assert f"| {task} |" in report
    assert (out / "plots" / "scores.png").stat().st_size > 1000
    assert "loadtest/plots/time_to_first_token.png" in report

    # A rerun reuses the adapters instead of training again.
    rerun = subprocess.run(
        [*command, "--step", "train", "--step", "report"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert rerun.stdout.count("reusing") == len(tasks)
