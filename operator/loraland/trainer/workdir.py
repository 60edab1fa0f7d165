"""Where a job keeps its checkpoints, so that re-running the same job resumes it.

The default work directory is keyed by a hash of what determines the trained weights
(base model, dataset, LoRA and training settings; not output, evaluation or pod
resources), under ``$LORALAND_CACHE/jobs``. In a pod, point ``--work-dir`` (or the
cache) at a persistent volume so a restarted pod finds its checkpoints.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from loraland.api.finetunejob import FineTuneJobSpec
from loraland.settings import Settings


def fingerprint(spec: FineTuneJobSpec) -> str:
    canonical = json.dumps(spec.training_fingerprint_input(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def default_work_dir(settings: Settings, spec: FineTuneJobSpec) -> Path:
    return settings.cache_dir / "jobs" / fingerprint(spec)[:16]
