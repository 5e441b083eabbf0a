"""GReaTer: prompt search with gradients over the model's own reasoning.

One step edits one prompt position ``i`` of the prompt, rebuilt from its text every step (as the
research code does), so the prompt optimised is always the prompt scored:

1. reasoning: greedy replies (reasoning, extractor, answer) of every training example under the
   current prompt — reused from the previous step's re-scoring when the winner's replies exist;
   at a grow step (``i`` = the prompt's length) a placeholder is appended and the reasoning is
   regenerated for the prompt with it;
2. proposal: candidates for position ``i`` from the examples' next-token distributions;
3. gradient: one-hot gradient over the candidates of CE(answer) + lambda * prompt NLL through
   question, prompt, reasoning and extractor (the reasoning is fixed context);
4. selection: at ``i >= 0.5 * initial length`` a shortlisted candidate containing "." is taken
   at once; otherwise the ``n_rescore`` most negative candidates are re-scored by regenerating
   replies (strict error rate + lambda/10 * prompt NLL), sharing one prefill of question and
   prompt prefix; with ``n_rescore = 0`` the gradient's argmin is taken;
5. walk: see :mod:`greater.optimizer.walk`.

Every training accuracy recorded (in the history and the contenders) is that of exactly the
prompt stored with it. Cross-step state lives in ``run.state`` (resumable).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

import torch

from greater.lm import LM
from greater.lm.gradients import LossSequence, onehot_gradients
from greater.lm.model import MAX_PROMPT_TOKENS
from greater.methods import register_method
from greater.optimizer.candidates import allowed_token_mask, propose_candidates
from greater.optimizer.config import GreaterConfig
from greater.optimizer.walk import banned_token, next_position, period_shortcut
from greater.responses import PromptEdits, Response, respond
from greater.result import PromptScore, StepRecord
from greater.run import Method, Run
from greater.tasks import Example, Task

logger = logging.getLogger(__name__)


def allowed_mask(lm: LM, mode: str) -> torch.Tensor:
    """``[V]`` bool mask of the tokens ``mode`` permits in a prompt (cached on the LM).

    Special and added tokens (``<repo_name>``, chat markers, ...) are never allowed.
    """
    cache = lm.__dict__.setdefault("allowed_masks", {})
    if mode not in cache:
        excluded = set(lm.tokenizer.all_special_ids)
        excluded.update(getattr(lm.tokenizer, "added_tokens_decoder", {}) or {})
        mask = allowed_token_mask(lm.vocab_strings(), sorted(excluded), mode)
        rows = lm.embedding_layer.weight.shape[0]
        if len(mask) < rows:  # embedding rows beyond the tokenizer are padding, never tokens
            mask = torch.cat([mask, torch.zeros(rows - len(mask), dtype=torch.bool)])
        cache[mode] = mask[:rows]
    return cache[mode]


def loss_sequences(lm: LM, task: Task, examples: list[Example], prompt: list[int],
                   replies: list[Response] | None) -> list[LossSequence]:
    """Token rows ``head | prompt | tail | reasoning | extractor | answer`` per example."""
    seqs = []
    for k, ex in enumerate(examples):
        head = lm.head_ids(ex.input)
        reasoning = replies[k].reasoning_ids if replies is not None else []
        extractor, answer = lm.extractor_answer_ids(task.extractor, task.answer_text(ex))
        ids = head + prompt + lm.tail_ids + reasoning + extractor + answer
        seqs.append(LossSequence(tuple(ids), len(head), len(prompt), len(answer)))
    return seqs


def train_accuracy(task: Task, examples: list[Example], replies: list[Response], *,
                   strict: bool = False) -> float:
    """Share of ``replies`` whose answer is the gold one (``strict``: only after the extractor)."""
    if strict:
        hits = sum(task.extract_strict_answer(r.answer, ex) == task.gold_answer(ex)
                   for ex, r in zip(examples, replies))
    else:
        hits = sum(task.is_correct(r.text, ex) for ex, r in zip(examples, replies))
    return hits / len(examples)


def roundtrip(lm: LM, ids: list[int]) -> list[int]:
    """The prompt's tokens rebuilt from its text (what a user of the text would score)."""
    return lm.prompt_ids(lm.prompt_text(ids))


