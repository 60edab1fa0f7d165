"""Validation of loraland specs: one pure function per kind, every problem at once.

The reconcilers (refusing in status), the admission webhook (refusing at
``kubectl apply``) and ``loraland finetune`` call the same validators, so a spec is
accepted or refused the same way everywhere, with the same message.

* :mod:`.problems`: :class:`Problem` (field path, reason), :class:`Checked`, the one
  message format;
* :mod:`.spec`: :class:`SpecValidator` (a pydantic model + a tuple of rule functions);
* :mod:`.fields`: checks shared by kinds (URIs, Kubernetes names, images, tolerations);
* :mod:`.finetunejob`, :mod:`.adapterdeployment`, :mod:`.finetunestudy`: each kind's rules;
* :data:`VALIDATORS`: kind -> validator. A new kind is one line there; a new rule set
  for a kind is ``VALIDATORS[kind].with_rules(...)``.
"""

from __future__ import annotations

from typing import Any

from loraland.validation.adapterdeployment import ADAPTERDEPLOYMENT
from loraland.validation.finetunejob import FINETUNEJOB
from loraland.validation.finetunestudy import FINETUNESTUDY
from loraland.validation.problems import Checked, Problem, format_problems
from loraland.validation.spec import Meta, Rule, SpecValidator

#: kind -> its validator (the pure part; the controller adds rules needing its config).
VALIDATORS: dict[str, SpecValidator[Any]] = {
    "FineTuneJob": FINETUNEJOB,
    "AdapterDeployment": ADAPTERDEPLOYMENT,
    "FineTuneStudy": FINETUNESTUDY,
}

__all__ = [
    "ADAPTERDEPLOYMENT",
    "FINETUNEJOB",
    "FINETUNESTUDY",
    "VALIDATORS",
    "Checked",
    "Meta",
    "Problem",
    "Rule",
    "SpecValidator",
    "format_problems",
]
