"""Tests of greater.lm.model and greater.lm.generation with the real stand-in models.

Chat layout: every stand-in (smollm2-135m, gemma3-270m, qwen2.5-0.5b) renders ``head | prompt |
tail`` exactly as its tokenizer's own chat template renders the user message. Tokenisation
stability of ``extractor + answer`` is checked for one task per answer type on every stand-in.
Generation (batched, shared-prefix, continuation, sampling) is checked on smollm2-135m in fp32
against one-row-at-a-time runs and against Hugging Face ``model.generate``.
"""

from __future__ import annotations

import pytest
import torch

from greater.lm import LM, MAX_PROMPT_TOKENS, PROMPT_JOINER, Continuation, PromptError
from greater.tasks import AnswerType, load_task
from greater.tasks.bbh import BBH_TASK_TYPES

PROMPT = "proper logical reasoning and think step by step. Finally give the actual correct answer."
STAND_INS = ("smollm2-135m", "gemma3-270m", "qwen2.5-0.5b")
#: Loading these converts them into the user's cache on first use (3.4 GB): slow tests only.
BIG_STAND_INS = ("gemma3-270m", "qwen2.5-0.5b")


def stand_in_param(name: str, *values, marks=()):
    """A parameter set for ``name``; marked slow for the bigger stand-ins."""
    return pytest.param(name, *values,
                        marks=[*marks, *([pytest.mark.slow] if name in BIG_STAND_INS else [])])


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def bool_task(data_dir):
    return load_task("bbh/boolean_expressions", data_dir=data_dir)


_LOADED: dict[str, LM] = {}


@pytest.fixture(scope="module")
def stand_in(request, lm32):
    """An LM per stand-in name; gemma and qwen are loaded once per module (bf16, ~5 s each)."""
    def get(name: str) -> LM:
        if name == "smollm2-135m":
            return lm32
        if name not in _LOADED:
            _LOADED[name] = LM.load(name, dtype="bf16", device="cpu")
        return _LOADED[name]

    yield get
    _LOADED.clear()


@pytest.fixture(scope="module")
def tasks_by_kind(data_dir):
    """One task per AnswerType (BBH where possible, FOLIO for three-way), plus gsm8k."""
    names: dict[AnswerType, str] = {}
    for bbh_name, answer_type in BBH_TASK_TYPES.items():
        names.setdefault(answer_type, f"bbh/{bbh_name}")
    names[AnswerType.THREE_WAY] = "folio"
    tasks = {t.value: load_task(n, data_dir=data_dir) for t, n in names.items()}
    tasks["number_gsm8k"] = load_task("gsm8k", data_dir=data_dir)
    return tasks


# ---------------------------------------------------------------------------- chat layout
@pytest.mark.parametrize("name", [stand_in_param(n) for n in STAND_INS])
def test_chat_layout_matches_the_tokenizers_own_template(name, stand_in, bool_task):
    lm = stand_in(name)
    tok = lm.tokenizer
    questions = [ex.input for ex in bool_task.dev[:2]] + ["What is 2 + 2?"]
    prompt_ids = lm.prompt_ids(PROMPT)
    for question in questions:
        head = lm.head_ids(question)
        row = head + prompt_ids + lm.tail_ids
        rendered = tok.apply_chat_template(
            [{"role": "user", "content": f"{question}{PROMPT_JOINER} {PROMPT}"}],
            tokenize=False, add_generation_prompt=True)
        # Exactly the tokenizer's own rendering, as text and as tokens.
        assert tok.decode(row) == rendered
        assert row == lm.encode(rendered)
        assert lm.chat_ids(f"{question}{PROMPT_JOINER} {PROMPT}") == row
        # The prompt sits right after "<question>. Use" and right before the end of the user turn.
        assert row[len(head):len(head) + len(prompt_ids)] == prompt_ids
        assert tok.decode(head).endswith(question + PROMPT_JOINER)
        assert tok.decode(prompt_ids) == " " + PROMPT
        assert lm.prompt_text(prompt_ids) == PROMPT
        # The tail ends the user turn with a token generation stops at, and opens the reply.
        assert any(t in lm.stop_ids for t in lm.tail_ids)
        assert rendered.endswith(tok.decode(lm.tail_ids))
        # No beginning-of-sequence token beyond those the template writes (no double BOS).
        if tok.bos_token:
            assert row.count(tok.bos_token_id) == rendered.count(tok.bos_token)
            if rendered.startswith(tok.bos_token):
                assert row[0] == tok.bos_token_id and row[1] != tok.bos_token_id
    # The tail does not depend on the question; heads are cached per question.
    assert lm.head_ids(questions[0]) is lm.head_ids(questions[0])


