"""APE (Zhou et al. 2022): an optimiser LLM infers instructions from input/output demos.

Step 1 proposes ``n_candidates`` instructions, each from ``n_demos`` training pairs drawn with
the run's seed, and scores them (with the initial prompt) on the training subsample: every
candidate on every example (``selection="full"``) or with a UCB bandit (``"ucb"``). With
``resample`` a second step paraphrases the ``resample_top`` best (APE's iterative Monte Carlo
search, one round) and scores the variants the same way.

Two scorers: ``"accuracy"`` (the task model's greedy replies, right or wrong) and
``"likelihood"``, APE's default, the log-probability of the gold answer given the question
and the instruction (:func:`answer_logprobs`). Likelihood scores are not accuracies: they are
kept in the step details and as the step's loss (their negative), and contenders are ranked by
them for the final choice on dev.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

from greater.methods import register_method
from greater.optimizer.search import loss_sequences
from greater.result import PromptScore, StepRecord
from greater.run import Method, Run
from greater.run_config import LLMOptimizerConfig, positive_int
from greater.tasks import Example

from baselines import prompts as P
from baselines.common import UCBBandit, first_valid_prompts, step_record

SELECTIONS = ("full", "ucb")
SCORERS = ("accuracy", "likelihood")


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
        scorer: "accuracy" (generation accuracy on the training examples) or "likelihood"
            (APE's default: the mean log-probability of the gold answer, teacher-forced; see
            :func:`answer_logprobs`).
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
    scorer: str = "accuracy"

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("n_candidates", "n_demos", "bandit_rounds", "bandit_prompts_per_round",
                     "bandit_samples_per_round", "resample_top", "n_variants"):
            positive_int(name, getattr(self, name))
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        if self.ucb_c < 0:
            raise ValueError(f"ucb_c must be >= 0, got {self.ucb_c}")
        if self.scorer not in SCORERS:
            raise ValueError(f"scorer must be one of {SCORERS}, got {self.scorer!r}")


def answer_logprobs(run: Run, prompt: str, examples: Sequence[Example]) -> list[float]:
    """Per example, the mean log-probability of the gold answer's tokens, teacher-forced.

    The context is ``head(question) | prompt | tail | extractor`` and the target the answer's
    tokens, laid out as :func:`greater.optimizer.search.loss_sequences` does with no reasoning:
    the model is asked to answer right after the prompt, as APE's likelihood scorer does.
    """
    lm = run.lm
    seqs = loss_sequences(lm, run.task, list(examples), lm.prompt_ids(prompt), None)
    with run.meter.phase("score"):
        logps = lm.target_logprobs([s.ids[:-s.answer_len] for s in seqs],
                                  [s.ids[-s.answer_len:] for s in seqs],
                                  batch_size=run.cfg.batch_size)
    return [float(lp.mean()) for lp in logps]


def _score(run: Run, cfg: APEConfig, prompts: list[str]) -> dict[str, list]:
    """Mean score and evidence (examples scored) per prompt: ``[score, n]``; prompts already
    scored on every training example in an earlier step keep that score."""
    def metric(prompt: str, examples: Sequence[Example]) -> list[float]:
        if cfg.scorer == "likelihood":
            return answer_logprobs(run, prompt, examples)
        return [float(c) for c in run.correct(prompt, examples)]

    if cfg.selection == "full":
        known = run.state.get("scores", {})
        out = {}
        for p in prompts:
            if p in known and known[p][1] == len(run.train):
                out[p] = known[p]
            else:
                values = metric(p, run.train)
                out[p] = [sum(values) / len(values), len(values)]
        return out
    bandit = UCBBandit(prompts, run.train, metric, run.rng, c=cfg.ucb_c)
    bandit.run(cfg.bandit_rounds, cfg.bandit_prompts_per_round, cfg.bandit_samples_per_round)
    return {p: [bandit.mean(p), bandit.n(p)] for p in bandit.arms}


def _best_first(scores: dict[str, list]) -> list[str]:
    """Prompts by mean score, more evidence first on ties, unscored (``n == 0``) last."""
    return sorted(scores, key=lambda p: (not scores[p][1], -scores[p][0], -scores[p][1]))


def _record(run: Run, cfg: APEConfig, step: int, scores: dict[str, list], t0: float,
            **details) -> StepRecord:
    """Remember the scored prompts, add them to ``run.state["scores"]``, make the record."""
    run.state.setdefault("scores", {}).update(scores)
    likelihood = cfg.scorer == "likelihood"
    for p, (value, n) in scores.items():
        run.remember(p, train_accuracy=value if n and not likelihood else None, step=step)
    order = _best_first(scores)
    best = order[0]
    key = "answer_logprob" if likelihood else "train_accuracy"
    table = [{"prompt": p, key: scores[p][0], "n_scored": scores[p][1]} for p in order]
    if not likelihood:
        return step_record(step, best, scores[best][0], t0, scores=table, **details)
    return StepRecord(step=step, prompt=best, loss=-scores[best][0], train_accuracy=None,
                      seconds=time.perf_counter() - t0, details={"scores": table, **details})


@register_method("ape", config=APEConfig, uses_optimizer_llm=True,
                 summary="APE: an optimiser LLM infers instructions from demos; best by score")
class APE(Method):
    """APE. Step 1 proposes and scores; step 2 (with ``resample``) paraphrases the best.
    State: the scores so far (``[mean score, n_scored]`` per prompt)."""

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
            return _record(run, cfg, 1, _score(run, cfg, candidates), t0,
                           n_proposed=len(messages), n_valid=len(proposals),
                           parse_failures=failures)
        scores = run.state["scores"]
        top = _best_first(scores)[: cfg.resample_top]
        messages = [P.resample(p) for p in top for _ in range(cfg.n_variants)]
        variants, failures = first_valid_prompts(run, run.ask(messages))
        if not variants:
            run.warn(f"none of the {len(messages)} paraphrases of the optimiser LLM held a "
                     "usable instruction")
        pool = list(dict.fromkeys([*top, *variants]))
        return _record(run, cfg, 2, _score(run, cfg, pool), t0, n_proposed=len(messages),
                       n_valid=len(variants), parse_failures=failures, resampled_from=top)

    def ranked(self, run: Run) -> list[PromptScore] | None:
        """With the likelihood scorer: the scored prompts by mean answer log-probability
        (unscored last); with accuracy: None, i.e. by train accuracy."""
        if run.cfg.scorer != "likelihood":
            return None
        return [run.contenders[p] for p in _best_first(run.state["scores"])]
