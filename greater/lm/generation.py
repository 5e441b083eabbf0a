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
* **Row pruning and continuous batching.** Finished rows are dropped from the batch (and its
  cache) at once and waiting rows are prefilled into the free slots, so a batch costs what its
  live rows cost and one long reply does not hold up the rest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from transformers.cache_utils import DynamicLayer

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
    parked: list[int] | None = None  # forced tokens waiting to be fed
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


@dataclass
class _Batch:
    """The running batch: KV cache, attention mask ``[B, T]``, last positions ``[B]``,
    next-token logits ``[B, V]`` and the row index of each slot."""

    cache: object
    mask: torch.Tensor
    last_pos: torch.Tensor
    logits: torch.Tensor
    live: list[int]

    def select(self, keep: list[int], device: torch.device) -> None:
        index = torch.tensor(keep, dtype=torch.long)
        self.cache.batch_select_indices(index.to(device))
        self.mask = self.mask[index]
        self.last_pos = self.last_pos[index]
        self.logits = self.logits[index.to(self.logits.device)]
        self.live = [self.live[s] for s in keep]


def _left_pad_time(x: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """Left-pad ``x`` with zeros along ``dim`` to ``width``."""
    missing = width - x.shape[dim]
    if missing == 0:
        return x
    shape = list(x.shape)
    shape[dim] = missing
    return torch.cat([x.new_zeros(shape), x], dim=dim)


def _merge(a: _Batch, b: _Batch) -> _Batch:
    """Join two running batches: left-pad caches and masks to one length, stack the rows."""
    width = max(a.mask.shape[1], b.mask.shape[1])
    for la, lb in zip(a.cache.layers, b.cache.layers):
        la.keys = torch.cat([_left_pad_time(la.keys, width, -2),
                             _left_pad_time(lb.keys, width, -2)], dim=0)
        la.values = torch.cat([_left_pad_time(la.values, width, -2),
                               _left_pad_time(lb.values, width, -2)], dim=0)
    return _Batch(cache=a.cache,
                  mask=torch.cat([_left_pad_time(a.mask, width, 1),
                                  _left_pad_time(b.mask, width, 1)], dim=0),
                  last_pos=torch.cat([a.last_pos, b.last_pos]),
                  logits=torch.cat([a.logits, b.logits]),
                  live=a.live + b.live)


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

    def _prefill(self, prefixes: Sequence[Sequence[int]], suffix_list: list[list[int]],
                 first_row: int) -> _Batch:
        """Prefill ``prefixes`` once each, copy each cache per suffix, then feed the suffixes."""
        n_suf = len(suffix_list)
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
            suf_pos = positions[:, -1:] + torch.arange(1, suf.shape[1] + 1)
            mask = torch.cat([mask, torch.ones_like(suf)], dim=1)
            logits, cache = self._forward(suf, mask, suf_pos, cache)
            positions = suf_pos
        live = list(range(first_row, first_row + len(prefixes) * n_suf))
        return _Batch(cache=cache, mask=mask, last_pos=positions[:, -1], logits=logits, live=live)

    @torch.inference_mode()
    def run(
        self,
        prefixes: Sequence[Sequence[int]],
        suffixes: Sequence[Sequence[int]] | None = None,
        *,
        max_new_tokens: int,
        batch_size: int,
        continuation: Continuation | None = None,
        temperature: float = 0.0,
        rng: torch.Generator | None = None,
        on_row_done: Callable[[int], None] | None = None,
    ) -> list[Generation]:
        """Generate for ``len(prefixes) * len(suffixes)`` rows, at most ``batch_size`` at once.

        Row ``p * len(suffixes) + s`` is ``prefixes[p] + suffixes[s]``; all suffixes must have
        the same length (they are fed as one chunk after the shared prefix). Batching is
        continuous: as rows finish, the next prefixes are prefilled and join the running batch
        (their caches left-padded to a common length), so a long reply does not leave the rest
        of the batch idle. Prefixes are admitted in the order given.
        """
        suffix_list = [list(s) for s in (suffixes if suffixes is not None else [[]])]
        if len({len(s) for s in suffix_list}) != 1:
            raise ValueError("all suffixes must have the same length")
        if any(len(p) == 0 for p in prefixes):
            raise ValueError("every prefix must hold at least one token")
        n_suf = len(suffix_list)
        per_admit = max(1, batch_size // n_suf)  # prefixes that fit in an empty batch
        rows = [_Row() for _ in range(len(prefixes) * n_suf)]
        steps = [0] * len(rows)
        next_prefix = 0
        batch: _Batch | None = None
        while True:
            # Admit waiting prefixes into the free slots (all at once when the batch is empty).
            free = per_admit if batch is None else (batch_size - len(batch.live)) // n_suf
            if next_prefix < len(prefixes) and free > 0 and (batch is None or self._mergeable(batch)):
                take = prefixes[next_prefix: next_prefix + free]
                new = self._prefill(take, suffix_list, next_prefix * n_suf)
                next_prefix += len(take)
                batch = new if batch is None else _merge(batch, new)
            if batch is None:
                break
            next_tokens = self._choose(batch.logits, temperature, rng).tolist()  # one sync
            keep: list[int] = []
            feed: list[list[int]] = []
            for slot, r in enumerate(batch.live):
                if rows[r].parked is not None:  # waiting to feed its extractor: no new token
                    keep.append(slot)
                    feed.append([])
                    continue
                tokens = self._advance(rows[r], next_tokens[slot], steps, r,
                                       max_new_tokens, continuation)
                if tokens is None:
                    if on_row_done is not None:
                        on_row_done(r)
                    continue
                keep.append(slot)
                feed.append(tokens)
            self._release_parked(rows, [batch.live[s] for s in keep], feed)
            if not keep:
                batch = None
                if next_prefix >= len(prefixes):
                    break
                continue
            if len(keep) < len(batch.live):
                batch.select(keep, self.device)
            # Rows feed one token, or their whole forced extractor at once: left-pad the chunk;
            # the pads stay masked in the cache for good.
            step_ids, step_mask = left_pad(feed, self.pad_id)
            step_pos = batch.last_pos.unsqueeze(1) + step_mask.cumsum(-1)
            batch.mask = torch.cat([batch.mask, step_mask], dim=1)
            batch.last_pos = step_pos[:, -1]
            batch.logits, batch.cache = self._forward(step_ids, batch.mask, step_pos, batch.cache)

        return [Generation(ids=r.ids, stopped_by=r.stopped_by, continuation_ids=r.cont_ids)
                for r in rows]

    @staticmethod
    def _release_parked(rows: list[_Row], live: list[int], feed: list[list[int]]) -> None:
        """Decide which parked rows feed their forced tokens in this step's forward.

        A row that finished its free generation parks its forced tokens (the extractor) and
        feeds a masked hole meanwhile. Feeding a multi-token chunk makes the whole step as wide
        as the chunk for every row, so parked rows are released together: once half the live
        rows are parked, or when no row is generating any more.
        """
        parked = [k for k, r in enumerate(live) if rows[r].parked is not None]
        if not parked:
            return
        if len(parked) * 2 < len(live) and len(parked) < len(live):
            return
        for k in parked:
            feed[k] = rows[live[k]].parked
            rows[live[k]].parked = None

    @staticmethod
    def _mergeable(batch: "_Batch") -> bool:
        """Only plain dynamic caches (full attention everywhere) can be left-padded and joined;
        other layouts (sliding windows) run batch after batch instead."""
        layers = getattr(batch.cache, "layers", None)
        return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)

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
            # Park the forced tokens (after the length-bound token, which was generated but not
            # yet fed): they are fed in one chunk later, and the logits that come back start the
            # answer. Until then the row feeds nothing.
            row.stage = 1
            steps[r] = 0
            pending = [row.ids[-1]] if row.stopped_by == "length" else []
            row.parked = pending + list(continuation.force_ids)
            return []
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
