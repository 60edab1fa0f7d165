"""Definitions of real LoRA Land tasks over public datasets.

Each reads its dataset through ``datasets`` from the hub by default; with no network,
download the dataset once and point ``dataset.uri`` (or ``loraland eval --data``) at a
directory of ``<split>.jsonl|csv|parquet`` files with the hub's columns. ``prepare``
maps a raw row to the template's fields and the expected ``output``, and raises
ValueError (reported as a bad row) when a row lacks what the task needs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from loraland.data.tasks import HubSource, TaskDefinition


def _text(row: Mapping[str, Any], name: str) -> str:
    value = row.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"missing field '{name}'")
    return str(value)


def _label(value: Any, names: tuple[str, ...], field: str) -> str:
    """Hub datasets store class indices; exported files often store the names."""
    if isinstance(value, bool):
        return names[int(value)]
    if isinstance(value, int) and 0 <= value < len(names):
        return names[value]
    if isinstance(value, str):
        text = value.strip().lower()
        if text in names:
            return text
        if text.isdigit() and int(text) < len(names):
            return names[int(text)]
        if text in ("true", "false"):
            return names[text == "true"]
    raise ValueError(f"field '{field}' has {value!r}, expected one of {', '.join(names)}")


def prepare_sst2(row: Mapping[str, Any]) -> dict[str, Any]:
    labels = ("negative", "positive")
    return {"sentence": _text(row, "sentence"), "output": _label(row.get("label"), labels, "label")}


def prepare_boolq(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "question": _text(row, "question"),
        "passage": _text(row, "passage"),
        "output": _label(row.get("answer"), ("false", "true"), "answer"),
    }


def prepare_gsm8k(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"question": _text(row, "question"), "output": _text(row, "answer")}


#: CoNLL-2003 tag ids as the hub's conllpp stores them.
CONLL_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
_CONLL_KINDS = {"PER": "person", "ORG": "organization", "LOC": "location", "MISC": "miscellaneous"}


def conll_entities(tokens: list[str], tags: list[Any]) -> dict[str, list[str]]:
    """Group BIO tags into entity strings per kind, in sentence order."""
    found: dict[str, list[str]] = {kind: [] for kind in _CONLL_KINDS.values()}
    current: list[str] = []
    kind = ""
    for token, tag in [*zip(tokens, tags, strict=True), ("", "O")]:
        name = CONLL_TAGS[tag] if isinstance(tag, int) else str(tag)
        if current and not (name.startswith("I-") and _CONLL_KINDS.get(name[2:]) == kind):
            found[kind].append(" ".join(current))
            current = []
        if name.startswith(("B-", "I-")) and name[2:] in _CONLL_KINDS:
            if not current:
                kind = _CONLL_KINDS[name[2:]]
            current.append(token)
    return found


def prepare_conllpp(row: Mapping[str, Any]) -> dict[str, Any]:
    tokens, tags = row.get("tokens"), row.get("ner_tags")
    if not isinstance(tokens, list) or not isinstance(tags, list) or not tokens:
        raise ValueError("needs list fields 'tokens' and 'ner_tags'")
    if len(tokens) != len(tags):
        raise ValueError(f"{len(tokens)} tokens but {len(tags)} ner_tags")
    try:
        entities = conll_entities([str(t) for t in tokens], tags)
    except (IndexError, KeyError):
        raise ValueError("ner_tags has an unknown tag") from None
    return {"sentence": " ".join(str(t) for t in tokens), "output": json.dumps(entities)}


def prepare_viggo(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"target": _text(row, "target"), "output": _text(row, "meaning_representation")}


def prepare_stsb(row: Mapping[str, Any]) -> dict[str, Any]:
    try:
        score = float(row.get("label"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"field 'label' has {row.get('label')!r}, expected a number 0-5") from None
    return {
        "sentence1": _text(row, "sentence1"),
        "sentence2": _text(row, "sentence2"),
        "output": f"{score:.1f}",
    }


HUB_TASKS = [
    TaskDefinition(
        name="sst2",
        kind="classification",
        description="GLUE SST-2 movie-review sentiment",
        prompt_template="Sentence: {sentence}\nIs the sentiment positive or negative?\nAnswer:",
        metric="accuracy",
        fields=("sentence", "output"),
        labels=("negative", "positive"),
        max_new_tokens=8,
        source=HubSource("hf://stanfordnlp/sst2"),
        prepare=prepare_sst2,
    ),
    TaskDefinition(
        name="boolq",
        kind="classification",
        description="yes/no questions about a passage",
        prompt_template="Passage: {passage}\nQuestion: {question}?\nAnswer true or false:",
        metric="accuracy",
        fields=("question", "passage", "output"),
        labels=("false", "true"),
        max_new_tokens=8,
        source=HubSource("hf://google/boolq"),
        prepare=prepare_boolq,
    ),
    TaskDefinition(
        name="gsm8k",
        kind="math",
        description="grade-school math; the last number of the answer is scored",
        prompt_template="Question: {question}\nAnswer step by step, ending with '#### <number>'.\n",
        metric="last_number",
        fields=("question", "output"),
        max_new_tokens=256,
        single_line=False,
        source=HubSource("hf://openai/gsm8k", subset="main", eval_split="test"),
        prepare=prepare_gsm8k,
    ),
    TaskDefinition(
        name="conllpp",
        kind="extraction",
        description="CoNLL++ named entities as JSON lists per kind",
        prompt_template=(
            "Extract the named entities (person, organization, location, miscellaneous) "
            "as JSON.\nSentence: {sentence}\nJSON:"
        ),
        metric="accuracy",
        fields=("sentence", "output"),
        max_new_tokens=96,
        source=HubSource("hf://ZihanWangKi/conllpp"),
        prepare=prepare_conllpp,
    ),
    TaskDefinition(
        name="viggo",
        kind="generation",
        description="ViGGO: video-game sentence -> meaning representation (ROUGE-L)",
        prompt_template=(
            "Translate the sentence into a meaning representation.\nSentence: {target}\n"
            "Meaning representation:"
        ),
        metric="rouge_l",
        fields=("target", "output"),
        max_new_tokens=96,
        source=HubSource("hf://GEM/viggo"),
        prepare=prepare_viggo,
    ),
    TaskDefinition(
        name="stsb",
        kind="regression",
        description="GLUE STS-B sentence similarity 0-5 (score 1 - |error| / 5)",
        prompt_template=(
            "Sentence 1: {sentence1}\nSentence 2: {sentence2}\n"
            "How similar are they, from 0 to 5?\nScore:"
        ),
        metric="regression",
        fields=("sentence1", "sentence2", "output"),
        value_range=(0.0, 5.0),
        max_new_tokens=6,
        source=HubSource("hf://nyu-mll/glue", subset="stsb"),
        prepare=prepare_stsb,
    ),
]
