"""crds/ is what the models generate, and what the generator emits is structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from loraland.api.crd import (
    ADAPTERDEPLOYMENT,
    FINETUNEJOB,
    FINETUNESTUDY,
    crd,
    model_schema,
    render_all,
)
from loraland.api.finetunejob import FineTuneJobSpec

CRDS_DIR = Path(__file__).resolve().parents[3] / "crds"


def walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = []
    if isinstance(node, dict):
        out.append((path, node))
        for key, value in node.items():
            out += walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += walk(value, f"{path}[{i}]")
    return out


def test_crds_directory_is_up_to_date() -> None:
    expected = render_all()
    on_disk = {p.name: p.read_text() for p in CRDS_DIR.glob("*.yaml")}
    stale = sorted(n for n in expected if on_disk.get(n) != expected[n])
    extra = sorted(set(on_disk) - set(expected))
    assert not stale and not extra, f"crds/ is stale ({stale + extra}): run `make crds`"


def test_schema_is_structural() -> None:
    for info in (FINETUNEJOB, ADAPTERDEPLOYMENT, FINETUNESTUDY):
        schema = crd(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in walk(schema):
            if path.endswith("x-kubernetes-validations") or ".x-kubernetes-validations[" in path:
                continue
            if path.endswith(".properties") or path.endswith(".default"):
                continue
            for banned in ("$ref", "$defs", "anyOf", "allOf", "title", "const"):
                assert banned not in node, f"{info.kind}{path} has {banned}"
            if "additionalProperties" in node:
                assert isinstance(node["additionalProperties"], dict), path
            if "exclusiveMinimum" in node:
                assert node["exclusiveMinimum"] is True and "minimum" in node, path
            if ("properties" in node or "items" in node) and not path.endswith("properties"):
                assert "type" in node, f"{info.kind}{path} has no type"


def test_types_enums_minimums_required_and_defaults() -> None:
    spec = model_schema(FineTuneJobSpec)
    assert spec["required"] == ["baseModel", "dataset", "output"]
    lora = spec["properties"]["lora"]
    assert lora["default"] == {}  # nested defaults are filled by the API server
    assert lora["properties"]["rank"] == {
        "default": 8,
        "description": "LoRA rank r.",
        "maximum": 1024,
        "minimum": 1,
        "type": "integer",
    }
    assert lora["properties"]["quantization"]["enum"] == ["none", "4bit", "8bit"]
    assert lora["properties"]["dropout"]["exclusiveMaximum"] is True
    # Optional fields are plain optional properties, never "anyOf [X, null]".
    assert spec["properties"]["image"] == {
        "type": "string",
        "description": "Trainer image (default: operator's).",
    }
    assert "default" not in spec["properties"]["evaluation"]
    assert spec["properties"]["resources"]["properties"]["nodeSelector"][
        "additionalProperties"
    ] == {"type": "string"}


def test_names_columns_subresources() -> None:
    ftj = crd(FINETUNEJOB)["spec"]
    assert ftj["names"]["shortNames"] == ["ftj"]
    assert ftj["names"]["categories"] == ["loraland"]
    version = ftj["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")] == [
        "Base",
        "Phase",
        "Progress",
        "Loss",
        "Score",
        "Age",
        "Message",  # a refused spec shows "invalid spec: spec.x: why" in kubectl get
    ]
    adep = crd(ADAPTERDEPLOYMENT)["spec"]
    assert adep["names"]["shortNames"] == ["adep"]
    assert adep["names"]["categories"] == ["loraland"]
    assert adep["versions"][0]["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    adapters = adep["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "adapters"
    ]
    assert adapters["x-kubernetes-list-type"] == "map"
    assert adapters["x-kubernetes-list-map-keys"] == ["name"]


def test_finetunestudy_names_columns_and_list_maps() -> None:
    fts = crd(FINETUNESTUDY)["spec"]
    assert fts["names"]["shortNames"] == ["fts"]
    assert fts["names"]["categories"] == ["loraland"]
    assert fts["names"]["plural"] == "finetunestudies"
    version = fts["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Done"] == ".status.progress" and columns["Best-Base"] == ".status.bestBase"
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for field in ("baseModels", "tasks", "variants", "references"):
        assert spec["properties"][field]["x-kubernetes-list-map-keys"] == ["name"], field
    assert spec["required"] == ["baseModels", "tasks", "template"]
    tasks = spec["properties"]["tasks"]["items"]
    assert tasks["x-kubernetes-validations"][0]["rule"] == "has(self.task) || has(self.dataset)"
    labels = spec["properties"]["baseModels"]["items"]["properties"]["labels"]
    assert labels["additionalProperties"] == {"type": "string"}


def test_running_job_fields_are_guarded_by_cel_rules() -> None:
    root = crd(FINETUNEJOB)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rules = root["x-kubernetes-validations"]
    guarded = {r["fieldPath"] for r in rules}
    assert ".spec.lora" in guarded and ".spec.training" in guarded
    assert ".spec.deployTo" not in guarded
    assert all("cannot change once the FineTuneJob has started" in r["message"] for r in rules)


def test_rendered_files_parse_as_yaml() -> None:
    for name, text in render_all().items():
        docs = list(yaml.safe_load_all(text))
        assert all(d["kind"] == "CustomResourceDefinition" for d in docs), name
