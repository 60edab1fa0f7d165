"""The running batch and the two forwards the engine does with it: prefill and decode.

The batch contract is small (TGI's, for a left-padded CausalLM): :meth:`ModelRunner.prefill`
builds a batch from new requests, :meth:`ModelRunner.decode` advances every row by one
token, :meth:`Batch.merge` adds a prefilled batch to the running one, and
:meth:`Batch.drop` drops finished rows; neither copies the rows that stay (``kv.py``).

Positions: a row's ``position_ids`` count only its own tokens, so left padding never
shifts its rotary embeddings; the attention mask hides the padding. See ``kv.py`` for
why this keeps greedy output identical to running the request alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from loraland.serving.engine.kv import SlabCache
from loraland.serving.engine.request import RequestState
from loraland.serving.engine.sampling import RowSampler
from loraland.serving.lora.bank import LoraSlotBank


@dataclass
class Batch:
    states: list[RequestState]
    samplers: list[RowSampler]
    cache: SlabCache
    mask: torch.Tensor  # [rows, length]: 1 for real tokens, 0 for padding and gaps
    positions: torch.Tensor  # [rows]: position of the token fed at the next decode
    last_tokens: torch.Tensor  # [rows]: the token fed at the next decode

    def __len__(self) -> int:
        return len(self.states)

    @property
    def kv_tokens(self) -> int:
        """KV positions the batch holds (rows x cached length, padding included)."""
        return len(self.states) * int(self.mask.shape[1])

    @property
    def slots(self) -> list[int]:
        return [s.slot for s in self.states]

    def set_last_tokens(self, tokens: Sequence[int]) -> None:
        self.last_tokens = torch.tensor(tokens, dtype=torch.long, device=self.mask.device)

    def drop(self, rows: Iterable[int]) -> Batch:
        """This batch without ``rows`` (indices; at least one row must stay).

        The cache moves the last rows into the freed places (see :meth:`SlabCache.remove`),
        so row order changes; the per-row lists and tensors follow it.
        """
        order = self.cache.remove(list(rows))
        index = torch.tensor(order, dtype=torch.long, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        # Padding every remaining row has at the front (a long row left): dropped once
        # it is a quarter of the length, so its copy is amortised over many steps.
        waste = int(mask.argmax(dim=1).min())
        if waste and 4 * waste >= mask.shape[1]:
            self.cache.drop_front(waste)
            mask = mask[:, waste:]
        return Batch(
            states=[self.states[i] for i in order],
            samplers=[self.samplers[i] for i in order],
            cache=self.cache,
            mask=mask,
            positions=self.positions.index_select(0, index),
            last_tokens=self.last_tokens.index_select(0, index),
        )

    @staticmethod
    def merge(first: Batch, second: Batch) -> Batch:
        """``second``'s rows after ``first``'s, in ``first``'s cache (``first`` is
        consumed). Rows shorter than the merged length are masked where they have no
        tokens: at the front for the new rows, as a gap after the old rows' tokens when
        the new rows are longer (see :meth:`SlabCache.append`)."""
        old, theirs = first.mask.shape[1], second.mask.shape[1]
        length = max(old, theirs)
        first.cache.append(second.cache)
        first_mask = nn.functional.pad(first.mask, (0, length - old))
        second_mask = nn.functional.pad(second.mask, (length - theirs, 0))
        return Batch(
            states=first.states + second.states,
            samplers=first.samplers + second.samplers,
            cache=first.cache,
            mask=torch.cat([first_mask, second_mask]),
            positions=torch.cat([first.positions, second.positions]),
            last_tokens=torch.cat([first.last_tokens, second.last_tokens]),
        )


@dataclass
class Chunked:
    """A long prompt being prefilled a chunk per engine step (see :meth:`ModelRunner.chunk`).

    It runs alone, in its own cache, between the running batch's decode steps, so the
    running rows keep getting a token every step while it fills; once its last chunk is
    done it joins the batch like any prefilled request.
    """

    state: RequestState
    sampler: RowSampler
    cache: SlabCache
    done: int = 0

    @property
    def remaining(self) -> int:
        return len(self.state.request.prompt_ids) - self.done


@dataclass
class Prefilled:
    batch: Batch
    #: Logits of each row's last prompt position, ``[rows, vocab]``.
    logits: torch.Tensor
    #: Per row: log-probabilities of prompt tokens 2..n (when the request asked for them).
    prompt_logprobs: list[list[float] | None]


class ModelRunner:
    """Runs the transformers model on batches; the only place the engine calls it."""

    def __init__(self, model: nn.Module, bank: LoraSlotBank, pad_id: int) -> None:
        self.model = model
        self.bank = bank
        self.pad_id = pad_id
        config: Any = model.config
        text = (
            config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
        )
        self.num_layers = int(text.num_hidden_layers)
        self.kv_heads = int(getattr(text, "num_key_value_heads", None) or text.num_attention_heads)
        self.head_dim = int(
            getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        )
        param = next(model.parameters())
        self.device = param.device
        self.dtype = param.dtype

    @torch.inference_mode()
    def prefill(self, states: list[RequestState], samplers: list[RowSampler]) -> Prefilled:
        longest = max(len(s.request.prompt_ids) for s in states)
        ids = torch.full((len(states), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(states), longest), dtype=torch.long)
        for row, state in enumerate(states):
            prompt = state.request.prompt_ids
            ids[row, longest - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            mask[row, longest - len(prompt) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        cache = SlabCache.empty(
            self.num_layers,
            len(states),
            self.kv_heads,
            self.head_dim,
            longest + 64,
            self.dtype,
            self.device,
        )
        want_prompt = [s.params.prompt_logprobs for s in states]
        self.bank.set_rows([s.slot for s in states], decode=False)
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=0 if any(want_prompt) else 1,
        )
        logits = out.logits
        prompt_logprobs: list[list[float] | None] = [None] * len(states)
        for row, wanted in enumerate(want_prompt):
            if wanted:
                n = len(states[row].request.prompt_ids)
                row_logits = logits[row, longest - n : -1].float().log_softmax(dim=-1)
                targets = ids[row, longest - n + 1 :]
                prompt_logprobs[row] = row_logits.gather(1, targets[:, None])[:, 0].tolist()
        batch = Batch(
            states=list(states),
            samplers=list(samplers),
            cache=cache,
            mask=mask,
            positions=positions[:, -1] + 1,
            last_tokens=ids[:, -1],
        )
        return Prefilled(batch=batch, logits=logits[:, -1], prompt_logprobs=prompt_logprobs)

    def start_chunked(self, state: RequestState, sampler: RowSampler) -> Chunked:
        length = len(state.request.prompt_ids)
        cache = SlabCache.empty(
            self.num_layers, 1, self.kv_heads, self.head_dim, length + 64, self.dtype, self.device
        )
        return Chunked(state=state, sampler=sampler, cache=cache)

    @torch.inference_mode()
    def chunk(self, chunked: Chunked, tokens: int) -> Prefilled | None:
        """Prefill the next ``tokens`` prompt tokens of ``chunked``; after the last chunk,
        the one-row batch and its logits (as :meth:`prefill` returns them)."""
        prompt = chunked.state.request.prompt_ids
        begin, end = chunked.done, min(len(prompt), chunked.done + max(1, tokens))
        ids = torch.tensor([prompt[begin:end]], dtype=torch.long, device=self.device)
        mask = torch.ones((1, end), dtype=torch.long, device=self.device)
        positions = torch.arange(begin, end, device=self.device)[None]
        last = end == len(prompt)
        self.bank.set_rows([chunked.state.slot], decode=False)
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=chunked.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        chunked.done = end
        if not last:
            return None
        batch = Batch(
            states=[chunked.state],
            samplers=[chunked.sampler],
            cache=chunked.cache,
            mask=mask,
            positions=torch.tensor([end], dtype=torch.long, device=self.device),
            last_tokens=ids[:, -1],
        )
        return Prefilled(batch=batch, logits=out.logits[:, -1], prompt_logprobs=[None])

    @torch.inference_mode()
    def decode(self, batch: Batch) -> torch.Tensor:
        """Feed each row's last token; returns next-token logits ``[rows, vocab]``."""
        ones = torch.ones((len(batch), 1), dtype=batch.mask.dtype, device=batch.mask.device)
        mask = torch.cat([batch.mask, ones], dim=1)
        self.bank.set_rows(batch.slots)
        out = self.model(
            input_ids=batch.last_tokens[:, None],
            attention_mask=mask,
            position_ids=batch.positions[:, None],
            cache=batch.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        batch.mask = mask
        batch.positions = batch.positions + 1
        logits: torch.Tensor = out.logits[:, -1]
        return logits
