"""vLLM's adapter API on the builtin server, and the adapter agent driving it end to end.

The builtin server answers ``/v1/load_lora_adapter`` / ``/v1/unload_lora_adapter`` with
vLLM 0.33.0's shapes (see loraland.serving.http.vllm_lora for the cited source lines),
so the agent, which speaks that API to vLLM in a pod, is tested here against a real
server over real HTTP with real PEFT adapters: staging from a path, s3:// (a real S3
protocol server), pvc:// and a pinned hf:// revision; readiness held back until every
required adapter is loaded; spec changes picked up from a ConfigMap-like directory;
removals unloaded; an adapter the server lost loaded again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from loraland.serving.process import free_port, wait_until_healthy
from loraland.serving.process import stop as stop_process
from serving_helpers import ServerProcess

# Generous: the first test also pays for the shared server and adapters (session fixtures)
# on a machine other work may be loading; nothing here measures speed.
pytestmark = pytest.mark.timeout(1500)


def _load(url: str, body: object, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{url}/v1/load_lora_adapter", json=body, timeout=60, **kwargs)


def _unload(url: str, name: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/unload_lora_adapter", json={"lora_name": name}, timeout=30)


def _served(url: str) -> dict[str, dict[str, Any]]:
    data = httpx.get(f"{url}/v1/models", timeout=10).json()["data"]
    return {m["id"]: m for m in data}


def _error(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == kind and body["error"]["code"] == status
    message: str = body["error"]["message"]
    return message


def test_vllm_load_and_unload_shapes(server: ServerProcess, adapter_dirs: dict[str, Path]) -> None:
    url = server.url
    path = str(adapter_dirs["a2"])
    ok = _load(url, {"lora_name": "v-a2", "lora_path": path})
    assert ok.status_code == 200
    assert ok.text == "Success: LoRA adapter 'v-a2' added successfully."
    assert "content-type" not in ok.headers  # vLLM sends the bare text
    base = next(m["id"] for m in _served(url).values() if m.get("parent") is None)
    assert _served(url)["v-a2"]["parent"] == base
    answer = httpx.post(
        f"{url}/v1/completions",
        json={"model": "v-a2", "prompt": "Hello", "max_tokens": 3, "temperature": 0},
        timeout=120,
    )
    assert answer.status_code == 200 and answer.json()["model"] == "v-a2"

    again = _load(url, {"lora_name": "v-a2", "lora_path": path})
    assert "has already been loaded" in _error(again, 400, "InvalidUserInput")
    inplace = _load(url, {"lora_name": "v-a2", "lora_path": path, "load_inplace": True})
    assert inplace.status_code == 200
    conflict = _load(url, {"lora_name": base, "lora_path": path})
    assert "conflicts with a served base model" in _error(conflict, 400, "InvalidUserInput")
    missing = _load(url, {"lora_name": "v-x", "lora_path": "/nonexistent/adapter"})
    assert _error(missing, 404, "NotFoundError") == (
        "Loading lora v-x failed: No adapter found for /nonexistent/adapter"
    )
    empty = _load(url, {"lora_name": "", "lora_path": path})
    assert _error(empty, 400, "InvalidUserInput") == (
        "Both 'lora_name' and 'lora_path' must be provided."
    )
    # Loading fails in the server (rank 32 > the server's --max-lora-rank 16): a 500, and
    # nothing stays registered, so the same call fails the same way rather than "exists".
    for _ in range(2):
        too_big = _load(url, {"lora_name": "v-big", "lora_path": str(adapter_dirs["bad-rank"])})
        assert "rank" in _error(too_big, 500, "InternalServerError")
    assert "v-big" not in _served(url)
    # Bodies that are not JSON, or lack a field, are vLLM's 400 "Bad Request".
    not_json = httpx.post(
        f"{url}/v1/load_lora_adapter",
        content=b"lora_name=x",
        timeout=10,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    _error(not_json, 400, "Bad Request")
    _error(_load(url, {"lora_name": "v-y"}), 400, "Bad Request")

    gone = _unload(url, "v-a2")
    assert gone.status_code == 200
    assert gone.text == "Success: LoRA adapter 'v-a2' removed successfully."
    assert _error(_unload(url, "v-a2"), 404, "NotFoundError") == (
        "The lora adapter 'v-a2' cannot be found."
    )
    _error(_unload(url, ""), 400, "InvalidUserInput")


# ----------------------------------------------------------------------- the agent


class ConfigMapDir:
    """A directory laid out like a mounted ConfigMap: updates swap the ``..data`` link."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.version = 0
        root.mkdir(parents=True)
        self.write([])
        (root / "adapters.yaml").symlink_to("..data/adapters.yaml")

    @property
    def file(self) -> Path:
        return self.root / "adapters.yaml"

    def write(self, entries: list[dict[str, Any]]) -> None:
        self.version += 1
        target = self.root / f"..v{self.version}"
        target.mkdir()
        (target / "adapters.yaml").write_text(yaml.safe_dump({"adapters": entries}))
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(target.name)
        os.replace(tmp, self.root / "..data")


