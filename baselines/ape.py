"""APE (Zhou et al. 2022): an optimiser LLM infers instructions from input/output demos.

Step 1 proposes ``n_candidates`` instructions, each from ``n_demos`` training pairs drawn with
the run's seed, and scores them (with the initial prompt) on the training subsample: every
candidate on every example (``selection="full"``) or with a UCB bandit (``"ucb"``). With
``resample`` a second step paraphrases the ``resample_top`` best (APE's iterative Monte Carlo
search, one round) and scores the variants the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from greater.methods import register_method
from greater.result import StepRecord
from greater.run import Method, Run
from greater.run_config import LLMOptimizerConfig, positive_int

from baselines import prompts as P
from baselines.common import UCBBandit, first_valid_prompts, step_record

SELECTIONS = ("full", "ucb")


@dataclass(frozen=True)
class APEConfig(LLMOptimizerConfig):
    """Configuration of :class:`APE`. Defaults follow the APE paper.

    Attributes:
        n_candidates: instructions proposed (one optimiser call each; APE: 50).
        n_demos: input/output demos shown per proposal (APE: 5).
        selection: "full" scores every candidate on all training examples; "ucb" runs APE's
            UCB bandit over them.
        bandit_rounds: rounds of the bandit (APE: 20).
        bandit_prompts_per_round: candidates scored per round (APE: a third of 50, ~17).
        bandit_samples_per_round: new training examples per played candidate per round (5).
        ucb_c: exploration constant of UCB1.
        resample: run one resampling round (paraphrase the best candidates).
        resample_top: how many of the best candidates are paraphrased.
        n_variants: paraphrases per resampled candidate.
        optimizer_temperature: sampling temperature of proposals (APE: 0.9).
    """

    n_candidates: int = 50
    n_demos: int = 5
    selection: str = "full"
    bandit_rounds: int = 20
    bandit_prompts_per_round: int = 17
    bandit_samples_per_round: int = 5
    ucb_c: float = 1.0
    resample: bool = False
    resample_top: int = 5
    n_variants: int = 5
    optimizer_temperature: float = 0.9

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("n_candidates", "n_demos", "bandit_rounds", "bandit_prompts_per_round",
                     "bandit_samples_per_round", "resample_top", "n_variants"):
            positive_int(name, getattr(self, name))
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        if self.ucb_c < 0:
            raise ValueError(f"ucb_c must be >= 0, got {self.ucb_c}")


def _score(run: Run, cfg: APEConfig, prompts: list[str]) -> dict[str, list]:
    """Train accuracy estimate and evidence (examples scored) per prompt: ``[acc, n]``."""
    if cfg.selection == "full":
        return {p: [run.accuracy(p), len(run.train)] for p in prompts}
    bandit = UCBBandit(prompts, run.train, run.correct, run.rng, c=cfg.ucb_c)
    bandit.run(cfg.bandit_rounds, cfg.bandit_prompts_per_round, cfg.bandit_samples_per_round)
    return {p: [bandit.mean(p), bandit.n(p)] for p in bandit.arms}


def _record(run: Run, step: int, scores: dict[str, list], t0: float, **details) -> StepRecord:
    for p, (acc, n) in scores.items():
        run.remember(p, train_accuracy=acc if n else None, step=step)
    best = max(scores, key=lambda p: (scores[p][0], scores[p][1]))
    return step_record(
        step, best, scores[best][0], t0,
        scores=[{"prompt": p, "train_accuracy": a, "n_scored": n} for p, (a, n) in
                sorted(scores.items(), key=lambda kv: -kv[1][0])], **details)


@register_method("ape", config=APEConfig, uses_optimizer_llm=True,
                 summary="APE: an optimiser LLM infers instructions from demos; best by score")
class APE(Method):
    """APE. Step 1 proposes and scores; step 2 (with ``resample``) paraphrases the best.
    State: the scores of step 1 (``[accuracy, n_scored]`` per prompt)."""

    def n_steps(self, config) -> int:
        assert isinstance(config, APEConfig)
        return 1 + int(config.resample)

    def step(self, run: Run, step: int) -> StepRecord:
        cfg = run.cfg
        assert isinstance(cfg, APEConfig)
        t0 = time.perf_counter()
        if step == 1:
            gold = {ex.input: ex.target for ex in run.train}
            messages = []
            for _ in range(cfg.n_candidates):
                demos = run.rng.sample(run.train, min(cfg.n_demos, len(run.train)))
                messages.append(P.ape_proposal([(ex.input, gold[ex.input]) for ex in demos]))
            proposals, failures = first_valid_prompts(run, run.ask(messages))
            if not proposals:
                run.warn(f"none of the {len(messages)} proposals of the optimiser LLM held a "
                         "usable instruction; only the initial prompt was scored")
            candidates = list(dict.fromkeys([cfg.initial_prompt, *proposals]))
            scores = _score(run, cfg, candidates)
            run.state["scores"] = scores
            return _record(run, 1, scores, t0, n_proposed=len(messages),
                           n_valid=len(proposals), parse_failures=failures)
        scores = run.state["scores"]
        top = sorted(scores, key=lambda p: (-scores[p][0], -scores[p][1]))[: cfg.resample_top]
        messages = [P.resample(p) for p in top for _ in range(cfg.n_variants)]
        variants, failures = first_valid_prompts(run, run.ask(messages))
        if not variants:
            run.warn(f"none of the {len(messages)} paraphrases of the optimiser LLM held a "
                     "usable instruction")
        pool = list(dict.fromkeys([*top, *variants]))
        return _record(run, 2, _score(run, cfg, pool), t0, n_proposed=len(messages),
                       n_valid=len(variants), parse_failures=failures, resampled_from=top)
