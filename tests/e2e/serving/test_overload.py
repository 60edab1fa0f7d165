"""Admission control: past the limits the server answers 429 at once, then recovers.

This module starts its own small server from CLI flags (no config file), with room for
two requests in flight and one waiting.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serving_helpers import ServerProcess


@pytest.fixture(scope="module")
def small_server(
    tmp_path_factory: pytest.TempPathFactory, base_model_uri: str, adapter_dirs: dict[str, Path]
) -> Iterator[ServerProcess]:
    flags = [
        "--base-model",
        base_model_uri,
        "--adapter",
        f"a1={adapter_dirs['a1']}",
        "--precision",
        "fp32",
        "--threads",
        "1",
        "--max-batch-size",
        "1",
        "--max-concurrent-requests",
        "2",
        "--max-queue-length",
        "1",
        "--max-input-tokens",
        "64",
        "--max-total-tokens",
        "128",
    ]
    process = ServerProcess({}, tmp_path_factory.mktemp("small"), flags=flags).start()
    yield process
    process.stop()


def _call(server: ServerProcess, path: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=120)


@pytest.mark.timeout(180)
def test_overload_answers_429(small_server: ServerProcess) -> None:
    tgi = {"inputs": "Count: 1, 2,", "parameters": {"max_new_tokens": 24, "adapter_id": "a1"}}
    chat = {"model": "a1", "messages": [{"role": "user", "content": "Count."}], "max_tokens": 24}
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(_call, small_server, "/generate", tgi) for _ in range(5)]
        futures += [
            pool.submit(_call, small_server, "/v1/chat/completions", chat) for _ in range(3)
        ]
        responses = [f.result() for f in futures]
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 429}, codes
    assert codes.count(200) >= 1 and codes.count(429) >= 1, codes
    for response in responses[:5]:
        if response.status_code == 429:
            assert response.json()["error_type"] == "overloaded"
    for response in responses[5:]:
        if response.status_code == 429:
            assert response.json()["error"]["type"] == "server_overloaded"
    assert small_server.metric("loraland_rejected_requests_total") >= codes.count(429)
    # Once the burst is over, the server serves again.
    assert _call(small_server, "/generate", tgi).status_code == 200


def test_cli_flags_configured_the_server(small_server: ServerProcess) -> None:
    info = httpx.get(f"{small_server.url}/info").json()
    assert info["max_batch_size"] == 1 and info["max_concurrent_requests"] == 2
    assert info["max_input_length"] == 64
    adapters = httpx.get(f"{small_server.url}/admin/adapters").json()["adapters"]
    assert [(a["name"], a["state"]) for a in adapters] == [("a1", "Loaded")]
