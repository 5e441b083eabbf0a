"""The baseline every throughput benchmark compares with: transformers' batched greedy
``model.generate`` on left-padded rows."""

from __future__ import annotations

from typing import Sequence

import torch


def generate_batched(lm, rows: Sequence[Sequence[int]], batch: int, max_new_tokens: int) -> int:
    """Greedy ``model.generate`` over ``rows``, ``batch`` at a time; returns the tokens generated
    before each row's first stop token (what a reply holds)."""
    pad, stop = lm.tokenizer.pad_token_id, sorted(lm.stop_ids)
    tokens = 0
    for start in range(0, len(rows), batch):
        chunk = [list(r) for r in rows[start:start + batch]]
        width = max(map(len, chunk))
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in chunk], device=lm.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in chunk],
                            device=lm.device)
        with torch.inference_mode():
            out = lm.model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                    max_new_tokens=max_new_tokens, eos_token_id=stop,
                                    pad_token_id=pad)
        for row in out[:, width:].tolist():
            tokens += next((k for k, t in enumerate(row) if t in lm.stop_ids), len(row))
    return tokens
