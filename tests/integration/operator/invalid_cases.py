"""Invalid resources that pass the CRD schema and CEL rules but cannot work.

Each case is (id, manifest, field path the refusal must name). The admission tests
(test_admission.py) expect each refused by the webhook at ``kubectl apply``; the status
tests (test_refused_in_status.py) apply the same set with no webhook and expect each
refused by the operator in status, before any child object exists.
"""

from __future__ import annotations

import json
from typing import Any

from optools import GROUP, VERSION, adep_manifest, ftj_manifest

Case = tuple[str, dict[str, Any], str]


def _set(doc: dict[str, Any], **paths: Any) -> dict[str, Any]:
    """``doc`` with ``spec.<dotted path>`` set for each keyword (``__`` stands for ``.``)."""
    out: dict[str, Any] = json.loads(json.dumps(doc))
    for dotted, value in paths.items():
        node = out["spec"]
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


FTJ = ftj_manifest("case")
GPU_ADEP = adep_manifest(
    "case", runtime="vllm", baseModel={"uri": "hf://org/model"}, resources={"gpus": 1}
)
ADEP = adep_manifest("case", adapters=[{"name": "a", "uri": "s3://loraland-test/a"}])
SMOL = "builtin://smollm2-135m-instruct"

FINETUNEJOB_CASES: list[Case] = [
    ("ftj-base-scheme", _set(FTJ, baseModel={"uri": "ftp://host/model"}), "spec.baseModel.uri"),
    ("ftj-base-hf-no-org", _set(FTJ, baseModel={"uri": "hf://model"}), "spec.baseModel.uri"),
    (
        "ftj-base-unknown-builtin",
        _set(FTJ, baseModel={"uri": "builtin://gpt-9"}),
        "spec.baseModel.uri",
    ),
    ("ftj-base-bad-claim", _set(FTJ, baseModel={"uri": "pvc://Bad_Claim/m"}), "spec.baseModel.uri"),
    ("ftj-base-bad-bucket", _set(FTJ, baseModel={"uri": "s3://B/m"}), "spec.baseModel.uri"),
    (
        "ftj-base-file-relative",
        _set(FTJ, baseModel={"uri": "file://models/m"}),
        "spec.baseModel.uri",
    ),
    (
        "ftj-base-climbs-out",
        _set(FTJ, baseModel={"uri": "pvc://models/../etc"}),
        "spec.baseModel.uri",
    ),
    (
        "ftj-revision-not-hf",
        _set(FTJ, baseModel={"uri": SMOL, "revision": "main"}),
        "spec.baseModel.revision",
    ),
    (
        "ftj-secret-name",
        _set(FTJ, baseModel={"uri": SMOL, "secretRef": "Hub_Token"}),
        "spec.baseModel.secretRef",
    ),
    ("ftj-dataset-builtin", _set(FTJ, dataset={"uri": SMOL}), "spec.dataset.uri"),
    (
        "ftj-dataset-scheme",
        _set(FTJ, dataset={"uri": "gs://bucket/data.jsonl"}),
        "spec.dataset.uri",
    ),
    ("ftj-unknown-task", _set(FTJ, dataset={"task": "sentimentt"}), "spec.dataset.task"),
    ("ftj-unknown-eval-task", _set(FTJ, evaluation={"task": "nope"}), "spec.evaluation.task"),
    (
        "ftj-subset-synthetic",
        _set(FTJ, dataset={"task": "sentiment", "subset": "main"}),
        "spec.dataset.subset",
    ),
    (
        "ftj-format-suffix",
        _set(FTJ, dataset={"uri": "s3://loraland-test/d.csv", "format": "jsonl"}),
        "spec.dataset.format",
    ),
    (
        "ftj-template-malformed",
        _set(FTJ, dataset={"task": "sentiment", "promptTemplate": "Review: {text"}),
        "spec.dataset.promptTemplate",
    ),
    (
        "ftj-template-unknown-field",
        _set(FTJ, dataset={"task": "sentiment", "promptTemplate": "Say {nothing}"}),
        "spec.dataset.promptTemplate",
    ),
    (
        "ftj-output-field",
        _set(FTJ, dataset={"task": "sentiment", "outputField": "label"}),
        "spec.dataset.outputField",
    ),
    ("ftj-output-hub", _set(FTJ, output={"uri": "hf://org/adapter"}), "spec.output.uri"),
    ("ftj-output-builtin", _set(FTJ, output={"uri": SMOL}), "spec.output.uri"),
    ("ftj-output-climbs-out", _set(FTJ, output={"uri": "s3://bucket/../x"}), "spec.output.uri"),
    ("ftj-targets-empty", _set(FTJ, lora={"targetModules": []}), "spec.lora.targetModules"),
    (
        "ftj-targets-unknown",
        _set(FTJ, lora={"targetModules": ["q_proj", "c_attn"]}),
        "spec.lora.targetModules",
    ),
    (
        "ftj-target-name",
        _set(FTJ, lora={"targetModules": ["q proj"]}),
        "spec.lora.targetModules[0]",
    ),
    (
        "ftj-qlora-cpu",
        _set(FTJ, lora={"quantization": "4bit"}, resources={"gpus": 0}),
        "spec.lora.quantization",
    ),
    (
        "ftj-seq-over-context",
        _set(FTJ, training={"maxSteps": 3, "maxSeqLength": 32768}),
        "spec.training.maxSeqLength",
    ),
    (
        "ftj-node-selector-key",
        _set(FTJ, resources={"gpus": 1, "nodeSelector": {"gpu type": "a100"}}),
        "spec.resources.nodeSelector",
    ),
    (
        "ftj-toleration-exists-value",
        _set(FTJ, resources={"tolerations": [{"key": "gpu", "operator": "Exists", "value": "x"}]}),
        "spec.resources.tolerations[0].value",
    ),
    (
        "ftj-toleration-seconds",
        _set(
            FTJ,
            resources={
                "tolerations": [{"key": "gpu", "effect": "NoSchedule", "tolerationSeconds": 5}]
            },
        ),
        "spec.resources.tolerations[0].tolerationSeconds",
    ),
    ("ftj-image", _set(FTJ, image="Registry/Trainer:latest"), "spec.image"),
]