@pytest.mark.slow
def test_gemma_embed_scale(stand_in, lm32):
    assert lm32.embed_scale == 1.0
    gemma = stand_in("gemma3-270m")
    hidden = gemma.model.config.get_text_config().hidden_size
    assert gemma.embed_scale == pytest.approx(hidden ** 0.5, rel=1e-2)  # ~25.3
    ids = torch.tensor([[5, 17, 300]])
    expected = gemma.embedding_layer.weight[ids].float() * gemma.embed_scale
    torch.testing.assert_close(gemma.embed(ids).float(), expected, rtol=1e-2, atol=1e-2)


# Tokenisation stability: encode(" " + extractor) + encode(answer) == encode(" " + extractor +
# answer). Known failures are listed here precisely (strict xfail: they must keep failing, and
# an unexpected pass or a new failure both show up):
#   gemma3-270m merges the extractor's final "$" with a following ")" ("$)" is one token) and
#   with "-" ("$-"), so dyck_languages answers starting with ")" and negative numbers of
#   multistep_arithmetic_two tokenise differently when written as one text. Generation forces
#   the extractor's own tokens and the loss uses the same split, so the two stay consistent,
#   but the loss targets a tokenisation the model never sees in ordinary text.
#   (gsm8k has a few negative answers too, e.g. "-10", "-3".)
_KNOWN_UNSTABLE = {("gemma3-270m", "free_text"), ("gemma3-270m", "number"),
                   ("gemma3-270m", "number_gsm8k")}


def _stability_params():
    kinds = [t.value for t in AnswerType] + ["number_gsm8k"]
    for name in STAND_INS:
        for kind in kinds:
            marks = []
            if (name, kind) in _KNOWN_UNSTABLE:
                marks.append(pytest.mark.xfail(strict=True, reason=(
                    "gemma tokenizer merges '$)' / '$-' across the extractor/answer boundary")))
            yield stand_in_param(name, kind, marks=marks)


@pytest.mark.parametrize("name,kind", [stand_in_param(n, k) for n in STAND_INS
                                       for k in [t.value for t in AnswerType] + ["number_gsm8k"]])
def test_loss_split_follows_the_joint_tokenisation(name, kind, stand_in, tasks_by_kind):
    """What the loss uses: (context, answer) is the tokenizer's own split of the joined text,
    the answer is never empty, and it decodes to text ending in the gold answer."""
    lm = stand_in(name)
    task = tasks_by_kind[kind]
    for answer in sorted({task.answer_text(ex) for ex in task.examples}):
        context, ids = lm.extractor_answer_ids(task.extractor, answer)
        assert context + ids == lm.encode(" " + task.extractor + answer)
        assert ids and lm.decode(ids).endswith(answer)
        assert context == lm.extractor_ids(task.extractor)[: len(context)]


@pytest.mark.parametrize("name,kind", list(_stability_params()))
def test_extractor_answer_tokenisation_is_stable(name, kind, stand_in, tasks_by_kind):
    lm = stand_in(name)
    task = tasks_by_kind[kind]
    answers = sorted({task.answer_text(ex) for ex in task.examples})
    assert answers
    extractor = lm.extractor_ids(task.extractor)
    assert extractor == lm.encode(" " + task.extractor)
    unstable = [a for a in answers
                if extractor + lm.encode(a) != lm.encode(" " + task.extractor + a)]
    assert not unstable, (f"{name} / {task.name}: {len(unstable)} of {len(answers)} answers "
                          f"tokenise differently after the extractor, e.g. {unstable[:5]}")


