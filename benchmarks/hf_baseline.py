"""The baseline every throughput benchmark compares with: transformers' batched greedy
``model.generate`` on left-padded rows, on the model as transformers ships it (plain
``nn.Linear`` layers: the LM's prepacked CPU weights, :mod:`greater.lm.cpu_kernels`, are part of
our engine and are switched off for the baseline; pass ``packed=True`` to time ``generate``
with them too)."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Sequence

import torch

from greater.lm.cpu_kernels import plain_linears
from greater.lm.generation import left_pad


def generate_batched(lm, rows: Sequence[Sequence[int]], batch: int, max_new_tokens: int, *,
                     packed: bool = False) -> int:
    """Greedy ``model.generate`` over ``rows``, ``batch`` at a time; returns the tokens generated
    before each row's first stop token (what a reply holds)."""
    pad, stop = lm.tokenizer.pad_token_id, sorted(lm.stop_ids)
    tokens = 0
    with nullcontext() if packed else plain_linears(lm.model):
        for start in range(0, len(rows), batch):
            ids, mask = left_pad(rows[start:start + batch], pad)
            with torch.inference_mode():
                out = lm.model.generate(input_ids=ids.to(lm.device),
                                        attention_mask=mask.to(lm.device), do_sample=False,
                                        max_new_tokens=max_new_tokens, eos_token_id=stop,
                                        pad_token_id=pad)
            for row in out[:, ids.shape[1]:].tolist():
                tokens += next((k for k, t in enumerate(row) if t in lm.stop_ids), len(row))
    return tokens