ADAPTERDEPLOYMENT_CASES: list[Case] = [
    ("adep-base-scheme", _set(ADEP, baseModel={"uri": "ftp://host/m"}), "spec.baseModel.uri"),
    (
        "adep-base-unknown-builtin",
        _set(ADEP, baseModel={"uri": "builtin://nope"}),
        "spec.baseModel.uri",
    ),
    ("adep-base-hf-no-org", _set(ADEP, baseModel={"uri": "hf://"}), "spec.baseModel.uri"),
    (
        "adep-revision-not-hf",
        _set(ADEP, baseModel={"uri": "s3://loraland-test/m", "revision": "v1"}),
        "spec.baseModel.revision",
    ),
    (
        "adep-secret-name",
        _set(ADEP, baseModel={"uri": SMOL, "secretRef": "-token"}),
        "spec.baseModel.secretRef",
    ),
    (
        "adep-adapter-scheme",
        _set(ADEP, adapters=[{"name": "a", "uri": "ftp://x/a"}]),
        "spec.adapters[0].uri",
    ),
    (
        "adep-adapter-builtin",
        _set(
            ADEP,
            adapters=[{"name": "a", "uri": "s3://loraland-test/a"}, {"name": "b", "uri": SMOL}],
        ),
        "spec.adapters[1].uri",
    ),
    (
        "adep-adapter-bucket",
        _set(ADEP, adapters=[{"name": "a", "uri": "s3://-bad/a"}]),
        "spec.adapters[0].uri",
    ),
    (
        "adep-adapter-claim",
        _set(ADEP, adapters=[{"name": "a", "uri": "pvc://UPPER/a"}]),
        "spec.adapters[0].uri",
    ),
    (
        "adep-adapter-hf-no-org",
        _set(ADEP, adapters=[{"name": "a", "uri": "hf://just-a-name"}]),
        "spec.adapters[0].uri",
    ),
    (
        "adep-adapter-climbs-out",
        _set(ADEP, adapters=[{"name": "a", "uri": "pvc://adapters/../../etc"}]),
        "spec.adapters[0].uri",
    ),
    ("adep-vllm-builtin-base", _set(GPU_ADEP, baseModel={"uri": SMOL}), "spec.baseModel.uri"),
    (
        "adep-vllm-s3-base",
        _set(GPU_ADEP, baseModel={"uri": "s3://loraland-test/m"}),
        "spec.baseModel.uri",
    ),
    (
        "adep-vllm-lora-rank",
        _set(GPU_ADEP, serving={"maxLoraRank": 12}),
        "spec.serving.maxLoraRank",
    ),
    ("adep-vllm-no-gpu", _set(GPU_ADEP, resources={"gpus": 0}), "spec.resources.gpus"),
    (
        "adep-lorax-no-gpu",
        _set(GPU_ADEP, runtime="lorax", resources={"gpus": 0}),
        "spec.resources.gpus",
    ),
    (
        "adep-input-over-default-total",
        _set(ADEP, serving={"maxInputTokens": 4000}),
        "spec.serving.maxInputTokens",
    ),
    (
        "adep-total-under-default-input",
        _set(ADEP, serving={"maxTotalTokens": 512}),
        "spec.serving.maxTotalTokens",
    ),
    (
        "adep-total-over-context",
        _set(ADEP, serving={"maxInputTokens": 1024, "maxTotalTokens": 65536}),
        "spec.serving.maxTotalTokens",
    ),
    (
        "adep-node-selector-value",
        _set(ADEP, resources={"gpus": 0, "nodeSelector": {"pool": "a b"}}),
        "spec.resources.nodeSelector.pool",
    ),
    (
        "adep-toleration-key",
        _set(
            ADEP, resources={"gpus": 0, "tolerations": [{"key": "bad key!", "operator": "Exists"}]}
        ),
        "spec.resources.tolerations[0].key",
    ),
    (
        "adep-toleration-no-key",
        _set(ADEP, resources={"gpus": 0, "tolerations": [{"value": "x"}]}),
        "spec.resources.tolerations[0].operator",
    ),
    ("adep-image", _set(ADEP, image="server image"), "spec.image"),
]