def _prompt_nll(lm: LM, examples: list[Example], prompts: list[list[int]]) -> list[float]:
    """Mean (over examples) of the mean NLL of each prompt's tokens after its question.

    All ``prompts x examples`` rows go through one batched call."""
    heads = [lm.head_ids(ex.input) for ex in examples]
    logps = lm.target_logprobs([h for _ in prompts for h in heads],
                            [p for p in prompts for _ in heads])
    n = len(examples)
    return [float(torch.stack([-lp.mean() for lp in logps[k * n:(k + 1) * n]]).mean())
            for k in range(len(prompts))]


def _replies(lm: LM, task: Task, train: list[Example], prompt: list[int],
             cfg: GreaterConfig) -> list[Response]:
    with lm.meter.phase("reasoning"):
        return [r[0] for r in respond(lm, task, train, prompt, max_new_tokens=cfg.max_new_tokens,
                                      batch_size=cfg.batch_size)]


def _encode_replies(replies: list[Response] | None) -> list[dict[str, Any]] | None:
    return None if replies is None else [asdict(r) for r in replies]


def _decode_replies(data: list[dict[str, Any]] | None) -> list[Response] | None:
    return None if data is None else [Response(**r) for r in data]


@register_method("greater", config=GreaterConfig,
                 summary="GReaTer: token edits chosen by gradients over the model's reasoning")
