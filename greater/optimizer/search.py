"""GReaTer: prompt search with gradients over the model's own reasoning.

One step edits one prompt position ``i``:

1. reasoning: greedy replies (reasoning, extractor, answer) of every training example under the
   current prompt — reused from the previous step's re-scoring when the winner's replies exist;
2. proposal: candidates for position ``i`` from the examples' next-token distributions;
3. gradient: one-hot gradient over the candidates of CE(answer) + lambda * prompt NLL through
   question, prompt, reasoning and extractor (the reasoning is fixed context);
4. selection: the ``n_rescore`` most negative candidates are re-scored by regenerating replies
   (error rate + lambda/10 * prompt NLL), all candidates sharing one prefill of question and
   prompt prefix; with ``n_rescore = 0`` the gradient's argmin is taken;
5. walk: the next position (the prompt grows at its end, wraps to 0 after a closing ".").

The best prompts seen (by train accuracy) are compared on dev, and the winner scored on test.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from greater.evaluate import score_examples
from greater.lm import LM
from greater.lm.gradients import (
    LossSequence,
    next_token_logprobs,
    onehot_gradients,
    target_logprobs,
)
from greater.optimizer.candidates import allowed_token_mask, propose_candidates
from greater.optimizer.config import GreaterConfig
from greater.responses import PromptEdits, Response, respond
from greater.result import OptimizationResult, PromptScore, StepRecord
from greater.seeding import seed_everything
from greater.selection import choose_final
from greater.tasks import Example, Task
from greater.versions import library_versions

logger = logging.getLogger(__name__)


@dataclass
class _State:
    prompt: list[int]
    position: int = 0
    replies: list[Response] | None = None  # replies of the training examples to `prompt`
    contenders: dict[str, PromptScore] = field(default_factory=dict)


def allowed_mask(lm: LM, mode: str) -> torch.Tensor:
    """``[V]`` bool mask of the tokens ``mode`` permits in a prompt (cached on the LM)."""
    cache = lm.__dict__.setdefault("_allowed_masks", {})
    if mode not in cache:
        special = [i for i in lm.tokenizer.all_special_ids]
        vocab = lm.vocab_strings()
        mask = allowed_token_mask(vocab, special, mode)
        rows = lm.embedding_layer.weight.shape[0]
        if len(mask) < rows:  # embedding rows beyond the tokenizer are padding, never tokens
            mask = torch.cat([mask, torch.zeros(rows - len(mask), dtype=torch.bool)])
        cache[mode] = mask[:rows]
    return cache[mode]


def _train_accuracy(task: Task, examples: list[Example], replies: list[Response]) -> float:
    return sum(task.is_correct(r.text, ex) for ex, r in zip(examples, replies)) / len(examples)


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


def _proposal_logprobs(lm: LM, examples: list[Example], prefix: list[int]) -> torch.Tensor:
    """``[B, V]`` log-probs of the token after ``head + prefix`` per example."""
    return next_token_logprobs(lm, [lm.head_ids(ex.input) + prefix for ex in examples])


def _prompt_nll(lm: LM, examples: list[Example], prompts: list[list[int]]) -> list[float]:
    """Mean (over examples) of the mean NLL of each prompt's tokens after its question.

    All ``prompts x examples`` rows go through one batched call."""
    heads = [lm.head_ids(ex.input) for ex in examples]
    logps = target_logprobs(lm, [h for _ in prompts for h in heads],
                            [p for p in prompts for _ in heads])
    n = len(examples)
    return [float(torch.stack([-lp.mean() for lp in logps[k * n:(k + 1) * n]]).mean())
            for k in range(len(prompts))]


def _step(lm: LM, task: Task, train: list[Example], cfg: GreaterConfig, state: _State,
          rng, initial_len: int, step_no: int) -> StepRecord:
    """Run optimisation step ``step_no`` (1-based) on ``state``; return its record."""
    meter = lm.meter
    t0 = time.perf_counter()
    details: dict = {}
    if state.replies is None:
        with meter.phase("reasoning"):
            state.replies = [r[0] for r in respond(lm, task, train, state.prompt,
                                                   max_new_tokens=cfg.max_new_tokens,
                                                   batch_size=cfg.batch_size)]
    before_acc = _train_accuracy(task, train, state.replies)
    _remember(state, lm, before_acc, step_no - 1)  # the prompt as the previous step left it

    i = state.position
    prompt = list(state.prompt)
    allowed = allowed_mask(lm, cfg.token_filter)
    with meter.phase("proposal"):
        logprobs = _proposal_logprobs(lm, train, prompt[:i])
        if i == len(prompt):  # grow: a placeholder, the most likely allowed token on average
            mean = logprobs.mean(0).masked_fill(~allowed, float("-inf"))
            if i > 0:
                mean[prompt[i - 1]] = float("-inf")
            prompt.append(int(mean.argmax()))
        candidates = propose_candidates(
            logprobs, allowed, top_k=cfg.top_k, n_intersections=cfg.n_intersections,
            intersection_size=cfg.intersection_size, min_candidates=cfg.min_candidates,
            top_k_growth=cfg.top_k_growth, current=prompt[i],
            banned=prompt[i - 1] if i > 0 else None, rng=rng)
    with meter.phase("gradient"):
        seqs = loss_sequences(lm, task, train, prompt,
                               state.replies if cfg.use_reasoning else None)
        grad = onehot_gradients(lm, seqs, [i], torch.tensor(candidates),
                                temperature=cfg.ce_temperature, weight=cfg.perplexity_weight,
                                batch_size=cfg.grad_batch_size)
    g = grad.grad[0]
    g = g / g.norm().clamp(min=1e-12)
    order = torch.argsort(g).tolist()  # most negative first
    details.update(position=i, candidates=[lm.decode([c]) for c in candidates],
                   gradient=[round(float(x), 5) for x in g])

    if cfg.n_rescore == 0:
        chosen = candidates[order[0]]
        new_replies = None
        new_acc = None
    else:
        shortlist = [candidates[k] for k in order[: cfg.n_rescore]]
        with meter.phase("rescore"):
            edits = PromptEdits(tuple(prompt), i, tuple((c, *prompt[i + 1:]) for c in shortlist))
            replies = respond(lm, task, train, edits, max_new_tokens=cfg.max_new_tokens,
                              batch_size=cfg.batch_size)
            nll = _prompt_nll(lm, train, [edits.variant(v) for v in range(len(shortlist))])
        accs = [_train_accuracy(task, train, [row[v] for row in replies])
                for v in range(len(shortlist))]
        scores = [(1 - acc) + cfg.perplexity_weight / 10 * n for acc, n in zip(accs, nll)]
        best_v = min(range(len(shortlist)), key=lambda v: (scores[v], -v))  # ties: later wins
        chosen = shortlist[best_v]
        new_replies = [row[best_v] for row in replies]
        new_acc = accs[best_v]
        details.update(rescored=[lm.decode([c]) for c in shortlist],
                       rescore_scores=[round(s, 5) for s in scores])

    prompt[i] = chosen
    token_text = lm.decode([chosen])
    truncated = "." in token_text and i >= initial_len // 2 and i < len(prompt) - 1
    if truncated:
        prompt = prompt[: i + 1]
    if "." in token_text and (truncated or i == len(prompt) - 1):
        next_pos = 0
    else:
        next_pos = i + 1
    if next_pos >= cfg.max_prompt_tokens:
        next_pos = 0
    state.prompt = prompt
    state.position = next_pos
    state.replies = new_replies  # the winner's replies are the next step's reasoning
    text = lm.prompt_text(prompt)
    if new_acc is not None:
        _remember(state, lm, new_acc, step_no)
    details.update(chosen=token_text, truncated=truncated,
                   train_accuracy_before=before_acc)
    return StepRecord(step=step_no, prompt=text, loss=grad.loss, train_accuracy=new_acc,
                      seconds=time.perf_counter() - t0, details=details)


def _remember(state: _State, lm: LM, train_acc: float, step: int) -> None:
    """Keep the current prompt as a contender for the final choice (first sighting wins)."""
    text = lm.prompt_text(state.prompt)
    if text not in state.contenders:
        state.contenders[text] = PromptScore(prompt=text, train_accuracy=train_acc, step=step)


def optimize(lm: LM, task: Task, config: GreaterConfig | None = None, *,
             progress: bool = True, checkpoint: str | os.PathLike | None = None
             ) -> OptimizationResult:
    """Run GReaTer on ``task`` with ``lm`` and return the chosen prompt, its scores and cost.

    ``checkpoint``: if given, the partial result (history so far) is written there atomically
    after every step, so an interrupted run loses at most the step in flight.
    """
    cfg = config or GreaterConfig()
    rng = seed_everything(cfg.seed)
    train = task.train[: cfg.n_train]
    if len(train) < cfg.intersection_size:
        raise ValueError(f"{task.name} has {len(train)} training examples; "
                         f"intersection_size is {cfg.intersection_size}")
    start_cost = lm.meter.snapshot()
    initial = lm.prompt_ids(cfg.initial_prompt)
    state = _State(prompt=list(initial))
    history: list[StepRecord] = []

    def result(dev=None, test=None, best=None) -> OptimizationResult:
        return OptimizationResult(
            method="greater", model=lm.name, task=task.name, initial_prompt=cfg.initial_prompt,
            best_prompt=best or lm.prompt_text(state.prompt), dev_accuracy=dev,
            test_accuracy=test, history=history, contenders=list(state.contenders.values()),
            cost=lm.meter.snapshot() - start_cost, config=cfg.to_dict(), seed=cfg.seed,
            versions=library_versions())

    bar = tqdm(range(cfg.steps), desc=f"GReaTer {task.name}", disable=not progress)
    for step in bar:
        record = _step(lm, task, train, cfg, state, rng, len(initial), step + 1)
        history.append(record)
        bar.set_postfix(pos=record.details["position"],
                        acc=record.details["train_accuracy_before"],
                        prompt=record.prompt[:40])
        logger.info("step %d pos %d -> %r (loss %.4f)", step + 1, record.details["position"],
                    record.prompt, record.loss)
        if checkpoint is not None:
            result().save(checkpoint)
    if state.replies is None:  # the last prompt has not been measured on train yet
        with lm.meter.phase("reasoning"):
            replies = [r[0] for r in respond(lm, task, train, state.prompt,
                                             max_new_tokens=cfg.max_new_tokens,
                                             batch_size=cfg.batch_size)]
        _remember(state, lm, _train_accuracy(task, train, replies), cfg.steps)

    best, dev_acc, test_acc = _choose_final(lm, task, cfg, state)
    out = result(dev_acc, test_acc, best)
    if checkpoint is not None:
        out.save(checkpoint)
    return out


def _choose_final(lm: LM, task: Task, cfg: GreaterConfig, state: _State):
    """Compare the best contenders (by train accuracy, later steps first) on dev."""
    ranked = sorted(state.contenders.values(),
                    key=lambda c: (-(c.train_accuracy or 0.0), -(c.step or 0)))

    def scorer(prompt: str, examples):
        return score_examples(lm, task, examples, lm.prompt_ids(prompt),
                              max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size)

    best, test_acc = choose_final(task, ranked, scorer, lm.meter, n_contenders=cfg.n_contenders,
                                  n_dev=cfg.n_dev, n_test=cfg.n_test)
    return best.prompt, best.dev_accuracy, test_acc
