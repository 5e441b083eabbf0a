"""Tests of PE2, OPRO, GEPA-style evolution and APE's likelihood scorer: control flow with a
scripted optimiser LLM and fake scorers, resume from a checkpoint, and end-to-end runs on the
real smollm2-135m with real data (tiny budgets), directly and through ``greater optimize``.

The doubles (fake task model, fake scorer, scripted engine) and the ``task`` / ``one_thread``
fixtures are those of ``test_baselines``.
"""

from __future__ import annotations

import json
import math
import random

import pytest

import baselines as B
from baselines import prompts as P
from baselines.gepa import next_minibatch, pareto_front, select_parent
from baselines.opro import trajectory
from greater.cli import main
from greater.evaluate import ZERO_SHOT_COT_PROMPT, ExampleRecord
from greater.methods import get_method, method_names
from greater.result import OptimizationResult
from test_baselines import (TASK, FakeLM, Interrupt, ScriptedEngine,  # noqa: F401
                            fake_scorer, one_thread, roundtrip, run_end_to_end, task)

NEW = ("pe2", "opro", "gepa")


def optimize(name, *args, **kwargs):
    return get_method(name).optimize(*args, progress=False, **kwargs)


def small(cls, **kw):
    return cls(**{"n_train": 8, "n_dev": 6, "n_test": 4, "n_contenders": 3,
                  "max_new_tokens": 8, **kw})


def graded_scorer(task):
    """A prompt naming "level N" is right on the training examples at positions < N (so its
    train accuracy is N/8 on the first 8); any other prompt is level 4."""
    position = {ex.input: i for i, ex in enumerate(task.train)}

    def score(prompt, examples):
        words = prompt.split()
        level = int(words[words.index("level") + 1]) if "level" in words else 4
        out = []
        for ex in examples:
            correct = position.get(ex.input, 0) < level
            answer = ex.target if correct else "wrong"
            out.append(ExampleRecord(input=ex.input, reasoning="r", response=f"r ${answer}",
                                     answer=answer, gold=ex.target, correct=correct,
                                     stopped_by="eos"))
        return out

    return score


class RecordingEngine(ScriptedEngine):
    """A scripted engine that also records the temperature of every message."""

    def __init__(self, script) -> None:
        super().__init__(script)
        self.temperatures: list[float] = []

    def complete(self, messages, *, max_new_tokens, temperature, seed):
        self.temperatures.extend([temperature] * len(messages))
        return super().complete(messages, max_new_tokens=max_new_tokens,
                                temperature=temperature, seed=seed)


def replies(*texts):
    """A script answering each message with the next of ``texts``."""
    it = iter(texts)
    return lambda message: next(it)


# ----------------------------------------------------------------------------- registry/config
def test_new_methods_are_registered():
    assert set(NEW) <= set(method_names())
    for name in NEW:
        assert get_method(name).uses_optimizer_llm and get_method(name).summary


@pytest.mark.parametrize("cls, kwargs", [
    (B.PE2Config, {"beam_size": 0}), (B.PE2Config, {"n_expansions": 0}),
    (B.PE2Config, {"failures_per_batch": -1}), (B.PE2Config, {"steps": 0}),
    (B.OPROConfig, {"max_trajectory": 0}), (B.OPROConfig, {"n_candidates": 0}),
    (B.OPROConfig, {"n_exemplars": 0}), (B.OPROConfig, {"optimizer_temperature": 0.0}),
    (B.GEPAConfig, {"max_metric_calls": 0}), (B.GEPAConfig, {"minibatch_size": 0}),
    (B.GEPAConfig, {"skip_perfect": "yes"}), (B.GEPAConfig, {"steps": 0}),
    (B.APEConfig, {"scorer": "logprob"}), (B.GEPAConfig, {"n_train": 0}),
])
def test_configs_are_validated(cls, kwargs):
    with pytest.raises(ValueError):
        cls(**kwargs)


def test_parse_final_prompt_reads_the_last_instruction_not_the_analysis():
    assert P.parse_final_prompt("1. wrong sign\n2. edit it\n<prompt>A</prompt>\n"
                                "<prompt>Use B</prompt>") == "B"
    assert P.parse_final_prompt("1. x\nImproved instruction: Use care with not.") == \
        "care with not."
    assert P.parse_final_prompt("1. the model erred\n2. add a rule") is None
    assert P.parse_final_prompt(None) is None and P.parse_final_prompt("") is None


