"""Checks of single fields that several kinds share: URIs, Kubernetes names, images.

Each check is a pure function ``(path, value) -> list[Problem]`` (empty when fine). They
run the same parsers the pods run (:func:`loraland.storage.uri.parse_uri`), so a URI the
webhook accepts is one the trainer and the servers can read, and one it refuses would
have failed in a pod.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from loraland.api.finetunejob import ResourcesSpec, Toleration
from loraland.storage.errors import StorageError
from loraland.storage.uri import ArtifactURI, Scheme, parse_uri
from loraland.validation.problems import Problem

#: What a URI is used for decides which schemes make sense.
Role = Literal["model", "dataset", "output", "adapter"]

# Kubernetes' own definitions (apimachinery validation): a DNS-1123 subdomain (most
# object names), a DNS-1123 label, and a qualified name (label keys, minus the prefix).
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# An image reference as container runtimes parse it: [registry[:port]/]path[:tag][@digest].
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
# The first part is a registry only with a dot, a port or as localhost (else it is a
# path part and lowercase), as container runtimes decide it.
_IMAGE = re.compile(
    rf"^(?:(?:localhost|{_HOST}(?:\.{_HOST})+)(?::[0-9]+)?/|{_HOST}:[0-9]+/)?"
    rf"{_PATH_PART}(?:/{_PATH_PART})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@sha256:[0-9a-f]{64})?$"
)


@dataclass(frozen=True)
class ModelFacts:
    """What is known of a builtin model without loading it."""

    #: Names of the linear modules LoRA can adapt (the last part of each module path).
    lora_modules: tuple[str, ...]
    #: The model's context length (max_position_embeddings).
    max_positions: int


#: Every builtin model (loraland.storage.builtin.BUILTIN_MODELS, which may load torch, so
#: it is not imported here; tests/unit/validation keeps the two in step) and its facts.
BUILTIN_FACTS: dict[str, ModelFacts] = {
    "smollm2-135m-instruct": ModelFacts(
        lora_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        max_positions=8192,
    ),
}


def dns1123_subdomain(path: str, value: str, what: str) -> list[Problem]:
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.match(value):
        return [
            Problem(
                path,
                f"'{value}' is not a valid {what} name (lowercase letters, digits, '-' and '.', "
                "starting and ending with a letter or digit, at most 253 characters)",
            )
        ]
    return []


def dns1123_label(path: str, value: str, what: str) -> list[Problem]:
    if len(value) > 63 or not _DNS1123_LABEL.match(value):
        return [
            Problem(
                path,
                f"'{value}' is not a valid {what} name (lowercase letters, digits and '-', "
                "starting and ending with a letter or digit, at most 63 characters)",
            )
        ]
    return []


def label_key(path: str, key: str) -> list[Problem]:
    prefix, slash, name = key.rpartition("/")
    bad = (
        not name
        or len(name) > 63
        or not _QUALIFIED_NAME.match(name)
        or bool(slash and (not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)))
    )
    if bad:
        return [
            Problem(
                path,
                f"'{key}' is not a valid label key ([prefix/]name: name at most 63 letters, "
                "digits, '-', '_' or '.', alphanumeric at both ends; prefix a DNS subdomain)",
            )
        ]
    return []


def label_value(path: str, value: str) -> list[Problem]:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        return [
            Problem(
                path,
                f"'{value}' is not a valid label value (at most 63 letters, digits, '-', '_' "
                "or '.', alphanumeric at both ends)",
            )
        ]
    return []


def image(path: str, value: str | None) -> list[Problem]:
    if value is None:
        return []
    if not value.strip() or not _IMAGE.match(value):
        return [
            Problem(
                path,
                f"'{value}' is not a valid image reference ([registry/]repository[:tag][@digest], "
                "repository in lowercase)",
            )
        ]
    return []


def parsed_uri(path: str, uri: str, role: Role) -> tuple[ArtifactURI | None, list[Problem]]:
    """The parsed URI and what is wrong with it for ``role``."""
    try:
        parsed = parse_uri(uri)
    except StorageError as exc:
        return None, [Problem(path, str(exc))]
    problems = []
    if parsed.scheme is Scheme.BUILTIN:
        if role != "model":
            what = {"dataset": "datasets", "output": "outputs", "adapter": "adapters"}[role]
            problems.append(
                Problem(path, f"builtin:// names base models, not {what}; use pvc://, s3://, hf://")
            )
        elif parsed.location not in BUILTIN_FACTS:
            problems.append(
                Problem(
                    path,
                    f"unknown builtin model '{parsed.location}' "
                    f"(known: {', '.join('builtin://' + n for n in BUILTIN_FACTS)})",
                )
            )
    if role == "output" and parsed.scheme is Scheme.HF:
        problems.append(
            Problem(
                path,
                "cannot write an adapter to hf://; use pvc://CLAIM/PATH, s3://BUCKET/PREFIX "
                "or a path",
            )
        )
    return parsed, problems


def uri(path: str, value: str | None, role: Role) -> list[Problem]:
    if value is None:
        return []
    return parsed_uri(path, value, role)[1]


def builtin_facts(uri_text: str) -> ModelFacts | None:
    """Facts of a builtin:// base model, None for any other (or a bad) URI."""
    try:
        parsed = parse_uri(uri_text)
    except StorageError:
        return None
    if parsed.scheme is not Scheme.BUILTIN:
        return None
    return BUILTIN_FACTS.get(parsed.location)


def revision(path: str, revision_value: str | None, uri_text: str) -> list[Problem]:
    if revision_value is None:
        return []
    if not revision_value.strip():
        return [Problem(path, "empty revision; leave it out for the default branch")]
    try:
        scheme = parse_uri(uri_text).scheme
    except StorageError:
        return []  # the URI's own problem is reported on its field
    if scheme is not Scheme.HF:
        return [Problem(path, f"a revision applies to hf:// models only, not {scheme.value}://")]
    return []


def toleration(path: str, t: Toleration) -> list[Problem]:
    problems = label_key(f"{path}.key", t.key) if t.key else []
    if t.operator == "Exists" and t.value:
        problems.append(Problem(f"{path}.value", "must be empty when operator is Exists"))
    if not t.key and t.operator != "Exists":
        problems.append(Problem(f"{path}.operator", "must be Exists when key is empty"))
    if t.value:
        problems += label_value(f"{path}.value", t.value)
    if t.toleration_seconds is not None and t.effect != "NoExecute":
        problems.append(Problem(f"{path}.tolerationSeconds", "applies only with effect: NoExecute"))
    return problems


def resources(path: str, r: ResourcesSpec) -> list[Problem]:
    problems: list[Problem] = []
    for key, value in r.node_selector.items():
        problems += label_key(f"{path}.nodeSelector", key)
        problems += label_value(f"{path}.nodeSelector.{key}", value)
    for i, t in enumerate(r.tolerations):
        problems += toleration(f"{path}.tolerations[{i}]", t)
    return problems


def secret_ref(path: str, value: str | None) -> list[Problem]:
    return [] if value is None else dns1123_subdomain(path, value, "Secret")
