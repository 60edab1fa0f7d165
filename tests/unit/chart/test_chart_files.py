"""The Helm chart's static files agree with the code they describe (no helm binary needed).

The chart carries a copy of crds/ (Helm installs CRDs only from the chart's own crds/
folder), and its values spell out the operator's defaults; both drift silently unless a
test compares them. Rendering checks (lint, RBAC rules, dry runs) live in
tests/integration/chart, which has the helm binary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from loraland import __version__
from loraland.controller.config import LORAX_IMAGE, VLLM_IMAGE, OperatorConfig

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "loraland"


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def test_chart_crds_are_a_copy_of_crds() -> None:
    ours = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    generated = {p.name: p.read_text() for p in (REPO / "crds").glob("*.yaml")}
    assert generated, "crds/ is empty"
    assert sorted(ours) == sorted(generated), "run `make chart-crds`"
    stale = [name for name in generated if ours[name] != generated[name]]
    assert not stale, f"charts/loraland/crds differs from crds/ in {stale}; run `make chart-crds`"


def test_chart_metadata() -> None:
    chart = _load(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "loraland"
    assert chart["appVersion"] == __version__


def test_values_match_the_operator_defaults() -> None:
    """With default values the operator runs exactly as `OperatorConfig()` describes."""
    values = _load(CHART / "values.yaml")
    images, op = values["images"], values["operator"]
    app = _load(CHART / "Chart.yaml")["appVersion"]
    defaults = OperatorConfig()

    def ref(component: str, suffix: str = "") -> str:
        image = images[component]
        return f"{image['repository']}:{image['tag'] or app}{suffix}"

    assert ref("trainer") == defaults.trainer_image
    assert ref("trainer", images["cpuSuffix"]) == defaults.trainer_cpu_image
    assert ref("server") == defaults.server_image
    assert ref("server", images["cpuSuffix"]) == defaults.server_cpu_image
    assert ref("operator") == defaults.relay_image
    assert values["runtimes"]["lorax"]["image"] == LORAX_IMAGE
    assert values["runtimes"]["vllm"]["image"] == VLLM_IMAGE
    assert images["pullPolicy"] == defaults.image_pull_policy
    assert op["serverPort"] == defaults.server_port
    assert op["serverGrpcPort"] == defaults.server_grpc_port
    assert op["adapterPollSeconds"] == defaults.adapter_poll_seconds
    assert op["resyncSeconds"] == defaults.resync_seconds
    assert op["maxWorkers"] == defaults.max_workers
    # Watch everything, one active peer, by default.
    assert values["watchNamespaces"] == []
    assert values["peering"]["enabled"] is True


def test_every_operator_setting_the_chart_passes_exists() -> None:
    """Each LORALAND_OPERATOR_* variable in the Deployment names a real OperatorConfig field."""
    text = (CHART / "templates" / "deployment.yaml").read_text()
    names = {
        line.split("LORALAND_OPERATOR_", 1)[1].split()[0].lower()
        for line in text.splitlines()
        if "name: LORALAND_OPERATOR_" in line
    }
    assert names, "the Deployment passes no operator settings"
    unknown = names - set(OperatorConfig.model_fields)
    assert not unknown, f"not OperatorConfig fields: {sorted(unknown)}"
