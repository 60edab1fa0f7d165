"""Reading an answer out of free-form generated text.

Small models rarely answer with the bare label, so, as in the LoRA Land harness, the
answer is read flexibly: the first line only (for single-line tasks), case, spacing and
surrounding punctuation ignored, yes/no read as true/false, a digit read as the label
with that index, a label mentioned inside a sentence found, and JSON compared by value
rather than by spelling.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

_BOOLEANS = {
    "yes": "true",
    "y": "true",
    "true": "true",
    "no": "false",
    "n": "false",
    "false": "false",
}
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_STRIP = " \t\r\n\"'`.,;:!?()[]*"


def first_line(text: str) -> str:
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def normalize(text: str) -> str:
    """Lower case, single spaces, no surrounding punctuation or quotes."""
    return re.sub(r"\s+", " ", text.strip().lower()).strip(_STRIP)


def find_json(text: str) -> Any | None:
    """The first JSON object or array in ``text``, or None."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[\[{]", text):
        try:
            value, _ = decoder.raw_decode(text[match.start() :])
        except json.JSONDecodeError:
            continue
        return value
    return None


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def canonical(text: str, labels: Sequence[str] = ()) -> str:
    """The comparable form of a reference answer."""
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        value = find_json(stripped)
        if value is not None:
            return _canonical_json(value)
    value_text = normalize(stripped)
    value_text = _BOOLEANS.get(value_text, value_text)
    normalized_labels = [normalize(label) for label in labels]
    if (
        value_text.isdigit()
        and normalized_labels
        and not any(label.isdigit() for label in normalized_labels)
        and int(value_text) < len(normalized_labels)
    ):
        return normalized_labels[int(value_text)]
    return value_text


def _label_mentioned(text: str, labels: Sequence[str]) -> str | None:
    """The label that appears first in ``text`` as whole words (``card_lost`` or ``card lost``)."""
    best: tuple[int, str] | None = None
    for label in labels:
        forms = {label, label.replace("_", " "), label.replace("_", "-")}
        for form in forms:
            match = re.search(rf"(?<![a-z0-9]){re.escape(form)}(?![a-z0-9])", text)
            if match and (best is None or match.start() < best[0]):
                best = (match.start(), label)
    return best[1] if best else None


def extract_answer(generation: str, labels: Sequence[str] = (), single_line: bool = True) -> str:
    """The comparable form of a model's answer (see :func:`canonical`)."""
    text = first_line(generation) if single_line else generation.strip()
    if "{" in text or "[" in text:
        value = find_json(text)
        if value is not None:
            return _canonical_json(value)
    answer = canonical(text, labels)
    normalized_labels = [normalize(label) for label in labels]
    if not normalized_labels or answer in normalized_labels:
        return answer
    candidates = list(normalized_labels)
    if set(normalized_labels) <= {"true", "false"}:
        candidates += ["yes", "no"]
    found = _label_mentioned(normalize(text), candidates)
    if found is None:
        return answer
    return _BOOLEANS.get(found, found)


def numbers(text: str) -> list[float]:
    out = []
    for match in _NUMBER.findall(text):
        try:
            out.append(float(match.replace(",", "")))
        except ValueError:
            continue
    return out
