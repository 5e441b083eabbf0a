"""The prompt loss of GReaTer (and GCG), its value and its one-hot token gradients.

One example is a :class:`LossSequence`: the full token row

    head | prompt (prompt_len tokens) | tail | reasoning | extractor | answer (answer_len tokens)

with the prompt starting at ``prompt_start`` and the gold answer at the end. Its loss is

    CE(answer logits / temperature, answer)  +  weight * mean NLL(prompt tokens)

(answer CE averaged over the answer's tokens, prompt NLL averaged over the prompt's tokens),
summed over examples. The reasoning is context: fixed, not differentiated through its sampling.

:func:`onehot_gradients` replaces the prompt token at each given position by a one-hot vector
over a candidate set, ``embedding = (onehot @ E[candidates]) * embed_scale`` (the scale is the one
the model's own embedding layer applies: sqrt(hidden) for Gemma, 1 elsewhere), and returns the
gradient of the summed loss with respect to those one-hot vectors. Everything before the first
edited position is run once without gradients and reused as a KV cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from greater.lm.generation import left_pad, mask_positions
from greater.lm.batching import run_with_backoff
from greater.lm.kv_cache import new_prefill_cache, prefix_states, repeat_prefix_cache
from greater.lm.model import LM

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LossSequence:
    """One example's token row for the prompt loss (see module docstring)."""

    ids: tuple[int, ...]
    prompt_start: int
    prompt_len: int
    answer_len: int

    def __post_init__(self) -> None:
        if self.prompt_len < 1 or self.answer_len < 1:
            raise ValueError("a loss sequence needs at least one prompt and one answer token")
        if self.prompt_start < 1:
            raise ValueError("the prompt must follow at least one context token")
        if self.prompt_start + self.prompt_len > len(self.ids) - self.answer_len:
            raise ValueError("prompt and answer spans overlap or exceed the sequence")


@dataclass
class LossTerms:
    """Per-example loss terms, each ``[B]``; ``total = answer_ce + weight * prompt_nll``."""

    answer_ce: torch.Tensor
    prompt_nll: torch.Tensor
    total: torch.Tensor


@dataclass
class OneHotGradient:
    """Result of :func:`onehot_gradients`.

    Attributes:
        grad: ``[P, C]`` d(summed loss)/d(one-hot) per edited position and candidate.
        loss: summed loss at the current tokens (the one-hot vectors' current values).
        terms: per-example loss terms at the current tokens.
    """

    grad: torch.Tensor
    loss: float
    terms: LossTerms


def _rest_layout(seqs: Sequence[LossSequence], first: int):
    """Split rows at absolute ``prompt_start + first``; return prefixes, rests, answer indices.

    Answer token ``a`` of row ``b`` sits at rest index ``len(rest_b) - answer_len_b + a`` and is
    predicted by the logits at one index before.
    """
    prefixes = [list(s.ids[: s.prompt_start + first]) for s in seqs]
    rests = [list(s.ids[s.prompt_start + first:]) for s in seqs]
    return prefixes, rests


def _prefix_pass(lm: LM, prefixes: list[list[int]]) -> _Prefix:
    """Run left-padded ``prefixes`` without gradients into a KV cache."""
    pre_ids, pre_mask = left_pad(prefixes, lm.tokenizer.pad_token_id)
    pre_pos = mask_positions(pre_mask)
    cache = new_prefill_cache()
    with torch.no_grad():
        out = lm.forward(pre_ids, mask=pre_mask, positions=pre_pos, cache=cache,
                         logits_to_keep=1)
    return _Prefix(cache=cache, mask=pre_mask, last_pos=pre_pos[:, -1],
                   logp=out.logits[:, -1, :].float().log_softmax(-1))


@dataclass
class _Prefix:
    """A prefix pass: its cache, mask ``[B, L]``, last positions ``[B]`` (host) and the
    log-probs ``[B, V]`` of the token after it."""

    cache: object
    mask: torch.Tensor
    last_pos: torch.Tensor
    logp: torch.Tensor