# ------------------------------------------------------------------------------ prompts
def test_bad_prompts_raise_prompt_error(lm32):
    for bad in ("", "   ", "\n\t"):
        with pytest.raises(PromptError):
            lm32.prompt_ids(bad)
    with pytest.raises(PromptError, match="at most"):
        lm32.prompt_ids("think " * (MAX_PROMPT_TOKENS + 10))
    assert issubclass(PromptError, ValueError)
    # Leading/trailing whitespace is ignored; the tokens carry one leading space.
    assert lm32.prompt_ids("  think step by step  ") == lm32.encode(" think step by step")


# ---------------------------------------------------------------------------- generation
def _rows(lm: LM, task, n: int) -> list[list[int]]:
    prompt = lm.prompt_ids(PROMPT)
    return [lm.head_ids(ex.input) + prompt + lm.tail_ids for ex in task.dev[:n]]


def _until_stop(ids: list[int], stop_ids: set[int]) -> list[int]:
    for k, t in enumerate(ids):
        if t in stop_ids:
            return ids[:k]
    return ids


CHATS = ["Write a short poem about the sea.",
         "Explain step by step why the sky is blue, for a child of six years old who asks.",
         "List three fruits.",
         f"{PROMPT} Is not ( True ) and ( False or True ) True or False?"]


@pytest.fixture(scope="module")
def greedy_runs(lm32):
    """Batched (4 rows of different lengths, left padded) and one-at-a-time greedy runs."""
    rows = [lm32.chat_ids(t) for t in CHATS]
    batched = lm32.generate(rows, max_new_tokens=20, batch_size=4)
    single = [lm32.generate([r], max_new_tokens=20, batch_size=1)[0] for r in rows]
    return rows, batched, single


def test_batched_greedy_equals_one_at_a_time(greedy_runs):
    rows, batched, single = greedy_runs
    assert len({len(r) for r in rows}) > 1, "rows should differ in length (left padding)"
    assert max(len(b.ids) for b in batched) == 20, "expected at least one long reply"
    for b, s in zip(batched, single):
        assert b.ids == s.ids
        assert b.stopped_by == s.stopped_by
        assert 1 <= len(b.ids) <= 20


def test_greedy_equals_hf_generate(lm32, greedy_runs):
    rows, batched, _ = greedy_runs
    for row, ours in zip(rows, batched):
        ids = torch.tensor([row])
        with torch.no_grad():
            out = lm32.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                      do_sample=False, max_new_tokens=20,
                                      pad_token_id=lm32.tokenizer.pad_token_id)
        hf = _until_stop(out[0, len(row):].tolist(), lm32.stop_ids)
        assert ours.ids == hf
        assert ours.stopped_by == ("length" if len(hf) == 20 else "eos")


def test_max_new_tokens_respected_and_validated(lm32, bool_task):
    rows = _rows(lm32, bool_task, 2)
    for gen in lm32.generate(rows, max_new_tokens=3):
        assert len(gen.ids) <= 3
        assert (gen.stopped_by == "length") == (len(gen.ids) == 3)
        assert gen.continuation_ids == []
    with pytest.raises(ValueError, match="max_new_tokens"):
        lm32.generate(rows, max_new_tokens=0)
    with pytest.raises(ValueError, match="batch_size"):
        lm32.generate(rows, max_new_tokens=2, batch_size=0)
    with pytest.raises(ValueError, match="at least one token"):
        lm32.generate([rows[0], []], max_new_tokens=2)
    with pytest.raises(ValueError, match="same length"):
        lm32.generate(rows, [[1, 2], [3]], max_new_tokens=2)
    with pytest.raises(ValueError):
        Continuation((), 4)
    with pytest.raises(ValueError):
        Continuation((1,), 0)


