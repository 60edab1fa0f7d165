"""Publishing a finished directory (an adapter) to its URI, atomically for readers.

A reader never sees a half-written adapter at the final location:

* local paths and ``pvc://`` claims: the files are copied into a temporary sibling
  directory, which is then renamed over the target (an existing target is first renamed
  aside and removed after the swap, so the target path is only ever absent for an instant
  or complete).
* ``s3://``: S3 has no rename. The files are uploaded under a temporary prefix
  ``<prefix>.tmp-<id>/``, then copied server-side to the final prefix. ``loraland.json``
  (the metadata) is deleted first when replacing an adapter and copied *last*, so its
  presence under a prefix means "complete": readers should treat a prefix without
  ``loraland.json`` as not (yet) published. Stale objects of an older version are removed
  before the metadata appears, and the temporary prefix is deleted at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from loraland.api.adapter import METADATA_FILE
from loraland.settings import Settings
from loraland.storage.errors import StorageError
from loraland.storage.resolve import _s3_filesystem
from loraland.storage.uri import ArtifactURI, Scheme, parse_uri


def local_target(parsed: ArtifactURI, settings: Settings) -> Path:
    if parsed.scheme is Scheme.FILE:
        return Path(parsed.location).expanduser().absolute()
    if parsed.scheme is Scheme.PVC:
        mount = settings.pvc_root / parsed.location
        if not mount.is_dir():
            raise StorageError(parsed.raw, f"claim '{parsed.location}' is not mounted at {mount}")
        if not parsed.path:
            raise StorageError(parsed.raw, "name a directory inside the claim", "pvc://CLAIM/PATH")
        return mount / parsed.path
    raise StorageError(
        parsed.raw,
        f"cannot publish to {parsed.scheme.value}:// URIs",
        "use a path, pvc:// or s3://",
    )


def publish_directory(local_dir: Path, uri: str, settings: Settings) -> str:
    """Copy ``local_dir``'s files to ``uri``; return the URI they are now at."""
    parsed = parse_uri(uri)
    files = sorted(p for p in local_dir.rglob("*") if p.is_file())
    if not files:
        raise StorageError(uri, f"nothing to publish: {local_dir} is empty")
    if parsed.scheme is Scheme.S3:
        _publish_s3(local_dir, files, parsed)
        return parsed.raw
    target = local_target(parsed, settings)
    _publish_local(local_dir, target, uri)
    return parsed.raw


def _publish_local(local_dir: Path, target: Path, uri: str) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    except OSError as exc:
        raise StorageError(uri, f"cannot write to {target.parent}: {exc}") from None
    try:
        shutil.copytree(local_dir, staging, dirs_exist_ok=True)
        old = None
        if target.exists():
            if not target.is_dir():
                raise StorageError(uri, f"{target} exists and is not a directory")
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(target, old)
        os.rename(staging, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        raise StorageError(uri, f"publishing failed: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish_s3(local_dir: Path, files: list[Path], parsed: ArtifactURI) -> None:
    if not parsed.path:
        raise StorageError(parsed.raw, "name a prefix inside the bucket", "s3://BUCKET/PREFIX")
    fs = _s3_filesystem()
    final = f"{parsed.location}/{parsed.path}"
    temp = f"{final}.tmp-{uuid.uuid4().hex[:12]}"
    names = [f.relative_to(local_dir).as_posix() for f in files]
    payload = [name for name in names if name != METADATA_FILE]
    try:
        for name in names:
            fs.put_file(str(local_dir / name), f"{temp}/{name}")
        # From here until the metadata is copied, the prefix reads as "not published".
        if fs.exists(f"{final}/{METADATA_FILE}"):
            fs.rm_file(f"{final}/{METADATA_FILE}")
        for name in payload:
            fs.copy(f"{temp}/{name}", f"{final}/{name}")
        wanted = {f"{final}/{name}" for name in names}
        for key in sorted(set(_listing(fs, final)) - wanted):
            fs.rm_file(key)
        if METADATA_FILE in names:
            fs.copy(f"{temp}/{METADATA_FILE}", f"{final}/{METADATA_FILE}")
    except OSError as exc:
        raise StorageError(
            parsed.raw, f"upload failed: {exc}", "check credentials and AWS_ENDPOINT_URL"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            fs.rm(temp, recursive=True)


def _listing(fs: object, prefix: str) -> list[str]:
    """Keys strictly under ``prefix/`` (not siblings such as ``prefix.tmp-*``)."""
    keys = fs.find(prefix + "/")  # type: ignore[attr-defined]
    return [key for key in keys if key.startswith(prefix + "/")]
