"""GCG (Zou et al. 2023) applied to prompt optimisation: GReaTer without candidate proposal
and without reasoning.

The loss is GReaTer's, on the answer right after ``question | prompt | extractor`` (no
reasoning chain): rows built by GReaTer's ``loss_sequences(..., replies=None)``. Each step:

1. one-hot gradients of the loss over every allowed token at every prompt position
   (GReaTer's ``onehot_gradients``; ``[P, C]``);
2. the ``top_k`` most negative tokens per position (the current token and disallowed tokens
   excluded);
3. ``search_width`` random single-token swaps (a uniform position, a uniform token of its
   top-k; drawn with the run's seed), de-duplicated and, with ``filter_retokenization``, only
   those whose text re-tokenises to the same ids (nanoGCG's ``filter_ids``);
4. forward evaluation of the swaps' mean loss (``sequence_losses``); the prompt moves to the
   best swap, as in GCG, and the lowest-loss prompts seen are the contenders for dev.

No reply is generated during the search (``train_accuracy`` is None); the loss is the mean
per-example loss.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from greater.lm import LM
from greater.lm.gradients import onehot_gradients, sequence_losses
from greater.methods import register_method
from greater.optimizer.config import TOKEN_FILTERS
from greater.optimizer.search import allowed_mask, loss_sequences, roundtrip
from greater.result import PromptScore, StepRecord
from greater.run import Method, Run
from greater.run_config import RunConfig, positive_int
from greater.tasks import Example, Task


@dataclass(frozen=True)
class GCGConfig(RunConfig):
    """Configuration of :class:`GCG`. Defaults follow the GCG paper.

    Attributes:
        steps: optimisation steps (500).
        top_k: tokens kept per position from the gradient (256).
        search_width: random single-token swaps evaluated per step (512).
        ce_temperature: temperature dividing the answer logits (1.0: plain cross-entropy).
        perplexity_weight: weight of the prompt NLL in the loss (0.0: the answer loss only).
        token_filter: allowed tokens, as GReaTer's ("ascii": letters, spaces, "." and ",").
        filter_retokenization: drop swaps whose text does not re-tokenise to the same ids.
        grad_batch_size: examples per forward/backward pass of the gradient.
        eval_batch_size: rows per forward pass when evaluating swaps.
        n_contenders: the lowest-loss prompts seen compared on dev.
    """

    steps: int = 500
    top_k: int = 256
    search_width: int = 512
    ce_temperature: float = 1.0
    perplexity_weight: float = 0.0
    token_filter: str = "ascii"
    filter_retokenization: bool = True
    grad_batch_size: int = 8
    eval_batch_size: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("steps", "top_k", "search_width", "grad_batch_size", "eval_batch_size"):
            positive_int(name, getattr(self, name))
        if self.ce_temperature <= 0:
            raise ValueError(f"ce_temperature must be > 0, got {self.ce_temperature}")
        if self.perplexity_weight < 0:
            raise ValueError(f"perplexity_weight must be >= 0, got {self.perplexity_weight}")
        if self.token_filter not in TOKEN_FILTERS:
            raise ValueError(f"token_filter must be one of {TOKEN_FILTERS}, "
                             f"got {self.token_filter!r}")


def top_k_swaps(grad: torch.Tensor, candidates: torch.Tensor, allowed: torch.Tensor,
                prompt: list[int], top_k: int) -> torch.Tensor:
    """``[P, k]`` token ids (on the host) with the most negative gradient per position.

    Args:
        grad: ``[P, C]`` one-hot gradient over ``candidates`` (``[C]`` token ids), on any device.
        allowed: ``[V]`` bool mask; disallowed candidates and each position's current token
            are never proposed.
    """
    return top_k_token_ids(grad, candidates, allowed, prompt, top_k).cpu()


def top_k_token_ids(grad: torch.Tensor, candidates: torch.Tensor, allowed: torch.Tensor,
                    prompt: list[int], top_k: int) -> torch.Tensor:
    """:func:`top_k_swaps` on ``grad``'s device: every tensor it indexes with is moved there
    first, and ``k`` is counted on the host, so nothing waits on the device."""
    host_candidates = candidates.cpu()
    host_allowed = allowed.cpu()[host_candidates]  # [C]
    n_allowed = int(host_allowed.sum())
    allowed_ids = set(host_candidates[host_allowed].tolist())
    k = min(top_k, min(n_allowed - (tok in allowed_ids) for tok in prompt))
    device = grad.device
    cand = host_candidates.to(device)
    g = grad.clone().float()
    g[:, ~host_allowed.to(device)] = float("inf")
    for pos, tok in enumerate(prompt):
        g[pos, cand == tok] = float("inf")
    return cand[g.topk(max(k, 1), dim=1, largest=False).indices]


def _mean_losses(lm: LM, task: Task, train: list[Example], prompts: list[list[int]],
                 cfg: GCGConfig, progress: str | None = None) -> list[float]:
    """Mean per-example loss of each prompt (forward only); ``progress`` names a bar."""
    seqs = [s for p in prompts for s in loss_sequences(lm, task, train, p, None)]
    total = sequence_losses(lm, seqs, temperature=cfg.ce_temperature,
                            weight=cfg.perplexity_weight, batch_size=cfg.eval_batch_size,
                            progress=progress).total
    return total.view(len(prompts), len(train)).mean(1).tolist()


@register_method("gcg", config=GCGConfig,
                 summary="GCG-style: one-hot gradients over the vocabulary, random token swaps")
class GCG(Method):
    """GCG. State: the prompt's tokens and every prompt seen with its mean loss and step."""

    def start(self, run: Run) -> None:
        run.state.update(prompt=run.lm.prompt_ids(run.cfg.initial_prompt), seen={})

    def step(self, run: Run, step: int) -> StepRecord:
        lm, task, cfg, st = run.lm, run.task, run.cfg, run.state
        assert isinstance(cfg, GCGConfig)
        t0 = time.perf_counter()
        prompt: list[int] = st["prompt"]
        seen: dict[str, list] = st["seen"]  # prompt text -> [mean loss, step]
        allowed = allowed_mask(lm, cfg.token_filter)
        allowed_ids = allowed.nonzero().flatten()
        candidates = torch.unique(torch.cat([allowed_ids, torch.tensor(prompt)]))
        with lm.meter.phase("gradient"):
            seqs = loss_sequences(lm, task, run.train, prompt, None)
            grad = onehot_gradients(lm, seqs, list(range(len(prompt))), candidates,
                                    temperature=cfg.ce_temperature,
                                    weight=cfg.perplexity_weight, batch_size=cfg.grad_batch_size)
        current_loss = grad.loss / len(run.train)
        seen.setdefault(lm.prompt_text(prompt), [current_loss, step - 1])
        top = top_k_swaps(grad.grad, candidates, allowed, prompt, cfg.top_k)
        swaps: dict[tuple[int, ...], tuple[int, int]] = {}
        n_retok = 0
        for _ in range(cfg.search_width):
            pos = run.rng.randrange(len(prompt))
            tok = int(top[pos, run.rng.randrange(top.shape[1])])
            new = list(prompt)
            new[pos] = tok
            key = tuple(new)
            if key in swaps:
                continue
            if cfg.filter_retokenization and not _retokenizes(lm, new):
                n_retok += 1
                continue
            swaps[key] = (pos, tok)
        details = {"current_loss": current_loss, "n_swaps": len(swaps),
                   "n_filtered_retokenization": n_retok}
        loss = None
        if swaps:
            keys = list(swaps)
            with lm.meter.phase("evaluate"):
                bar = f"gcg step {step}: {len(keys)} swaps x {len(run.train)} examples"
                losses = _mean_losses(lm, task, run.train, [list(k) for k in keys], cfg,
                                      progress=bar if run.progress else None)
            best = min(range(len(keys)), key=lambda i: (losses[i], i))
            pos, tok = swaps[keys[best]]
            details.update(position=pos, replaced=lm.decode([prompt[pos]]),
                           chosen=lm.decode([tok]))
            prompt, loss = list(keys[best]), losses[best]
            seen.setdefault(lm.prompt_text(prompt), [loss, step])
        details["best_loss"] = min(v[0] for v in seen.values())
        st["prompt"] = prompt
        return StepRecord(step=step, prompt=lm.prompt_text(prompt), loss=loss,
                          seconds=time.perf_counter() - t0, details=details)

    def ranked(self, run: Run) -> list[PromptScore]:
        """The lowest-loss prompts seen (later first on ties)."""
        ranked = sorted(run.state["seen"].items(), key=lambda kv: (kv[1][0], -kv[1][1]))
        return [run.remember(text, train_accuracy=None, step=st) for text, (_, st) in ranked]


def _retokenizes(lm: LM, ids: list[int]) -> bool:
    try:
        return roundtrip(lm, ids) == list(ids)
    except ValueError:
        return False
