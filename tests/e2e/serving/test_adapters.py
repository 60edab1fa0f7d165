"""Adapter management: broken adapters fail alone, roots, admin API, adapters-file reload."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
import yaml
from serving_helpers import ServerProcess

PROMPT = "The capital of France is"

BROKEN_REASONS = {
    "bad-rank": "rank 32 exceeds the server's max_lora_rank 16",
    "bad-shapes": "shape mismatch",
    "bad-module": "qq_proj",
    "bad-corrupt": "corrupt",
    "bad-base": "trained on base model hf://someone/another-model",
    "bad-config": "not valid JSON",
}


def _generate(server: ServerProcess, adapter: str | None, **extra: object) -> httpx.Response:
    parameters: dict[str, object] = {"max_new_tokens": 3, **extra}
    if adapter is not None:
        parameters["adapter_id"] = adapter
    return httpx.post(
        f"{server.url}/generate", json={"inputs": PROMPT, "parameters": parameters}, timeout=60
    )


def test_broken_adapters_fail_alone(server: ServerProcess) -> None:
    listing = server.wait_adapters(list(BROKEN_REASONS))
    for name, reason in BROKEN_REASONS.items():
        assert listing[name]["state"] == "Failed", listing[name]
        assert reason in listing[name]["message"], listing[name]
        response = _generate(server, name)
        assert response.status_code == 424
        assert response.json()["error_type"] == "generation"
        assert reason in response.json()["error"]
    for name in ("a1", "a2", "a3", "a4", "a1-meta"):
        assert listing[name]["state"] == "Loaded"
        assert _generate(server, name).status_code == 200


def test_adapter_ids_and_roots(server: ServerProcess) -> None:
    missing = _generate(server, "no-such-adapter")
    assert missing.status_code == 404 and missing.json()["error_type"] == "not_found"
    for escaping in ("../etc", "/etc/passwd", "escape", "team/../../x", "a\\b"):
        response = _generate(server, escaping)
        assert response.status_code == 422, (escaping, response.text)
        assert response.json()["error_type"] == "validation"
    assert _generate(server, "alias").status_code == 200  # symlink inside the root
    assert _generate(server, "a1", adapter_source="hub").status_code == 200  # registered name
    refused = _generate(server, "org/model", adapter_source="hub")
    assert refused.status_code == 422 and "adapter_source" in refused.json()["error"]


def test_admin_api(server: ServerProcess, adapter_dirs: dict[str, Path]) -> None:
    url = f"{server.url}/admin/adapters"
    created = httpx.post(
        f"{url}?wait=true", json={"name": "runtime/one", "uri": str(adapter_dirs["a4"])}, timeout=60
    )
    assert created.status_code == 201, created.text
    assert created.json()["state"] == "Loaded"
    assert httpx.get(f"{url}/runtime/one").json()["uri"] == str(adapter_dirs["a4"])
    assert _generate(server, "runtime/one").status_code == 200
    duplicate = httpx.post(url, json={"name": "runtime/one", "uri": str(adapter_dirs["a1"])})
    assert duplicate.status_code == 409
    assert httpx.delete(f"{url}/runtime/one").status_code == 200
    assert _generate(server, "runtime/one").status_code == 404
    assert httpx.delete(f"{url}/runtime/one").status_code == 404
    failed = httpx.post(
        f"{url}?wait=true",
        json={"name": "broken2", "uri": str(adapter_dirs["bad-shapes"])},
        timeout=60,
    )
    assert failed.status_code == 422 and "shape mismatch" in failed.json()["error"]
    bad_name = httpx.post(url, json={"name": "../x", "uri": "/tmp"})
    assert bad_name.status_code == 422
    pending = httpx.post(url, json={"name": "later", "uri": str(adapter_dirs["a3"])})
    assert pending.status_code == 202 and pending.json()["state"] in ("Pending", "Loaded")
    server.wait_adapters(["later"])
    assert httpx.delete(f"{url}/later").status_code == 200


def _swap_configmap(root: Path, version: str, adapters: list[dict[str, str]]) -> None:
    """Publish a new ConfigMap version the way the kubelet does: new dir, swap ..data."""
    (root / version).mkdir()
    (root / version / "adapters.yaml").write_text(yaml.safe_dump(adapters))
    tmp = root / "..data_tmp"
    tmp.symlink_to(version)
    os.replace(tmp, root / "..data")


def _wait(predicate: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.2)


@pytest.mark.timeout(120)
def test_adapters_file_hot_reload(server: ServerProcess, adapter_dirs: dict[str, Path]) -> None:
    root = Path(server.config["adapters_file"]).parent
    pid = server.process.pid if server.process else None

    def names() -> dict[str, dict[str, str]]:
        listing = httpx.get(f"{server.url}/admin/adapters").json()["adapters"]
        return {a["name"]: a for a in listing if a["origin"] == "file"}

    _swap_configmap(root, "..v1", [{"name": "hot", "uri": str(adapter_dirs["a2"])}])
    _wait(lambda: names().get("hot", {}).get("state") == "Loaded")
    assert _generate(server, "hot").status_code == 200

    _swap_configmap(root, "..v2", [{"name": "hot2", "uri": str(adapter_dirs["a3"])}])
    _wait(lambda: set(names()) == {"hot2"} and names()["hot2"]["state"] == "Loaded")
    assert _generate(server, "hot").status_code == 404
    assert _generate(server, "hot2").status_code == 200

    # A broken file keeps what is served; fixing it resumes reconciling.
    (root / "..v3").mkdir()
    (root / "..v3" / "adapters.yaml").write_text("{oops: [")
    os.replace(_tmp_link(root, "..v3"), root / "..data")
    time.sleep(1.5)
    assert set(names()) == {"hot2"}
    _swap_configmap(root, "..v4", [])
    _wait(lambda: not names())
    assert (
        server.process is not None and server.process.pid == pid and server.process.poll() is None
    )


def _tmp_link(root: Path, version: str) -> Path:
    tmp = root / "..data_tmp"
    tmp.symlink_to(version)
    return tmp