def _wait(check: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


class Agent:
    def __init__(self, url: str) -> None:
        self.url = url

    def ready(self) -> httpx.Response:
        return httpx.get(f"{self.url}/ready", timeout=5)

    def states(self) -> dict[str, dict[str, Any]]:
        listing = httpx.get(f"{self.url}/admin/adapters", timeout=5).json()["adapters"]
        return {a["name"]: a for a in listing}


@pytest.fixture
def agent_env(
    tmp_path: Path, s3_bucket: str, adapter_dirs: dict[str, Path]
) -> Iterator[dict[str, Any]]:
    """Adapters behind every URI kind, and the agent's environment (S3, hub cache, PVCs)."""
    stage = tmp_path / "stage"
    pvc = tmp_path / "pvc"
    shutil.copytree(adapter_dirs["a4"], pvc / "adapters" / "a4")
    # A hub repository with two revisions, in huggingface_hub's own cache layout (offline).
    repo = stage / "hf" / "models--acme--sql"
    (repo / "refs").mkdir(parents=True)
    for ref, commit, source in (("main", "1" * 40, "a1"), ("v2", "2" * 40, "a3")):
        (repo / "refs" / ref).write_text(commit)
        shutil.copytree(adapter_dirs[source], repo / "snapshots" / commit)
    env = {
        **os.environ,
        "LORALAND_CACHE": str(stage),
        "LORALAND_PVC_ROOT": str(pvc),
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    yield {"env": env, "stage": stage, "bucket": s3_bucket, "tmp": tmp_path}


def _start_agent(env: dict[str, Any], server_url: str, adapters: Path) -> tuple[Any, Agent]:
    port = free_port()
    log = env["tmp"] / "agent.log"
    args = [
        sys.executable, "-m", "loraland.cli", "agent",
        "--runtime", "vllm",
        "--server-url", server_url,
        "--adapters-file", str(adapters),
        "--stage-dir", str(env["stage"]),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--max-lora-rank", "16",
        "--interval", "0.3",
        "--retry", "1",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env["env"])
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(url, process, log, 60, name="loraland agent")
    return process, Agent(url)


def test_agent_stages_loads_gates_readiness_and_follows_the_file(
    server: ServerProcess, adapter_dirs: dict[str, Path], agent_env: dict[str, Any]
) -> None:
    import boto3

    bucket = agent_env["bucket"]
    s3_uri = f"s3://{bucket}/adapters/a2"
    configmap = ConfigMapDir(agent_env["tmp"] / "configmap")
    configmap.write(
        [
            {"name": "ag-path", "uri": str(adapter_dirs["a1"])},
            {"name": "ag-s3", "uri": s3_uri},  # not uploaded yet: staging fails
            {"name": "ag-pvc", "uri": "pvc://adapters/a4"},
            {"name": "ag-hf", "uri": "hf://acme/sql@v2"},
            {"name": "ag-big", "uri": str(adapter_dirs["bad-rank"]), "required": False},
        ]
    )
    process, agent = _start_agent(agent_env, server.url, configmap.file)
    try:
        # Not ready while a required adapter is missing; the others are loaded meanwhile.
        seen: dict[str, Any] = {}

        def s3_failed() -> bool:
            seen.update(agent.states().get("ag-s3") or {})
            return seen.get("state") == "Failed"

        _wait(s3_failed, "the s3 adapter to fail staging")
        assert "no objects under this S3 prefix" in seen["message"]
        others = ("ag-hf", "ag-path", "ag-pvc")
        _wait(lambda: all(agent.states()[n]["state"] == "Loaded" for n in others), "others")
        not_ready = agent.ready()
        assert not_ready.status_code == 503 and not_ready.json()["waiting"] == ["ag-s3"]
        big = agent.states()["ag-big"]
        assert big["state"] == "Failed" and "spec.serving.maxLoraRank" in big["message"]
        assert "ag-big" not in _served(server.url)

        s3 = boto3.client("s3", region_name="us-east-1")
        for file in adapter_dirs["a2"].iterdir():
            s3.upload_file(str(file), bucket, f"adapters/a2/{file.name}")
        _wait(lambda: agent.ready().status_code == 200, "ready once s3 adapter loads")
        states = agent.states()
        assert {n: s["state"] for n, s in states.items()} == {
            "ag-big": "Failed",
            "ag-hf": "Loaded",
            "ag-path": "Loaded",
            "ag-pvc": "Loaded",
            "ag-s3": "Loaded",
        }
        served = _served(server.url)
        assert {"ag-path", "ag-s3", "ag-pvc", "ag-hf"} <= set(served)
        # The pinned revision (v2 = a3's weights) is what the server loaded.
        assert served["ag-hf"]["root"].endswith("2" * 40)
        assert Path(served["ag-s3"]["root"]).is_relative_to(agent_env["stage"])

        # A spec change: one removed, one added; the pod stays ready throughout.
        configmap.write(
            [
                {"name": "ag-s3", "uri": s3_uri},
                {"name": "ag-pvc", "uri": "pvc://adapters/a4"},
                {"name": "ag-hf", "uri": "hf://acme/sql"},  # the revision changes
                {"name": "ag-new", "uri": str(adapter_dirs["a3"])},
            ]
        )
        _wait(lambda: "ag-path" not in _served(server.url), "removed adapter unloaded")
        _wait(lambda: agent.states().get("ag-new", {}).get("state") == "Loaded", "new loaded")
        _wait(
            lambda: _served(server.url).get("ag-hf", {}).get("root", "").endswith("1" * 40),
            "hf revision followed",
        )
        assert agent.ready().status_code == 200
        assert "ag-big" not in agent.states()

        # Adapters others loaded into the server (its own config here) are left alone.
        assert {"a1", "a2", "a3", "a4"} <= set(_served(server.url))
        # The server loses an adapter (as a restarted vLLM would): the agent loads it again.
        assert _unload(server.url, "ag-new").status_code == 200
        _wait(lambda: "ag-new" in _served(server.url), "lost adapter reloaded")
    finally:
        stop_process(process, grace_s=10)
        for name in ("ag-path", "ag-s3", "ag-pvc", "ag-hf", "ag-new"):
            _unload(server.url, name)


def test_lorax_warm_up_request_speaks_the_tgi_shape(server: ServerProcess) -> None:
    """The agent's LoRAX "load" is a one-token /generate naming the adapter by id with
    adapter_source=local; the builtin server speaks LoRAX's /generate shape, so the request
    and the error parsing are checked against it (no LoRAX server runs here)."""
    import asyncio

    from loraland.agent.servers import LoraxServer

    async def run() -> tuple[bool, str | None, str | None]:
        lorax = LoraxServer(server.url)
        try:
            return (
                await lorax.healthy(),
                await lorax.load("a1", "a1"),
                await lorax.load("nope", "/nonexistent/adapter"),
            )
        finally:
            await lorax.aclose()

    healthy, ok, failed = asyncio.run(run())
    assert healthy and ok is None
    assert failed is not None and failed.startswith("HTTP 4")
