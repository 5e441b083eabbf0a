"""Batched, KV-cached greedy (or seeded sampled) generation with per-row early stopping.

The decode loop is written out rather than delegated to ``model.generate`` because the
optimisers need three things it does not give together:

* **Shared prefixes.** ``prefixes x suffixes`` rows: each prefix is prefilled once and its KV
  cache copied for every suffix (GReaTer scores several candidate prompts that differ only from
  position ``i`` on, so the question and the prompt up to ``i`` are shared).
* **A continuation program per row.** When a row finishes its free generation (end of turn or
  ``max_new_tokens``), the same KV cache goes on: a forced token sequence (the answer extractor)
  is fed, then a short second generation runs until a per-row stop test says the answer is
  complete. Reasoning and answer therefore cost one prefill, not two.
* **Row pruning.** Finished rows are dropped from the batch (and its cache) at once, so a batch
  costs what its live rows cost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from greater.cost import CostMeter

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Continuation:
    """What a row does after its first generation ends.

    Attributes:
        force_ids: tokens fed verbatim after the first generation (e.g. the answer extractor).
        max_new_tokens: bound on the second generation.
        is_complete: called with the decoded text of the second generation so far; True stops
            the row early (the answer is complete).
    """

    force_ids: tuple[int, ...]
    max_new_tokens: int
    is_complete: Callable[[str], bool] | None = None

    def __post_init__(self) -> None:
        if not self.force_ids:
            raise ValueError("a continuation needs at least one forced token (the extractor)")
        if self.max_new_tokens < 1:
            raise ValueError(f"continuation max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass
class Generation:
    """One generated row.

    Attributes:
        ids: tokens of the first generation, end-of-turn token excluded.
        stopped_by: ``"eos"`` or ``"length"``.
        continuation_ids: tokens of the second generation (after ``force_ids``), if any.
    """

    ids: list[int]
    stopped_by: str
    continuation_ids: list[int] = field(default_factory=list)


@dataclass
class _Row:
    ids: list[int] = field(default_factory=list)
    cont_ids: list[int] = field(default_factory=list)
    stage: int = 0  # 0: free generation, 1: continuation generation, 2: done
    stopped_by: str = "length"


def _cache_kwarg(model: torch.nn.Module) -> str:
    """Name of the KV-cache keyword of ``model.forward`` (``cache`` in transformers >= 5.x)."""
    import inspect

    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _output_cache(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token rows.

    Returns:
        ids: ``[B, T]`` long tensor; mask: ``[B, T]`` long tensor (1 = real token).
    """
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, r in enumerate(rows):
        if r:
            ids[b, width - len(r):] = torch.tensor(list(r), dtype=torch.long)
            mask[b, width - len(r):] = 1
    return ids, mask


