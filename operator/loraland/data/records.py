"""Reading rows from files and hub datasets, keeping where each row came from.

Every row carries a location (``data.jsonl:12``, ``data.parquet row 3``,
``hf train[17]``) so a bad row is reported where the user can find it. A malformed row
(invalid JSON, a CSV line with the wrong number of columns) becomes a :class:`BadRow`:
counted and reported, never silently dropped, and never fatal on its own.

A source either has named splits (a hub dataset, or a directory holding
``<split>.jsonl|csv|parquet`` or ``<split>-*.parquet`` files) or is one file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loraland.data.errors import DataError
from loraland.settings import Settings
from loraland.storage import Scheme, StorageError, parse_uri, resolve

SUFFIXES = {
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
}


@dataclass(frozen=True)
class Row:
    location: str
    values: dict[str, Any]


@dataclass(frozen=True)
class BadRow:
    location: str
    reason: str

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}"


@dataclass
class RowTable:
    source: str
    rows: list[Row] = field(default_factory=list)
    bad_rows: list[BadRow] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DataSource:
    """An opened dataset URI: a local path or a hub repository."""

    uri: str
    path: Path | None = None
    hub_repo: str | None = None
    revision: str | None = None
    subset: str | None = None
    format: str = "auto"

    @property
    def has_splits(self) -> bool:
        return self.hub_repo is not None or (self.path is not None and self.path.is_dir())

    def split_exists(self, split: str) -> bool:
        if self.hub_repo is not None:
            return True  # only the hub can tell; read() reports a missing split
        return self.path is not None and self.path.is_dir() and bool(_split_files(self.path, split))

    def read(self, split: str, cache_dir: Path) -> RowTable:
        if self.hub_repo is not None:
            return read_hub(self.hub_repo, split, cache_dir, self.revision, self.subset, self.uri)
        assert self.path is not None
        if self.path.is_dir():
            files = _split_files(self.path, split)
            if not files:
                raise DataError(
                    f"{self.uri}: no file for split '{split}' "
                    f"(expected {split}.jsonl, {split}.csv, {split}.parquet or {split}-*.parquet)"
                )
        else:
            files = [self.path]
        table = RowTable(source=self.uri)
        for path in files:
            read_file(path, self.format, table)
        return table


def open_source(
    uri: str, settings: Settings, fmt: str = "auto", subset: str | None = None
) -> DataSource:
    try:
        parsed = parse_uri(uri)
    except StorageError as exc:
        raise DataError(str(exc)) from None
    if parsed.scheme is Scheme.HF:
        return DataSource(
            uri=uri, hub_repo=parsed.location, revision=parsed.revision, subset=subset
        )
    if parsed.scheme is Scheme.BUILTIN:
        raise DataError(f"{uri}: builtin:// names models, not datasets")
    path = resolve(uri, settings)
    return DataSource(uri=uri, path=path, format=fmt)


def _split_files(directory: Path, split: str) -> list[Path]:
    found = [
        p
        for p in directory.rglob("*")
        if p.is_file()
        and p.suffix in SUFFIXES
        and (p.stem == split or p.name.startswith(f"{split}-"))
    ]
    return sorted(found)


def _format_of(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    try:
        return SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise DataError(
            f"{path}: cannot tell the format from the suffix '{path.suffix}' "
            "(use .jsonl, .csv or .parquet, or set dataset.format)"
        ) from None


def read_file(path: Path, fmt: str, table: RowTable) -> None:
    kind = _format_of(path, fmt)
    readers = {"jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet}
    for item in readers[kind](path):
        if isinstance(item, BadRow):
            table.bad_rows.append(item)
        else:
            table.rows.append(item)
            for key in item.values:
                if key not in table.fields:
                    table.fields.append(key)


def _read_jsonl(path: Path) -> Iterator[Row | BadRow]:
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
        for index, item in enumerate(items, start=1):
            where = f"{path.name} item {index}"
            yield Row(where, item) if isinstance(item, dict) else BadRow(where, "not a JSON object")
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            yield BadRow(where, f"invalid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(item, dict):
            yield BadRow(where, f"not a JSON object but {type(item).__name__}")
            continue
        yield Row(where, item)


def _read_csv(path: Path) -> Iterator[Row | BadRow]:
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames
        if not header:
            raise DataError(f"{path}: empty CSV file (the first line must name the columns)")
        for row in reader:
            where = f"{path.name}:{reader.line_num}"
            if None in row or any(value is None for value in row.values()):
                extra = len(row.get(None) or [])
                got = len(header) + extra - sum(v is None for v in row.values())
                yield BadRow(where, f"expected {len(header)} columns, got {got}")
                continue
            yield Row(where, dict(row))


def _read_parquet(path: Path) -> Iterator[Row | BadRow]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise DataError(f"{path}: not a readable Parquet file: {exc}") from None
    for index, item in enumerate(table.to_pylist(), start=1):
        yield Row(f"{path.name} row {index}", item)


def read_hub(
    repo: str, split: str, cache_dir: Path, revision: str | None, subset: str | None, uri: str
) -> RowTable:
    """Read a split through ``datasets`` (a hub repository, or a local dataset directory)."""
    import datasets

    try:
        data = datasets.load_dataset(
            repo, name=subset, split=split, revision=revision, cache_dir=str(cache_dir)
        )
    except ValueError as exc:  # unknown split or configuration
        raise DataError(f"{uri}: {str(exc).splitlines()[0]}") from None
    except (OSError, FileNotFoundError, ConnectionError) as exc:
        raise DataError(
            f"{uri}: cannot load the dataset: {str(exc).splitlines()[0] if str(exc) else exc!r} "
            "(no network? download it to a directory and use its path)"
        ) from None
    except Exception as exc:
        raise DataError(f"{uri}: cannot load the dataset: {type(exc).__name__}: {exc}") from None
    table = RowTable(source=uri, fields=list(data.column_names))
    for index, item in enumerate(data):
        table.rows.append(Row(f"{split}[{index}]", dict(item)))
    return table
