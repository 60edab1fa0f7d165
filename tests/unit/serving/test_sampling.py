"""Per-request sampling: greedy, warpers, seeds, repetition penalty."""

from __future__ import annotations

import torch
from loraland.serving.engine.sampling import RowSampler, next_tokens, warp
from loraland.serving.params import SamplingParams

CPU = torch.device("cpu")


def sampler(prompt: list[int] | None = None, **params: object) -> RowSampler:
    return RowSampler.create(SamplingParams(**params), prompt or [0], CPU)  # type: ignore[arg-type]


def test_greedy_rows_take_the_argmax_with_its_logprob() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, -1.0]])
    got = next_tokens(logits, [sampler(), sampler()])
    assert [t for t, _ in got] == [1, 0]
    expected = torch.log_softmax(logits[0], -1)[1].item()
    assert abs(got[0][1] - expected) < 1e-6


def test_sampling_is_reproducible_with_a_seed_whatever_the_batch() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 50)
    alone = [next_tokens(logits[1:2], [sampler(do_sample=True, seed=7)])[0][0] for _ in range(1)]
    mixed = next_tokens(
        logits, [sampler(), sampler(do_sample=True, seed=7), sampler(temperature=0.5, seed=1)]
    )
    assert mixed[1][0] == alone[0]
    assert sampler(temperature=0.7).params.sampling and not sampler().params.sampling
    assert sampler(temperature=0.7).seed is not None and sampler().seed is None


def test_top_k_and_top_p_keep_only_the_head() -> None:
    scores = torch.tensor([4.0, 3.0, 2.0, 1.0, 0.0])
    kept = warp(scores, SamplingParams(top_k=2))
    assert torch.isinf(kept[2:]).all() and torch.isfinite(kept[:2]).all()
    probs = torch.softmax(scores, -1)  # ~[0.64, 0.24, 0.09, ...]
    assert probs[0] < 0.7
    kept = warp(scores, SamplingParams(top_p=0.7))
    assert torch.isfinite(kept[:2]).all() and torch.isinf(kept[2:]).all()
    kept = warp(scores, SamplingParams(top_p=0.01))
    assert torch.isfinite(kept[0]) and torch.isinf(kept[1:]).all()  # always one token left


def test_repetition_penalty_follows_transformers() -> None:
    logits = torch.tensor([2.0, -2.0, 1.9, 0.0])
    row = sampler(prompt=[0, 1], repetition_penalty=2.0)
    token, _ = row.choose(logits)
    assert token == 2  # 2.0 / 2 = 1.0 < 1.9
    from transformers import RepetitionPenaltyLogitsProcessor

    reference = RepetitionPenaltyLogitsProcessor(2.0)(torch.tensor([[0, 1]]), logits[None].clone())[
        0
    ]
    assert int(reference.argmax()) == token
    row.observe(2)  # once generated, 1.9 is penalised too: [1.0, -4.0, 0.95, 0.0]
    token, _ = row.choose(logits)
    reference = RepetitionPenaltyLogitsProcessor(2.0)(
        torch.tensor([[0, 1, 2]]), logits[None].clone()
    )[0]
    assert token == int(reference.argmax()) == 0


def test_mixed_parameters_are_warped_together_as_each_row_alone() -> None:
    from loraland.serving.engine.sampling import _warp_rows

    torch.manual_seed(3)
    logits = torch.randn(5, 40)
    params = [
        SamplingParams(temperature=0.7),
        SamplingParams(top_k=5),
        SamplingParams(top_p=0.8, temperature=1.3),
        SamplingParams(top_k=3, top_p=0.5),
        SamplingParams(do_sample=True),
    ]
    together = _warp_rows(logits.clone(), params)
    for row, p in enumerate(params):
        torch.testing.assert_close(together[row], warp(logits[row].clone(), p))


def test_mixed_batch_without_a_row_loop_matches_the_one_row_form() -> None:
    from loraland.serving.engine.sampling import choose_rows

    torch.manual_seed(4)
    logits = torch.randn(4, 30)
    prompt = [1, 2, 3]

    def rows() -> list[RowSampler]:
        return [
            sampler(prompt, repetition_penalty=1.5),  # greedy with a penalty
            sampler(prompt, top_k=1, seed=3),  # sampling that can only pick the argmax
            sampler(prompt, temperature=0.8, repetition_penalty=1.2, seed=5),
            sampler(prompt, top_p=0.9, seed=9),
        ]

    first = choose_rows(logits, rows())
    assert first == choose_rows(logits, rows())  # seeded: the same draws again
    greedy, _ = sampler(prompt, repetition_penalty=1.5).choose(logits[0])
    assert first[0][0] == greedy
    assert first[1][0] == int(logits[1].argmax())
    assert all(lp <= 0 for _, lp in first)
    # A seeded row draws the same token alone as in the mixed batch.
    alone = choose_rows(logits[3:4], [rows()[3]])
    assert alone[0] == first[3]