# ----------------------------------------------------------------------------- OPRO
def test_opro_trajectory_is_ascending_and_keeps_the_best():
    scored = [["a", 0.5, 0], ["b", 0.25, 1], ["c", 0.75, 1], ["d", 0.5, 2], ["e", 0.1, 2]]
    assert trajectory(scored, 3) == [("a", 0.5), ("d", 0.5), ("c", 0.75)]
    assert trajectory(scored, 10)[0] == ("e", 0.1) and len(trajectory(scored, 10)) == 5
    assert trajectory(scored, 1) == [("c", 0.75)]


def test_opro_meta_prompt_trajectory_exemplars_and_candidates(task):
    engine = RecordingEngine(replies(
        "<prompt>level 1 a</prompt>", "<prompt>level 6 b</prompt>",  # step 1
        "garbage %%%", "<prompt>level 3 c</prompt>",  # step 2: one unparsable
        "<prompt>Use level 7 d</prompt>", "<prompt>level 6 b</prompt>"))  # step 3: a repeat
    cfg = small(B.OPROConfig, steps=3, n_candidates=2, max_trajectory=3, n_exemplars=2)
    res = optimize("opro", FakeLM(), task, cfg, optimizer_llm=engine,
                   scorer=graded_scorer(task))
    roundtrip(res)
    assert engine.temperatures == [1.0] * 6
    # the two candidates of a step come from the same meta-prompt
    msgs = engine.messages
    assert msgs[0] == msgs[1] and msgs[2] == msgs[3] and msgs[4] == msgs[5]
    # step 3 shows the 3 best of {zscot .5, a .125, b .75, c .375}, ascending: c, zscot, b
    third = msgs[4]
    assert "level 1 a" not in third
    order = [third.index(f"Use {p}") for p in ("level 3 c", ZERO_SHOT_COT_PROMPT, "level 6 b")]
    assert order == sorted(order)
    assert "Accuracy: 38" in third and "Accuracy: 75" in third
    assert all(m.count("Correct output:") == 2 for m in msgs)  # n_exemplars training problems
    s1, s2, s3 = (h.details for h in res.history)
    assert s1["trajectory"] == [ZERO_SHOT_COT_PROMPT]
    assert s2["parse_failures"] == 1 and s2["n_valid"] == 1
    assert s3["n_repeated"] == 1 and s3["candidates"] == [{"prompt": "level 7 d",
                                                           "train_accuracy": 7 / 8}]
    assert [h.prompt for h in res.history] == ["level 6 b", "level 6 b", "level 7 d"]
    assert res.history[2].train_accuracy == 7 / 8
    assert {c.prompt for c in res.contenders} == {ZERO_SHOT_COT_PROMPT, "level 1 a",
                                                  "level 6 b", "level 3 c", "level 7 d"}


def test_opro_warns_when_no_candidate_parses(task):
    cfg = small(B.OPROConfig, steps=1, n_candidates=3)
    res = optimize("opro", FakeLM(), task, cfg, optimizer_llm=ScriptedEngine(lambda m: "??"),
                   scorer=fake_scorer)
    assert res.history[0].details["parse_failures"] == 3
    assert res.best_prompt == ZERO_SHOT_COT_PROMPT
    assert any("none of the 3 candidates" in w for w in res.warnings)


# ----------------------------------------------------------------------------- PE2
def test_pe2_beam_search_over_failures(task):
    engine = ScriptedEngine(replies(
        # step 1: one beam prompt (zscot, 4 failures) -> 2 meta-prompts
        "1. The sign is wrong.\n<prompt>level 6 x</prompt>", "1. no tags, only analysis",
        # step 2: beam x (2 failures), zscot (4 failures) -> 4 meta-prompts
        "analysis\nNew prompt: Use level 8 y", "<prompt>level 2 z</prompt>",
        "<prompt>level 6 x</prompt>", ""))
    cfg = small(B.PE2Config, steps=2, beam_size=2, n_expansions=2, failures_per_batch=2)
    scorer = graded_scorer(task)
    res = optimize("pe2", FakeLM(), task, cfg, optimizer_llm=engine, scorer=scorer)
    roundtrip(res)
    s1, s2 = (h.details for h in res.history)
    assert s1["beam"] == ["level 6 x", ZERO_SHOT_COT_PROMPT] and s1["parse_failures"] == 1
    assert s1["beam_failures"] == [4]
    assert s2["beam_failures"] == [2, 4] and s2["n_proposed"] == 4
    assert s2["parse_failures"] == 1 and s2["n_new"] == 2  # x again is not new
    assert s2["beam"] == ["level 8 y", "level 6 x"]  # z (2/8) and zscot (4/8) fall out
    assert res.history[1].train_accuracy == 1.0 and res.best_prompt == "level 8 y"
    # every meta-prompt: the context (extractor), and failures_per_batch real failures
    wrong = {ex.input for ex in task.train[:8]
             if not scorer(ZERO_SHOT_COT_PROMPT, [ex])[0].correct}
    for message in engine.messages:
        assert task.extractor.strip() in message and message.count("\nInput: ") == 2
    for message in engine.messages[:2] + engine.messages[4:]:  # zscot's meta-prompts
        shown = {line[len("Input: "):] for line in message.splitlines()
                 if line.startswith("Input: ")}
        assert len(shown) == 2 and shown <= {w.strip() for w in wrong}


