"""The adapter agent's pure bookkeeping, and staging from each URI kind it reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loraland.agent.stage import StagingError, adapter_rank, link_path, stage
from loraland.agent.state import (
    Entry,
    FileError,
    Record,
    apply_file,
    due_for_staging,
    is_ready,
    parse_adapters_file,
    server_lost,
    strays,
    waiting_for,
)
from loraland.controller.serving import adapters_file
from loraland.settings import Settings

pytestmark = pytest.mark.timeout(60)


def test_reads_the_file_the_operator_writes() -> None:
    text = adapters_file({"b": "s3://bkt/b", "a": "hf://o/a@v2"}, frozenset({"b"}))
    assert parse_adapters_file(text) == [
        Entry(name="a", uri="hf://o/a@v2"),
        Entry(name="b", uri="s3://bkt/b", required=False),
    ]
    assert parse_adapters_file("") == [] and parse_adapters_file("adapters: []") == []
    for bad in ("[1, 2]", "adapters: {a: 1}", "- {name: a, uri: x}\n- {name: a, uri: y}", "{"):
        with pytest.raises(FileError):
            parse_adapters_file(bad)


def test_apply_file_adds_replaces_and_removes() -> None:
    records = {
        "keep": Record(uri="hf://o/k", stage="Loaded", path="/p/k"),
        "moved": Record(uri="hf://o/m@v1", stage="Loaded", path="/p/m1"),
        "gone": Record(uri="hf://o/g", stage="Loaded", path="/p/g"),
        "never": Record(uri="hf://o/n", stage="Failed"),
    }
    changes = apply_file(
        records,
        [
            Entry(name="keep", uri="hf://o/k", required=False),
            Entry(name="moved", uri="hf://o/m@v2"),
            Entry(name="new", uri="s3://b/new"),
        ],
    )
    assert changes.unload == ["gone", "moved"]  # "never" was never in the server
    assert changes.records["keep"] == Record(
        uri="hf://o/k", required=False, stage="Loaded", path="/p/k"
    )
    assert changes.records["moved"] == Record(uri="hf://o/m@v2")  # staged afresh
    assert changes.records["new"].stage == "Staging"
    assert set(changes.records) == {"keep", "moved", "new"}


def test_readiness_waits_for_required_adapters_then_latches() -> None:
    records = {
        "a": Record(uri="x", stage="Loaded"),
        "b": Record(uri="y", stage="Staged"),
        "opt": Record(uri="z", required=False, stage="Failed"),
    }
    assert waiting_for(records) == ["b"]
    assert not is_ready(records, file_read=True, latched=False)
    loaded = {**records, "b": Record(uri="y", stage="Loaded")}
    assert is_ready(loaded, file_read=True, latched=False)
    assert not is_ready({}, file_read=False, latched=False)  # never read the file yet
    # Once ready, a later adapter that is still downloading does not unready the pod.
    assert is_ready({**loaded, "c": Record(uri="w")}, file_read=True, latched=True)


def test_a_restarted_server_gets_its_adapters_again() -> None:
    records = {"a": Record(uri="x", stage="Loaded", path="/p"), "b": Record(uri="y")}
    lost = server_lost(records, loaded=set())
    assert lost["a"].stage == "Staged" and lost["a"].path == "/p"
    assert server_lost(records, loaded=None) == records  # LoRAX cannot list: trust records
    assert strays(records, {"a", "mine", "theirs"}, owned={"a", "mine"}) == ["mine"]


def test_failed_adapters_are_retried_after_a_while() -> None:
    records = {
        "new": Record(uri="x"),
        "old-failure": Record(uri="y", stage="Failed", failed_at=100.0),
        "recent-failure": Record(uri="z", stage="Failed", failed_at=125.0),
    }
    assert due_for_staging(records, now=131.0, retry_s=30.0) == ["new", "old-failure"]


# ------------------------------------------------------------------------ staging


def _adapter(directory: Path, rank: int, **extra: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    config = {"r": rank, "lora_alpha": 2 * rank, "target_modules": ["q_proj"], **extra}
    (directory / "adapter_config.json").write_text(json.dumps(config))
    (directory / "adapter_model.safetensors").write_bytes(b"weights-" + str(rank).encode())
    return directory


def _hf_revision(cache: Path, repo: str, ref: str, commit: str, rank: int) -> Path:
    """huggingface_hub's own cache layout: refs/<ref> names snapshots/<commit>."""
    root = cache / "hf" / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / ref).write_text(commit)
    return _adapter(root / "snapshots" / commit, rank)


def test_a_pinned_revision_is_kept(tmp_path: Path) -> None:
    """vLLM got only the hub id (the @revision was dropped); the agent stages the revision."""
    settings = Settings(cache_dir=tmp_path / "stage", hf_offline=True)
    v1 = _hf_revision(settings.cache_dir, "acme/sql", "main", "a" * 40, rank=8)
    v2 = _hf_revision(settings.cache_dir, "acme/sql", "v2", "b" * 40, rank=16)
    stage_dir = settings.cache_dir
    assert stage("sql", "hf://acme/sql", settings, stage_dir, link=False).path == str(v1)
    staged = stage("sql", "hf://acme/sql@v2", settings, stage_dir, link=False)
    assert staged.path == str(v2) and staged.rank == 16
    # LoRAX gets a stable path per name that follows the URI.
    linked = stage("sql", "hf://acme/sql@v2", settings, stage_dir, link=True)
    assert linked.path == str(link_path(stage_dir, "sql"))
    assert Path(linked.path).resolve() == v2.resolve()
    stage("sql", "hf://acme/sql", settings, stage_dir, link=True)
    assert Path(linked.path).resolve() == v1.resolve()


def test_stages_s3_and_pvc_and_hands_paths_over(
    tmp_path: Path, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    source = _adapter(tmp_path / "src", rank=32, rank_pattern={"q_proj": 64})
    s3 = boto3.client("s3", region_name="us-east-1")
    for file in source.iterdir():
        s3.upload_file(str(file), s3_bucket, f"adapters/a/{file.name}")
    settings = Settings(cache_dir=tmp_path / "stage", pvc_root=tmp_path / "pvc")
    staged = stage("a", f"s3://{s3_bucket}/adapters/a", settings, settings.cache_dir, link=False)
    assert Path(staged.path).is_relative_to(settings.cache_dir)  # in the shared volume
    assert (Path(staged.path) / "adapter_model.safetensors").read_bytes() == b"weights-32"
    assert staged.rank == 64  # rank_pattern counts: vLLM checks the largest
    _adapter(tmp_path / "pvc" / "claim" / "a", rank=4)
    on_claim = stage("p", "pvc://claim/a", settings, settings.cache_dir, link=False)
    assert on_claim.path == str(tmp_path / "pvc" / "claim" / "a") and on_claim.rank == 4
    # A path is the server's own: handed over unchecked (the server reports a miss).
    assert stage("l", "/opt/in/server/image", settings, settings.cache_dir, link=False).path == (
        "/opt/in/server/image"
    )
    with pytest.raises(StagingError, match="names a base model"):
        stage("b", "builtin://smollm2-135m-instruct", settings, settings.cache_dir, link=False)
    with pytest.raises(StagingError, match="no objects under this S3 prefix"):
        stage("m", f"s3://{s3_bucket}/missing", settings, settings.cache_dir, link=False)
    (tmp_path / "pvc" / "claim" / "notpeft").mkdir()
    with pytest.raises(StagingError, match="not a PEFT adapter"):
        stage("n", "pvc://claim/notpeft", settings, settings.cache_dir, link=False)
    assert adapter_rank(tmp_path) is None
