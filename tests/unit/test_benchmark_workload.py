"""The serving benchmarks count tokens by when they came (benchmarks/serving/workload.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

WORKLOAD = Path(__file__).resolve().parents[2] / "benchmarks" / "serving" / "workload.py"
spec = importlib.util.spec_from_file_location("serving_workload", WORKLOAD)
assert spec is not None and spec.loader is not None
workload = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = workload  # dataclasses look their module up there
spec.loader.exec_module(workload)


def test_only_tokens_inside_the_window_count() -> None:
    window = workload.TokenWindow(10.0, 12.0, [], [])
    # Sent at 9.0, its tokens straddle the window: only those inside it count.
    window.add_request(9.0, [9.5, 10.5, 11.0, 12.5])
    window.add_request(11.5, [11.75])
    assert window.tokens == 3
    assert window.ttft == [0.25]  # the first request's first token came before the window
    assert window.gaps == [1.0, 0.5]
