"""APE (Zhou et al. 2022): an optimiser LLM infers instructions from input/output demos.

Step 1 proposes ``n_candidates`` instructions, each from ``n_demos`` training pairs drawn with
the run's seed, and scores them (with the initial prompt) on the training subsample: every
candidate on every example (``selection="full"``) or with a UCB bandit (``"ucb"``). With
``resample`` a second step paraphrases the ``resample_top`` best (APE's iterative Monte Carlo
search, one round) and scores the variants the same way.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from greater.result import OptimizationResult
from greater.run_config import positive_int
from greater.tasks import Task
from tqdm.auto import tqdm

from baselines import prompts as P
from baselines.common import LLMOptimizerConfig, Run, Scorer, UCBBandit, default_engine, \
    step_record
from baselines.engines import ChatEngine

SELECTIONS = ("full", "ucb")


@dataclass(frozen=True)
class APEConfig(LLMOptimizerConfig):
    """Configuration of :func:`optimize` (APE). Defaults follow the APE paper.

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


def _score(run: Run, cfg: APEConfig, prompts: list[str]) -> dict[str, tuple[float, int]]:
    """Train accuracy estimate and evidence (examples scored) per prompt."""
    if cfg.selection == "full":
        return {p: (run.accuracy(p), len(run.train)) for p in prompts}
    bandit = UCBBandit(prompts, run.train, run.correct, run.rng, c=cfg.ucb_c)
    bandit.run(cfg.bandit_rounds, cfg.bandit_prompts_per_round, cfg.bandit_samples_per_round)
    return {p: (bandit.mean(p), bandit.n(p)) for p in bandit.arms}


def _collect(run: Run, replies: list[str]) -> tuple[list[str], int]:
    """The first valid instruction of each reply; and how many replies had none."""
    found, failures = [], 0
    for reply in replies:
        prompt = next((p for p in P.parse_prompts(reply) if run.valid(p)), None)
        if prompt is None:
            failures += 1
        else:
            found.append(prompt)
    return list(dict.fromkeys(found)), failures


def _record(run: Run, step: int, scores: dict[str, tuple[float, int]], t0: float, **details):
    for p, (acc, n) in scores.items():
        run.remember(p, train_accuracy=acc if n else None, step=step)
    best = max(scores, key=lambda p: (scores[p][0], scores[p][1]))
    run.add_step(step_record(
        step, best, scores[best][0], t0,
        scores=[{"prompt": p, "train_accuracy": a, "n_scored": n} for p, (a, n) in
                sorted(scores.items(), key=lambda kv: -kv[1][0])], **details))
    return best


def optimize(lm, task: Task, config: APEConfig | None = None, *,
             optimizer_llm: ChatEngine | None = None, progress: bool = True,
             checkpoint: str | os.PathLike | None = None,
             scorer: Scorer | None = None) -> OptimizationResult:
    """Run APE on ``task``; the optimiser LLM defaults to ``lm`` itself."""
    cfg = config or APEConfig()
    engine = default_engine(lm, optimizer_llm)
    run = Run("ape", lm, task, cfg, engine=engine, scorer=scorer, checkpoint=checkpoint)
    bar = tqdm(total=1 + cfg.resample, desc=f"APE {task.name}", disable=not progress)

    t0 = time.perf_counter()
    gold = {ex.input: ex.target for ex in run.train}
    messages = []
    for _ in range(cfg.n_candidates):
        demos = run.rng.sample(run.train, min(cfg.n_demos, len(run.train)))
        messages.append(P.ape_proposal([(ex.input, gold[ex.input]) for ex in demos]))
    proposals, failures = _collect(run, run.ask(messages))
    candidates = list(dict.fromkeys([cfg.initial_prompt, *proposals]))
    scores = _score(run, cfg, candidates)
    _record(run, 1, scores, t0, n_proposed=len(messages), n_valid=len(proposals),
            parse_failures=failures)
    bar.update()

    if cfg.resample:
        t0 = time.perf_counter()
        top = sorted(scores, key=lambda p: (-scores[p][0], -scores[p][1]))[: cfg.resample_top]
        messages = [P.resample(p) for p in top for _ in range(cfg.n_variants)]
        variants, failures = _collect(run, run.ask(messages))
        pool = list(dict.fromkeys([*top, *variants]))
        new = _score(run, cfg, pool)
        _record(run, 2, new, t0, n_proposed=len(messages), n_valid=len(variants),
                parse_failures=failures, resampled_from=top)
        bar.update()
    bar.close()
    return run.finish()
