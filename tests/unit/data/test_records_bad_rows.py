"""Reading JSONL / CSV / Parquet / datasets-backed sources; bad rows counted with locations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loraland.api.finetunejob import DatasetSpec
from loraland.data import DataError
from loraland.data.loading import load_training_data
from loraland.data.records import open_source, read_hub
from loraland.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(cache_dir=tmp_path / "cache")


def _jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_jsonl_bad_rows_are_reported_with_line_numbers(tmp_path: Path, settings: Settings) -> None:
    data = _jsonl(
        tmp_path / "d.jsonl",
        [
            json.dumps({"input": "a", "output": "x"}),
            "{not json",
            "",
            json.dumps(["a", "list"]),
            json.dumps({"input": "b"}),
            json.dumps({"input": "c", "output": "  "}),
            json.dumps({"output": "y"}),
            json.dumps({"input": "d", "output": "z"}),
        ],
    )
    bundle = load_training_data(DatasetSpec(uri=str(data), eval_fraction=0), 1, settings)
    assert sorted(e.completion for e in bundle.train) == ["x", "z"]
    bad = {row.location: row.reason for row in bundle.bad_rows}
    assert set(bad) == {"d.jsonl:2", "d.jsonl:4", "d.jsonl:5", "d.jsonl:6", "d.jsonl:7"}
    assert bad["d.jsonl:2"].startswith("invalid JSON")
    assert "not a JSON object" in bad["d.jsonl:4"]
    assert bad["d.jsonl:5"] == "missing field 'output'"
    assert bad["d.jsonl:6"] == "field 'output' is empty"
    assert bad["d.jsonl:7"] == "missing field 'input'"


def test_csv_rows_with_wrong_column_counts_are_bad(tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "d.csv"
    path.write_text('text,label\nhello,pos\n"a, quoted",neg\ntoo,many,cols\nshort\nbye,neg\n')
    spec = DatasetSpec(uri=str(path), input_field="text", output_field="label", eval_fraction=0)
    bundle = load_training_data(spec, 1, settings)
    assert sorted(e.prompt for e in bundle.train) == ["a, quoted", "bye", "hello"]
    assert [(b.location, b.reason) for b in bundle.bad_rows] == [
        ("d.csv:4", "expected 2 columns, got 3"),
        ("d.csv:5", "expected 2 columns, got 1"),
    ]


def test_parquet_rows_with_nulls_are_bad(tmp_path: Path, settings: Settings) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"q": ["a", None, "c"], "output": ["1", "2", None]}), path)
    spec = DatasetSpec(uri=str(path), prompt_template="Q: {q}", eval_fraction=0)
    bundle = load_training_data(spec, 1, settings)
    assert [e.prompt for e in bundle.train] == ["Q: a"]
    assert [str(b) for b in bundle.bad_rows] == [
        "d.parquet row 2: missing field 'q'",
        "d.parquet row 3: missing field 'output'",
    ]


def test_unknown_placeholder_and_output_field_are_errors(
    tmp_path: Path, settings: Settings
) -> None:
    data = _jsonl(tmp_path / "d.jsonl", [json.dumps({"input": "a", "output": "x"})])
    with pytest.raises(DataError, match=r"placeholder \{question\} is not a field"):
        load_training_data(DatasetSpec(uri=str(data), prompt_template="{question}"), 1, settings)
    with pytest.raises(DataError, match=r"dataset\.outputField 'answer' is not a field"):
        load_training_data(DatasetSpec(uri=str(data), output_field="answer"), 1, settings)


def test_all_rows_bad_is_an_error_naming_the_first(tmp_path: Path, settings: Settings) -> None:
    data = _jsonl(tmp_path / "d.jsonl", ["nope", "also nope"])
    with pytest.raises(DataError, match=r"no usable rows \(2 bad; first: d.jsonl:1: invalid JSON"):
        load_training_data(DatasetSpec(uri=str(data)), 1, settings)


def test_unknown_suffix_asks_for_a_format(tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "d.txt"
    path.write_text("x")
    with pytest.raises(DataError, match="cannot tell the format"):
        load_training_data(DatasetSpec(uri=str(path)), 1, settings)
    path.write_text(json.dumps({"input": "a", "output": "b"}) + "\n")
    spec = DatasetSpec(uri=str(path), format="jsonl", eval_fraction=0)
    assert len(load_training_data(spec, 1, settings).train) == 1


def test_directory_with_splits_uses_the_eval_split(tmp_path: Path, settings: Settings) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    _jsonl(root / "train.jsonl", [json.dumps({"input": f"t{i}", "output": "x"}) for i in range(5)])
    _jsonl(
        root / "validation.jsonl", [json.dumps({"input": f"v{i}", "output": "y"}) for i in range(3)]
    )
    spec = DatasetSpec(uri=str(root), eval_split="validation")
    bundle = load_training_data(spec, 1, settings)
    assert len(bundle.train) == 5 and {e.prompt for e in bundle.eval} == {"v0", "v1", "v2"}
    with pytest.raises(DataError, match="no file for split 'test'"):
        load_training_data(DatasetSpec(uri=str(root), eval_split="test"), 1, settings)


def test_holdout_split_is_seeded_disjoint_and_respects_max_samples(
    tmp_path: Path, settings: Settings
) -> None:
    rows = [json.dumps({"input": f"q{i}", "output": str(i % 2)}) for i in range(50)]
    data = _jsonl(tmp_path / "d.jsonl", rows)
    spec = DatasetSpec(uri=str(data), eval_fraction=0.2, max_samples=40)
    a = load_training_data(spec, 7, settings)
    b = load_training_data(spec, 7, settings)
    c = load_training_data(spec, 8, settings)
    assert (len(a.train), len(a.eval)) == (32, 8)
    assert a.train == b.train and a.eval == b.eval
    assert a.train != c.train
    assert not {e.prompt for e in a.train} & {e.prompt for e in a.eval}
    assert a.labels == ("0", "1")


def test_hub_reader_loads_through_datasets(tmp_path: Path) -> None:
    """``hf://`` goes through datasets.load_dataset; a local dataset directory takes its place."""
    root = tmp_path / "hubds"
    (root / "data").mkdir(parents=True)
    _jsonl(root / "data" / "train.jsonl", [json.dumps({"sentence": "good", "label": 1})])
    _jsonl(root / "data" / "validation.jsonl", [json.dumps({"sentence": "bad", "label": 0})])
    table = read_hub(str(root), "validation", tmp_path / "cache", None, None, "hf://x/y")
    assert table.fields == ["sentence", "label"]
    assert [(r.location, r.values) for r in table.rows] == [
        ("validation[0]", {"sentence": "bad", "label": 0})
    ]
    with pytest.raises(DataError, match="hf://x/y"):
        read_hub(str(root), "nosuchsplit", tmp_path / "cache", None, None, "hf://x/y")


def test_builtin_uri_is_not_a_dataset(settings: Settings) -> None:
    with pytest.raises(DataError, match="builtin:// names models"):
        open_source("builtin://smollm2-135m-instruct", settings)
