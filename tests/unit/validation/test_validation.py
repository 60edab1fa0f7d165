"""The validators of loraland.validation: every problem at once, each naming its field."""

from __future__ import annotations

from typing import Any

import pytest
from loraland.api.finetunejob import ResourcesSpec
from loraland.serving.config import ServerConfig
from loraland.storage.builtin import BUILTIN_MODELS
from loraland.validation import (
    ADAPTERDEPLOYMENT,
    FINETUNEJOB,
    VALIDATORS,
    Meta,
    Problem,
    fields,
    format_problems,
)
from loraland.validation import adapterdeployment as adep_rules
from loraland.validation.problems import join_path

SMOL = "builtin://smollm2-135m-instruct"


def ftj(**spec: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "baseModel": {"uri": SMOL},
        "dataset": {"task": "sentiment"},
        "output": {"uri": "s3://bucket/out"},
    }
    raw.update(spec)
    return raw


def adep(**spec: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "baseModel": {"uri": SMOL},
        "adapters": [{"name": "a", "uri": "s3://bucket/a"}],
        "resources": {"gpus": 0},
    }
    raw.update(spec)
    return raw


def paths(problems: tuple[Problem, ...]) -> list[str]:
    return [p.path for p in problems]


def test_valid_specs_have_no_problems() -> None:
    assert FINETUNEJOB(ftj()).ok
    assert ADAPTERDEPLOYMENT(adep()).ok
    assert FINETUNEJOB(ftj(dataset={"task": "gsm8k", "subset": "main"})).ok  # a hub task
    assert FINETUNEJOB(
        ftj(dataset={"uri": "s3://bucket/d.csv", "format": "csv", "promptTemplate": "{any}"})
    ).ok


def test_every_problem_is_reported_at_once_in_one_format() -> None:
    checked = FINETUNEJOB(
        ftj(
            baseModel={"uri": "builtin://nope"},
            dataset={"task": "nope"},
            output={"uri": "hf://org/x"},
            image="Bad Image",
        )
    )
    assert checked.spec is not None and not checked.ok
    assert paths(checked.problems) == [
        "spec.baseModel.uri",
        "spec.output.uri",
        "spec.dataset.task",
        "spec.image",
    ]
    assert checked.message == "; ".join(f"{p.path}: {p.reason}" for p in checked.problems)


def test_structure_errors_come_from_pydantic_with_wire_paths() -> None:
    checked = ADAPTERDEPLOYMENT(adep(adapters=[{"name": "a"}], replicas=-1, bogus=1))
    assert checked.spec is None
    assert paths(checked.problems) == ["spec.adapters[0]", "spec.replicas", "spec.bogus"]
    assert checked.problems[-1].reason == "unknown field"


@pytest.mark.parametrize(
    ("spec", "path", "words"),
    [
        (ftj(baseModel={"uri": "ftp://x/y"}), "spec.baseModel.uri", "unknown scheme"),
        (ftj(baseModel={"uri": "builtin://gpt-9"}), "spec.baseModel.uri", "unknown builtin"),
        (ftj(baseModel={"uri": SMOL, "revision": "v1"}), "spec.baseModel.revision", "hf://"),
        (ftj(baseModel={"uri": SMOL, "secretRef": "A_b"}), "spec.baseModel.secretRef", "Secret"),
        (ftj(dataset={"uri": SMOL}), "spec.dataset.uri", "not datasets"),
        (ftj(dataset={"task": "x"}), "spec.dataset.task", "unknown task"),
        (ftj(evaluation={"task": "x"}), "spec.evaluation.task", "unknown task"),
        (ftj(dataset={"task": "sentiment", "subset": "m"}), "spec.dataset.subset", "hf://"),
        (
            ftj(dataset={"uri": "/d/train.csv", "format": "parquet"}),
            "spec.dataset.format",
            "does not match",
        ),
        (
            ftj(dataset={"task": "sentiment", "promptTemplate": "{text"}),
            "spec.dataset.promptTemplate",
            "malformed",
        ),
        (
            ftj(dataset={"task": "sentiment", "promptTemplate": "{x.y}"}),
            "spec.dataset.promptTemplate",
            "plain field name",
        ),
        (
            ftj(dataset={"task": "sentiment", "promptTemplate": "{nope}"}),
            "spec.dataset.promptTemplate",
            "not a field of task sentiment",
        ),
        (
            ftj(dataset={"task": "sentiment", "outputField": "label"}),
            "spec.dataset.outputField",
            "not a field",
        ),
        (ftj(output={"uri": SMOL}), "spec.output.uri", "not outputs"),
        (ftj(lora={"targetModules": []}), "spec.lora.targetModules", "empty"),
        (ftj(lora={"targetModules": ["q", "q"]}), "spec.lora.targetModules", "repeated"),
        (ftj(lora={"targetModules": ["c_attn"]}), "spec.lora.targetModules", "not found"),
        (ftj(lora={"targetModules": ["1x"]}), "spec.lora.targetModules[0]", "module name"),
        (
            ftj(lora={"quantization": "8bit"}, resources={"gpus": 0}),
            "spec.lora.quantization",
            "CUDA",
        ),
        (ftj(training={"maxSeqLength": 9000}), "spec.training.maxSeqLength", "context"),
        (ftj(image="UPPER/case"), "spec.image", "image reference"),
        (adep(adapters=[{"name": "a", "uri": SMOL}]), "spec.adapters[0].uri", "not adapters"),
        (adep(runtime="vllm"), "spec.resources.gpus", "needs a GPU"),
        (adep(serving={"maxInputTokens": 2048}), "spec.serving.maxInputTokens", "defaults"),
        (adep(serving={"maxTotalTokens": 1024}), "spec.serving.maxTotalTokens", "defaults"),
        (
            adep(serving={"maxInputTokens": 10, "maxTotalTokens": 10000}),
            "spec.serving.maxTotalTokens",
            "context",
        ),
    ],
)
def test_each_rule_names_its_field(spec: dict[str, Any], path: str, words: str) -> None:
    validator = FINETUNEJOB if "output" in spec else ADAPTERDEPLOYMENT
    checked = validator(spec)
    assert [p for p in checked.problems if p.path == path and words in p.reason], checked.message


