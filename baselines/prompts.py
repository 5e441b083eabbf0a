"""Meta-prompts of the LLM-optimiser baselines (APE, APO, TextGrad, OPRO, PE2, GEPA) and the parsers of what the optimiser replies.

Every meta-prompt is a module constant (written from the papers' descriptions, in our own
words) filled in by a small function. Instructions are shown to the optimiser as they reach the
task model, i.e. continuing the joiner word (``"Use ..."``); :func:`clean_prompt` strips that
word again.

Parsers never raise: on anything unusable they return ``None`` / ``[]`` and the caller keeps
its current prompt and counts a parse failure (small models break formats often).
"""

from __future__ import annotations

import re
from typing import Sequence

from greater.lm.model import PROMPT_JOINER

#: The word the joiner puts in front of every instruction ("... question. Use <prompt>").
LEAD_WORD = PROMPT_JOINER.strip(" .")
MAX_PROMPT_CHARS = 1000

# ----------------------------------------------------------------------------- APE
APE_PROPOSAL = """\
I gave a friend an instruction. Following it, the friend read each input below and produced \
the output shown next to it.

{demos}

What was the instruction? It starts with "{lead}". Write it between <prompt> and </prompt>."""

APE_RESAMPLE = """\
Write a variation of the instruction below that keeps its meaning. It starts with "{lead}".

Instruction: {prompt}

Write the new instruction between <prompt> and </prompt>."""

# ----------------------------------------------------------------------------- APO
APO_GRADIENT = """\
I am writing an instruction for a language model. The current instruction is:
"{prompt}"

With it, the model gets these examples wrong:

{errors}

Give {n} reasons why the instruction may have led to these mistakes. Write each as \
"Reason 1: ...", "Reason 2: ..." and so on."""

APO_EDIT = """\
I am writing an instruction for a language model. The current instruction is:
"{prompt}"

With it, the model gets these examples wrong:

{errors}

A reason the instruction fails: {reason}

Using this, write {n} improved instruction(s), each starting with "{lead}" and each between \
<prompt> and </prompt>."""

APO_PARAPHRASE = APE_RESAMPLE

# ----------------------------------------------------------------------------- TextGrad
TEXTGRAD_FEEDBACK = """\
You give feedback on an instruction (a system prompt) for a language model. The model read a \
question followed by the instruction and replied.

Instruction: {prompt}

Question: {question}

Model's reply: {response}

Correct answer: {gold} (the model answered: {answer})

The reply is wrong. Explain briefly how the instruction should change so that the model \
answers questions like this correctly. Do not solve the question."""

TEXTGRAD_UPDATE = """\
You improve an instruction (a system prompt) for a language model using feedback.

Current instruction: {prompt}

Feedback on mistakes it caused:

{feedback}

Write an improved instruction that addresses the feedback. It starts with "{lead}". Write it \
between <prompt> and </prompt>."""


# ----------------------------------------------------------------------------- OPRO
OPRO_META = """\
Your job is to write an instruction that makes a language model solve problems accurately. The \
model reads each problem followed by the instruction, which starts with "{lead}".

Below are instructions tried so far, each with its accuracy on the problems (0 to 100). They \
are in ascending order of accuracy, so the best ones come last.

{trajectory}

Here are some of the problems, each with its correct answer:

{exemplars}

Write one new instruction that differs from every instruction above and reaches a higher \
accuracy than all of them. Keep it short and general enough for every problem of this kind. It \
starts with "{lead}". Write it between <prompt> and </prompt>."""

# ----------------------------------------------------------------------------- PE2
# PE2's three components: a two-step task description, a specification of the context the
# prompt is used in, and a step-by-step reasoning template applied to every failure shown.
PE2_META = """\
You are an expert prompt engineer. Your job has two parts. First, find out why the current \
prompt leads a language model to wrong answers on the examples below. Second, use what you \
found to write a better prompt.

How the prompt is used: the model reads one message made of a question followed by the \
prompt, like this: "<question>. {shown}". The model then reasons and must end its reply with \
"{extractor}" directly followed by its final answer; only that answer is compared with the \
correct one.

Current prompt: "{shown}"

Examples the model got wrong with the current prompt:

{failures}

For each example, reason step by step:
1. Compared with the correct answer, what did the model get wrong?
2. Does the prompt describe the task correctly, or is something in it missing or misleading?
3. Does the prompt need an edit? If so, give a concrete, actionable edit.

Then write the improved prompt. It starts with "{lead}". Write it between <prompt> and \
</prompt>."""