def _forward_rest(lm: LM, seqs: Sequence[LossSequence], first: int,
                  replace: dict[int, torch.Tensor] | None, prefix: _Prefix | None = None):
    """Run prefix (no grad, cached) then rest (with grad); return the needed log-probs.

    ``prefix``, when given, is the prefix pass already run for these rows.

    Returns:
        prefix_logp: ``[B, V]`` log-probs of the token at prompt position ``first``.
        prompt_logp: ``[B, n, V]`` log-probs predicting prompt tokens ``first+1 ..`` (n may be 0).
        answer_logits: list of ``[A_b, V]`` logits predicting each row's answer tokens.
    """
    pad = lm.tokenizer.pad_token_id
    prefixes, rests = _rest_layout(seqs, first)
    if prefix is None:
        prefix = _prefix_pass(lm, prefixes)
    width = max(len(r) for r in rests)
    rest_ids = torch.full((len(rests), width), pad, dtype=torch.long)
    rest_mask = torch.zeros((len(rests), width), dtype=torch.long)
    for b, r in enumerate(rests):
        rest_ids[b, : len(r)] = torch.tensor(r)
        rest_mask[b, : len(r)] = 1
    embeds = lm.embed(rest_ids).detach()
    if replace:
        embeds = embeds.clone()
        for idx, vec in replace.items():
            embeds[:, idx, :] = vec.to(embeds.dtype)
    n_prompt_after = seqs[0].prompt_len - first - 1
    answer_index = [
        list(range(len(r) - s.answer_len - 1, len(r) - 1)) for r, s in zip(rests, seqs)
    ]
    keep = sorted(set(range(n_prompt_after)) | {i for row in answer_index for i in row})
    keep_t = torch.tensor(keep, dtype=torch.long, device=lm.device)
    mask = torch.cat([prefix.mask, rest_mask], dim=1)
    positions = prefix.last_pos.unsqueeze(1) + 1 + torch.arange(width).unsqueeze(0)
    out = lm.forward(embeds=embeds, mask=mask, positions=positions, cache=prefix.cache,
                     logits_to_keep=keep_t)
    logits = out.logits.float()  # [B, len(keep), V]
    where = {k: j for j, k in enumerate(keep)}
    prompt_logp = logits[:, [where[k] for k in range(n_prompt_after)], :].log_softmax(-1)
    answer_logits = [logits[b, [where[k] for k in row], :] for b, row in enumerate(answer_index)]
    return prefix.logp, prompt_logp, answer_logits, rest_ids


def _loss_terms(seqs, first, prefix_logp, first_token_logp, prompt_logp, answer_logits,
                rest_ids, *, temperature: float, weight: float,
                before_nll: torch.Tensor) -> LossTerms:
    """Assemble per-example loss terms from the pieces of :func:`_forward_rest`."""
    n_after = prompt_logp.shape[1]
    if n_after:
        targets = rest_ids[:, 1: 1 + n_after].to(prompt_logp.device)
        after_nll = -prompt_logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1).sum(-1)
    else:
        after_nll = torch.zeros(len(seqs), device=prefix_logp.device)
    prompt_nll = (before_nll - first_token_logp + after_nll) / seqs[0].prompt_len
    ce = []
    for b, s in enumerate(seqs):
        gold = torch.tensor(s.ids[len(s.ids) - s.answer_len:], device=answer_logits[b].device)
        ce.append(F.cross_entropy(answer_logits[b] / temperature, gold))
    answer_ce = torch.stack(ce)
    return LossTerms(answer_ce=answer_ce, prompt_nll=prompt_nll,
                     total=answer_ce + weight * prompt_nll)


def _nll_before(lm: LM, seqs: Sequence[LossSequence], first: int) -> torch.Tensor:
    """Summed NLL of prompt tokens ``0 .. first-1`` per example ``[B]`` (constant w.r.t. edits)."""
    if first == 0:
        return torch.zeros(len(seqs))
    contexts = [list(s.ids[: s.prompt_start]) for s in seqs]
    targets = [list(s.ids[s.prompt_start: s.prompt_start + first]) for s in seqs]
    return -torch.stack([t.sum() for t in lm.target_logprobs(contexts, targets)])


