"""Tests of greater.tasks on the real benchmark data (../shared/data or $GREATER_DATA_DIR)."""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import types
from pathlib import Path

import pytest

from greater.tasks import (
    BBH_PAPER_TASKS,
    BBH_TASKS,
    TASK_NAMES,
    AnswerType,
    Example,
    Task,
    TaskError,
    load_task,
    resolve_task_names,
)
from greater.tasks.bbh import BBH_OPTION_LETTERS
from greater.tasks.parsing import parse_options

REASONING = (
    "Let's think step by step. Option (A) looks wrong, and the answer is not (C). "
    "We have 12 + 3 = 15 apples, so it is true and the argument is valid, yes."
)

# BBH items whose options were split at commas, so the gold is text, not a letter.
BROKEN_BBH_TARGETS = {
    ("bbh/movie_recommendation", "Monsters, Inc"),
    ("bbh/ruin_names", "dearth, wind, & fire"),
    ("bbh/ruin_names", "rita, sue and bob poo"),
}
LABELS = {
    AnswerType.YES_NO: ("Yes", "No"),
    AnswerType.TRUE_FALSE: ("True", "False"),
    AnswerType.VALID_INVALID: ("valid", "invalid"),
    AnswerType.THREE_WAY: ("True", "False", "Uncertain"),
}


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The benchmark data: $GREATER_DATA_DIR, else <repo>/../shared/data. Missing data fails."""
    env = os.environ.get("GREATER_DATA_DIR", "").strip()
    path = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not all((path / folder).is_dir() for folder in ("bbh", "gsm8k", "folio")):
        pytest.fail(f"benchmark data not found at {path}; set GREATER_DATA_DIR to the data copy")
    return path.resolve()


@pytest.fixture(scope="session")
def get_task(data_dir: Path):
    """Load a task once per session."""
    return functools.lru_cache(maxsize=None)(lambda name: load_task(name, data_dir))


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GREATER_DATA_DIR", raising=False)


# ---------------------------------------------------------------------------------------------
# names
# ---------------------------------------------------------------------------------------------


def test_task_names() -> None:
    assert len(BBH_TASKS) == 27 and len(BBH_PAPER_TASKS) == 21
    assert set(BBH_PAPER_TASKS) <= set(BBH_TASKS)
    assert TASK_NAMES == (*BBH_TASKS, "gsm8k", "folio")
    assert all(name.startswith("bbh/") for name in BBH_TASKS)
    assert "bbh/dyck_languages" not in BBH_PAPER_TASKS and "bbh/word_sorting" not in BBH_PAPER_TASKS


def test_resolve_task_names() -> None:
    assert resolve_task_names("bbh-paper") == list(BBH_PAPER_TASKS)
    assert resolve_task_names("bbh") == list(BBH_TASKS)
    assert resolve_task_names("gsm8k") == ["gsm8k"]
    assert resolve_task_names("bbh/navigate") == ["bbh/navigate"]
    assert resolve_task_names("navigate") == ["bbh/navigate"]
    assert resolve_task_names("gsm8k, folio,gsm8k") == ["gsm8k", "folio"]


def test_unknown_task_name_lists_close_matches_and_forms() -> None:
    with pytest.raises(TaskError) as info:
        resolve_task_names("bbh/navigat")
    message = str(info.value)
    assert "'bbh/navigat'" in message and "'bbh/navigate'" in message
    assert "bbh/<task>" in message and "gsm8k" in message and "bbh-paper" in message
    with pytest.raises(TaskError, match="gsm8k"):
        load_task("gsm8", data_dir="/nonexistent")  # the name is checked before the data
    with pytest.raises(TaskError, match="group"):
        load_task("bbh")


# ---------------------------------------------------------------------------------------------
# splits and data
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "sizes"),
    [
        ("bbh/boolean_expressions", (50, 100, 100)),
        ("bbh/penguins_in_a_table", (50, 48, 48)),
        ("bbh/causal_judgement", (50, 68, 69)),
        ("bbh/snarks", (50, 64, 64)),
        ("gsm8k", (100, 100, 1319)),
        ("folio", (100, 100, 204)),
    ],
)
def test_split_sizes(get_task, name: str, sizes: tuple[int, int, int]) -> None:
    task = get_task(name)
    assert (len(task.train), len(task.dev), len(task.test)) == sizes
    assert [len(task.split(s)) for s in ("train", "dev", "test")] == list(sizes)
    assert task.split("validation") is task.dev


def test_splits_follow_file_order_and_are_deterministic(data_dir: Path, get_task) -> None:
    raw = json.loads((data_dir / "bbh" / "snarks.json").read_text())["examples"]
    task = get_task("bbh/snarks")
    assert [e.input for e in task.examples] == [r["input"] for r in raw]
    assert task.dev[0].input == raw[50]["input"] and task.test[0].input == raw[114]["input"]
    again = load_task("bbh/snarks", data_dir)
    assert (again.train, again.dev, again.test) == (task.train, task.dev, task.test)

    gsm_train = [json.loads(line) for line in (data_dir / "gsm8k" / "train.jsonl").open()]
    gsm = get_task("gsm8k")
    assert gsm.train[0].input == gsm_train[0]["question"].strip()
    assert gsm.dev[-1].input == gsm_train[199]["question"].strip()
    assert gsm.train[0].target == "72"


def test_env_var_is_used(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREATER_DATA_DIR", str(data_dir))
    assert len(load_task("bbh/navigate").test) == 100


def test_unknown_split(get_task) -> None:
    with pytest.raises(TaskError, match="train, dev, test"):
        get_task("bbh/navigate").split("holdout")


def test_gsm8k_targets_drop_commas(get_task) -> None:
    targets = {e.target for e in get_task("gsm8k").examples}
    assert all(re.fullmatch(r"-?\d+", t) for t in targets)
    assert "2125" in targets  # "#### 2,125" in test.jsonl
    assert "-10" in targets  # negative golds survive


def test_folio_examples(get_task) -> None:
    task = get_task("folio")
    assert {e.target for e in task.examples} == {"True", "False", "Uncertain"}
    first = task.train[0].input
    assert first.startswith(
        "Premises:\n1. All people who regularly drink coffee are dependent on caffeine.\n2. "
    )
    assert "Conclusion: Rina is a person who jokes" in first
    assert first.rstrip().endswith("True, False, or Uncertain?")


def test_bbh_targets_match_answer_types(get_task) -> None:
    for name in BBH_TASKS:
        task = get_task(name)
        golds = {task.gold_answer(e) for e in task.examples}
        if task.answer_type is AnswerType.MULTIPLE_CHOICE:
            broken = {t for n, t in BROKEN_BBH_TARGETS if n == name}
            letters = golds - broken
            assert all(len(g) == 1 for g in letters), name
            for example in task.examples:
                options = parse_options(example.input)
                assert set(options) <= set(BBH_OPTION_LETTERS[name.split("/")[1]]), name
                if task.gold_answer(example) not in broken:
                    assert task.gold_answer(example) in options, (name, example.target)
        elif task.answer_type in LABELS:
            assert golds == set(LABELS[task.answer_type]), name
        elif task.answer_type is AnswerType.NUMBER:
            assert all(re.fullmatch(r"-?\d+", g) for g in golds), name
        else:
            assert task.answer_type is AnswerType.FREE_TEXT and all(golds), name
    assert get_task("bbh/object_counting").extractor.endswith("a positive integer) is $")
    assert min(int(g) for g in {e.target for e in get_task("bbh/object_counting").examples}) > 0


# ---------------------------------------------------------------------------------------------
# round trip of every gold answer
# ---------------------------------------------------------------------------------------------


def _wrong_answers(task: Task, example: Example) -> list[str]:
    gold = task.gold_answer(example)
    if task.answer_type is AnswerType.MULTIPLE_CHOICE:
        return [letter for letter in parse_options(example.input) if letter != gold][:2]
    if task.answer_type in LABELS:
        return [label for label in LABELS[task.answer_type] if label != gold]
    if task.answer_type is AnswerType.NUMBER:
        return [str(int(gold) + 1)]
    words = gold.split()
    return [" ".join(reversed(words))] if len(words) > 1 and words != words[::-1] else []


@pytest.mark.parametrize("name", TASK_NAMES)
def test_every_gold_round_trips(get_task, name: str) -> None:
    task = get_task(name)
    assert task.extractor.startswith("Therefore, the final answer (use exact")
    assert task.extractor.endswith(" is $")
    # the format instruction inside the extractor is not an answer
    assert task.extract_answer("I am not sure. " + task.extractor) is None
    failures = []
    for example in task.examples:
        gold = task.gold_answer(example)
        answer = task.answer_text(example)
        for tail in ("", "$", "$.", "$\n\nI hope this helps!"):
            response = REASONING + " " + task.extractor + answer + tail
            if task.extract_answer(response) != gold or not task.is_correct(response, example):
                failures.append((example.target, response[-80:], task.extract_answer(response)))
        if not task.answer_complete(answer + "$") or task.answer_complete(answer):
            failures.append((example.target, "answer_complete", answer))
        for wrong in _wrong_answers(task, example):
            response = REASONING + " " + task.extractor + wrong + "$"
            parsed = task.extract_answer(response, example)
            if task.is_correct(response, example) or parsed != wrong:
                failures.append((example.target, "wrong answer", wrong))
    assert not failures, failures[:5]


def test_broken_bbh_targets_count_only_verbatim(get_task) -> None:
    task = get_task("bbh/movie_recommendation")
    (example,) = [e for e in task.examples if e.target == "Monsters, Inc"]
    assert task.gold_answer(example) == "Monsters, Inc"
    assert task.is_correct("... " + task.extractor + "Monsters, Inc$", example)
    assert not task.is_correct("... " + task.extractor + "A$", example)


# ---------------------------------------------------------------------------------------------
# what small models really write
# ---------------------------------------------------------------------------------------------

DATE, HYPER, GEO, COLOR = (
    "bbh/date_understanding", "bbh/hyperbaton", "bbh/geometric_shapes",
    "bbh/reasoning_about_colored_objects",
)
GSM, COUNT, ARITH = "gsm8k", "bbh/object_counting", "bbh/multistep_arithmetic_two"
CAUSAL, NAV, SPORTS, WEB = (
    "bbh/causal_judgement", "bbh/navigate", "bbh/sports_understanding", "bbh/web_of_lies",
)
BOOL, FALL, FOLIO = "bbh/boolean_expressions", "bbh/formal_fallacies", "folio"
SORT, DYCK = "bbh/word_sorting", "bbh/dyck_languages"

# (task, reply, expected parse); "{X}" stands for the task's extractor, which the LM forces
# after the reasoning, so that what follows it is the model's own text.
OUTPUTS = [
    # multiple choice
    (DATE, "Christmas Eve is 12/24/1937, so tomorrow is 12/25/1937. {X}B$", "B"),
    (DATE, "Tomorrow is 12/25/1937. {X} (B)", "B"),
    (DATE, "tomorrow would be 12/25/1937 {X}(b)", "B"),
    (DATE, "So the date is 12/25/1937. {X}B) 12/25/1937\n\nExplanation: Christmas is 25th.", "B"),
    (DATE, "Let's think step by step. Christmas is 12/25. The answer is B. B is correct because "
           "it is the next day.", "B"),
    (DATE, "The date tomorrow is 12/25/1937.\n\nSo the answer is **(C)**.", "C"),
    (DATE, "Today is 12/24/1937.\nTomorrow is 12/25/1937.\n\n**Answer:** D", "D"),
    (DATE, "hmm the date is 12/25. {X}\n\nThe final answer is (E) 12/25/2006.", "E"),
    (DATE, "The date tomorrow is 12/25/1937 which is option (B). Let me double check. "
           "Yes, (B) 12/25/1937.", "B"),
    (DATE, "The answer is A bird flying over the house. I think the answer is (D)", "D"),
    (DATE, "{X}A$. The answer is $A$. The answer is $A$. The answer is $A$.", "A"),
    (DATE, "The answer is (B).\nThe answer is (B).\nThe answer is (B).\nThe answer is", "B"),
    (DATE, "The answer is (A). Wait, no. The correct answer is (B).", "B"),
    (DATE, "The final answer is $C$. Note that the answer is not A because A is in 1938.", "C"),
    (DATE, "So tomorrow is 12/25/1937.\n\\boxed{F}", "F"),
    (DATE, "The correct option is option C.", "C"),
    (DATE, "The answer is: I think it is (D) 12/04/1937", "D"),
    (DATE, "So, A is correct.", "A"),
    (DATE, "Tomorrow is 12/25/1937. {X}12/25/1937$", None),  # option text, question unknown
    (DATE, "I am not sure about this question. Let me think again about the dates.", None),
    (DATE, "", None),
    (DATE, "   \n  ", None),
    (HYPER, "Adjective order is opinion, size, age, color, origin. The answer is C.", None),
    (HYPER, "{X}F", None),
    (HYPER, "the answer is (a)", "A"),
    (GEO, "The path draws a sector. The answer is I.", "I"),
    (COLOR, "There are three grey cat toys left. {X}$D$", "D"),
    # numbers
    (GSM, "Natalia sold 48 / 2 = 24 clips in May. 48 + 24 = 72 clips. {X}72$", "72"),
    (COUNT, "I have a flute, a piano ... that is 8 instruments. {X} 8$", "8"),
    (COUNT, "Counting: 1, 2, 3, 4, 5, 6, 7, 8. {X}8", "8"),
    (COUNT, "So in total there are 8 musical instruments.\n\nThe answer is **8**.", "8"),
    (GSM, "The car costs $1,234. The answer is $1,234.", "1234"),
    (ARITH, "(-1 + 2 + 9 * 5) = 46 and (-2 + -4 + -4 * -7) = 22. {X}-5$", "-5"),
    (GSM, "Each box has 3 apples, so the answer is 3.0", "3"),
    (GSM, "She has 5 red and 3 blue. The answer is 5 + 3 = 8.", "8"),
    (GSM, "First, 12 / 60 = 0.2 dollars per minute. Then 0.2 x 50 = 10 dollars. "
          "So she earned 10 dollars.", "10"),
    (COUNT, "There is a cat, a dog and so on. The answer is eight.", "8"),
    (GSM, "Each ticket is $5, so the answer is 20 dollars. The total cost is $20 for 4.", "20"),
    (GSM, "She pays 3 * 5 = 15 dollars. {X}NUMBER$", "15"),  # copies the placeholder
    (GSM, "I cannot solve this problem because it is missing information.", None),
    (GSM, "So she needs 18 more.\n\nThe final answer is: $\\boxed{18}$", "18"),
    (ARITH, "The answer is \u22127.", "-7"),
    (GSM, "He pays 25 / 2 = 12.50 each. The answer is 12.50.", "12.5"),
    (GSM, "Janet has 16 - 3 - 4 = 9 eggs, 9 * 2 = $18. {X}\\$18", "18"),
    # yes / no
    (CAUSAL, "The black wire touched the battery, so it did cause the short. {X}Yes", "Yes"),
    (CAUSAL, "The red wire caused it, not the black one. {X} No$", "No"),
    (WEB, "Sherrie tells the truth. So Vernell tells the truth.\nThe answer is: yes.", "Yes"),
    (CAUSAL, "So the black wire did cause the short circuit. Yes.", "Yes"),
    (NAV, "There is no reason to think we come back, but adding steps the answer is yes", "Yes"),
    (NAV, "There is no way to know from these instructions.", None),
    (SPORTS, "**No**, the sentence is not plausible because he is a hockey player.", "No"),
    (SPORTS, "Elias Lindholm is a hockey player, and beating the buzzer happens in hockey. "
             "So the sentence is plausible.", "Yes"),
    (NAV, "Total steps forward 0, left 0. {X}Yes$. Yes, you return to the starting point.", "Yes"),
    # true / false, valid / invalid, FOLIO
    (BOOL, "not ( True ) and ( True ) = False and True = False. {X}False$", "False"),
    (BOOL, "not True is False. {X} false", "False"),
    (BOOL, "not False is True, True or False is True. The expression evaluates to True.", "True"),
    (FALL, "The conclusion does not follow, the argument is not valid. {X}invalid", "invalid"),
    (FALL, "The answer is: the argument is not valid.", "invalid"),
    (FALL, "Premise 1 and premise 2 give the conclusion. So it is deductively valid.", "valid"),
    (FOLIO, "We do not know if Rina is a student. {X}Uncertain", "Uncertain"),
    (FOLIO, "The premises do not say. The answer is Unknown.", "Uncertain"),
    (FOLIO, "It cannot be determined at first, but premise 3 rules it out. {X} False", "False"),
    (FOLIO, "Premise 1 is true and premise 2 is true, so the conclusion is false.", "False"),
    # free text
    (SORT, "a comes before b. {X}apple banana cherry$", "apple banana cherry"),
    (SORT, "Sorted alphabetically.\nThe answer is: apple, banana, cherry.", "apple banana cherry"),
    (DYCK, "We close the brackets in reverse order. {X}] ] >$", "] ] >"),
    (DYCK, "The stack is [ [ <. The answer is ]]>", "] ] >"),
    (SORT, "apple banana cherry", None),
]


@pytest.mark.parametrize(("name", "response", "expected"), OUTPUTS)
def test_small_model_outputs(get_task, name: str, response: str, expected: str | None) -> None:
    task = get_task(name)
    assert task.extract_answer(response.replace("{X}", task.extractor)) == expected


def test_extractor_texts(get_task) -> None:
    start = "Therefore, the final answer (use exact"
    assert get_task(HYPER).extractor == f"{start} format: '$A' or '$B') is $"
    assert get_task(DATE).extractor == (
        f"{start} format: '$A' or '$B' or '$C' or '$D' or '$E' or '$F') is $"
    )
    assert get_task(COLOR).extractor == f"{start} format: '$A' or '$B' or ... or '$R') is $"
    assert get_task(NAV).extractor == f"{start} format: '$Yes' or '$No') is $"
    assert get_task(SPORTS).extractor == get_task(NAV).extractor
    assert get_task(BOOL).extractor == f"{start} format: '$True' or '$False') is $"
    assert get_task(FALL).extractor == f"{start} format: '$valid' or '$invalid') is $"
    assert get_task(FOLIO).extractor == f"{start} format: '$True' or '$False' or '$Uncertain') is $"
    number = f"{start}ly this format: $NUMBER$, where NUMBER is"
    assert get_task(GSM).extractor == f"{number} an integer) is $"
    assert get_task(COUNT).extractor == f"{number} a positive integer) is $"
    assert get_task(ARITH).extractor == f"{number} an integer, possibly negative) is $"
    assert get_task(SORT).extractor == (
        f"{start}ly this format: $WORDS$, where WORDS are the sorted words separated by "
        "single spaces) is $"
    )


def test_option_text_answers_need_the_question(get_task) -> None:
    task = get_task(DATE)
    example = task.examples[0]  # Christmas Eve 1937; (B) 12/25/1937
    assert task.gold_answer(example) == "B"
    response = "Christmas Eve is the 24th, so tomorrow is the 25th. The answer is 12/25/1937."
    assert task.extract_answer(response) is None
    assert task.extract_answer(response, example) == "B"
    assert task.is_correct(response, example)
    # only this question's letters count: (F) exists in the task, not in a 5-option question
    five = next(e for e in task.examples if len(parse_options(e.input)) == 5)
    assert task.extract_answer("The answer is F.") == "F"
    assert task.extract_answer("The answer is F.", five) is None


@pytest.mark.parametrize(
    ("name", "generated", "complete"),
    [
        (DATE, "", False), (DATE, " ", False), (DATE, "\n", False), (DATE, "B", False),
        (DATE, "(B", False), (DATE, "B$", True), (DATE, "B)", True), (DATE, "B.", True),
        (DATE, "B ", True), (DATE, "(b)", True),
        (DATE, "A ", True), (DATE, " (C) 12/25", True),
        (GSM, "4", False), (GSM, "42", False), (GSM, "42.", False), (GSM, "42.5", False),
        (GSM, "-", False), (GSM, "1,", False), (GSM, "5 +", False), (GSM, "42 ", False),
        (GSM, "42$", True), (GSM, "42.5$", True), (GSM, "1,234$", True), (GSM, "42 apples", True),
        (GSM, "42.\n", True), (GSM, "5 + 3 = 8\n", True), (GSM, " 8$", True),
        (NAV, "Ye", False), (NAV, "Yes", False), (NAV, "No", False), (NAV, "None", False),
        (NAV, "Yes.", True), (NAV, "No$", True), (NAV, " yes\n", True),
        (FOLIO, "Uncert", False), (FOLIO, "Uncertain.", True),
        (SORT, "apple banana", False), (SORT, "apple banana$", True), (SORT, "apple\n", True),
    ],
)
def test_answer_complete(get_task, name: str, generated: str, complete: bool) -> None:
    assert get_task(name).answer_complete(generated) is complete


# ---------------------------------------------------------------------------------------------
# bad inputs
# ---------------------------------------------------------------------------------------------


def _write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _gsm_line(i: int) -> str:
    answer = f"{i} + 1 = {i + 1}\n#### {i + 1:,}"
    return json.dumps({"question": f"What is {i} + 1?", "answer": answer})


def _bbh(examples: list[dict]) -> str:
    return json.dumps({"canary": "x", "examples": examples}, indent=1)


def test_malformed_jsonl_names_file_and_line(tmp_path: Path) -> None:
    broken = '{"question": "broken", "answer": "#### 1"'
    lines = [_gsm_line(0), _gsm_line(1), _gsm_line(2), broken, _gsm_line(9)]
    path = _write(tmp_path, "gsm8k/train.jsonl", "\n".join(lines) + "\n")
    _write(tmp_path, "gsm8k/test.jsonl", _gsm_line(1) + "\n")
    with pytest.raises(TaskError) as info:
        load_task("gsm8k", tmp_path)
    assert str(path) in str(info.value) and "line 4" in str(info.value)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"question": "q"}', "missing field 'answer'"),
        ('{"question": 5, "answer": "#### 5"}', "must be a string"),
        ('{"question": "q", "answer": "no final line"}', "####"),
        ('{"question": "q", "answer": "#### many"}', "not a number"),
        ('["q", "#### 5"]', "JSON object"),
    ],
)
def test_bad_gsm8k_rows(tmp_path: Path, line: str, message: str) -> None:
    path = _write(tmp_path, "gsm8k/train.jsonl", _gsm_line(0) + "\n\n" + line + "\n")
    _write(tmp_path, "gsm8k/test.jsonl", _gsm_line(1) + "\n")
    with pytest.raises(TaskError) as info:
        load_task("gsm8k", tmp_path)
    assert f"{path}: line 3" in str(info.value) and message in str(info.value)


def test_bad_bbh_json_reports_line(tmp_path: Path) -> None:
    text = '{"canary": "x",\n "examples": [\n  {"input": "q" "target": "Yes"}]}'  # missing ","
    path = _write(tmp_path, "bbh/navigate.json", text)
    with pytest.raises(TaskError) as info:
        load_task("bbh/navigate", tmp_path)
    assert str(path) in str(info.value) and "line 3" in str(info.value)


@pytest.mark.parametrize(
    ("examples", "message"),
    [
        ([{"input": "q", "target": "Yes"}, {"input": "q"}], "example 1: missing field 'target'"),
        ([{"input": "q", "target": "Maybe"}], "example 0: target 'Maybe' is not one of Yes, No"),
        ([{"input": "q", "target": ["Yes"]}], "example 0: field 'target' must be a string"),
        ([], "empty"),
        ([{"input": "q", "target": "Yes"}] * 10, "needs at least 52"),
    ],
)
def test_bad_bbh_examples(tmp_path: Path, examples: list[dict], message: str) -> None:
    path = _write(tmp_path, "bbh/navigate.json", _bbh(examples))
    with pytest.raises(TaskError) as info:
        load_task("bbh/navigate", tmp_path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_empty_files(tmp_path: Path) -> None:
    _write(tmp_path, "bbh/navigate.json", "")
    _write(tmp_path, "gsm8k/train.jsonl", "\n\n")
    with pytest.raises(TaskError, match="empty"):
        load_task("bbh/navigate", tmp_path)
    with pytest.raises(TaskError, match="no data rows"):
        load_task("gsm8k", tmp_path)


def test_bad_folio_rows(tmp_path: Path) -> None:
    good = json.dumps({"premises": ["A.", "B."], "conclusion": "C.", "label": "True"})
    no_label = json.dumps({"premises": ["A."], "conclusion": "C."})
    path = _write(tmp_path, "folio/folio-train.jsonl", good + "\n" + no_label)
    with pytest.raises(TaskError) as info:
        load_task("folio", tmp_path)
    assert f"{path}: line 2" in str(info.value) and "'label'" in str(info.value)
    row = {"premises": 3, "conclusion": "C.", "label": "True"}
    _write(tmp_path, "folio/folio-train.jsonl", json.dumps(row))
    with pytest.raises(TaskError, match="line 1: field 'premises'"):
        load_task("folio", tmp_path)
    row = {"premises": ["A."], "conclusion": "C.", "label": "Maybe"}
    _write(tmp_path, "folio/folio-train.jsonl", json.dumps(row))
    with pytest.raises(TaskError, match="line 1: label 'Maybe'"):
        load_task("folio", tmp_path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(TaskError) as info:
        load_task("bbh/navigate", tmp_path)
    assert "not found" in str(info.value)
    assert str(tmp_path / "bbh" / "navigate.json") in str(info.value)
    _write(tmp_path, "gsm8k/train.jsonl", "\n".join(_gsm_line(i) for i in range(200)))
    with pytest.raises(TaskError, match=re.escape(str(tmp_path / "gsm8k" / "test.jsonl"))):
        load_task("gsm8k", tmp_path)
    missing = tmp_path / "no-such-dir"
    with pytest.raises(TaskError, match=re.escape(str(missing))):
        load_task("gsm8k", missing)


def _fake_datasets(monkeypatch: pytest.MonkeyPatch, load_dataset) -> list[tuple]:
    calls: list[tuple] = []

    def recording(repo, config=None, split=None):
        calls.append((repo, config, split))
        return load_dataset(repo, config, split)

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=recording))
    return calls


@pytest.mark.usefixtures("no_env")
def test_no_data_dir_and_no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(repo, config, split):
        raise ConnectionError("Couldn't reach 'lukaemon/bbh' on the Hub (LocalEntryNotFoundError)")

    calls = _fake_datasets(monkeypatch, offline)
    with pytest.raises(TaskError) as info:
        load_task("bbh/navigate")
    message = str(info.value)
    assert "--data-dir" in message and "GREATER_DATA_DIR" in message and "lukaemon/bbh" in message
    assert calls == [("lukaemon/bbh", "navigate", "test")]


@pytest.mark.usefixtures("no_env")
def test_datasets_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(TaskError, match="GREATER_DATA_DIR"):
        load_task("gsm8k")


@pytest.mark.usefixtures("no_env")
def test_hub_rows_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub path, fed fake rows in the hub's formats (FOLIO premises as one string)."""

    def fake(repo, config, split):
        if repo == "yale-nlp/FOLIO":
            premises = "All cats are animals.\nTom is a cat."
            row = {"premises": premises, "conclusion": "Tom is an animal."}
            return [{**row, "label": "True" if i % 2 else "Uncertain"}
                    for i in range(210 if split == "train" else 7)]
        if repo == "openai/gsm8k":
            return [json.loads(_gsm_line(i)) for i in range(1000 if split == "train" else 1319)]
        return [{"input": f"Question {i}?\nOptions:\n(A) x\n(B) y", "target": "(B)"}
                for i in range(250)]

    calls = _fake_datasets(monkeypatch, fake)
    folio = load_task("folio")
    assert (len(folio.train), len(folio.dev), len(folio.test)) == (100, 100, 7)
    assert folio.train[0].input.startswith(
        "Premises:\n1. All cats are animals.\n2. Tom is a cat.\nConclusion: Tom is an animal."
    )
    assert folio.train[0].target == "Uncertain"
    gsm = load_task("gsm8k")
    assert gsm.train[0].target == "1" and gsm.test[999].target == "1000"
    hyper = load_task("bbh/hyperbaton")
    assert hyper.gold_answer(hyper.test[0]) == "B"
    assert calls == [
        ("yale-nlp/FOLIO", None, "train"), ("yale-nlp/FOLIO", None, "validation"),
        ("openai/gsm8k", "main", "train"), ("openai/gsm8k", "main", "test"),
        ("lukaemon/bbh", "hyperbaton", "test"),
    ]


def test_task_built_directly_gets_generic_extractor_and_parser() -> None:
    examples = [Example("Is water wet?", "yes"), Example("Is fire cold?", "No")]
    task = Task("toy", AnswerType.YES_NO, train=examples, dev=[], test=[])
    assert task.extractor == "Therefore, the final answer (use exact format: '$Yes' or '$No') is $"
    assert [task.gold_answer(e) for e in examples] == ["Yes", "No"]
    assert task.is_correct("It is. " + task.extractor + task.answer_text(examples[0]), examples[0])
    numbers = Task("toy-n", AnswerType.NUMBER, train=[Example("1+1?", "2")], dev=[], test=[])
    assert numbers.extract_answer(numbers.extractor + "2$") == "2"
