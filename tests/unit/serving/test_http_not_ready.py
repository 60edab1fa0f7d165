"""The HTTP app before the base model is loaded: 503s in each API's own error shape."""

from __future__ import annotations

from fastapi.testclient import TestClient
from loraland.serving.config import ServerConfig
from loraland.serving.http.app import create_app
from loraland.serving.state import ServerState
from loraland.serving.telemetry import ServingMetrics


def client(load_error: str | None = None) -> TestClient:
    config = ServerConfig.build({"base_model": "builtin://smollm2-135m-instruct"})
    state = ServerState(
        config=config, metrics=ServingMetrics(), version="test", load_error=load_error
    )
    return TestClient(create_app(state))


def test_health_is_503_until_the_model_is_loaded() -> None:
    http = client()
    response = http.get("/health")
    assert response.status_code == 503 and response.json()["error_type"] == "overloaded"
    failed = client("loading the base model failed: disk full").get("/health")
    assert failed.status_code == 503 and "disk full" in failed.json()["error"]


def test_routes_answer_503_in_their_own_shape() -> None:
    http = client()
    tgi = http.post("/generate", json={"inputs": "hi"})
    assert tgi.status_code == 503 and tgi.json() == {
        "error": "the base model is still loading",
        "error_type": "overloaded",
    }
    openai = http.post("/v1/completions", json={"model": "m", "prompt": "hi"})
    assert openai.status_code == 503 and openai.json()["error"]["type"] == "server_overloaded"
    assert http.get("/admin/adapters").status_code == 503


def test_validation_runs_before_readiness_and_info_metrics_work() -> None:
    http = client()
    bad = http.post("/generate", json={"inputs": "hi", "parameters": {"top_k": -1}})
    assert bad.status_code == 422 and "top_k" in bad.json()["error"]
    info = http.get("/info").json()
    assert info["model_id"] == "smollm2-135m-instruct" and info["max_batch_size"] == 32
    assert "loraland_queue_depth" in http.get("/metrics").text
    assert "/v1/chat/completions" in http.get("/openapi.json").json()["paths"]