def test_continuation_forces_extractor_and_stops_early(lm32, bool_task):
    rows = _rows(lm32, bool_task, 3)
    extractor = lm32.extractor_ids(bool_task.extractor)
    cont = Continuation(tuple(extractor), 12, bool_task.answer_complete)
    gens = lm32.generate(rows, max_new_tokens=10, continuation=cont, batch_size=3)
    n_complete = 0
    for row, gen in zip(rows, gens):
        assert len(gen.ids) <= 10 and gen.continuation_ids
        # Independent check that the extractor was fed after the reasoning: greedy generation
        # from the explicit row reasoning + extractor gives the same answer tokens.
        explicit = row + gen.ids + extractor
        ref = lm32.generate([explicit], max_new_tokens=len(gen.continuation_ids) + 1)[0].ids
        assert ref[:len(gen.continuation_ids)] == gen.continuation_ids
        text = lm32.decode(gen.continuation_ids)
        prev = lm32.decode(gen.continuation_ids[:-1])
        if bool_task.answer_complete(text):
            # Early stop: the answer was complete only with the last token.
            assert not bool_task.answer_complete(prev)
            assert len(gen.continuation_ids) <= 12
            n_complete += 1
        else:
            # Otherwise it ran to its bound or the model ended its turn.
            assert len(gen.continuation_ids) == 12 or (
                len(ref) == len(gen.continuation_ids))
    assert n_complete >= 1, "no continuation stopped early on a complete answer"


def test_shared_prefix_suffixes_equal_plain_rows(lm32, bool_task):
    prompt = lm32.prompt_ids(PROMPT)
    i = 4
    variants = [prompt[i:], lm32.encode(" careful")[:1] + prompt[i + 1:],
                lm32.encode(" quickly")[:1] + prompt[i + 1:]]
    assert len({len(v) for v in variants}) == 1
    heads = [lm32.head_ids(ex.input) for ex in bool_task.dev[4:6]]
    prefixes = [h + prompt[:i] for h in heads]
    suffixes = [v + lm32.tail_ids for v in variants]
    extractor = lm32.extractor_ids(bool_task.extractor)
    cont = Continuation(tuple(extractor), 6, bool_task.answer_complete)
    shared = lm32.generate(prefixes, suffixes, max_new_tokens=12, continuation=cont,
                           batch_size=6)
    plain = lm32.generate([p + s for p in prefixes for s in suffixes], max_new_tokens=12,
                          continuation=cont, batch_size=6)
    assert len(shared) == len(plain) == 6
    for a, b in zip(shared, plain):
        assert a.ids == b.ids
        assert a.continuation_ids == b.continuation_ids
        assert a.stopped_by == b.stopped_by


def test_seeded_sampling_is_reproducible(lm32, bool_task):
    rows = _rows(lm32, bool_task, 3)
    run = lambda seed: [g.ids for g in lm32.generate(rows, max_new_tokens=12, temperature=1.0,
                                                    seed=seed)]
    first = run(123)
    assert run(123) == first
    assert run(7) != first
    greedy = [g.ids for g in lm32.generate(rows, max_new_tokens=12)]
    assert first != greedy


def test_chat_replies_and_counts_calls(lm32):
    before = lm32.meter.llm_calls
    replies = lm32.chat(["Say hello."], max_new_tokens=6)
    assert len(replies) == 1 and isinstance(replies[0], str) and replies[0]
    assert lm32.meter.llm_calls == before + 1


def test_sliding_window_model_batches_continuously_and_equals_one_at_a_time():
    """gemma3-270m (sliding-window layers) now shares the slot cache: rows join a running
    batch as others finish (batch 2 for 3 rows), and the output equals one-at-a-time (fp32)."""
    gemma = LM.load("gemma3-270m", dtype="fp32", device="cpu")
    rows = [gemma.chat_ids(t) for t in CHATS[:3]]
    batched = gemma.generate(rows, max_new_tokens=8, batch_size=2)
    single = [gemma.generate([r], max_new_tokens=8, batch_size=1)[0] for r in rows]
    assert [g.ids for g in batched] == [g.ids for g in single]
    assert all(g.ids for g in batched)