CASES: list[Case] = FINETUNEJOB_CASES + ADAPTERDEPLOYMENT_CASES

STUDY: dict[str, Any] = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "FineTuneStudy",
    "metadata": {"name": "case"},
    "spec": {
        "baseModels": [{"name": "smol", "uri": SMOL}, {"name": "b", "uri": "hf://org/b"}],
        "tasks": [{"name": "s", "task": "sentiment"}, {"name": "i", "task": "intents"}],
        "template": {"training": {"maxSteps": 3}, "output": {"uri": "s3://loraland-test/st"}},
    },
}

#: Studies are refused at admission by the same validator; each cell is checked as the
#: FineTuneJob it becomes, and named at the study field it came from.
STUDY_CASES: list[Case] = [
    (
        "fts-unknown-task",
        _set(STUDY, tasks=[{"name": "s", "task": "no-such-task"}]),
        "spec.tasks[0].task",
    ),
    (
        "fts-base-hf-no-org",
        _set(STUDY, baseModels=[{"name": "b", "uri": "hf://model"}]),
        "spec.baseModels[0].uri",
    ),
    (
        "fts-output-bad-bucket",
        _set(STUDY, template={"training": {"maxSteps": 3}, "output": {"uri": "s3://B/out"}}),
        "spec.template.output.uri",
    ),
    (
        "fts-reference-unknown-task",
        _set(STUDY, references=[{"name": "gpt-4", "scores": {"absent": 0.9}}]),
        "spec.references[0].scores",
    ),
]


def named(case: Case, name: str) -> dict[str, Any]:
    """The case's manifest under ``name``."""
    doc: dict[str, Any] = json.loads(json.dumps(case[1]))
    doc["metadata"]["name"] = name
    return doc


def plural(doc: dict[str, Any]) -> str:
    return {
        "FineTuneJob": "finetunejobs",
        "AdapterDeployment": "adapterdeployments",
        "FineTuneStudy": "finetunestudies",
    }[doc["kind"]]
