"""A real ``loraland serve`` with real PEFT adapters, and Debian's Chromium under Playwright.

The adapters are made with peft (random non-zero B, so each changes the answer); two carry
a ``loraland.json`` with leaderboard scores, as ``loraland finetune`` writes it, so the
page has scores to show. The scores are stand-ins: training real adapters would take
minutes, and the page only displays what the admin API reports.

Chromium is Debian's (``make chromium`` installs it); Playwright never downloads a browser.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loraland.api.adapter import METADATA_FILE, PEFT_WEIGHTS_FILE, AdapterMetadata, Scores

# pytest runs with --import-mode=importlib (sys.path untouched): make the support modules
# beside this file and the serving tests' helpers importable.
_HERE = Path(__file__).resolve().parent
for _folder in (_HERE, _HERE.parent / "serving"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from playground_support import ADAPTERS, ADDED_LATER, CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from serving_helpers import ServerProcess  # noqa: E402


def _write_metadata(path: Path, base_uri: str, entry: tuple[str, str, float, float]) -> None:
    task, metric, base, adapter = entry
    weights = (path / PEFT_WEIGHTS_FILE).read_bytes()
    meta = AdapterMetadata(
        name=path.name,
        base_model=base_uri,
        task=task,
        scores=Scores(task=task, metric=metric, base=base, adapter=adapter, samples=200),
        sha256=hashlib.sha256(weights).hexdigest(),
        size_bytes=len(weights),
    )
    (path / METADATA_FILE).write_text(meta.model_dump_json(indent=2))


@pytest.fixture(scope="session")
def playground_adapters(
    tmp_path_factory: pytest.TempPathFactory, base_model_dir: Path, base_model_uri: str
) -> dict[str, Path]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("playground-adapters")
    model = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32)
    paths = {}
    for seed, (name, (rank, targets, entry)) in enumerate(ADAPTERS.items()):
        torch.manual_seed(2000 + seed)
        config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets, lora_dropout=0.0)
        peft_model = get_peft_model(model, config)
        for param_name, param in peft_model.named_parameters():
            if "lora_B" in param_name:
                torch.nn.init.normal_(param, std=0.1)
        peft_model.save_pretrained(out / name)
        model = peft_model.unload()
        if entry is not None:
            _write_metadata(out / name, base_model_uri, entry)
        paths[name] = out / name
    return paths


@pytest.fixture(scope="session")
def playground_server(
    tmp_path_factory: pytest.TempPathFactory,
    base_model_uri: str,
    playground_adapters: dict[str, Path],
) -> Iterator[ServerProcess]:
    names = [n for n in ADAPTERS if n != ADDED_LATER]
    config: dict[str, Any] = {
        "base_model": base_model_uri,
        "precision": "fp32",
        "threads": 1,  # the machine is shared; see tests/e2e/serving/conftest.py
        "adapters": [{"name": n, "uri": str(playground_adapters[n])} for n in names],
        "max_lora_rank": 16,
        "max_loaded_adapters": 4,
        "max_batch_size": 8,
        "max_input_tokens": 256,
        "max_total_tokens": 512,
    }
    # A generous start timeout: the model loads slowly when other work shares the cores.
    process = ServerProcess(config, tmp_path_factory.mktemp("playground-server")).start(600)
    process.wait_adapters(names)
    yield process
    process.stop()


# Module scope, not session: Playwright's sync API keeps an asyncio loop running on the main
# thread while it is open, and every later test that calls asyncio.run() (or uses
# pytest-asyncio) would fail with "cannot be called from a running event loop".
@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Debian Chromium driven by Playwright (no browser download)."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: run `make chromium` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, timeout=60_000
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def reports_dir() -> Path:
    """Where the test leaves its screenshots: reports/playground/ (git-ignored)."""
    path = Path(__file__).resolve().parents[3] / "reports" / "playground"
    path.mkdir(parents=True, exist_ok=True)
    return path
