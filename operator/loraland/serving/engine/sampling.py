"""Choosing each row's next token from the batch's logits, with per-request parameters.

Greedy rows without a repetition penalty (the common case) are handled for the whole
batch at once with one ``argmax``. The other rows, whatever their mix of parameters, go
through the processors together, as tensors with one value per row, in the order
transformers applies them: repetition penalty, temperature, top-k, top-p; then each
sampling row draws one uniform number from its own seeded generator (so a seed
reproduces the same text whatever else shares the batch) and the tokens come from one
inverse-CDF lookup over the batch. :meth:`RowSampler.choose` is the one-row form.
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
    slow = [i for i, s in enumerate(samplers) if not s.vectorizable]
    if slow:
        index = torch.tensor(slow, dtype=torch.long, device=logits.device)
        chosen = choose_rows(logits.index_select(0, index), [samplers[i] for i in slow])
        for i, choice in zip(slow, chosen, strict=True):
            results[i] = choice
    for sampler, (token, _) in zip(samplers, results, strict=True):
        sampler.observe(token)
    return results


def choose_rows(logits: torch.Tensor, samplers: list[RowSampler]) -> list[tuple[int, float]]:
    """:meth:`RowSampler.choose` for many rows at once (``logits: [rows, vocab]``), with
    per-row parameters as tensors instead of a loop over rows."""
    scores = logits.float().clone()
    rows, vocab = scores.shape
    device = scores.device
    _penalise(scores, samplers)
    params = [s.params for s in samplers]
    sampling = [p.sampling for p in params]
    results: list[tuple[int, float]] = [(0, 0.0)] * rows
    greedy = [i for i in range(rows) if not sampling[i]]
    if greedy:
        g = scores[greedy]
        ids = g.argmax(dim=-1)
        logprobs = g.gather(1, ids[:, None])[:, 0] - torch.logsumexp(g, dim=-1)
        for i, token, logprob in zip(greedy, ids.tolist(), logprobs.tolist(), strict=True):
            results[i] = (token, logprob)
    drawn = [i for i in range(rows) if sampling[i]]
    if not drawn:
        return results
    warped = _warp_rows(scores[drawn], [params[i] for i in drawn])
    probs = torch.softmax(warped, dim=-1)
    cumulative = probs.cumsum(dim=-1)
    uniforms = []
    for i in drawn:
        generator = samplers[i].generator
        assert generator is not None
        uniforms.append(torch.rand(1, generator=generator, device=generator.device))
    # Scaled to each row's total mass, so rounding in the cumulative sum can never
    # land past the last token with a non-zero probability.
    u = torch.cat(uniforms).to(device) * cumulative[:, -1]
    tokens = torch.searchsorted(cumulative, u[:, None], right=True)[:, 0].clamp(max=vocab - 1)
    logprobs = torch.log(probs.gather(1, tokens[:, None])[:, 0])
    for i, token, logprob in zip(drawn, tokens.tolist(), logprobs.tolist(), strict=True):
        results[i] = (token, logprob)
    return results


def _penalise(scores: torch.Tensor, samplers: list[RowSampler]) -> None:
    """Repetition penalty of every penalised row in one gather and one scatter."""
    rows, ids, penalties = [], [], []
    for i, sampler in enumerate(samplers):
        seen = sampler._seen()
        if seen is None or not seen.numel():
            continue
        rows.append(torch.full_like(seen, i))
        ids.append(seen)
        penalties.append(float(sampler.params.repetition_penalty or 1.0))
    if not rows:
        return
    row = torch.cat(rows).to(scores.device)
    col = torch.cat(ids).to(scores.device)
    counts = torch.tensor([len(r) for r in rows], device=scores.device)
    penalty = torch.tensor(penalties, device=scores.device).repeat_interleave(counts)
    picked = scores[row, col]
    scores[row, col] = torch.where(picked < 0, picked * penalty, picked / penalty)


def _warp_rows(scores: torch.Tensor, params: list[SamplingParams]) -> torch.Tensor:
    """:func:`warp` with one temperature, top-k and top-p per row."""
    vocab = scores.shape[1]
    device = scores.device
    temperature = torch.tensor(
        [
            p.temperature if p.temperature is not None and p.temperature != 1.0 else 1.0
            for p in params
        ],
        device=device,
    )
    scores = scores / temperature[:, None]
    top_k = [p.top_k if p.top_k is not None and 0 < p.top_k < vocab else vocab for p in params]
    if any(k < vocab for k in top_k):
        ordered = torch.sort(scores, dim=-1, descending=True).values
        kth = torch.tensor([k - 1 for k in top_k], device=device)
        threshold = ordered.gather(1, kth[:, None])
        scores = scores.masked_fill(scores < threshold, float("-inf"))
    top_p = [p.top_p if p.top_p is not None and p.top_p < 1.0 else None for p in params]
    if any(p is not None for p in top_p):
        keep_all = torch.tensor([p is None for p in top_p], device=device)
        limit = torch.tensor([1 - p if p is not None else 0.0 for p in top_p], device=device)
        sorted_scores, order = torch.sort(scores, dim=-1, descending=False)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = (cumulative <= limit[:, None]) & ~keep_all[:, None]
        remove_sorted[:, -1] = False  # always keep the most likely token
        remove = torch.zeros_like(remove_sorted).scatter(1, order, remove_sorted)
        scores = scores.masked_fill(remove, float("-inf"))
    return scores
