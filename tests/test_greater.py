"""Tests of the GReaTer optimiser: candidate proposal, configuration and end-to-end runs."""

from __future__ import annotations

import json
import random

import pytest
import torch

from greater.evaluate import ZERO_SHOT_COT_PROMPT
from greater.lm.gradients import LossSequence, sequence_losses
from greater.optimizer import GreaterConfig, optimize
from greater.optimizer.candidates import allowed_token_mask, propose_candidates, token_is_allowed
from greater.result import OptimizationResult
from greater.tasks import load_task


# ------------------------------------------------------------------- candidate proposal
def ranked_rows(*rankings: list[int], vocab: int) -> torch.Tensor:
    """``[B, V]`` log-probs where row b ranks ``rankings[b]`` first (best first)."""
    out = torch.full((len(rankings), vocab), -50.0)
    for b, ranking in enumerate(rankings):
        for r, token in enumerate(ranking):
            out[b, token] = -1.0 - r
    return out.log_softmax(-1)


def propose(logprobs, allowed=None, **kw):
    args = dict(top_k=2, n_intersections=1, intersection_size=logprobs.shape[0],
                min_candidates=1, top_k_growth=2, current=0, banned=None, rng=random.Random(0))
    args.update(kw)
    if allowed is None:
        allowed = torch.ones(logprobs.shape[1], dtype=torch.bool)
    return propose_candidates(logprobs, allowed, **args)


def test_intersection_of_all_examples():
    lp = ranked_rows([1, 2, 3, 4], [2, 1, 5, 6], [1, 2, 7, 8], vocab=10)
    assert propose(lp, top_k=2, current=9) == [1, 2, 9]
    # top-3 adds 3, 5 and 7 to single rows only: the intersection is unchanged.
    assert propose(lp, top_k=3, current=9) == [1, 2, 9]


def test_union_of_single_example_groups():
    lp = ranked_rows([1, 2], [3, 4], [5, 6], vocab=10)
    got = propose(lp, top_k=2, intersection_size=1, n_intersections=60, current=1)
    assert got == [1, 2, 3, 4, 5, 6]


def test_top_k_grows_until_enough_candidates():
    lp = ranked_rows(list(range(12)), list(range(11, -1, -1)), vocab=12)
    # k = 2, 4, 6 give empty intersections; k = 8 gives {4, 5, 6, 7}.
    assert propose(lp, top_k=2, top_k_growth=2, min_candidates=4, current=0) == [0, 4, 5, 6, 7]
    # Growth stops when every allowed token is in the top-k, however few candidates remain.
    allowed = torch.zeros(12, dtype=torch.bool)
    allowed[[0, 11]] = True
    assert propose(lp, allowed, top_k=1, min_candidates=10, current=0) == [0, 11]


def test_allowed_filter_banned_token_and_current_token():
    lp = ranked_rows(list(range(12)), list(range(11, -1, -1)), vocab=12)
    allowed = torch.ones(12, dtype=torch.bool)
    allowed[5] = False
    got = propose(lp, allowed, top_k=2, top_k_growth=2, min_candidates=4, current=0)
    assert 5 not in got and got == [0, 3, 4, 6, 7, 8]
    got = propose(lp, allowed, top_k=2, top_k_growth=2, min_candidates=4, current=0, banned=6)
    assert 6 not in got and 5 not in got and len(got) - 1 >= 4
    # The current token is kept even when it is neither proposed nor allowed.
    allowed[11] = False
    got = propose(lp, allowed, top_k=2, top_k_growth=2, min_candidates=4, current=11)
    assert 11 in got and 5 not in got


def test_proposal_is_deterministic_per_seed():
    gen = torch.Generator().manual_seed(0)
    lp = torch.randn(8, 50, generator=gen).log_softmax(-1)
    draw = lambda seed: propose(lp, top_k=8, intersection_size=2, n_intersections=2, current=0,
                                rng=random.Random(seed))
    assert all(draw(s) == draw(s) for s in range(5))
    assert len({tuple(draw(s)) for s in range(10)}) > 1  # the seed matters