def _validate(seqs: Sequence[LossSequence], positions: Sequence[int]) -> None:
    if not seqs:
        raise ValueError("no sequences given")
    if len({s.prompt_len for s in seqs}) != 1:
        raise ValueError("all sequences must share one prompt length")
    if not positions or sorted(set(positions)) != list(positions):
        raise ValueError("positions must be a non-empty, sorted list of distinct indices")
    if positions[0] < 0 or positions[-1] >= seqs[0].prompt_len:
        raise ValueError(f"positions {positions} outside the prompt (length {seqs[0].prompt_len})")


def onehot_gradients(
    lm: LM,
    seqs: Sequence[LossSequence],
    positions: Sequence[int],
    candidates: torch.Tensor,
    *,
    temperature: float = 0.2,
    weight: float = 0.2,
    batch_size: int = 8,
) -> OneHotGradient:
    """Gradient of the summed prompt loss w.r.t. one-hot tokens at prompt ``positions``.

    Args:
        lm: a :class:`greater.lm.LM`.
        seqs: the examples; all share the prompt being edited (same tokens, same length).
        positions: sorted prompt-relative indices to relax into one-hot vectors.
        candidates: ``[C]`` token ids spanned by each one-hot vector; every current token at a
            position must be among them (the one-hot starts at the current token).
        batch_size: examples per forward/backward pass; gradients are accumulated.

    Returns:
        :class:`OneHotGradient` with ``grad`` of shape ``[len(positions), C]``.
    """
    _validate(seqs, positions)
    positions = list(positions)
    first = positions[0]
    cand = candidates.to(lm.device)
    prompt = seqs[0].ids[seqs[0].prompt_start: seqs[0].prompt_start + seqs[0].prompt_len]
    onehot = torch.zeros(len(positions), len(cand), device=lm.device, dtype=torch.float32)
    for row, pos in enumerate(positions):
        hit = (cand == prompt[pos]).nonzero()
        if len(hit) == 0:
            raise ValueError(f"current token {prompt[pos]} at position {pos} is not a candidate")
        onehot[row, hit[0, 0]] = 1.0
    onehot.requires_grad_(True)
    table = lm.embedding_layer.weight[cand].detach().float() * lm.embed_scale  # [C, H]
    before = _nll_before(lm, seqs, first)
    longest = max(len(s.ids) for s in seqs)
    row_bytes = lm.row_costs.gradient(longest, longest - seqs[0].prompt_start - first)

    def accumulate(size: int) -> OneHotGradient:
        grad = torch.zeros_like(onehot)
        terms: list[LossTerms] = []
        for start in range(0, len(seqs), size):
            chunk = list(seqs[start:start + size])
            vectors = onehot @ table  # [P, H]
            replace = {pos - first: vectors[row] for row, pos in enumerate(positions)}
            prefix_logp, prompt_logp, answer_logits, rest_ids = _forward_rest(
                lm, chunk, first, replace)
            first_token_logp = prefix_logp[:, cand] @ onehot[0]
            # NLL of edited positions after the first is linear in their one-hot vectors.
            if len(positions) > 1:
                prompt_logp = _mix_onehot_nll(prompt_logp, positions, first, cand, onehot,
                                              rest_ids)
            t = _loss_terms(chunk, first, prefix_logp, first_token_logp, prompt_logp,
                            answer_logits, rest_ids, temperature=temperature, weight=weight,
                            before_nll=before[start:start + size].to(prefix_logp.device))
            grad += lm.gradient(t.total.sum(), onehot, tokens=int(rest_ids.numel()))
            terms.append(LossTerms(*(x.detach() for x in (t.answer_ce, t.prompt_nll, t.total))))
        merged = _concat_terms(terms)
        return OneHotGradient(grad=grad.detach(), loss=float(merged.total.sum()), terms=merged)

    return run_with_backoff(accumulate, lm.batch_size_for(batch_size, row_bytes),
                            what="gradient")


def _concat_terms(parts: Sequence[LossTerms]) -> LossTerms:
    return LossTerms(*(torch.cat([getattr(t, f) for t in parts])
                       for f in ("answer_ce", "prompt_nll", "total")))