class Generator:
    """The decode loop over one causal LM. Construct via :class:`greater.lm.LM`."""

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        pad_id: int,
        stop_ids: set[int],
        decode: Callable[[list[int]], str],
        meter: CostMeter,
        device: torch.device,
    ) -> None:
        self.model = model
        self.pad_id = pad_id
        self.stop_ids = set(stop_ids)
        self.decode = decode
        self.meter = meter
        self.device = device
        self._cache_kw = _cache_kwarg(model)

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache):
        kwargs = {self._cache_kw: cache}
        out = self.model(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device),
            use_cache=True,
            logits_to_keep=1,
            **kwargs,
        )
        self.meter.add_forward(int(ids.numel()))
        return out.logits[:, -1, :].float(), _output_cache(out)

    @torch.inference_mode()
    def run(
        self,
        prefixes: Sequence[Sequence[int]],
        suffixes: Sequence[Sequence[int]] | None = None,
        *,
        max_new_tokens: int,
        continuation: Continuation | None = None,
        temperature: float = 0.0,
        rng: torch.Generator | None = None,
        on_row_done: Callable[[int], None] | None = None,
    ) -> list[Generation]:
        """Generate for ``len(prefixes) * len(suffixes)`` rows in one batch.

        Row ``p * len(suffixes) + s`` is ``prefixes[p] + suffixes[s]``; all suffixes must have
        the same length (they are fed as one right-aligned chunk after the shared prefix).
        """
        suffix_list = [list(s) for s in (suffixes if suffixes is not None else [[]])]
        if len({len(s) for s in suffix_list}) != 1:
            raise ValueError("all suffixes must have the same length")
        if any(len(p) == 0 for p in prefixes):
            raise ValueError("every prefix must hold at least one token")
        n_suf = len(suffix_list)
        n_rows = len(prefixes) * n_suf
        rows = [_Row() for _ in range(n_rows)]

        # Prefill the shared prefixes once.
        ids, mask = left_pad(prefixes, self.pad_id)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits, cache = self._forward(ids, mask, positions, None)
        if n_suf > 1:
            cache.batch_repeat_interleave(n_suf)
            mask = mask.repeat_interleave(n_suf, dim=0)
            positions = positions.repeat_interleave(n_suf, dim=0)
            logits = logits.repeat_interleave(n_suf, dim=0)
        if suffix_list[0]:
            suf = torch.tensor(suffix_list * len(prefixes), dtype=torch.long)
            suf_mask = torch.ones_like(suf)
            suf_pos = positions[:, -1:] + torch.arange(1, suf.shape[1] + 1)
            mask = torch.cat([mask, suf_mask], dim=1)
            logits, cache = self._forward(suf, mask, suf_pos, cache)
            positions = suf_pos
        last_pos = positions[:, -1]

        live = list(range(n_rows))  # row index of each batch slot
        steps = [0] * n_rows
        while live:
            next_tokens = self._choose(logits, temperature, rng).tolist()  # one device sync
            keep: list[int] = []
            feed: list[list[int]] = []
            for slot, r in enumerate(live):
                tokens = self._advance(rows[r], next_tokens[slot], steps, r,
                                       max_new_tokens, continuation)
                if tokens is None:
                    if on_row_done is not None:
                        on_row_done(r)
                    continue
                keep.append(slot)
                feed.append(tokens)
            if not keep:
                break
            if len(keep) < len(live):
                index = torch.tensor(keep, dtype=torch.long)
                cache.batch_select_indices(index.to(self.device))
                mask = mask[index]
                last_pos = last_pos[index]
                live = [live[s] for s in keep]
            # Rows feed one token, or their whole forced extractor at once: left-pad the chunk;
            # the pads stay masked in the cache for good.
            step_ids, step_mask = left_pad(feed, self.pad_id)
            step_pos = last_pos.unsqueeze(1) + step_mask.cumsum(-1)
            mask = torch.cat([mask, step_mask], dim=1)
            last_pos = step_pos[:, -1]
            logits, cache = self._forward(step_ids, mask, step_pos, cache)

        return [Generation(ids=r.ids, stopped_by=r.stopped_by, continuation_ids=r.cont_ids)
                for r in rows]

    def _choose(self, logits: torch.Tensor, temperature: float,
                rng: torch.Generator | None) -> torch.Tensor:
        """Next token per row from ``[B, V]`` logits: argmax, or a seeded sample."""
        if temperature <= 0:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits / temperature, dim=-1)
        return torch.multinomial(probs.cpu(), 1, generator=rng).squeeze(1)

    def _advance(self, row: _Row, token: int, steps: list[int], r: int, max_new_tokens: int,
                 continuation: Continuation | None) -> list[int] | None:
        """Record ``token`` for ``row``; return the tokens to feed next, or None when done."""
        if row.stage == 0:
            if token in self.stop_ids:
                row.stopped_by = "eos"
            else:
                row.ids.append(token)
                self.meter.add_generated(1)
                steps[r] += 1
                if steps[r] < max_new_tokens:
                    return [token]
            if continuation is None:
                row.stage = 2
                return None
            # Feed the forced tokens in one chunk (after the length-bound token, which was
            # generated but not yet fed); the logits that come back start the answer.
            row.stage = 1
            steps[r] = 0
            pending = [row.ids[-1]] if row.stopped_by == "length" else []
            return pending + list(continuation.force_ids)
        # stage 1: generating the continuation
        assert continuation is not None
        if token in self.stop_ids:
            row.stage = 2
            return None
        row.cont_ids.append(token)
        self.meter.add_generated(1)
        steps[r] += 1
        done = steps[r] >= continuation.max_new_tokens or (
            continuation.is_complete is not None
            and continuation.is_complete(self.decode(row.cont_ids))
        )
        if done:
            row.stage = 2
            return None
        return [token]