@pytest.mark.parametrize("text,ok", [
    ("hello", True), (" hello", True), ("Hello World", True), (" a", True), (".", True),
    (",", True), (" ", False), ("", False), ("!", False), (" .", False), ("..", False),
    ("abc1", False), ("é", False), ("\n", False), ("hello.", False), ("'s", False),
])
def test_token_is_allowed(text, ok):
    assert token_is_allowed(text) is ok


def test_allowed_token_mask():
    vocab = ["hello", " world", ".", "!", " ", "<s>", "x1"]
    assert allowed_token_mask(vocab, [5], "ascii").tolist() == \
        [True, True, True, False, False, False, False]
    assert allowed_token_mask(vocab, [5], "none").tolist() == \
        [True, True, True, True, True, False, True]
    with pytest.raises(ValueError, match="unknown token filter"):
        allowed_token_mask(vocab, [], "letters")


# ------------------------------------------------------------------------------ config
@pytest.mark.parametrize("kwargs,field", [
    ({"steps": 0}, "steps"), ({"steps": True}, "steps"), ({"n_train": 0}, "n_train"),
    ({"top_k": -1}, "top_k"), ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"top_k_growth": 0}, "top_k_growth"), ({"n_rescore": -1}, "n_rescore"),
    ({"perplexity_weight": -0.1}, "perplexity_weight"), ({"ce_temperature": 0}, "ce_temperature"),
    ({"token_filter": "letters"}, "token_filter"), ({"initial_prompt": "  "}, "initial_prompt"),
    ({"n_train": 3}, "intersection_size"), ({"n_dev": 0}, "n_dev"), ({"n_test": -1}, "n_test"),
    ({"seed": "1"}, "seed"),
    ({"batch_size": 0}, "batch_size"), ({"grad_batch_size": 0}, "grad_batch_size"),
])
def test_config_validation(kwargs, field):
    with pytest.raises(ValueError, match=field):
        GreaterConfig(**kwargs)


def test_config_defaults_are_valid_and_serialisable():
    cfg = GreaterConfig()
    assert cfg.n_rescore == 3 and cfg.perplexity_weight == 0.2
    assert GreaterConfig(**json.loads(json.dumps(cfg.to_dict()))) == cfg
    GreaterConfig(n_test=0, n_dev=None, n_rescore=0)


# -------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def task(data_dir):
    return load_task("bbh/boolean_expressions", data_dir=data_dir)


def _check_result(result: OptimizationResult, lm, task, cfg: GreaterConfig) -> None:
    assert result.method == "greater" and result.model == lm.name and result.task == task.name
    assert result.initial_prompt == cfg.initial_prompt
    assert len(result.history) == cfg.steps
    assert [h.step for h in result.history] == list(range(1, cfg.steps + 1))
    for h in result.history:
        assert h.prompt.strip() and h.loss is not None and h.loss == h.loss  # not NaN
        assert h.seconds > 0
        d = h.details
        assert d["chosen"] in d["candidates"]
        assert len(d["gradient"]) == len(d["candidates"])
        assert 0 <= d["train_accuracy_before"] <= 1
    assert result.best_prompt in {c.prompt for c in result.contenders}
    assert result.dev_accuracy is not None and 0 <= result.dev_accuracy <= 1
    assert result.config == cfg.to_dict() and result.seed == cfg.seed
    cost = result.cost
    assert cost.generated_tokens > 0 and cost.forward_passes > 0 and cost.forward_tokens > 0
    assert cost.backward_passes >= cfg.steps and cost.backward_tokens > 0
    assert cost.wall_seconds > 0
    for phase in ("reasoning", "proposal", "gradient", "dev"):
        assert cost.phase_seconds.get(phase, 0) > 0, phase
    assert sum(cost.phase_seconds.values()) <= cost.wall_seconds + 1e-6
    lm.prompt_ids(result.best_prompt)  # usable as a prompt