# ----------------------------------------------------------------------------- GEPA
GEPA_REFLECT = """\
I gave a language model the instruction below to do a task.

Instruction: {shown}

Here are task inputs it received (each followed by the instruction), its reply, the answer it \
gave, the correct answer, and whether it was right:

{traces}

Write a new instruction for the model. Read the inputs carefully to work out what the task is \
and how its inputs look. Study what went wrong in the replies and any strategy that worked, and \
put the useful knowledge (rules of the task, pitfalls, a reliable way to solve it) into the \
instruction. It starts with "{lead}". Write it between <prompt> and </prompt>."""


def _example_block(question: str, answer: str, *, response: str | None = None) -> str:
    text = f"Input: {question.strip()}\n"
    if response is not None:
        text += f"Model reply: {response.strip()}\n"
    return text + f"Correct output: {answer}"


def show_prompt(prompt: str) -> str:
    """The instruction as the task model reads it (with the lead word)."""
    return f"{LEAD_WORD} {prompt}"


def ape_proposal(demos: Sequence[tuple[str, str]]) -> str:
    blocks = "\n\n".join(f"Input: {q.strip()}\nOutput: {a}" for q, a in demos)
    return APE_PROPOSAL.format(demos=blocks, lead=LEAD_WORD)


def resample(prompt: str) -> str:
    return APE_RESAMPLE.format(prompt=show_prompt(prompt), lead=LEAD_WORD)


def apo_gradient(prompt: str, errors: Sequence[tuple[str, str, str]], n: int) -> str:
    """``errors``: (question, model reply, gold answer) triples."""
    blocks = "\n\n".join(_example_block(q, g, response=r) for q, r, g in errors)
    return APO_GRADIENT.format(prompt=show_prompt(prompt), errors=blocks, n=n)


def apo_edit(prompt: str, errors: Sequence[tuple[str, str, str]], reason: str, n: int) -> str:
    blocks = "\n\n".join(_example_block(q, g, response=r) for q, r, g in errors)
    return APO_EDIT.format(prompt=show_prompt(prompt), errors=blocks, reason=reason, n=n,
                           lead=LEAD_WORD)


def textgrad_feedback(prompt: str, question: str, response: str, gold: str,
                      answer: str | None) -> str:
    return TEXTGRAD_FEEDBACK.format(prompt=show_prompt(prompt), question=question.strip(),
                                    response=response.strip(), gold=gold,
                                    answer=answer if answer is not None else "no answer")


def textgrad_update(prompt: str, feedback: Sequence[str]) -> str:
    text = "\n\n".join(f"{i}. {f.strip()}" for i, f in enumerate(feedback, start=1))
    return TEXTGRAD_UPDATE.format(prompt=show_prompt(prompt), feedback=text, lead=LEAD_WORD)


def opro_meta(trajectory: Sequence[tuple[str, float]], exemplars: Sequence[tuple[str, str]]
              ) -> str:
    """``trajectory``: (instruction, accuracy in [0, 1]) pairs, already in the order shown."""
    shown = "\n\n".join(f"Instruction: {show_prompt(p)}\nAccuracy: {round(100 * acc)}"
                         for p, acc in trajectory)
    blocks = "\n\n".join(_example_block(q, a) for q, a in exemplars)
    return OPRO_META.format(trajectory=shown, exemplars=blocks, lead=LEAD_WORD)


def pe2_meta(prompt: str, failures: Sequence[tuple[str, str, str]], extractor: str) -> str:
    """``failures``: (question, model reply, gold answer) triples."""
    blocks = "\n\n".join(f"Example {i}\n" + _example_block(q, g, response=r)
                          for i, (q, r, g) in enumerate(failures, start=1))
    return PE2_META.format(shown=show_prompt(prompt), failures=blocks,
                           extractor=extractor.strip(), lead=LEAD_WORD)