def test_pe2_keeps_a_perfect_beam_without_asking(task):
    engine = ScriptedEngine(lambda m: "<prompt>anything</prompt>")
    cfg = small(B.PE2Config, steps=1, initial_prompt="GOOD start")
    res = optimize("pe2", FakeLM(), task, cfg, optimizer_llm=engine, scorer=fake_scorer)
    assert engine.messages == [] and res.best_prompt == "GOOD start"
    assert any("nothing to learn from" in w for w in res.warnings)


# ----------------------------------------------------------------------------- GEPA
def test_pareto_front_removes_dominated_candidates():
    scores = [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 1, 0]]
    # fronts: ex0 {0,1}, ex1 {1}, ex2 {2,3}, ex3 {3}, ex4 (all zero) everyone;
    # 0 only shares fronts with 1 and 2 only with 3: both dominated
    assert pareto_front(scores) == {1: 3, 3: 3}
    assert pareto_front([[1, 1], [1, 1]]) == {0: 2}  # identical: the later one goes
    assert pareto_front([[0, 1], [1, 0]]) == {0: 1, 1: 1}  # neither dominates
    with pytest.raises(ValueError):
        pareto_front([])


def test_select_parent_draws_by_front_count_and_never_a_dominated_one():
    scores = [[1, 1, 0], [0, 0, 1], [1, 0, 0]]  # 2 is dominated by 0
    rng = random.Random(0)
    draws = [select_parent(scores, rng) for _ in range(3000)]
    assert 2 not in draws
    assert abs(draws.count(0) / len(draws) - 2 / 3) < 0.04


def test_minibatches_cover_every_example_once_per_epoch():
    state: dict = {}
    rng = random.Random(3)
    epoch = [i for _ in range(3) for i in next_minibatch(state, 9, 3, rng)]
    assert sorted(epoch) == list(range(9))
    assert len(next_minibatch(state, 9, 3, rng)) == 3 and state["cursor"] == 3
    assert next_minibatch({}, 2, 5, rng) == [0, 1]  # capped at the examples there are


def gepa_script(message):
    """Reflections (a function of the message, so a resumed run gets the same replies): from
    traces with one error a prompt no better than zero-shot CoT, from two or more GOOD."""
    wrong = message.count("Verdict: wrong")
    if not wrong:
        return "nothing to fix"
    return "<prompt>GOOD rule</prompt>" if wrong >= 2 else \
        "Here is my analysis.\n<prompt>neutral rule</prompt>"


def test_gepa_reflects_accepts_improvements_and_spends_its_budget(task):
    engine = ScriptedEngine(gepa_script)
    cfg = small(B.GEPAConfig, max_metric_calls=60, minibatch_size=3, steps=2, seed=1)
    res = optimize("gepa", FakeLM(), task, cfg, optimizer_llm=engine, scorer=fake_scorer)
    roundtrip(res)
    its = [it for h in res.history for it in h.details["iterations"]]
    # budget: 8 calls for the initial prompt, then iterations while calls remain in the step
    calls = [8] + [it["metric_calls"] for it in its]
    targets = [30] * len(res.history[0].details["iterations"]) + \
        [60] * len(res.history[1].details["iterations"])
    assert all(before < target for before, target in zip(calls, targets))
    assert calls[-1] >= 60 and calls[-1] - calls[-2] <= 3 + 3 + 8
    assert res.history[-1].details["metric_calls"] == calls[-1]
    for before, after, it in zip(calls, calls[1:], its):  # each scoring counted
        cost = 3 + (3 if "child_score" in it else 0) + (8 if it.get("accepted") else 0)
        assert after - before == cost
    # the neutral rule ties its parent on the minibatch and is rejected; GOOD is accepted
    neutral = [it for it in its if it.get("child") == "neutral rule"]
    good = [it for it in its if it.get("child") == "GOOD rule"]
    assert neutral and not any(it["accepted"] for it in neutral)
    assert len(good) == 1 and good[0]["accepted"] and good[0]["parent"] == 0
    # GOOD is at least as good on every example: the front is GOOD alone, always perfect
    after = its[its.index(good[0]) + 1:]
    assert after and all(it["parent"] == 1 and it["skipped"] == "perfect" for it in after)
    # one reflection per iteration that was not skipped as perfect; traces in each
    assert len(engine.messages) == sum(it.get("skipped") != "perfect" for it in its)
    assert all("Model reply: r $" in m and "Correct answer:" in m for m in engine.messages)
    assert res.best_prompt == "GOOD rule" and res.history[-1].train_accuracy == 1.0
    assert [c.prompt for c in res.contenders] == [ZERO_SHOT_COT_PROMPT, "GOOD rule"]


