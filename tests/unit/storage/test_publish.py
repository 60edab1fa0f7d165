"""Atomic publishing of adapter directories (local, pvc://, s3:// on a real moto server)."""

from __future__ import annotations

from pathlib import Path

import pytest
from loraland.settings import Settings
from loraland.storage import StorageError, resolve
from loraland.storage.publish import publish_directory


def _adapter(root: Path, weights: bytes = b"weights-v1") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "adapter_config.json").write_text('{"r": 8}')
    (root / "adapter_model.safetensors").write_bytes(weights)
    (root / "loraland.json").write_text('{"name": "a"}')
    return root


def test_local_publish_creates_and_replaces_without_leftovers(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path / "cache")
    target = tmp_path / "out" / "adapter"
    publish_directory(_adapter(tmp_path / "v1"), str(target), settings)
    assert (target / "adapter_model.safetensors").read_bytes() == b"weights-v1"

    v2 = _adapter(tmp_path / "v2", b"weights-v2")
    (v2 / "extra.txt").write_text("new file")
    publish_directory(v2, str(target), settings)
    assert (target / "adapter_model.safetensors").read_bytes() == b"weights-v2"
    assert (target / "extra.txt").is_file()
    # Only the target itself remains: no staging or old copies beside it.
    assert [p.name for p in target.parent.iterdir()] == ["adapter"]


def test_pvc_publish_maps_to_the_claim_mount(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path / "cache", pvc_root=tmp_path / "pvc")
    (tmp_path / "pvc" / "models").mkdir(parents=True)
    uri = publish_directory(_adapter(tmp_path / "a"), "pvc://models/adapters/a1", settings)
    assert uri == "pvc://models/adapters/a1"
    assert (tmp_path / "pvc" / "models" / "adapters" / "a1" / "loraland.json").is_file()


def test_pvc_publish_names_an_unmounted_claim(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path / "cache", pvc_root=tmp_path / "pvc")
    with pytest.raises(StorageError, match="claim 'missing' is not mounted"):
        publish_directory(_adapter(tmp_path / "a"), "pvc://missing/a1", settings)


def test_publish_refuses_hub_uris(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot publish to hf://"):
        publish_directory(_adapter(tmp_path / "a"), "hf://org/name", Settings(cache_dir=tmp_path))


def test_s3_publish_then_resolve_roundtrip(tmp_path: Path, s3_bucket: str) -> None:
    import fsspec

    settings = Settings(cache_dir=tmp_path / "cache")
    uri = f"s3://{s3_bucket}/adapters/sentiment"
    publish_directory(_adapter(tmp_path / "v1"), uri, settings)
    v2 = _adapter(tmp_path / "v2", b"weights-v2")
    (v2 / "loraland.json").write_text('{"name": "b"}')
    publish_directory(v2, uri, settings)

    fs = fsspec.filesystem(
        "s3", client_kwargs={"endpoint_url": _endpoint()}, skip_instance_cache=True
    )
    keys = sorted(fs.find(s3_bucket))
    # The final prefix holds exactly the new files; the temporary prefix is gone.
    assert keys == [
        f"{s3_bucket}/adapters/sentiment/adapter_config.json",
        f"{s3_bucket}/adapters/sentiment/adapter_model.safetensors",
        f"{s3_bucket}/adapters/sentiment/loraland.json",
    ]
    local = resolve(uri, settings)
    assert (local / "adapter_model.safetensors").read_bytes() == b"weights-v2"
    assert (local / "loraland.json").read_text() == '{"name": "b"}'


def test_s3_resolve_single_object_and_missing_prefix(tmp_path: Path, s3_bucket: str) -> None:
    import fsspec

    fs = fsspec.filesystem(
        "s3", client_kwargs={"endpoint_url": _endpoint()}, skip_instance_cache=True
    )
    fs.pipe(f"{s3_bucket}/data/train.jsonl", b'{"input": "a", "output": "b"}\n')
    settings = Settings(cache_dir=tmp_path / "cache")
    path = resolve(f"s3://{s3_bucket}/data/train.jsonl", settings)
    assert path.is_file() and path.read_bytes().startswith(b'{"input"')
    with pytest.raises(StorageError, match="no objects under this S3 prefix"):
        resolve(f"s3://{s3_bucket}/nothing-here", settings)


def _endpoint() -> str:
    import os

    return os.environ["AWS_ENDPOINT_URL"]