def gepa_reflect(prompt: str, traces: Sequence[tuple[str, str, str | None, str, bool]]) -> str:
    """``traces``: (question, model reply, model's answer, gold answer, correct) per example."""
    blocks = "\n\n".join(
        f"Example {i}\nInput: {q.strip()}\nModel reply: {r.strip()}\n"
        f"Model's answer: {a if a is not None else 'none found'}\nCorrect answer: {g}\n"
        f"Verdict: {'right' if ok else 'wrong'}"
        for i, (q, r, a, g, ok) in enumerate(traces, start=1))
    return GEPA_REFLECT.format(shown=show_prompt(prompt), traces=blocks, lead=LEAD_WORD)

# ----------------------------------------------------------------------------- parsers
_TAG = re.compile(r"<prompt>(.*?)(?:</prompt>|(?=<prompt>)|$)", re.S | re.I)
_NUMBERED = re.compile(r"^\s*(?:\d+[.):]|[-*•])\s+(.+?)\s*$", re.M)
_FINAL = re.compile(r"(?:new|improved)\s+(?:prompt|instruction)\s*:\s*(.+)", re.I)
_REASON = re.compile(r"reason\s*\d+\s*[:.)-]\s*(.+?)(?=reason\s*\d+\s*[:.)-]|\Z)", re.S | re.I)


def clean_prompt(text: str | None) -> str | None:
    """A usable instruction from ``text``, or None (empty, too long, or not text)."""
    if not isinstance(text, str):
        return None
    text = " ".join(text.split()).strip().strip("\"'`").strip()
    if text.lower().startswith(("instruction:", "prompt:")):
        text = text.split(":", 1)[1].strip().strip("\"'`").strip()
    lead = LEAD_WORD.lower() + " "
    if text.lower().startswith(lead):
        text = text[len(lead):].strip()
    if not text or len(text) > MAX_PROMPT_CHARS or not any(c.isalpha() for c in text):
        return None
    return text


def parse_tagged(text: str | None, tag: str = "prompt") -> list[str]:
    """Contents of ``<tag>...</tag>`` (a missing closing tag runs to the end or next tag)."""
    if not isinstance(text, str):
        return []
    pattern = _TAG if tag == "prompt" else re.compile(
        rf"<{tag}>(.*?)(?:</{tag}>|(?=<{tag}>)|$)", re.S | re.I)
    return [c for c in (clean_prompt(m) for m in pattern.findall(text)) if c]


def parse_numbered(text: str | None) -> list[str]:
    """Items of a numbered or bulleted list ("1. ...", "2) ...", "- ...")."""
    if not isinstance(text, str):
        return []
    return [m.strip() for m in _NUMBERED.findall(text) if m.strip()]


def parse_prompts(text: str | None) -> list[str]:
    """Instructions in an optimiser reply: tagged ones, else the items of a numbered list."""
    found = parse_tagged(text)
    if not found:
        found = [c for c in (clean_prompt(m) for m in parse_numbered(text)) if c]
    return list(dict.fromkeys(found))


def parse_reasons(text: str | None) -> list[str]:
    """Reasons in "Reason 1: ... Reason 2: ..." form, else the items of a numbered list."""
    if not isinstance(text, str):
        return []
    found = [" ".join(m.split()) for m in _REASON.findall(text)]
    if not found:
        found = parse_numbered(text)
    return [r for r in found if any(c.isalpha() for c in r)]


def parse_feedback(text: str | None) -> str | None:
    """Free-text feedback: any non-empty reply with letters in it."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    return text if any(c.isalpha() for c in text) else None


def parse_final_prompt(text: str | None) -> str | None:
    """The instruction a reasoned reply ends with: its last tagged one, else the rest of the
    last "New prompt: ..." / "Improved instruction: ..." line; None if neither is usable.

    Numbered lists are not read as instructions here: in a reasoned reply they are the analysis.
    """
    tagged = parse_tagged(text)
    if tagged:
        return tagged[-1]
    if not isinstance(text, str):
        return None
    found = _FINAL.findall(text)
    return clean_prompt(found[-1]) if found else None
