"""Keeping the served adapters in step with an adapters file (a mounted ConfigMap).

Kubernetes updates a ConfigMap volume by swapping a symlink to a new directory, so the
watched path's own mtime may never change: each poll follows the link and hashes the
content. When the content changes (or the last reconcile left work undone, e.g. a
replaced adapter still draining), the file's list is reconciled with the adapters this
file added earlier: new names are loaded, missing ones unloaded, changed URIs replaced.
Adapters added by other means (CLI flags, admin API, roots) are left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loraland.serving.config import parse_adapter_list, read_structured_file
from loraland.serving.errors import ServerConfigError

log = logging.getLogger(__name__)

FILE_ORIGIN = "file"


@dataclass(frozen=True)
class Reconcile:
    add: dict[str, str]
    remove: list[str]


def plan_reconcile(desired: dict[str, str], current: dict[str, str]) -> Reconcile:
    """Pure: what to load and unload so ``current`` (name -> uri) becomes ``desired``."""
    remove = sorted(n for n, uri in current.items() if desired.get(n) != uri)
    add = {n: uri for n, uri in sorted(desired.items()) if current.get(n) != uri}
    return Reconcile(add=add, remove=remove)


def content_digest(path: Path) -> str | None:
    """sha256 of the file the path resolves to now (None if it cannot be read)."""
    try:
        return hashlib.sha256(Path(os.path.realpath(path)).read_bytes()).hexdigest()
    except OSError:
        return None


class AdaptersFileWatcher:
    def __init__(
        self,
        path: Path,
        *,
        current: Callable[[], dict[str, str]],
        add: Callable[[str, str], None],
        remove: Callable[[str], None],
        interval_s: float = 2.0,
    ) -> None:
        self.path = path
        self._current = current
        self._add = add
        self._remove = remove
        self.interval_s = interval_s
        self._digest: str | None = None
        self._dirty = True
        self.last_error: str | None = None

    def poll(self) -> bool:
        """Check once; True if the file changed and a reconcile ran."""
        digest = content_digest(self.path)
        if digest is None:
            self.last_error = f"{self.path}: cannot read"
            return False
        if digest == self._digest and not self._dirty:
            return False
        self._digest = digest
        try:
            adapters = parse_adapter_list(read_structured_file(self.path), str(self.path))
        except ServerConfigError as exc:
            # Keep serving what we have; a half-written or wrong file must not unload all.
            self.last_error = str(exc)
            self._dirty = False
            log.warning("adapters file ignored: %s", exc)
            return True
        self.last_error = None
        plan = plan_reconcile({a.name: a.uri for a in adapters}, self._current())
        self._dirty = False
        for name in plan.remove:
            with contextlib.suppress(KeyError):
                self._remove(name)
        for name, uri in plan.add.items():
            try:
                self._add(name, uri)
            except ValueError as exc:  # name taken, or the old one still draining
                log.info("adapter %s not added yet: %s", name, exc)
                self._dirty = True
        return True

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.poll)
            except Exception:
                log.exception("adapters file poll failed")
            await asyncio.sleep(self.interval_s)