def test_gepa_counts_parse_failures_and_warns(task):
    cfg = small(B.GEPAConfig, max_metric_calls=20, minibatch_size=3, steps=1,
                skip_perfect=False)
    res = optimize("gepa", FakeLM(), task, cfg, optimizer_llm=ScriptedEngine(lambda m: "??"),
                   scorer=fake_scorer)
    details = res.history[0].details
    assert details["parse_failures"] == len(details["iterations"]) == 4  # 8 + 4 * 3 calls
    assert any("none of the 4 reflections" in w for w in res.warnings)
    too_small = small(B.GEPAConfig, max_metric_calls=8, steps=1)
    res = optimize("gepa", FakeLM(), task, too_small, optimizer_llm=ScriptedEngine(gepa_script),
                   scorer=fake_scorer)
    assert res.history[0].details["iterations"] == []
    assert any("spent scoring the initial prompt" in w for w in res.warnings)


def test_gepa_resumes_from_a_checkpoint_as_if_never_interrupted(task, tmp_path):
    """The run dies inside step 2 (after the checkpoint of step 1, with the state already
    changed in memory); resuming ends exactly as the uninterrupted run."""
    cfg = small(B.GEPAConfig, max_metric_calls=45, minibatch_size=2, steps=3, seed=4)
    whole = optimize("gepa", FakeLM(), task, cfg, optimizer_llm=ScriptedEngine(gepa_script),
                     scorer=fake_scorer)
    assert len({it["parent"] for h in whole.history for it in h.details["iterations"]}) == 2
    path = tmp_path / "gepa.json"
    seen_after_step_1 = []

    def dying_scorer(prompt, examples):
        if path.is_file() and len(json.loads(path.read_text())["history"]) == 1:
            seen_after_step_1.append(prompt)
            if len(seen_after_step_1) == 3:
                raise Interrupt
        return fake_scorer(prompt, examples)

    with pytest.raises(Interrupt):
        optimize("gepa", FakeLM(), task, cfg, optimizer_llm=ScriptedEngine(gepa_script),
                 scorer=dying_scorer, checkpoint=path)
    partial = OptimizationResult.load(path)
    assert partial.status == "partial" and [h.step for h in partial.history] == [1]
    assert partial.resume["state"]["metric_calls"] == whole.history[0].details["metric_calls"]
    resumed = optimize("gepa", FakeLM(), task, cfg, optimizer_llm=ScriptedEngine(gepa_script),
                       scorer=fake_scorer, checkpoint=path)
    assert resumed.status == "done"
    for field in ("best_prompt", "dev_accuracy", "test_accuracy", "contenders", "config"):
        assert getattr(resumed, field) == getattr(whole, field), field
    assert [(h.prompt, h.details) for h in resumed.history] == \
        [(h.prompt, h.details) for h in whole.history]


# ----------------------------------------------------------------------------- APE likelihood
def fake_logprobs(run, prompt, examples):
    """"LIKELY" prompts make the gold answer probable, every other prompt improbable."""
    assert {ex.input for ex in examples} <= {ex.input for ex in run.train}
    return [-0.1 if "LIKELY" in prompt else -2.0 for _ in examples]


