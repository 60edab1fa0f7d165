"""LoRAX/TGI timing headers, computed from a request's engine timestamps."""

from __future__ import annotations

from loraland.serving.engine.request import Finished, Timing
from loraland.serving.service import Prepared


def _ms(seconds: float) -> str:
    return str(round(seconds * 1000))


def first_token_headers(prepared: Prepared, timing: Timing, compute_type: str) -> dict[str, str]:
    """Headers known once the first token exists (streams send these)."""
    headers = {
        "x-compute-type": compute_type,
        "x-validation-time": _ms(prepared.validation_time),
        "x-prompt-tokens": str(len(prepared.prompt_ids)),
    }
    if timing.admitted is not None:
        headers["x-queue-time"] = _ms(timing.admitted - timing.queued)
    if timing.first_token is not None:
        headers["x-time-to-first-token"] = _ms(timing.first_token - timing.arrived)
    return headers


def final_headers(prepared: Prepared, finished: Finished, compute_type: str) -> dict[str, str]:
    timing = finished.timing
    headers = first_token_headers(prepared, timing, compute_type)
    end = timing.finished if timing.finished is not None else timing.queued
    start = timing.admitted if timing.admitted is not None else end
    inference = end - start
    tokens = max(finished.generated_tokens, 1)
    headers.update(
        {
            "x-compute-time": f"{inference:.6f}",
            "x-total-time": _ms(end - timing.arrived),
            "x-inference-time": _ms(inference),
            "x-time-per-token": _ms(inference / tokens),
            "x-generated-tokens": str(finished.generated_tokens),
        }
    )
    return headers