def test_a_long_job_name_without_adapter_name_is_refused() -> None:
    assert FINETUNEJOB(ftj(), Meta(name="a" * 129)).message.startswith("metadata.name: ")
    assert FINETUNEJOB(ftj(output={"uri": "/o", "adapterName": "x"}), Meta(name="a" * 129)).ok
    assert FINETUNEJOB(ftj(), Meta(name=None)).ok  # generateName: no name yet


def test_tolerations_and_node_selectors_follow_kubernetes_rules() -> None:
    r = ResourcesSpec.model_validate(
        {
            "nodeSelector": {"example.com/pool": "gpu-a", "-bad": "ok", "k": "x" * 64},
            "tolerations": [
                {"operator": "Exists"},
                {"key": "k", "operator": "Exists", "value": "v"},
                {"value": "v"},
                {"key": "k", "value": "v", "effect": "NoSchedule", "tolerationSeconds": 1},
                {"key": "k", "value": "v", "effect": "NoExecute", "tolerationSeconds": 1},
            ],
        }
    )
    assert paths(tuple(fields.resources("r", r))) == [
        "r.nodeSelector",
        "r.nodeSelector.k",
        "r.tolerations[1].value",
        "r.tolerations[2].operator",
        "r.tolerations[3].tolerationSeconds",
    ]


@pytest.mark.parametrize(
    ("ref", "ok"),
    [
        ("ghcr.io/loraland/trainer:0.1.0-cpu", True),
        ("localhost:5000/x/y@sha256:" + "a" * 64, True),
        ("vllm/vllm-openai:v0.11.0", True),
        ("busybox", True),
        ("Busybox", False),
        ("a b", False),
        ("x:", False),
        ("", False),
    ],
)
def test_image_references(ref: str, ok: bool) -> None:
    assert (fields.image("i", ref) == []) is ok


def test_validators_compose_with_one_more_rule() -> None:
    def no_replicas(spec: Any, meta: Meta) -> list[Problem]:
        return [Problem("spec.replicas", "zero")] if spec.replicas == 0 else []

    strict = ADAPTERDEPLOYMENT.with_rules(no_replicas)
    assert strict(adep(replicas=0)).message == "spec.replicas: zero"
    assert ADAPTERDEPLOYMENT(adep(replicas=0)).ok
    assert set(VALIDATORS) == {"FineTuneJob", "AdapterDeployment", "FineTuneStudy"}


def test_format_and_paths() -> None:
    assert join_path("spec", ("adapters", 0, "uri")) == "spec.adapters[0].uri"
    assert join_path("spec", ("training", "function-after")) == "spec.training"
    assert format_problems([Problem("a", "x"), Problem("a", "x"), Problem("", "y")]) == "a: x; y"


def test_facts_mirror_the_packages_that_the_pods_run() -> None:
    assert set(fields.BUILTIN_FACTS) == set(BUILTIN_MODELS)
    defaults = ServerConfig(base_model="x")
    assert defaults.max_input_tokens == adep_rules.BUILTIN_MAX_INPUT_TOKENS
    assert defaults.max_total_tokens == adep_rules.BUILTIN_MAX_TOTAL_TOKENS
