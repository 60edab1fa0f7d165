"""Fixtures shared by every test folder.

Markers follow the folder: tests/unit -> ``unit``, tests/integration -> ``integration``,
tests/e2e -> ``e2e``, so ``pytest -m unit`` selects by kind without per-file boilerplate.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loraland.settings import Settings
from loraland.storage.builtin import DEFAULT_BASE_MODEL

TESTS_ROOT = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        kind = Path(str(item.fspath)).relative_to(TESTS_ROOT).parts[0]
        if kind in {"unit", "integration", "e2e"}:
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
