"""End-to-end evaluation (greater.evaluate) with the real stand-in on real BBH data."""

from __future__ import annotations

import dataclasses
import json

import pytest

from greater.evaluate import EvaluationResult, ZERO_SHOT_COT_PROMPT, ExampleRecord, accuracy, evaluate
from greater.lm import PromptError
from greater.tasks import TaskError, load_task


@pytest.fixture(scope="module")
def task(data_dir):
    return load_task("bbh/boolean_expressions", data_dir=data_dir)


@pytest.fixture(scope="module")
def result(lm16, task):
    return evaluate(lm16, task, split="dev", limit=4, max_new_tokens=64, progress=False)


def test_evaluation_result_is_consistent(result, task, lm16):
    assert result.model == lm16.name and result.task == "bbh/boolean_expressions"
    assert result.split == "dev" and result.prompt == ZERO_SHOT_COT_PROMPT
    assert result.n_examples == len(result.records) == 4
    assert 0.0 <= result.accuracy <= 1.0
    assert result.n_correct == sum(r.correct for r in result.records)
    assert result.accuracy == pytest.approx(result.n_correct / 4)
    assert result.accuracy == pytest.approx(accuracy(result.records))
    assert result.n_unparsed == sum(r.answer is None for r in result.records)
    assert result.config == {"split": "dev", "limit": 4, "max_new_tokens": 64, "batch_size": 16}
    assert result.provenance["dtype"] and result.provenance["device"] == "cpu"
    assert result.provenance["linear_kernels"] == lm16.linear_kernels
    assert lm16.linear_kernels in ("onednn-packed", "plain")
    assert result.provenance["data_digest"] == task.data_digest
    assert result.accuracy_strict == pytest.approx(accuracy(result.records, strict=True))
    assert all(r.strict_correct == (r.strict_answer == r.gold) for r in result.records)
    assert result.cost.generated_tokens > 0 and result.cost.forward_passes > 0
    assert result.versions


def test_records_match_the_examples(result, task):
    names = {f.name for f in dataclasses.fields(ExampleRecord)}
    assert names == {"input", "reasoning", "response", "answer", "gold", "correct", "stopped_by",
                     "strict_answer", "strict_correct"}
    for record, example in zip(result.records, task.dev[:4]):
        assert record.input == example.input
        assert record.gold == task.gold_answer(example) and record.gold in ("True", "False")
        assert record.answer == task.extract_answer(record.response, example)
        assert record.correct == (record.answer == record.gold)
        assert record.correct == task.is_correct(record.response, example)
        assert record.stopped_by in ("eos", "length")
        # The reply holds the reasoning, then the extractor the model was forced to read.
        assert record.response.startswith(record.reasoning)
        assert task.extractor in record.response


def test_result_is_json_serialisable(result):
    data = json.loads(json.dumps(result.to_dict()))
    assert data["accuracy"] == result.accuracy
    assert len(data["records"]) == 4 and set(data["records"][0]) >= {"answer", "gold", "correct"}
    assert data["cost"]["generated_tokens"] == result.cost.generated_tokens


def test_limit_and_inputs_are_validated(lm16, task):
    for bad in (0, -1):
        with pytest.raises(ValueError, match="limit"):
            evaluate(lm16, task, limit=bad, max_new_tokens=4, progress=False)
    with pytest.raises(PromptError):
        evaluate(lm16, task, prompt="  ", limit=1, max_new_tokens=4, progress=False)
    with pytest.raises(TaskError):
        evaluate(lm16, task, split="holdout", limit=1, max_new_tokens=4, progress=False)


def test_limit_larger_than_split_uses_the_whole_split(lm16, task):
    tiny = dataclasses.replace(task, dev=task.dev[:2])
    res = evaluate(lm16, tiny, limit=50, max_new_tokens=4, progress=False)
    assert res.n_examples == 2


def test_evaluation_result_saves_and_loads(result, tmp_path):
    path = result.save(tmp_path / "eval.json")
    assert EvaluationResult.load(path) == result
