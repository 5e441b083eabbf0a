"""APO / ProTeGi (Pryzant et al. 2023): textual gradients and beam search with a UCB bandit.

One round, for every prompt in the beam: score it on a random training minibatch, collect the
errors; ``n_gradients`` times show the optimiser ``errors_per_gradient`` of them and ask for
``gradients_per_error`` reasons the prompt failed (the "gradients"); for each reason ask for
``steps_per_gradient`` edited prompts, and for each edit ``mc_samples_per_step`` paraphrases.
At most ``max_expansion_factor`` new prompts per beam prompt survive (a seeded draw). The beam
plus the expansions are then ranked by a UCB bandit on the training subsample and the best
``beam_size`` form the next beam.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from greater.methods import register_method
from greater.result import StepRecord
from greater.run import Method, Run
from greater.run_config import LLMOptimizerConfig, positive_int

from baselines import prompts as P
from baselines.common import UCBBandit, step_record, valid_prompts


@dataclass(frozen=True)
class APOConfig(LLMOptimizerConfig):
    """Configuration of :class:`APO` (ProTeGi). Defaults follow the ProTeGi paper/code.

    Attributes:
        steps: beam-search rounds, one history step each (ProTeGi: 6).
        beam_size: prompts kept per round (4).
        minibatch_size: training examples scored to find errors (64; capped at ``n_train``).
        n_gradients: gradient requests per beam prompt (4).
        errors_per_gradient: errors shown per gradient request (4).
        gradients_per_error: reasons asked for (and kept) per request (1).
        steps_per_gradient: edited prompts asked for (and kept) per reason (1).
        mc_samples_per_step: paraphrases per edited prompt (2).
        max_expansion_factor: new prompts kept per beam prompt (8).
        eval_rounds: bandit rounds of the selection (8).
        eval_prompts_per_round: prompts played per bandit round (8).
        samples_per_eval: training examples per played prompt per round (32).
        ucb_c: exploration constant of UCB1 (1.0).
    """

    steps: int = 6
    beam_size: int = 4
    minibatch_size: int = 64
    n_gradients: int = 4
    errors_per_gradient: int = 4
    gradients_per_error: int = 1
    steps_per_gradient: int = 1
    mc_samples_per_step: int = 2
    max_expansion_factor: int = 8
    eval_rounds: int = 8
    eval_prompts_per_round: int = 8
    samples_per_eval: int = 32
    ucb_c: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("steps", "beam_size", "minibatch_size", "n_gradients",
                     "errors_per_gradient", "gradients_per_error", "steps_per_gradient",
                     "max_expansion_factor", "eval_rounds", "eval_prompts_per_round",
                     "samples_per_eval"):
            positive_int(name, getattr(self, name))
        if not isinstance(self.mc_samples_per_step, int) or self.mc_samples_per_step < 0:
            raise ValueError(f"mc_samples_per_step must be >= 0, got {self.mc_samples_per_step}")
        if self.ucb_c < 0:
            raise ValueError(f"ucb_c must be >= 0, got {self.ucb_c}")


def _expand(run: Run, cfg: APOConfig, beam: list[str], details: dict) -> dict[str, list[str]]:
    """New prompts per beam prompt (gradients -> edits -> paraphrases)."""
    failures = details["parse_failures"]
    requests = []  # (beam prompt, error triples)
    for prompt in beam:
        batch = run.rng.sample(run.train, min(cfg.minibatch_size, len(run.train)))
        errors = [(r.input, r.response, r.gold) for r in run.score(prompt, batch)
                  if not r.correct]
        details["minibatch_errors"].append(len(errors))
        for _ in range(cfg.n_gradients if errors else 0):
            requests.append((prompt, run.rng.sample(errors,
                                                    min(cfg.errors_per_gradient, len(errors)))))
    replies = run.ask([P.apo_gradient(p, errs, cfg.gradients_per_error) for p, errs in requests])
    edits_asked = []  # (beam prompt, errors, reason)
    for (prompt, errs), reply in zip(requests, replies):
        reasons = P.parse_reasons(reply)[: cfg.gradients_per_error]
        if not reasons:
            failures["gradient"] += 1
        details["gradients"].extend(reasons)
        edits_asked.extend((prompt, errs, r) for r in reasons)
    replies = run.ask([P.apo_edit(p, errs, reason, cfg.steps_per_gradient)
                       for p, errs, reason in edits_asked])
    edited: list[tuple[str, str]] = []  # (beam prompt, new prompt)
    for (prompt, _, _), reply in zip(edits_asked, replies):
        new = valid_prompts(run, reply, cfg.steps_per_gradient)
        if not new:
            failures["edit"] += 1
        edited.extend((prompt, p) for p in new)
    asked = [(parent, p) for parent, p in edited for _ in range(cfg.mc_samples_per_step)]
    replies = run.ask([P.resample(p) for _, p in asked])
    paraphrased = []
    for (parent, _), reply in zip(asked, replies):
        new = valid_prompts(run, reply, 1)
        if not new:
            failures["paraphrase"] += 1
        paraphrased.extend((parent, p) for p in new)
    out: dict[str, list[str]] = {p: [] for p in beam}
    for parent, p in edited + paraphrased:
        if p not in out[parent] and p not in beam:
            out[parent].append(p)
    for parent, kids in out.items():
        if len(kids) > cfg.max_expansion_factor:
            out[parent] = run.rng.sample(kids, cfg.max_expansion_factor)
    return out


@register_method("apo", config=APOConfig, uses_optimizer_llm=True,
                 summary="APO/ProTeGi: textual gradients from errors, beam search with a bandit")
class APO(Method):
    """ProTeGi. State: the beam (prompts, best first)."""

    def start(self, run: Run) -> None:
        run.state["beam"] = [run.cfg.initial_prompt]

    def step(self, run: Run, step: int) -> StepRecord:
        cfg = run.cfg
        assert isinstance(cfg, APOConfig)
        t0 = time.perf_counter()
        details: dict = {"minibatch_errors": [], "gradients": [],
                         "parse_failures": {"gradient": 0, "edit": 0, "paraphrase": 0}}
        beam_before = list(run.state["beam"])
        expansions = _expand(run, cfg, beam_before, details)
        pool = list(dict.fromkeys([*beam_before,
                                   *(p for kids in expansions.values() for p in kids)]))
        if len(pool) == len(beam_before):
            run.warn(f"step {step}: the optimiser LLM produced no new prompt "
                     f"(parse failures: {details['parse_failures']})")
        bandit = UCBBandit(pool, run.train, run.correct, run.rng, c=cfg.ucb_c)
        bandit.run(cfg.eval_rounds, cfg.eval_prompts_per_round, cfg.samples_per_eval)
        beam = bandit.ranked()[: cfg.beam_size]
        for p in beam:
            run.remember(p, train_accuracy=bandit.mean(p) if bandit.n(p) else None, step=step)
        run.state["beam"] = beam
        return step_record(
            step, beam[0], bandit.mean(beam[0]) if bandit.n(beam[0]) else None, t0,
            n_candidates=len(pool), n_new=len(pool) - len(beam_before),
            beam=[{"prompt": p, "train_accuracy": bandit.mean(p), "n_scored": bandit.n(p)}
                  for p in beam], **details)
