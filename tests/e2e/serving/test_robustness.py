"""Bad input never causes a 5xx or a hang; a client that goes away frees its slot."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_helpers import ServerProcess

PROMPT = "The capital of France is"


def _post(server: ServerProcess, path: str, body: object) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=60)


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"temperature": 0}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": 0}, "top_k"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": 10_000}, "max_new_tokens"),
        ({"repetition_penalty": -1}, "repetition_penalty"),
        ({"seed": -3}, "seed"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"best_of": 2}, "best_of"),
        ({"typical_p": 0.5}, "typical_p"),
        ({"truncate": 0}, "truncate"),
        ({"nonsense": 1}, "nonsense"),
    ],
)
def test_invalid_parameters_are_422(
    server: ServerProcess, parameters: dict[str, Any], field: str
) -> None:
    response = _post(server, "/generate", {"inputs": PROMPT, "parameters": parameters})
    assert response.status_code == 422, response.text
    assert response.json()["error_type"] == "validation"
    assert field in response.json()["error"]


def test_too_long_input_and_truncate(server: ServerProcess) -> None:
    long_input = "word " * 400  # about 400 tokens, over max_input_tokens (256)
    refused = _post(
        server, "/generate", {"inputs": long_input, "parameters": {"max_new_tokens": 2}}
    )
    assert refused.status_code == 422 and "at most 256 tokens" in refused.json()["error"]
    kept = _post(
        server,
        "/generate",
        {"inputs": long_input, "parameters": {"max_new_tokens": 2, "truncate": 50}},
    )
    assert kept.status_code == 200
    assert int(kept.headers["x-prompt-tokens"]) == 50
    openai = _post(
        server, "/v1/completions", {"model": "a1", "prompt": long_input, "max_tokens": 2}
    )
    assert openai.status_code == 422 and openai.json()["error"]["type"] == "invalid_request_error"


def test_errors_keep_their_shapes(server: ServerProcess) -> None:
    tgi = httpx.post(
        f"{server.url}/generate", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert tgi.status_code == 422 and tgi.json()["error_type"] == "validation"
    chat = _post(server, "/v1/chat/completions", {"model": "a1", "messages": []})
    assert chat.status_code == 422 and set(chat.json()["error"]) == {
        "message",
        "type",
        "param",
        "code",
    }
    missing = _post(
        server,
        "/v1/chat/completions",
        {"model": "zz", "messages": [{"role": "user", "content": "x"}]},
    )
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_timing_headers_info_metrics_openapi(server: ServerProcess) -> None:
    for _ in range(2):  # the second use of a2 finds it in its device slot
        response = _post(
            server,
            "/generate",
            {"inputs": PROMPT, "parameters": {"max_new_tokens": 3, "adapter_id": "a2"}},
        )
    for header in (
        "x-compute-type",
        "x-compute-time",
        "x-total-time",
        "x-validation-time",
        "x-queue-time",
        "x-inference-time",
        "x-time-per-token",
        "x-time-to-first-token",
        "x-prompt-tokens",
        "x-generated-tokens",
    ):
        assert header in response.headers, header
    assert response.headers["x-generated-tokens"] == "3"
    info = httpx.get(f"{server.url}/info").json()
    assert info["model_id"] == "smollm2-135m-instruct" and info["max_input_length"] == 256
    metrics = httpx.get(f"{server.url}/metrics").text
    for name in (
        "loraland_time_to_first_token_seconds_bucket",
        "loraland_inter_token_latency_seconds_bucket",
        "loraland_queue_depth",
        "loraland_batch_size_bucket",
        'loraland_requests_total{adapter="a2",status="ok"}',
        'loraland_adapter_cache_hits_total{tier="device"}',
        'loraland_adapter_cache_misses_total{tier="device"}',
        "loraland_adapter_cache_evictions_total",
    ):
        assert name in metrics, name
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    for path in (
        "/generate",
        "/generate_stream",
        "/",
        "/v1/completions",
        "/v1/chat/completions",
        "/v1/models",
        "/admin/adapters",
        "/health",
        "/info",
        "/metrics",
    ):
        assert path in paths, path


def _wait_idle(server: ServerProcess, timeout: float = 10.0) -> float:
    start = time.monotonic()
    while server.metric("loraland_running_requests") > 0:
        if time.monotonic() - start > timeout:
            raise TimeoutError("the request still runs after its client left")
        time.sleep(0.1)
    return time.monotonic() - start


@pytest.mark.timeout(120)
def test_disconnect_frees_the_slot(server: ServerProcess) -> None:
    _wait_idle(server, 60)
    cancelled = server.metric("loraland_requests_total", 'status="cancelled"')
    body = {"inputs": PROMPT, "parameters": {"max_new_tokens": 400, "ignore_eos_token": True}}
    # Streaming: read one event, then hang up. 400 tokens would take far longer than 10 s.
    with httpx.stream("POST", f"{server.url}/generate_stream", json=body, timeout=60) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data:"):
                break
    _wait_idle(server)
    # Non-streaming: send the request on a raw socket and close it while it runs.
    payload = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        deadline = time.monotonic() + 30
        while server.metric("loraland_running_requests") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    _wait_idle(server)
    assert server.metric("loraland_requests_total", 'status="cancelled"') >= cancelled + 2


# -- fuzzing ------------------------------------------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
_small_int = st.integers(-3, 4)
_param_values = {
    "adapter_id": st.sampled_from(["a1", "a3", "nope", "../x", "", "team/ondemand"]) | _json,
    "adapter_source": st.sampled_from(["local", "hub", "s3"]) | _json,
    "max_new_tokens": _small_int | _json,
    "temperature": st.floats(-1, 3) | _json,
    "top_k": _small_int | _json,
    "top_p": st.floats(-0.5, 1.5) | _json,
    "do_sample": st.booleans() | _json,
    "seed": st.integers(-5, 2**64) | _json,
    "stop": st.lists(st.text(max_size=3), max_size=6) | _json,
    "repetition_penalty": st.floats(-1, 3) | _json,
    "truncate": _small_int | _json,
    "details": st.booleans(),
    "decoder_input_details": st.booleans(),
    "return_full_text": st.booleans() | _json,
    "best_of": _small_int,
}
_tgi_body = st.fixed_dictionaries(
    {},
    optional={
        "inputs": st.text(max_size=40) | _json,
        "parameters": st.fixed_dictionaries({}, optional=_param_values) | _json,
        "stream": st.booleans() | _json,
    },
)
_openai_common = {
    "model": st.sampled_from(["smollm2-135m-instruct", "a2", "zz"]) | _json,
    "max_tokens": _small_int | _json,
    "temperature": st.floats(-1, 3) | _json,
    "top_p": st.floats(-0.5, 1.5) | _json,
    "stop": st.text(max_size=3) | st.lists(st.text(max_size=3), max_size=5) | _json,
    "n": _small_int,
    "seed": st.integers(-5, 2**64) | _json,
    "stream": st.booleans(),
}
_completion_body = st.fixed_dictionaries(
    {},
    optional={
        **_openai_common,
        "prompt": st.text(max_size=30) | st.lists(st.integers(-5, 60000), max_size=5) | _json,
    },
)
_message = st.fixed_dictionaries(
    {},
    optional={
        "role": st.sampled_from(["user", "system", "assistant", "robot"]) | _json,
        "content": st.text(max_size=30) | _json,
    },
)
_chat_body = st.fixed_dictionaries(
    {}, optional={**_openai_common, "messages": st.lists(_message, max_size=3) | _json}
)
_requests = (
    st.tuples(st.sampled_from(["/generate", "/generate_stream", "/"]), _tgi_body)
    | st.tuples(st.just("/v1/completions"), _completion_body)
    | st.tuples(st.just("/v1/chat/completions"), _chat_body)
    | st.tuples(
        st.just("/admin/adapters"),
        st.fixed_dictionaries({}, optional={"name": _json | st.text(max_size=10), "uri": _json}),
    )
    | st.tuples(st.sampled_from(["/generate", "/v1/completions"]), _json)
)


@pytest.mark.timeout(300)
@settings(
    max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
@given(request=_requests)
def test_fuzz_no_5xx_no_hang(server: ServerProcess, request: tuple[str, object]) -> None:
    path, body = request
    if path == "/admin/adapters" and isinstance(body, dict):
        body = {**body, "uri": "/nonexistent/adapter"}  # never load something real by chance
    # No hang: every answer (streams included) must complete well within the timeout.
    with httpx.stream("POST", f"{server.url}{path}", json=body, timeout=60) as response:
        content = response.read()
    assert response.status_code < 500, (path, body, response.status_code, content[:500])
