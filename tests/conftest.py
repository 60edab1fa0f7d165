"""Fixtures shared by every test folder.

Markers follow the folder: tests/unit -> ``unit``, tests/integration -> ``integration``,
tests/e2e -> ``e2e``, tests/gpu -> ``gpu``, tests/images -> ``images``,
tests/realnode -> ``realnode``, so ``pytest -m unit`` selects by kind without per-file
boilerplate.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from loraland.settings import Settings
from loraland.storage.builtin import DEFAULT_BASE_MODEL

TESTS_ROOT = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        kind = Path(str(item.fspath)).relative_to(TESTS_ROOT).parts[0]
        if kind in {"unit", "integration", "e2e", "gpu", "images", "realnode"}:
            item.add_marker(getattr(pytest.mark, kind))


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The real settings (LORALAND_CACHE from the environment, as `make test` sets it)."""
    return Settings.from_env()


@pytest.fixture(scope="session")
def base_model_uri() -> str:
    return DEFAULT_BASE_MODEL


@pytest.fixture(scope="session")
def base_model_dir(settings: Settings, base_model_uri: str) -> Path:
    """The embedded base model, converted once into the shared cache."""
    from loraland.storage import resolve

    return resolve(base_model_uri, settings)


# --- S3: a real S3-compatible server (moto) on loopback, shared by every test folder ---


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 with an ephemeral port, for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, empty bucket; AWS_* variables point s3fs/boto at the moto server."""
    import uuid

    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    return bucket
