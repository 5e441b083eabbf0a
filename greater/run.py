"""One run lifecycle for every method: GReaTer and each baseline are only their search strategy.

A method is a :class:`Method` subclass registered with
:func:`~greater.methods.register_method`. :func:`run_method` gives it a :class:`Run` (training
examples, a cached scorer, the optimiser LLM, the cost meter, the contenders, a JSON-able
``state``) and drives it:

1. resume: a checkpoint holding a partial run of the same method, model, dtype, task data and
   config continues after its last finished step (a finished one is returned as it is; any other
   is refused with :class:`ResumeError`);
2. ``method.start(run)`` (fresh runs only), then ``method.step(run, k)`` for each remaining step,
   the checkpoint rewritten atomically after every step with what a resume needs (``run.state``,
   the random generators' states and the scorer's cache), so a killed run loses at most the step
   in flight and ends exactly as an uninterrupted one;
3. the final choice: the best contenders (``method.ranked(run)``, else by train accuracy) are
   compared on dev and the winner scored on test, strict and flexible; the initial prompt is
   scored too, so a run that improved nothing shows it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import torch
from tqdm.auto import tqdm

from greater.cost import CostCounters
from greater.engines import ChatEngine, LocalEngine
from greater.evaluate import ExampleRecord, accuracy, score_examples
from greater.lm import LM, PromptError
from greater.provenance import provenance, scrub
from greater.result import OptimizationResult, PromptScore, StepRecord
from greater.run_config import LLMOptimizerConfig, RunConfig
from greater.seeding import seed_everything
from greater.selection import FinalChoice, Scorer, choose_final
from greater.tasks import Example, Task
from greater.versions import library_versions

if TYPE_CHECKING:
    from greater.methods import MethodSpec

logger = logging.getLogger(__name__)


class ResumeError(ValueError):
    """A checkpoint that cannot be continued by this run (another method, model or config)."""


class Method:
    """The part of a method that differs: its search strategy. Subclass and register it.

    All state that must survive from one step to the next lives in ``run.state`` (JSON-able:
    numbers, strings, lists, dicts), never on ``self``: that is what makes every method
    resumable without code of its own.
    """

    method_name: ClassVar[str] = ""

    def check(self, run: "Run") -> None:
        """Refuse, before any work, what the config allows but this LM or task does not."""

    def start(self, run: "Run") -> None:
        """Fill ``run.state`` before step 1 (not called when resuming)."""

    def step(self, run: "Run", step: int) -> StepRecord:
        """Run step ``step`` (1-based) and return its record."""
        raise NotImplementedError

    def ranked(self, run: "Run") -> list[PromptScore] | None:
        """Contenders in the order the final choice considers them (None: by train accuracy)."""
        return None

    def n_steps(self, config: RunConfig) -> int:
        """How many steps a run of ``config`` makes."""
        return int(getattr(config, "steps"))


class ModelScorer:
    """The default :data:`~greater.selection.Scorer`: greedy replies of the task model, cached
    per (prompt, question), so a prompt never answers the same example twice in a run."""

    takes_label = True  # shows a progress bar named by the label when ``progress`` is on

    def __init__(self, lm: LM, task: Task, *, max_new_tokens: int, batch_size: int,
                 progress: bool = False) -> None:
        self.lm, self.task = lm, task
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.progress = progress
        self.cache: dict[tuple[str, str], ExampleRecord] = {}

    def __call__(self, prompt: str, examples: Sequence[Example],
                 label: str | None = None) -> list[ExampleRecord]:
        todo = [ex for ex in dict.fromkeys(examples) if (prompt, ex.input) not in self.cache]
        if todo:
            records = score_examples(self.lm, self.task, todo, self.lm.prompt_ids(prompt),
                                     max_new_tokens=self.max_new_tokens,
                                     batch_size=self.batch_size,
                                     progress=label if self.progress and label else None)
            for ex, rec in zip(todo, records):
                self.cache[(prompt, ex.input)] = rec
        return [self.cache[(prompt, ex.input)] for ex in examples]

    def export_cache(self) -> list[list[Any]]:
        return [[p, q, asdict(r)] for (p, q), r in self.cache.items()]

    def import_cache(self, items: list[list[Any]]) -> None:
        for p, q, r in items:
            self.cache[(p, q)] = ExampleRecord(**r)


def identity(method: str, lm: LM, task: Task, config: dict[str, Any]) -> dict[str, Any]:
    """What must match for a checkpoint to be continued (or returned) by a run."""
    return {"method": method, "model": lm.name, "dtype": str(lm.dtype).removeprefix("torch."),
            "task": task.name, "data_digest": task.data_digest, "config": config}


def _result_identity(result: OptimizationResult) -> dict[str, Any]:
    p = result.provenance
    return {"method": result.method, "model": result.model, "dtype": p.get("dtype"),
            "task": result.task, "data_digest": p.get("data_digest"), "config": result.config}


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        if key == "config" and isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            out += [f"config.{k}: {a[key].get(k)!r} in the checkpoint, {b[key].get(k)!r} now"
                    for k in sorted(set(a[key]) | set(b[key])) if a[key].get(k) != b[key].get(k)]
        elif a.get(key) != b.get(key):
            out.append(f"{key}: {a.get(key)!r} in the checkpoint, {b.get(key)!r} now")
    return out


def _encode_rng(run: "Run") -> dict[str, Any]:
    version, internal, gauss = run.rng.getstate()
    return {"python": [version, list(internal), gauss],
            "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode("ascii")}


def _decode_rng(run: "Run", saved: dict[str, Any]) -> None:
    version, internal, gauss = saved["python"]
    run.rng.setstate((version, tuple(internal), gauss))
    raw = base64.b64decode(saved["torch"])
    torch.set_rng_state(torch.frombuffer(bytearray(raw), dtype=torch.uint8))


class Run:
    """The shared state of one run: data, scoring, optimiser LLM, history, cost, contenders.

    A method reads ``run.train`` / ``run.cfg``, scores prompts through :meth:`score` /
    :meth:`accuracy`, asks its optimiser LLM through :meth:`ask`, keeps prompts for the final
    choice with :meth:`remember`, and keeps its cross-step state in ``run.state``.
    """

    def __init__(self, method: str, lm: LM, task: Task, config: RunConfig, *,
                 engine: ChatEngine | None = None, scorer: Scorer | None = None,
                 progress: bool = False) -> None:
        self.method, self.lm, self.task, self.cfg = method, lm, task, config
        self.rng = seed_everything(config.seed)
        self.warnings: list[str] = []
        self.train = task.train[: config.n_train]
        if not self.train:
            raise ValueError(f"{task.name} has no training examples")
        if len(self.train) < config.n_train:
            self.warn(f"n_train is {config.n_train} but {task.name} has only {len(self.train)} "
                      f"training examples; all {len(self.train)} are used")
        self.engine = engine
        self.progress = progress
        self.scorer: Scorer = scorer or ModelScorer(lm, task, max_new_tokens=config.max_new_tokens,
                                                    batch_size=config.batch_size,
                                                    progress=progress)
        self.state: dict[str, Any] = {}
        self.history: list[StepRecord] = []
        self.contenders: dict[str, PromptScore] = {}
        self.prior_cost = CostCounters()
        self.preset: str | None = None
        self._t0 = time.perf_counter()
        self._start = lm.meter.snapshot()
        self._separate_engine = engine is not None and engine.meter is not lm.meter
        self._engine_start = engine.meter.snapshot() if self._separate_engine else None

    @property
    def meter(self):
        return self.lm.meter

    def warn(self, message: str) -> None:
        """Record a warning in the result (once) and log it."""
        if message not in self.warnings:
            self.warnings.append(message)
            logger.warning("%s: %s", self.method, message)

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
        """One record per example for ``prompt`` (cached)."""
        with self.lm.meter.phase("score"):
            return self.scorer(prompt, examples)

    def correct(self, prompt: str, examples: Sequence[Example]) -> list[bool]:
        return [r.correct for r in self.score(prompt, examples)]

    def accuracy(self, prompt: str, examples: Sequence[Example] | None = None) -> float:
        """Flexible accuracy of ``prompt`` on ``examples`` (default: the training examples)."""
        return accuracy(self.score(prompt, self.train if examples is None else examples))

    # -------------------------------------------------------------- optimiser LLM
    def ask(self, messages: Sequence[str], *, temperature: float | None = None) -> list[str]:
        """Replies of the optimiser LLM, one per message (seeded from the run's generator)."""
        if not messages:
            return []
        if self.engine is None or not isinstance(self.cfg, LLMOptimizerConfig):
            raise RuntimeError(f"method {self.method!r} has no optimiser LLM")
        cfg = self.cfg
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

    # -------------------------------------------------------------- contenders and cost
    def remember(self, prompt: str, *, train_accuracy: float | None, step: int) -> PromptScore:
        """Keep ``prompt`` as a contender for the final choice.

        A prompt keeps the step it was first seen at; a new training accuracy of exactly this
        prompt replaces an older one (all methods alike).
        """
        c = self.contenders.get(prompt)
        if c is None:
            c = self.contenders[prompt] = PromptScore(prompt=prompt, train_accuracy=train_accuracy,
                                                      step=step)
        elif train_accuracy is not None:
            c.train_accuracy = train_accuracy
        return c

    def ranked_by_train(self) -> list[PromptScore]:
        """Contenders by train accuracy (unmeasured last), then the latest step first."""
        return sorted(self.contenders.values(),
                      key=lambda c: (c.train_accuracy is None, -(c.train_accuracy or 0.0),
                                     -(c.step or 0)))

    def cost(self) -> CostCounters:
        """Cost of the run so far (a resumed run includes what its checkpoint had spent)."""
        cost = self.lm.meter.snapshot() - self._start
        if self._separate_engine:
            assert self.engine is not None and self._engine_start is not None
            cost = cost + (self.engine.meter.snapshot() - self._engine_start)
        cost.wall_seconds = time.perf_counter() - self._t0
        return self.prior_cost + cost

    # -------------------------------------------------------------- results and checkpoints
    def config_dict(self) -> dict[str, Any]:
        config = scrub(self.cfg.to_dict())
        if self.engine is not None:
            config["optimizer_llm"] = self.engine.name
        return config

    def result(self, final: FinalChoice | None = None) -> OptimizationResult:
        """The result so far (``final`` None: a partial result with its resume section)."""
        config = self.config_dict()
        if final is not None:
            best = final.best.prompt
        else:
            ranked = self.ranked_by_train()
            best = ranked[0].prompt if ranked else self.cfg.initial_prompt
        out = OptimizationResult(
            method=self.method, model=self.lm.name, task=self.task.name,
            initial_prompt=self.cfg.initial_prompt, best_prompt=best,
            dev_accuracy=final.best.dev_accuracy if final else None,
            test_accuracy=final.test_accuracy if final else None,
            history=list(self.history), contenders=list(self.contenders.values()),
            cost=self.cost(), config=config, seed=self.cfg.seed, versions=library_versions(),
            dev_accuracy_strict=final.dev_accuracy_strict if final else None,
            test_accuracy_strict=final.test_accuracy_strict if final else None,
            initial_dev_accuracy=final.initial_dev_accuracy if final else None,
            initial_test_accuracy=final.initial_test_accuracy if final else None,
            test_records=final.test_records if final else [],
            status="done" if final else "partial",
            provenance=provenance(method=self.method, lm=self.lm, task=self.task, config=config,
                                  seed=self.cfg.seed, preset=self.preset,
                                  extra={"n_train_used": len(self.train)}),
            warnings=list(self.warnings))
        if final is None:
            out.resume = self._resume_section()
        return out

    def _resume_section(self) -> dict[str, Any]:
        try:
            json.dumps(self.state)
        except TypeError as exc:
            raise TypeError(f"method {self.method!r} keeps a value that is not JSON in "
                            f"run.state: {exc}") from None
        section: dict[str, Any] = {"next_step": len(self.history) + 1, "state": self.state,
                                   "rng": _encode_rng(self)}
        if isinstance(self.scorer, ModelScorer):
            section["scorer_cache"] = self.scorer.export_cache()
        return section

    def restore(self, saved: OptimizationResult) -> None:
        """Continue from the partial result ``saved`` (same identity, checked by the caller)."""
        assert saved.resume is not None
        self.history = list(saved.history)
        self.contenders = {c.prompt: c for c in saved.contenders}
        self.state = saved.resume["state"]
        self.warnings = list(saved.warnings)
        self.prior_cost = saved.cost
        _decode_rng(self, saved.resume["rng"])
        if isinstance(self.scorer, ModelScorer):
            self.scorer.import_cache(saved.resume.get("scorer_cache", []))


def _load_checkpoint(path: Path, ident: dict[str, Any]) -> OptimizationResult | None:
    """The result at ``path`` if it belongs to this run; None if there is none."""
    if not path.is_file():
        return None
    saved = OptimizationResult.load(path)
    diff = _differences(_result_identity(saved), ident)
    if diff:
        raise ResumeError(f"{path} holds a run of another configuration ({'; '.join(diff[:5])})"
                          "; pass another checkpoint path, or delete it to start over")
    if saved.partial and saved.resume is None:
        raise ResumeError(f"{path} holds a partial run with no resume section")
    return saved


def run_method(spec: "MethodSpec", lm: LM, task: Task, config: RunConfig | None = None, *,
               optimizer_llm: ChatEngine | None = None, progress: bool = True,
               checkpoint: str | os.PathLike | None = None, scorer: Scorer | None = None,
               preset: str | None = None) -> OptimizationResult:
    """Run the registered method ``spec`` on ``task`` with ``lm``; return its result.

    Args:
        config: an instance of ``spec.config_cls`` (None: its defaults).
        optimizer_llm: the optimiser LLM of methods that ask one (None: the task model itself);
            methods that ask none refuse it.
        progress: show progress bars.
        checkpoint: a JSON path. The partial result is written there after every step; if it
            already holds a partial run of the same method, model, dtype, data and config, the run
            continues after its last finished step; if it holds the finished run, that result is
            returned without recomputing anything. Anything else raises :class:`ResumeError`.
        scorer: replaces the default scorer (tests and caches); a custom scorer's cache is not
            checkpointed.
        preset: the preset name the config was built from (recorded in the provenance).
    """
    cfg = config if config is not None else spec.config_cls()
    if not isinstance(cfg, spec.config_cls):
        raise TypeError(f"method {spec.name!r} takes a {spec.config_cls.__name__}, "
                        f"got {type(cfg).__name__}")
    if optimizer_llm is not None and not spec.uses_optimizer_llm:
        raise ValueError(f"method {spec.name!r} uses no optimiser LLM; pass optimizer_llm=None")
    engine = (optimizer_llm or LocalEngine(lm)) if spec.uses_optimizer_llm else None
    method: Method = spec.strategy()
    run = Run(spec.name, lm, task, cfg, engine=engine, scorer=scorer, progress=progress)
    run.preset = preset
    method.check(run)
    path = Path(checkpoint) if checkpoint is not None else None
    saved = _load_checkpoint(path, identity(spec.name, lm, task, run.config_dict())) \
        if path is not None else None
    if saved is not None and not saved.partial:
        logger.info("%s already holds the finished run; returning it", path)
        return saved
    if saved is not None:
        run.restore(saved)
        logger.info("resuming %s from %s after step %d", spec.name, path, len(run.history))
    else:
        method.start(run)

    total = method.n_steps(cfg)
    bar = tqdm(total=total, initial=len(run.history), desc=f"{spec.name} {task.name}",
               disable=not progress)
    try:
        for step in range(len(run.history) + 1, total + 1):
            before = run.cost()
            record = method.step(run, step)
            record.cost = run.cost() - before
            run.history.append(record)
            logger.info("%s step %d: %r (train acc %s)", spec.name, step, record.prompt,
                        record.train_accuracy)
            if path is not None:
                run.result().save(path)
            bar.update(1)
            bar.set_postfix(acc=record.train_accuracy, prompt=record.prompt[:40])
    finally:
        bar.close()

    ranked = method.ranked(run) or run.ranked_by_train()
    if not ranked:
        ranked = [run.remember(cfg.initial_prompt, train_accuracy=None, step=0)]
    final = choose_final(task, ranked, run.scorer, lm.meter, initial_prompt=cfg.initial_prompt,
                         n_contenders=cfg.n_contenders, n_dev=cfg.n_dev, n_test=cfg.n_test)
    out = run.result(final)
    if path is not None:
        out.save(path)
    return out