def test_optimize_end_to_end(lm16, task, tmp_path):
    cfg = GreaterConfig(steps=2, n_train=6, max_new_tokens=64, n_dev=4, n_test=4,
                        n_contenders=2, seed=0)
    checkpoint = tmp_path / "run" / "checkpoint.json"
    result = optimize(lm16, task, cfg, progress=False, checkpoint=checkpoint)
    _check_result(result, lm16, task, cfg)
    assert result.test_accuracy is not None and 0 <= result.test_accuracy <= 1
    assert result.cost.phase_seconds.get("rescore", 0) > 0
    assert result.cost.phase_seconds.get("test", 0) > 0
    for h in result.history:
        assert len(h.details["rescored"]) == min(3, len(h.details["candidates"]))
        assert h.details["chosen"] in h.details["rescored"]
        assert h.train_accuracy is not None and 0 <= h.train_accuracy <= 1
    dev_scored = [c for c in result.contenders if c.dev_accuracy is not None]
    assert 1 <= len(dev_scored) <= cfg.n_contenders
    assert result.dev_accuracy == max(c.dev_accuracy for c in dev_scored)
    # JSON round trip and atomic save/load.
    data = json.loads(json.dumps(result.to_dict()))
    assert OptimizationResult.from_dict(data) == result
    path = result.save(tmp_path / "result.json")
    assert OptimizationResult.load(path) == result
    assert not list(tmp_path.glob(".*.tmp"))
    # The checkpoint holds the final result.
    assert checkpoint.is_file()
    assert OptimizationResult.load(checkpoint).to_dict() == json.loads(json.dumps(
        result.to_dict()))


def test_optimize_without_reasoning_and_without_rescoring(lm16, task):
    """use_reasoning=False: the loss is on the answer right after prompt, tail and extractor;
    n_rescore=0: the gradient's argmin is taken unscored."""
    cfg = GreaterConfig(steps=1, n_train=5, max_new_tokens=16, n_rescore=0, n_dev=1, n_test=0,
                        n_contenders=1, use_reasoning=False)
    result = optimize(lm16, task, cfg, progress=False)
    _check_result(result, lm16, task, cfg)
    assert result.test_accuracy is None
    assert "rescore" not in result.cost.phase_seconds
    step = result.history[0]
    assert "rescored" not in step.details and step.train_accuracy is None
    grad = step.details["gradient"]
    assert step.details["chosen"] == step.details["candidates"][grad.index(min(grad))]
    # The step's loss is the loss of the sequences with no reasoning, at the initial prompt.
    prompt = lm16.prompt_ids(ZERO_SHOT_COT_PROMPT)
    extractor = lm16.extractor_ids(task.extractor)
    seqs = []
    for ex in task.train[:5]:
        head, answer = lm16.head_ids(ex.input), lm16.encode(task.answer_text(ex))
        seqs.append(LossSequence(tuple(head + prompt + lm16.tail_ids + extractor + answer),
                                 len(head), len(prompt), len(answer)))
    expected = float(sequence_losses(lm16, seqs, temperature=cfg.ce_temperature,
                                     weight=cfg.perplexity_weight).total.sum())
    assert step.loss == pytest.approx(expected, rel=2e-2)


def test_same_seed_gives_identical_runs(lm32, task):
    cfg = GreaterConfig(steps=2, n_train=5, max_new_tokens=16, n_rescore=2, n_dev=1, n_test=0,
                        n_contenders=1, seed=3)
    runs = [optimize(lm32, task, cfg, progress=False) for _ in range(2)]
    strip = lambda r: [(h.step, h.prompt, h.loss, h.train_accuracy, h.details) for h in r.history]
    assert strip(runs[0]) == strip(runs[1])
    assert runs[0].best_prompt == runs[1].best_prompt
    assert runs[0].dev_accuracy == runs[1].dev_accuracy
    assert [c.prompt for c in runs[0].contenders] == [c.prompt for c in runs[1].contenders]


def test_optimize_rejects_too_few_training_examples(lm32, task):
    small = type(task)(name=task.name, answer_type=task.answer_type, train=task.train[:3],
                       dev=task.dev, test=task.test, extractor=task.extractor,
                       parser=task.parser)
    with pytest.raises(ValueError, match="training examples"):
        optimize(lm32, small, GreaterConfig(steps=1, n_train=5), progress=False)
