"""The playground's HTTP side: page and assets served, offline, shipped with the package."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

from fastapi.testclient import TestClient
from loraland.serving.config import ServerConfig
from loraland.serving.http import playground
from loraland.serving.http.app import create_app
from loraland.serving.state import ServerState
from loraland.serving.telemetry import ServingMetrics

ROOT = Path(__file__).resolve().parents[3]
STATIC = playground.STATIC_DIR


def client() -> TestClient:
    # No runtime: the page must be served while the base model is still loading.
    config = ServerConfig.build({"base_model": "builtin://smollm2-135m-instruct"})
    state = ServerState(config=config, metrics=ServingMetrics(), version="test")
    return TestClient(create_app(state))


def test_page_is_served_at_root_and_playground_with_its_assets() -> None:
    http = client()
    for path in ("/", "/playground"):
        page = http.get(path)
        assert page.status_code == 200, path
        assert page.headers["content-type"].startswith("text/html")
        assert 'src="/playground/playground.js"' in page.text
        assert 'href="/playground/playground.css"' in page.text
    js = http.get("/playground/playground.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    css = http.get("/playground/playground.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_only_the_listed_assets_are_served() -> None:
    http = client()
    for name in ("index.html.bak", "x", "%2e%2e", "playground.js.map"):
        response = http.get(f"/playground/{name}")
        assert response.status_code == 404, name
        assert response.json()["error_type"] == "not_found"
    # A path with a slash in it never reaches the asset route at all.
    assert http.get("/playground/..%2Fhttp%2Fapp.py").status_code == 404
    assert http.get("/playground/../http/app.py").status_code == 404


def test_post_root_stays_the_tgi_route() -> None:
    response = client().post("/", json={"inputs": "hi"})
    assert response.status_code == 503 and response.json()["error_type"] == "overloaded"


def test_assets_load_nothing_from_elsewhere() -> None:
    for file in STATIC.iterdir():
        text = file.read_text(encoding="utf-8")
        assert not re.search(r"https?:|//[a-z0-9.-]+\.[a-z]{2,}/", text, re.IGNORECASE), file
        assert "@import" not in text and "url(" not in text, file
    js = (STATIC / "playground.js").read_text(encoding="utf-8")
    fetched = set(re.findall(r'fetch\("([^"]+)"', js))
    assert fetched == {"/admin/adapters", "/metrics", "/generate_stream", "/info"}


def test_every_element_the_script_uses_is_on_the_page() -> None:
    js = (STATIC / "playground.js").read_text(encoding="utf-8")
    html = (STATIC / playground.PAGE).read_text(encoding="utf-8")
    used = set(re.findall(r'\$\("([\w-]+)"\)', js))
    assert used, "the script reaches no element by id"
    missing = sorted(i for i in used if f'id="{i}"' not in html)
    assert not missing


def test_package_data_ships_every_static_file() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["loraland"]
    package = ROOT / "operator" / "loraland"
    files = sorted(STATIC.iterdir())
    assert {f.name for f in files} == {playground.PAGE, *playground.ASSETS}
    for file in files:
        relative = file.relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(relative, g) for g in globs), relative
