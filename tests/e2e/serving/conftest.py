"""One shared ``loraland serve`` for the serving e2e tests (started once per session)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# pytest runs with --import-mode=importlib (sys.path untouched): make the helper module
# beside this file importable for the fixtures and the test modules.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from serving_helpers import GOOD_ADAPTERS, ServerProcess, make_adapters  # noqa: E402

MAX_LORA_RANK = 16


@pytest.fixture(scope="session")
def adapter_dirs(
    tmp_path_factory: pytest.TempPathFactory, base_model_dir: Path, base_model_uri: str
) -> dict[str, Path]:
    return make_adapters(base_model_dir, tmp_path_factory.mktemp("adapters"), base_model_uri)


@pytest.fixture(scope="session")
def adapter_root(tmp_path_factory: pytest.TempPathFactory, adapter_dirs: dict[str, Path]) -> Path:
    """A root for on-demand loading: one adapter under a nested id, and an escaping symlink."""
    root = tmp_path_factory.mktemp("root")
    ondemand = root / "team" / "ondemand"
    ondemand.mkdir(parents=True)
    for file in adapter_dirs["a2"].iterdir():
        (ondemand / file.name).write_bytes(file.read_bytes())
    (root / "alias").symlink_to(ondemand)  # a symlink that stays inside the root is fine
    outside = tmp_path_factory.mktemp("outside")
    (outside / "adapter_config.json").write_text("{}")
    (root / "escape").symlink_to(outside)
    return root


def configmap_dir(workdir: Path) -> Path:
    """An empty adapters list laid out like a mounted ConfigMap: adapters.yaml ->
    ..data/adapters.yaml, ..data -> ..v0; an update swaps ..data to a new directory."""
    root = workdir / "configmap"
    (root / "..v0").mkdir(parents=True)
    (root / "..v0" / "adapters.yaml").write_text("[]\n")
    (root / "..data").symlink_to("..v0")
    (root / "adapters.yaml").symlink_to("..data/adapters.yaml")
    return root


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    base_model_uri: str,
    adapter_dirs: dict[str, Path],
    adapter_root: Path,
) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("server")
    adapters_file = configmap_dir(workdir) / "adapters.yaml"
    names = [*GOOD_ADAPTERS, "a1-meta"] + [n for n in adapter_dirs if n.startswith("bad-")]
    config = {
        "base_model": base_model_uri,
        "precision": "fp32",
        # One torch thread: other work shares this machine's cores, and OpenMP threads
        # that wait for each other on a busy machine are slower than one thread.
        "threads": 1,
        "adapters": [{"name": n, "uri": str(adapter_dirs[n])} for n in names],
        "adapter_roots": [str(adapter_root)],
        "adapters_file": str(adapters_file),
        "adapters_file_poll_s": 0.5,
        "max_lora_rank": MAX_LORA_RANK,
        "max_loaded_adapters": 4,
        "max_batch_size": 24,
        "max_input_tokens": 256,
        "max_total_tokens": 512,
        "max_concurrent_requests": 64,
        "max_queue_length": 64,
    }
    # A loaded shared machine can take minutes to load the model; this is no speed check.
    process = ServerProcess(config, workdir).start(timeout=600)
    process.wait_adapters(names)
    yield process
    process.stop()