def _mix_onehot_nll(prompt_logp, positions, first, cand, onehot, rest_ids):
    """Make the NLL of edited prompt tokens after ``first`` linear in their one-hot vectors.

    ``prompt_logp[:, k]`` predicts prompt token ``first + 1 + k``; for an edited position its
    "log-prob of the token" becomes ``logp[cand] @ onehot``. We realise that by substituting a
    log-prob row whose entry at the current token equals that product.
    """
    out = prompt_logp.clone()
    for row, pos in enumerate(positions[1:], start=1):
        k = pos - first - 1
        current = rest_ids[:, pos - first].to(out.device)
        mixed = out[:, k, :][:, cand] @ onehot[row]
        out[torch.arange(out.shape[0], device=out.device), k, current] = mixed
    return out


@torch.no_grad()
def sequence_losses(lm: LM, seqs: Sequence[LossSequence], *, temperature: float = 0.2,
                    weight: float = 0.2, batch_size: int = 8,
                    progress: str | None = None) -> LossTerms:
    """Per-example loss terms of fixed token rows (forward only), ``[B]`` each.

    Rows that share their context before the prompt (``ids[:prompt_start]``: the same question
    under different prompts, as in GCG's candidate evaluation) share one prefix pass: its KV
    cache is computed once and repeated across their rows, so each row costs only its prompt,
    reasoning and answer. ``batch_size`` (rows per pass) is an upper bound, lowered to fit the
    memory budget and halved on out-of-memory. ``progress`` names a progress bar over the rows.
    """
    if not seqs:
        raise ValueError("no sequences given")
    groups: dict[tuple[int, ...], list[int]] = {}
    for k, s in enumerate(seqs):
        groups.setdefault(tuple(s.ids[: s.prompt_start]), []).append(k)
    longest = max(len(s.ids) - s.prompt_start for s in seqs)
    row_bytes = lm.row_costs.scoring(max(len(s.ids) for s in seqs), longest)

    def score(size: int) -> LossTerms:
        with tqdm(total=len(seqs), desc=progress, disable=progress is None, leave=False) as bar:
            return score_rows(size, bar)

    def score_rows(size: int, bar: tqdm) -> LossTerms:
        if len(groups) == len(seqs):  # nothing shared: batch the prefix passes instead
            parts = []
            for start in range(0, len(seqs), size):
                chunk = list(seqs[start:start + size])
                parts.append(_fixed_row_terms(lm, chunk, None, temperature=temperature,
                                              weight=weight))
                bar.update(len(chunk))
            return _concat_terms(parts)
        parts: list[LossTerms] = []
        order: list[int] = []
        for prefix_ids, members in groups.items():
            shared = _prefix_pass(lm, [list(prefix_ids)])
            states = prefix_states(shared.cache)
            for start in range(0, len(members), size):
                rows = members[start:start + size]
                prefix = _Prefix(cache=repeat_prefix_cache(states, len(rows)),
                                 mask=shared.mask.expand(len(rows), -1),
                                 last_pos=shared.last_pos.expand(len(rows)),
                                 logp=shared.logp.expand(len(rows), -1))
                parts.append(_fixed_row_terms(lm, [seqs[k] for k in rows], prefix,
                                              temperature=temperature, weight=weight))
                order.extend(rows)
                bar.update(len(rows))
        merged = _concat_terms(parts)
        back = torch.empty(len(order), dtype=torch.long)
        back[torch.tensor(order)] = torch.arange(len(order))
        index = back.to(merged.total.device)
        return LossTerms(*(getattr(merged, f)[index] for f in ("answer_ce", "prompt_nll", "total")))

    return run_with_backoff(score, lm.batch_size_for(batch_size, row_bytes), what="scoring")


def _fixed_row_terms(lm: LM, chunk: list[LossSequence], prefix: _Prefix | None, *,
                     temperature: float, weight: float) -> LossTerms:
    """Loss terms of rows whose prefix pass is ``prefix`` (run here when None); no edited
    positions."""
    prefix_logp, prompt_logp, answer_logits, rest_ids = _forward_rest(lm, chunk, 0, None, prefix)
    first_tok = torch.tensor([s.ids[s.prompt_start] for s in chunk], device=prefix_logp.device)
    first_token_logp = prefix_logp.gather(-1, first_tok.unsqueeze(-1)).squeeze(-1)
    return _loss_terms(chunk, 0, prefix_logp, first_token_logp, prompt_logp, answer_logits,
                       rest_ids, temperature=temperature, weight=weight,
                       before_nll=torch.zeros(len(chunk), device=prefix_logp.device))
