"""Choosing each row's next token from the batch's logits, with per-request parameters.

Greedy rows without a repetition penalty (the common case) are handled for the whole
batch at once with one ``argmax``; other rows go through the processors one row at a
time, in the order transformers applies them: repetition penalty, temperature, top-k,
top-p, then a draw from the request's own seeded generator (so a seed reproduces the
same text whatever else shares the batch).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from loraland.serving.params import SamplingParams


@dataclass
class RowSampler:
    """Per-request sampling state: the seeded generator and the ids seen so far."""

    params: SamplingParams
    seed: int | None
    generator: torch.Generator | None = None
    #: Prompt + generated ids, for the repetition penalty (None when not penalised).
    seen: torch.Tensor | None = None
    _pending: list[int] = field(default_factory=list)

    @classmethod
    def create(
        cls, params: SamplingParams, prompt_ids: list[int], device: torch.device
    ) -> RowSampler:
        seed: int | None = None
        generator = None
        if params.sampling:
            seed = params.seed if params.seed is not None else random.randrange(2**63)
            generator = torch.Generator(device=device)
            generator.manual_seed(seed)
        seen = (
            torch.tensor(prompt_ids, dtype=torch.long, device=device) if params.penalised else None
        )
        return cls(params=params, seed=seed, generator=generator, seen=seen)

    @property
    def vectorizable(self) -> bool:
        return not self.params.sampling and not self.params.penalised

    def observe(self, token_id: int) -> None:
        if self.seen is not None:
            self._pending.append(token_id)

    def _seen(self) -> torch.Tensor | None:
        if self.seen is not None and self._pending:
            extra = torch.tensor(self._pending, dtype=torch.long, device=self.seen.device)
            self.seen = torch.cat([self.seen, extra])
            self._pending.clear()
        return self.seen

    def choose(self, logits: torch.Tensor) -> tuple[int, float]:
        """Pick a token from one row's logits ``[vocab]``; returns (id, logprob)."""
        scores = logits.float()
        seen = self._seen()
        if seen is not None and seen.numel():
            penalty = float(self.params.repetition_penalty or 1.0)
            picked = scores.gather(0, seen)
            picked = torch.where(picked < 0, picked * penalty, picked / penalty)
            scores = scores.scatter(0, seen, picked)
        if not self.params.sampling:
            token = int(scores.argmax())
            return token, float(scores[token] - torch.logsumexp(scores, 0))
        scores = warp(scores, self.params)
        probs = torch.softmax(scores, dim=-1)
        token = int(torch.multinomial(probs, 1, generator=self.generator))
        return token, float(torch.log(probs[token]))


def warp(scores: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Temperature, then top-k, then top-p, as transformers' logits warpers do."""
    if params.temperature is not None and params.temperature != 1.0:
        scores = scores / params.temperature
    if params.top_k is not None and 0 < params.top_k < scores.shape[-1]:
        threshold = torch.topk(scores, params.top_k).values[-1]
        scores = scores.masked_fill(scores < threshold, float("-inf"))
    if params.top_p is not None and params.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=False)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cumulative <= (1 - params.top_p)
        remove_sorted[-1] = False  # always keep the most likely token
        remove = torch.zeros_like(remove_sorted).scatter(0, order, remove_sorted)
        scores = scores.masked_fill(remove, float("-inf"))
    return scores


def next_tokens(logits: torch.Tensor, samplers: list[RowSampler]) -> list[tuple[int, float]]:
    """(token id, logprob) for each row of ``logits: [rows, vocab]``."""
    results: list[tuple[int, float]] = [(0, 0.0)] * len(samplers)
    fast = [i for i, s in enumerate(samplers) if s.vectorizable]
    if fast:
        rows = logits if len(fast) == len(samplers) else logits[fast]
        rows = rows.float()
        ids = rows.argmax(dim=-1)
        logprobs = rows.gather(1, ids[:, None])[:, 0] - torch.logsumexp(rows, dim=-1)
        for i, token, logprob in zip(fast, ids.tolist(), logprobs.tolist(), strict=True):
            results[i] = (token, logprob)
    for i, sampler in enumerate(samplers):
        if not sampler.vectorizable:
            results[i] = sampler.choose(logits[i])
    for sampler, (token, _) in zip(samplers, results, strict=True):
        sampler.observe(token)
    return results
