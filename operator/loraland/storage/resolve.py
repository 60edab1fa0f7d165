"""Turn a URI into a local directory (or file), fetching it into the cache if remote."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from filelock import FileLock
from fsspec import AbstractFileSystem

from loraland.settings import Settings
from loraland.storage import builtin
from loraland.storage.errors import StorageError
from loraland.storage.uri import ArtifactURI, Scheme, parse_uri


def resolve(uri: str, settings: Settings, progress: builtin.Progress | None = None) -> Path:
    """Return a local path holding the artifact ``uri`` names.

    Local paths and claims are checked and returned as they are; builtin models are
    converted once; hub repositories and S3 prefixes are downloaded into the cache.
    """
    parsed = parse_uri(uri)
    if parsed.scheme is Scheme.BUILTIN:
        model = builtin.lookup(parsed.raw, parsed.location)
        for preloaded in settings.preloaded_models_dirs:
            baked = builtin.converted_dir(model, preloaded)
            if builtin.is_converted(baked):
                return baked
        return builtin.ensure_converted(model, settings.models_dir, progress)
    if parsed.scheme is Scheme.FILE:
        return _existing(parsed, Path(parsed.location).expanduser(), "check the path")
    if parsed.scheme is Scheme.PVC:
        mount = settings.pvc_root / parsed.location
        hint = f"is claim '{parsed.location}' mounted at {mount}?"
        return _existing(parsed, mount / parsed.path, hint)
    if parsed.scheme is Scheme.HF:
        return _fetch_hf(parsed, settings)
    return _fetch_s3(parsed, settings)


def _existing(parsed: ArtifactURI, path: Path, hint: str) -> Path:
    if not path.exists():
        raise StorageError(parsed.raw, f"{path} does not exist", hint)
    return path.absolute()


def _fetch_hf(parsed: ArtifactURI, settings: Settings) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        local = snapshot_download(
            repo_id=parsed.location,
            revision=parsed.revision,
            cache_dir=settings.cache_dir / "hf",
            local_files_only=settings.hf_offline,
            token=os.environ.get("HF_TOKEN") or None,
        )
    except GatedRepoError:
        raise StorageError(
            parsed.raw, "the repository is gated", "set HF_TOKEN to a token with access"
        ) from None
    except RepositoryNotFoundError:
        raise StorageError(
            parsed.raw,
            "repository not found on the Hub",
            "check the name, or set HF_TOKEN for a private repository",
        ) from None
    except RevisionNotFoundError:
        raise StorageError(parsed.raw, f"revision '{parsed.revision}' not found") from None
    except LocalEntryNotFoundError:
        raise StorageError(
            parsed.raw,
            "not in the local cache and the Hugging Face Hub cannot be reached",
            f"connect to the Hub, or pre-populate {settings.cache_dir / 'hf'}",
        ) from None
    except OSError as exc:  # connection errors surface as requests/httpx OSErrors
        raise StorageError(parsed.raw, f"cannot reach the Hugging Face Hub: {exc}") from None
    return Path(local)


def _s3_filesystem() -> AbstractFileSystem:
    import fsspec

    # s3fs honours AWS_* credentials; an S3-compatible server is named by AWS_ENDPOINT_URL.
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("S3_ENDPOINT_URL")
    client_kwargs = {"endpoint_url": endpoint} if endpoint else {}
    return fsspec.filesystem("s3", client_kwargs=client_kwargs, skip_instance_cache=True)


def _fetch_s3(parsed: ArtifactURI, settings: Settings) -> Path:
    """Mirror ``s3://bucket/prefix`` into the cache, keyed by the listing's ETags.

    The key changes when any object changes, so a stale copy is never reused, and the
    download lands in a temporary directory renamed into place when complete.
    """
    fs = _s3_filesystem()
    root = f"{parsed.location}/{parsed.path}".rstrip("/")
    try:
        if fs.isfile(root):
            listing = {root: fs.info(root)}
        else:
            listing = {p: info for p, info in fs.find(root, detail=True).items()}
    except (OSError, ValueError) as exc:
        raise StorageError(
            parsed.raw,
            f"cannot list the S3 prefix: {exc}",
            "check credentials and AWS_ENDPOINT_URL",
        ) from None
    if not listing:
        raise StorageError(parsed.raw, "no objects under this S3 prefix")
    fingerprint = hashlib.sha256(
        "\n".join(
            f"{p} {info.get('ETag', '')} {info.get('size', '')}"
            for p, info in sorted(listing.items())
        ).encode()
    ).hexdigest()[:16]
    target = settings.cache_dir / "s3" / parsed.location / (parsed.path or "_root") / fingerprint
    if target.exists():
        return _single_file(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if target.exists():
            return _single_file(target)
        staging = Path(tempfile.mkdtemp(prefix=".s3-", dir=target.parent))
        try:
            for key in listing:
                relative = Path(key).relative_to(root) if key != root else Path(Path(key).name)
                destination = staging / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(key, str(destination))
            os.rename(staging, target)
        except OSError as exc:
            raise StorageError(parsed.raw, f"download failed: {exc}") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return _single_file(target)


def _single_file(directory: Path) -> Path:
    """An S3 URI naming one object resolves to that file, a prefix to the directory."""
    entries = list(directory.iterdir())
    if len(entries) == 1 and entries[0].is_file() and not (directory / "config.json").exists():
        return entries[0]
    return directory
