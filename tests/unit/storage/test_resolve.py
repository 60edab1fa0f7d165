"""resolve() on local files, claims and an offline Hugging Face cache the test lays out."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from loraland.settings import Settings
from loraland.storage import StorageError, resolve


@pytest.fixture()
def tmp_settings(tmp_path: Path) -> Settings:
    return Settings(cache_dir=tmp_path / "cache", pvc_root=tmp_path / "pvc")


def test_local_path_and_file_uri(tmp_path: Path, tmp_settings: Settings) -> None:
    model = tmp_path / "model"
    model.mkdir()
    assert resolve(str(model), tmp_settings) == model
    assert resolve(f"file://{model}", tmp_settings) == model


def test_missing_local_path_names_it(tmp_path: Path, tmp_settings: Settings) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        resolve(str(tmp_path / "nope"), tmp_settings)


def test_pvc_maps_to_mount(tmp_settings: Settings) -> None:
    target = tmp_settings.pvc_root / "models" / "base"
    target.mkdir(parents=True)
    assert resolve("pvc://models/base", tmp_settings) == target


def test_unmounted_pvc_says_so(tmp_settings: Settings) -> None:
    with pytest.raises(StorageError, match="is claim 'other' mounted"):
        resolve("pvc://other/base", tmp_settings)


def _hf_cache_layout(cache: Path, repo: str, commit: str, files: dict[str, str]) -> Path:
    """The on-disk layout huggingface_hub itself writes: refs/ names a snapshot."""
    root = cache / "hf" / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, content in files.items():
        (snapshot / name).write_text(content)
    return snapshot


def test_hf_offline_reads_local_cache(tmp_settings: Settings) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = _hf_cache_layout(
        tmp_settings.cache_dir, "acme/tiny", commit, {"config.json": json.dumps({"a": 1})}
    )
    offline = Settings(cache_dir=tmp_settings.cache_dir, hf_offline=True)
    assert resolve("hf://acme/tiny", offline) == snapshot
    assert resolve(f"hf://acme/tiny@{commit}", offline) == snapshot


def test_hf_offline_missing_repo_is_clear(tmp_settings: Settings) -> None:
    offline = Settings(cache_dir=tmp_settings.cache_dir, hf_offline=True)
    with pytest.raises(StorageError, match="not in the local cache"):
        resolve("hf://acme/absent", offline)


def test_hf_unreachable_hub_is_clear(
    tmp_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A loopback port nobody listens on: the connection is refused at once.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(StorageError) as info:
        resolve("hf://acme/absent", tmp_settings)
    assert "hf://acme/absent" in str(info.value)
    assert "cannot be reached" in str(info.value)


def test_preloaded_builtin_model_wins_over_the_cache(tmp_path: Path) -> None:
    from loraland.storage.builtin import BUILTIN_MODELS, converted_dir

    model = BUILTIN_MODELS["smollm2-135m-instruct"]
    baked = converted_dir(model, tmp_path / "baked")
    baked.mkdir(parents=True)
    (baked / "config.json").write_text("{}")
    (baked / "model.safetensors").write_bytes(b"")
    settings = Settings.from_env(
        {
            "LORALAND_CACHE": str(tmp_path / "cache"),
            "LORALAND_PRELOADED_MODELS": str(tmp_path / "baked"),
        }
    )
    assert resolve(model.uri, settings) == baked


def test_converted_builtin_model_is_readable_by_every_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server image converts as root and serves as UID 10001 (tests/images found it
    # unreadable): the result must not keep mkdtemp's owner-only modes.
    import stat

    from loraland.storage import builtin

    def convert(_source: Path, out: Path, _progress: object) -> None:
        (out / "config.json").write_text("{}")
        weights = out / "model.safetensors"
        weights.write_bytes(b"")
        weights.chmod(0o600)

    monkeypatch.setattr(builtin, "_convert", convert)
    model = builtin.BUILTIN_MODELS["smollm2-135m-instruct"]
    target = builtin.ensure_converted(model, tmp_path)
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    for name in ("config.json", "model.safetensors"):
        assert stat.S_IMODE((target / name).stat().st_mode) == 0o644