@pytest.mark.parametrize("selection", ["full", "ucb"])
def test_ape_likelihood_ranks_by_answer_logprob_not_accuracy(task, monkeypatch, selection):
    """GOOD answers everything right but makes the gold answer improbable; LIKELY is never
    right but makes it probable: accuracy picks GOOD, likelihood picks LIKELY."""
    monkeypatch.setattr(B.ape, "answer_logprobs", fake_logprobs)
    script = replies("<prompt>GOOD and unlikely</prompt>", "<prompt>LIKELY but BAD</prompt>")
    kw = dict(n_candidates=2, n_contenders=1, selection=selection, bandit_rounds=3,
              bandit_prompts_per_round=3, bandit_samples_per_round=4)
    by_accuracy = optimize("ape", FakeLM(), task, small(B.APEConfig, **kw),
                           optimizer_llm=ScriptedEngine(script), scorer=fake_scorer)
    script = replies("<prompt>GOOD and unlikely</prompt>", "<prompt>LIKELY but BAD</prompt>")
    by_likelihood = optimize("ape", FakeLM(), task,
                             small(B.APEConfig, scorer="likelihood", **kw),
                             optimizer_llm=ScriptedEngine(script), scorer=fake_scorer)
    roundtrip(by_likelihood)
    assert by_accuracy.best_prompt == "GOOD and unlikely"
    assert by_likelihood.best_prompt == "LIKELY but BAD" and by_likelihood.dev_accuracy == 0.0
    step = by_likelihood.history[0]
    assert step.train_accuracy is None and step.loss == pytest.approx(0.1)
    table = step.details["scores"]
    assert table[0]["prompt"] == "LIKELY but BAD" and table[0]["answer_logprob"] == pytest.approx(-0.1)
    assert all(c.train_accuracy is None for c in by_likelihood.contenders)


# ----------------------------------------------------------------------------- end to end
TINY = dict(n_train=4, n_dev=4, n_test=4, max_new_tokens=48, n_contenders=2)
LLM = dict(optimizer_max_new_tokens=64)
E2E = {
    # pe2/gepa: 8 training examples, so there are failures to learn from (the first 4 are right)
    "pe2": lambda: B.PE2Config(**{**TINY, "n_train": 8}, **LLM, steps=1, beam_size=2,
                               n_expansions=2, failures_per_batch=2),
    "opro": lambda: B.OPROConfig(**TINY, **LLM, steps=1, n_candidates=2, n_exemplars=2),
    "gepa": lambda: B.GEPAConfig(**{**TINY, "n_train": 8}, **LLM, max_metric_calls=16,
                                 minibatch_size=2, steps=1, skip_perfect=False),
    "ape": lambda: B.APEConfig(**TINY, **LLM, n_candidates=2, n_demos=2, scorer="likelihood"),
}


def llm_calls_made(name, res) -> int:
    """How many optimiser replies the run's own records say it asked for."""
    details = res.history[0].details
    if name == "gepa":
        return sum("child" in it or "parse_failed" in it for it in details["iterations"])
    return details["n_proposed"]


@pytest.mark.model
@pytest.mark.parametrize("name", list(E2E))
def test_new_methods_end_to_end_on_smollm(name, lm16, task, one_thread):
    res = run_end_to_end(name, E2E[name](), lm16, task)
    assert res.cost.generated_tokens > 0
    assert res.cost.llm_calls == llm_calls_made(name, res) > 0
    if name == "ape":  # the likelihood scorer: real teacher-forced log-probs of the answer
        values = [row["answer_logprob"] for row in res.history[0].details["scores"]]
        assert values and all(v < 0 and math.isfinite(v) for v in values)
        assert res.history[0].loss == pytest.approx(-values[0])
    if name == "gepa":
        assert res.history[0].details["metric_calls"] >= 16


@pytest.mark.model
@pytest.mark.parametrize("method, extra", [
    ("pe2", ["--steps", "1", "--set", "beam_size=1", "--set", "n_expansions=1"]),
    ("opro", ["--steps", "1", "--set", "n_candidates=1", "--set", "n_exemplars=1"]),
    ("gepa", ["--steps", "1", "--set", "max_metric_calls=7", "--set", "minibatch_size=2",
              "--set", "skip_perfect=false"]),
])
def test_optimize_cli_writes_the_common_schema(method, extra, data_dir, tmp_path, capsys,
                                                one_thread):
    out = tmp_path / f"{method}.json"
    code = main(["optimize", "--method", method, "--model", "smollm2-135m", "--task", TASK,
                 "--n-train", "5", "--max-new-tokens", "24", "--n-dev", "2", "--n-test", "2",
                 "--batch-size", "8", "--set", "optimizer_max_new_tokens=24", *extra,
                 "--data-dir", str(data_dir), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    result = OptimizationResult.from_dict(json.loads(out.read_text()))
    assert result.method == method and result.status == "done"
    assert result.best_prompt and 0.0 <= result.dev_accuracy <= 1.0
    assert result.config["n_train"] == 5 and result.config["max_new_tokens"] == 24
    assert len(result.history) == 1 and result.cost.generated_tokens > 0
    assert "best prompt" in capsys.readouterr().out
