"""Admission: which validator checks which kind, and when a request is refused (pure).

The operator's reconcilers and its validating webhook both go through :func:`validators`,
so a spec the webhook lets in is one the reconcilers accept, and the webhook's refusal is
word for word the ``SpecValid`` condition the reconciler would write. The pure rules live
in :mod:`loraland.validation`; this module adds the one that needs the operator's
configuration (:func:`loraland.controller.runtimes.plan`, which also carries each
runtime's own rules).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from loraland.api.adapterdeployment import AdapterDeploymentSpec
from loraland.api.finetunejob import API_GROUP
from loraland.controller.config import OperatorConfig
from loraland.controller.runtimerules import runtime_problems
from loraland.validation import VALIDATORS, Checked, Meta, Problem, SpecValidator


@dataclass(frozen=True)
class Kind:
    """A served kind: how Kopf names it and which validator checks it."""

    kind: str
    plural: str
    validator: SpecValidator[Any]


def runtime_rule(known_ranks: Mapping[str, int] | None = None) -> Any:
    """What the chosen runtime cannot run (:mod:`loraland.controller.runtimerules`, the
    rules ``runtimes.plan`` enforces), as a rule. ``known_ranks``: adapter name -> LoRA
    rank where the operator knows it (at admission it does not)."""

    def runtime(spec: AdapterDeploymentSpec, _: Meta) -> Iterable[Problem]:
        return [Problem(path, reason) for path, reason in runtime_problems(spec, known_ranks)]

    return runtime


def kinds(config: OperatorConfig, known_ranks: Mapping[str, int] | None = None) -> dict[str, Kind]:
    """kind -> :class:`Kind`, every kind the operator validates (one line per kind)."""
    return {
        "FineTuneJob": Kind("FineTuneJob", "finetunejobs", VALIDATORS["FineTuneJob"]),
        "AdapterDeployment": Kind(
            "AdapterDeployment",
            "adapterdeployments",
            VALIDATORS["AdapterDeployment"].with_rules(runtime_rule(known_ranks)),
        ),
        "FineTuneStudy": Kind("FineTuneStudy", "finetunestudies", VALIDATORS["FineTuneStudy"]),
    }


def check(kind: Kind, body: Mapping[str, Any]) -> Checked[Any]:
    """Every problem of the object, each once (plan() re-parses URIs the rules parsed)."""
    checked = kind.validator.check_body(body)
    return Checked(checked.spec, tuple(dict.fromkeys(checked.problems)))


def refusal(
    kind: Kind,
    operation: str | None,
    body: Mapping[str, Any],
    old: Mapping[str, Any] | None,
) -> str | None:
    """Why the webhook refuses this request, or None to let it through.

    CREATE is checked; UPDATE only when the spec changed: the operator's own metadata
    patches (finalizers, annotations) on an object stored before the webhook existed must
    still pass, or such an object could never be deleted. Deleting objects pass.
    """
    if operation not in ("CREATE", "UPDATE"):
        return None
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return None
    if operation == "UPDATE" and old is not None and old.get("spec") == body.get("spec"):
        return None
    checked = check(kind, body)
    return None if checked.ok else checked.message


def webhook_id(kind: Kind) -> str:
    """The Kopf handler id: the last part of the webhook's URL path, and its name's start."""
    return f"validate-{kind.kind.lower()}"


def webhooks(
    served: Iterable[Kind],
    client_config: Mapping[str, Any],
    *,
    configuration: str,
    failure_policy: Literal["Fail", "Ignore"] = "Fail",
) -> list[dict[str, Any]]:
    """The ``webhooks`` of the ValidatingWebhookConfiguration: one per kind.

    Kopf's server routes ``POST <path>/<handler id>`` to that handler, so each webhook's
    URL or Service path ends in its kind's handler id. Only CREATE and UPDATE of the
    resources themselves are sent (not status, not DELETE).
    """
    out = []
    for kind in served:
        hook_id = webhook_id(kind)
        client = copy.deepcopy(dict(client_config))
        if "url" in client:
            client["url"] = f"{client['url'].rstrip('/')}/{hook_id}"
        if "service" in client:
            client["service"]["path"] = f"{client['service'].get('path') or ''}/{hook_id}"
        out.append(
            {
                "name": f"{hook_id}.{configuration}",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": failure_policy,
                "matchPolicy": "Equivalent",
                "timeoutSeconds": 10,
                "clientConfig": client,
                "rules": [
                    {
                        "apiGroups": [API_GROUP],
                        "apiVersions": ["v1alpha1"],
                        "resources": [kind.plural],
                        "operations": ["CREATE", "UPDATE"],
                        "scope": "Namespaced",
                    }
                ],
            }
        )
    return out