class Greater(Method):
    """GReaTer (Das et al., ICLR 2025). State: the prompt's tokens, the position, the replies
    of the training examples to the current prompt (if known) and the initial length."""

    def check(self, run: Run) -> None:
        cfg: GreaterConfig = run.cfg  # type: ignore[assignment]
        n = len(run.lm.prompt_ids(cfg.initial_prompt))
        if n > cfg.max_prompt_tokens:
            raise ValueError(f"the initial prompt has {n} tokens, more than max_prompt_tokens "
                             f"({cfg.max_prompt_tokens})")
        if len(run.train) < cfg.intersection_size:
            raise ValueError(f"{run.task.name} has {len(run.train)} training examples; "
                             f"intersection_size is {cfg.intersection_size}")

    def start(self, run: Run) -> None:
        initial = run.lm.prompt_ids(run.cfg.initial_prompt)
        run.state.update(prompt=initial, position=0, replies=None, initial_len=len(initial))

    def step(self, run: Run, step: int) -> StepRecord:
        lm, task, train, cfg = run.lm, run.task, run.train, run.cfg
        assert isinstance(cfg, GreaterConfig)
        st = run.state
        t0 = time.perf_counter()
        details: dict[str, Any] = {}

        prompt = roundtrip(lm, st["prompt"])
        replies = _decode_replies(st["replies"])
        if prompt != st["prompt"]:  # the text does not give these tokens back: rebuild
            details["retokenized"] = True
            replies = None
        i = min(st["position"], len(prompt))
        if replies is None:
            replies = _replies(lm, task, train, prompt, cfg)
        before_acc = train_accuracy(task, train, replies)
        run.remember(lm.prompt_text(prompt), train_accuracy=before_acc, step=step - 1)

        allowed = allowed_mask(lm, cfg.token_filter)
        banned = banned_token(prompt, i)
        with lm.meter.phase("proposal"):
            logprobs = lm.next_token_logprobs([lm.head_ids(ex.input) + prompt[:i] for ex in train])
            if i == len(prompt):  # grow: a placeholder, the most likely allowed token on average
                mean = logprobs.mean(0).masked_fill(~allowed.to(logprobs.device), float("-inf"))
                if banned is not None:
                    mean[banned] = float("-inf")
                prompt = prompt + [int(mean.argmax())]
                details["placeholder"] = lm.decode([prompt[i]])
        if "placeholder" in details:  # the research code regenerates the reasoning here
            replies = _replies(lm, task, train, prompt, cfg)
        with lm.meter.phase("proposal"):
            candidates = propose_candidates(
                logprobs, allowed, top_k=cfg.top_k, n_intersections=cfg.n_intersections,
                intersection_size=cfg.intersection_size, min_candidates=cfg.min_candidates,
                top_k_growth=cfg.top_k_growth, current=prompt[i], banned=banned, rng=run.rng)
        with lm.meter.phase("gradient"):
            seqs = loss_sequences(lm, task, train, prompt, replies if cfg.use_reasoning else None)
            grad = onehot_gradients(lm, seqs, [i], torch.tensor(candidates),
                                    temperature=cfg.ce_temperature, weight=cfg.perplexity_weight,
                                    batch_size=cfg.grad_batch_size)
        g = grad.grad[0]
        g = g / g.norm().clamp(min=1e-12)
        order = torch.argsort(g).tolist()  # most negative first
        details.update(position=i, candidates=[lm.decode([c]) for c in candidates],
                       gradient=[round(float(x), 5) for x in g])

        shortlist = [candidates[k] for k in order[: max(cfg.n_rescore, 1)]]
        shortcut = period_shortcut([lm.decode([c]) for c in shortlist], i, st["initial_len"])
        new_replies: list[Response] | None = None
        if shortcut is not None:
            chosen = shortlist[shortcut]
            details["selected_by"] = "period"
        elif cfg.n_rescore == 0:
            chosen = shortlist[0]
            details["selected_by"] = "gradient"
        else:
            chosen, new_replies = self._rescore(run, prompt, i, shortlist, details)
            details["selected_by"] = "rescore"

        prompt[i] = chosen
        token_text = lm.decode([chosen])
        text = lm.prompt_text(prompt)
        new_acc = None
        if new_replies is not None and roundtrip(lm, prompt) == prompt:
            new_acc = train_accuracy(task, train, new_replies)
            run.remember(text, train_accuracy=new_acc, step=step)
        else:
            new_replies = None  # measured next step on the prompt rebuilt from this text
        st.update(prompt=prompt, replies=_encode_replies(new_replies),
                  position=next_position(i, len(prompt), token_text, cfg.max_prompt_tokens))
        details.update(chosen=token_text, train_accuracy_before=before_acc)
        return StepRecord(step=step, prompt=text, loss=grad.loss, train_accuracy=new_acc,
                          seconds=time.perf_counter() - t0, details=details)

    @staticmethod
    def _rescore(run: Run, prompt: list[int], i: int, shortlist: list[int],
                 details: dict[str, Any]) -> tuple[int, list[Response]]:
        """Regenerate replies for each shortlisted token at ``i``; the lowest score wins."""
        lm, task, train, cfg = run.lm, run.task, run.train, run.cfg
        assert isinstance(cfg, GreaterConfig)
        with lm.meter.phase("rescore"):
            edits = PromptEdits(tuple(prompt), i, tuple((c, *prompt[i + 1:]) for c in shortlist))
            replies = respond(lm, task, train, edits, max_new_tokens=cfg.max_new_tokens,
                              batch_size=cfg.batch_size)
            nll = _prompt_nll(lm, train, [edits.variant(v) for v in range(len(shortlist))])
        errors = [1 - train_accuracy(task, train, [row[v] for row in replies], strict=True)
                  for v in range(len(shortlist))]
        scores = [e + cfg.perplexity_weight / 10 * n for e, n in zip(errors, nll)]
        best = min(range(len(shortlist)), key=lambda v: (scores[v], -v))  # ties: later wins
        details.update(rescored=[lm.decode([c]) for c in shortlist],
                       rescore_scores=[round(s, 5) for s in scores])
        return shortlist[best], [row[best] for row in replies]

    def ranked(self, run: Run) -> list[PromptScore] | None:
        """By train accuracy; the last prompt is measured first if no step measured it."""
        st = run.state
        if st.get("replies") is None:
            cfg = run.cfg
            assert isinstance(cfg, GreaterConfig)
            prompt = roundtrip(run.lm, st["prompt"])
            replies = _replies(run.lm, run.task, run.train, prompt, cfg)
            run.remember(run.lm.prompt_text(prompt),
                         train_accuracy=train_accuracy(run.task, run.train, replies),
                         step=len(run.history))
        return None


def optimize(lm: LM, task: Task, config: GreaterConfig | None = None, **kwargs: Any):
    """Run GReaTer on ``task`` with ``lm`` (see :func:`greater.run.run_method` for the keywords:
    ``progress``, ``checkpoint``, ``preset``)."""
    from greater.methods import get_method

    return get_method("greater").optimize(lm, task, config, **kwargs)


__all__ = ["Greater", "optimize", "allowed_mask", "loss_sequences", "train_accuracy",
           "roundtrip", "MAX_PROMPT_TOKENS"]
