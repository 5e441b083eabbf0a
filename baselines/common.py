"""What every baseline shares: config fields, the training subsample, scoring a prompt, the UCB
bandit, the final dev choice + test, and building the :class:`OptimizationResult`.

A baseline module is only its search strategy: it opens a :class:`Run`, scores prompts through
``run.score`` / ``run.accuracy``, asks its optimiser LLM through ``run.ask``, appends
:class:`StepRecord` s with ``run.add_step`` and returns ``run.finish(...)``.

Scoring is injectable: a :data:`Scorer` maps (prompt text, examples) to per-example
:class:`~greater.evaluate.ExampleRecord` s. The default :class:`ModelScorer` generates with the
task model (greedy, as everywhere in the library) and caches records per (prompt, question),
so a prompt is never re-generated on an example it has already answered.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from greater.evaluate import ExampleRecord, accuracy, score_examples
from greater.lm.model import PromptError
from greater.result import OptimizationResult, PromptScore, StepRecord
from greater.run_config import RunConfig as BaseConfig
from greater.run_config import positive_int
from greater.seeding import seed_everything
from greater.selection import Scorer, choose_final
from greater.tasks import Example, Task
from greater.versions import library_versions

from baselines.engines import ChatEngine, LocalEngine

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class LLMOptimizerConfig(BaseConfig):
    """Fields of the baselines driven by an optimiser LLM.

    Attributes:
        optimizer_max_new_tokens: bound on each reply of the optimiser LLM.
        optimizer_temperature: sampling temperature of the optimiser LLM (0: greedy).
    """

    optimizer_max_new_tokens: int = 256
    optimizer_temperature: float = 0.7

    def __post_init__(self) -> None:
        super().__post_init__()
        positive_int("optimizer_max_new_tokens", self.optimizer_max_new_tokens)
        if not isinstance(self.optimizer_temperature, (int, float)) or \
                self.optimizer_temperature < 0:
            raise ValueError(f"optimizer_temperature must be >= 0, "
                             f"got {self.optimizer_temperature!r}")


def train_subsample(task: Task, n_train: int) -> list[Example]:
    """The training examples of a run: the first ``n_train`` (the same ones GReaTer uses)."""
    train = task.train[:n_train]
    if not train:
        raise ValueError(f"{task.name} has no training examples")
    return train


class ModelScorer:
    """The default :data:`Scorer`: greedy replies of the task model, cached per example."""

    def __init__(self, lm, task: Task, *, max_new_tokens: int, batch_size: int) -> None:
        self.lm, self.task = lm, task
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self._cache: dict[tuple[str, str], ExampleRecord] = {}

    def __call__(self, prompt: str, examples: Sequence[Example]) -> list[ExampleRecord]:
        todo = [ex for ex in dict.fromkeys(examples) if (prompt, ex.input) not in self._cache]
        if todo:
            records = score_examples(self.lm, self.task, todo, self.lm.prompt_ids(prompt),
                                     max_new_tokens=self.max_new_tokens,
                                     batch_size=self.batch_size)
            for ex, rec in zip(todo, records):
                self._cache[(prompt, ex.input)] = rec
        return [self._cache[(prompt, ex.input)] for ex in examples]


class UCBBandit:
    """UCB1 over prompts (APE's and ProTeGi's bandit selection).

    Each round the ``arms_per_round`` prompts with the highest upper confidence bound
    ``mean + c * sqrt(ln t / n)`` (unplayed arms first) are scored on ``samples_per_round``
    training examples they have not seen yet; an arm that has seen every example is exact and
    no longer played.
    """

    def __init__(self, arms: Sequence[str], examples: Sequence[Example],
                 correct: Callable[[str, Sequence[Example]], list[bool]], rng: random.Random,
                 *, c: float) -> None:
        self.arms = list(dict.fromkeys(arms))
        self.examples = list(examples)
        self.correct = correct
        self.rng = rng
        self.c = c
        self.hits = {a: 0 for a in self.arms}
        self.seen: dict[str, set[int]] = {a: set() for a in self.arms}
        self.t = 0

    def n(self, arm: str) -> int:
        return len(self.seen[arm])

    def mean(self, arm: str) -> float:
        return self.hits[arm] / self.n(arm) if self.n(arm) else 0.0

    def ucb(self, arm: str) -> float:
        if not self.n(arm):
            return math.inf
        return self.mean(arm) + self.c * math.sqrt(math.log(max(self.t, 1)) / self.n(arm))

    def run(self, rounds: int, arms_per_round: int, samples_per_round: int) -> int:
        """Play ``rounds`` rounds; returns how many (arm, example) scores were drawn."""
        drawn = 0
        for _ in range(rounds):
            live = [a for a in self.arms if self.n(a) < len(self.examples)]
            if not live:
                break
            self.t += 1
            order = sorted(range(len(live)), key=lambda i: (-self.ucb(live[i]), i))
            for arm in [live[i] for i in order[:arms_per_round]]:
                unseen = [i for i in range(len(self.examples)) if i not in self.seen[arm]]
                pick = sorted(self.rng.sample(unseen, min(samples_per_round, len(unseen))))
                results = self.correct(arm, [self.examples[i] for i in pick])
                self.hits[arm] += sum(bool(r) for r in results)
                self.seen[arm].update(pick)
                drawn += len(pick)
        return drawn

    def ranked(self) -> list[str]:
        """Arms by estimated accuracy (ties: more evidence, then original order)."""
        return sorted(self.arms, key=lambda a: (-self.mean(a), -self.n(a), self.arms.index(a)))


class Run:
    """The shared state of one baseline run: data, scoring, optimiser LLM, history, cost."""

    def __init__(self, method: str, lm, task: Task, config: BaseConfig, *,
                 engine: ChatEngine | None = None, scorer: Scorer | None = None,
                 checkpoint: str | os.PathLike | None = None) -> None:
        self.method, self.lm, self.task, self.cfg = method, lm, task, config
        self.rng = seed_everything(config.seed)
        self.train = train_subsample(task, config.n_train)
        self.engine = engine
        self.scorer: Scorer = scorer or ModelScorer(lm, task, max_new_tokens=config.max_new_tokens,
                                                    batch_size=config.batch_size)
        self.checkpoint = checkpoint
        self.history: list[StepRecord] = []
        self.contenders: dict[str, PromptScore] = {}
        self._t0 = time.perf_counter()
        self._start = lm.meter.snapshot()
        self._separate_engine = engine is not None and engine.meter is not lm.meter
        self._engine_start = engine.meter.snapshot() if self._separate_engine else None

    # -------------------------------------------------------------- scoring
    def valid(self, prompt: str | None) -> bool:
        """Whether the task model accepts ``prompt`` (non-empty, within the token limit)."""
        if not prompt:
            return False
        try:
            self.lm.prompt_ids(prompt)
        except PromptError:
            return False
        return True

    def score(self, prompt: str, examples: Sequence[Example]) -> list[ExampleRecord]:
        with self.lm.meter.phase("score"):
            return self.scorer(prompt, examples)

    def correct(self, prompt: str, examples: Sequence[Example]) -> list[bool]:
        return [r.correct for r in self.score(prompt, examples)]

    def accuracy(self, prompt: str, examples: Sequence[Example] | None = None) -> float:
        return accuracy(self.score(prompt, self.train if examples is None else examples))

    # -------------------------------------------------------------- optimiser LLM
    def ask(self, messages: Sequence[str], *, temperature: float | None = None) -> list[str]:
        """Replies of the optimiser LLM, one per message (seeded from the run's generator)."""
        if not messages:
            return []
        assert self.engine is not None, "this method has no optimiser LLM"
        cfg = self.cfg
        assert isinstance(cfg, LLMOptimizerConfig)
        seed = self.rng.randrange(2 ** 31)
        with self.lm.meter.phase("optimizer"):
            replies = self.engine.complete(
                list(messages), max_new_tokens=cfg.optimizer_max_new_tokens,
                temperature=cfg.optimizer_temperature if temperature is None else temperature,
                seed=seed)
        if len(replies) != len(messages):
            raise RuntimeError(f"optimiser engine returned {len(replies)} replies for "
                               f"{len(messages)} messages")
        return replies

    # -------------------------------------------------------------- bookkeeping
    def remember(self, prompt: str, *, train_accuracy: float | None, step: int) -> PromptScore:
        """Keep ``prompt`` as a contender (first sighting wins; a later train score updates)."""
        c = self.contenders.get(prompt)
        if c is None:
            c = self.contenders[prompt] = PromptScore(prompt=prompt, train_accuracy=train_accuracy,
                                                      step=step)
        elif train_accuracy is not None:
            c.train_accuracy = train_accuracy
        return c

    def add_step(self, record: StepRecord) -> None:
        self.history.append(record)
        logger.info("%s step %d: %r (train acc %s)", self.method, record.step, record.prompt,
                    record.train_accuracy)
        if self.checkpoint is not None:
            self.result().save(self.checkpoint)

    def cost(self):
        cost = self.lm.meter.snapshot() - self._start
        if self._separate_engine:
            assert self.engine is not None and self._engine_start is not None
            cost = cost + (self.engine.meter.snapshot() - self._engine_start)
        cost.wall_seconds = time.perf_counter() - self._t0
        return cost

    def result(self, best: str | None = None, dev: float | None = None,
               test: float | None = None) -> OptimizationResult:
        if best is None:
            best = self.history[-1].prompt if self.history else self.cfg.initial_prompt
        config = self.cfg.to_dict()
        if self.engine is not None:
            config["optimizer_llm"] = self.engine.name
        return OptimizationResult(
            method=self.method, model=self.lm.name, task=self.task.name,
            initial_prompt=self.cfg.initial_prompt, best_prompt=best, dev_accuracy=dev,
            test_accuracy=test, history=list(self.history),
            contenders=list(self.contenders.values()), cost=self.cost(), config=config,
            seed=self.cfg.seed, versions=library_versions())

    def ranked_by_train(self) -> list[PromptScore]:
        """Contenders by train accuracy (unknown last), then latest first."""
        return sorted(self.contenders.values(),
                      key=lambda c: (c.train_accuracy is None, -(c.train_accuracy or 0.0),
                                     -(c.step or 0)))

    def finish(self, ranked: Sequence[PromptScore] | None = None) -> OptimizationResult:
        """Score the first ``n_contenders`` of ``ranked`` on dev, the winner on test.

        ``ranked`` defaults to :meth:`ranked_by_train`. Ties on dev go to the higher-ranked
        prompt. Same rule as GReaTer's final choice.
        """
        cfg = self.cfg
        ranked = list(ranked) if ranked is not None else self.ranked_by_train()
        if not ranked:
            ranked = [self.remember(cfg.initial_prompt, train_accuracy=None, step=0)]
        best, test_acc = choose_final(self.task, ranked, self.scorer, self.lm.meter,
                                      n_contenders=cfg.n_contenders, n_dev=cfg.n_dev,
                                      n_test=cfg.n_test)
        out = self.result(best.prompt, best.dev_accuracy, test_acc)
        if self.checkpoint is not None:
            out.save(self.checkpoint)
        return out


def default_engine(lm, engine: ChatEngine | None) -> ChatEngine:
    """The optimiser LLM of a run: ``engine``, else the task model itself."""
    return engine if engine is not None else LocalEngine(lm)


def step_record(step: int, prompt: str, train_accuracy: float | None, t0: float,
                **details: Any) -> StepRecord:
    """A step of an LLM baseline; its loss is the training error rate (1 - accuracy)."""
    loss = None if train_accuracy is None else 1.0 - train_accuracy
    return StepRecord(step=step, prompt=prompt, loss=loss, train_accuracy=train_accuracy,
                      seconds=time.perf_counter() - t0, details=details)
