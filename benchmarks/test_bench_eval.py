"""Evaluation throughput: batched KV-cached generation vs one example at a time vs HF generate.

smollm2-135m in the CPU's default dtype (bf16 with native bf16, else fp32), 2 threads, BBH
boolean_expressions dev, max_new_tokens 256, zero-shot CoT.
The batched path scores 32 examples at batch 16. The one-at-a-time paths (our code path with
batch_size=1, and a naive baseline calling HF ``model.generate`` per example for the reasoning,
then again for the answer after the extractor) run on the first BENCH_SEQUENTIAL_N examples
(default: the same 32). Fewer makes the run shorter but the workload differs (smollm2 replies
to some questions in a few tokens), so keep 32 for the ratio. Both the generated tokens per
second and the wall time for the same examples are recorded.
"""

from __future__ import annotations

import itertools
import os
import statistics
import time

import pytest
import torch

from benchmarks.machine import machine_info
from benchmarks.hf_baseline import generate_batched
from greater.lm.cpu_kernels import plain_linears
from greater.evaluate import ZERO_SHOT_COT_PROMPT, score_examples
from greater.responses import ANSWER_MAX_TOKENS

N_EXAMPLES = 32
N_SEQUENTIAL = int(os.environ.get("BENCH_SEQUENTIAL_N", "32"))
MAX_NEW_TOKENS = 256
BATCH = 16
RATES: dict[str, float] = {}


def _run_ours(lm, task, examples, batch_size, max_new_tokens=MAX_NEW_TOKENS):
    """Score ``examples`` with our engine; returns (records, generated tokens, seconds)."""
    before = lm.meter.snapshot()
    t0 = time.perf_counter()
    records = score_examples(lm, task, examples, lm.prompt_ids(ZERO_SHOT_COT_PROMPT),
                             max_new_tokens=max_new_tokens, batch_size=batch_size)
    seconds = time.perf_counter() - t0
    tokens = lm.meter.snapshot().generated_tokens - before.generated_tokens
    return records, tokens, seconds


def _extra(benchmark, lm, name, n, tokens, seconds, records=None):
    rate = tokens / seconds
    RATES[name] = rate
    benchmark.extra_info.update(machine_info(lm))
    benchmark.extra_info.update({"path": name, "examples": n, "generated_tokens": tokens,
                                 "seconds": round(seconds, 2), "tokens_per_second": round(rate, 2),
                                 "max_new_tokens": MAX_NEW_TOKENS})
    if records is not None:
        benchmark.extra_info["accuracy"] = sum(r.correct for r in records) / len(records)
    print(f"\n{name}: {tokens} tokens in {seconds:.1f} s = {rate:.1f} tok/s")


def test_one_at_a_time_same_code_path(benchmark, lm_default, bool_task):
    examples = bool_task.dev[:N_SEQUENTIAL]
    out = benchmark.pedantic(_run_ours, args=(lm_default, bool_task, examples, 1), rounds=1,
                             iterations=1)
    records, tokens, seconds = out
    _extra(benchmark, lm_default, "ours_batch1", len(examples), tokens, seconds, records)


def test_one_at_a_time_naive_hf_generate(benchmark, lm_default, bool_task):
    lm, task = lm_default, bool_task
    examples = task.dev[:N_SEQUENTIAL]
    prompt = lm.prompt_ids(ZERO_SHOT_COT_PROMPT)
    extractor = lm.extractor_ids(task.extractor)
    stop = sorted(lm.stop_ids)

    def gen(ids, n):
        x = torch.tensor([ids])
        with torch.inference_mode():
            out = lm.model.generate(input_ids=x, attention_mask=torch.ones_like(x),
                                    do_sample=False, max_new_tokens=n, eos_token_id=stop,
                                    pad_token_id=lm.tokenizer.pad_token_id)
        new = out[0, len(ids):].tolist()
        return [t for t in new if t not in lm.stop_ids]

    def run():
        tokens, correct = 0, 0
        with plain_linears(lm.model):  # transformers' model as shipped (see hf_baseline)
            t0 = time.perf_counter()
            for ex in examples:
                row = lm.head_ids(ex.input) + prompt + lm.tail_ids
                reasoning = gen(row, MAX_NEW_TOKENS)
                answer = gen(row + reasoning + extractor, ANSWER_MAX_TOKENS)
                tokens += len(reasoning) + len(answer)
                text = f"{lm.decode(reasoning).strip()} {task.extractor}{lm.decode(answer)}"
                correct += task.is_correct(text, ex)
            return tokens, time.perf_counter() - t0, correct

    tokens, seconds, correct = benchmark.pedantic(run, rounds=1, iterations=1)
    _extra(benchmark, lm_default, "hf_generate_per_example", len(examples), tokens, seconds)
    benchmark.extra_info["accuracy"] = correct / len(examples)


def test_batched_kv_cached(benchmark, lm_default, bool_task):
    examples = bool_task.dev[:N_EXAMPLES]
    assert len(examples) == N_EXAMPLES
    records, tokens, seconds = benchmark.pedantic(
        _run_ours, args=(lm_default, bool_task, examples, BATCH), rounds=1, iterations=1)
    _extra(benchmark, lm_default, f"ours_batch{BATCH}", len(examples), tokens, seconds, records)
    rate = RATES[f"ours_batch{BATCH}"]
    for name in ("ours_batch1", "hf_generate_per_example"):
        if name in RATES:
            benchmark.extra_info[f"ratio_vs_{name}"] = round(rate / RATES[name], 2)
            print(f"batched / {name}: {rate / RATES[name]:.2f}x")


# A second workload, 32 GSM8K dev examples at batch 16, where every reply is a reasoning chain
# (smollm2 writes until the bound), so the ratio shows batching itself rather than the one
# longest reply of a short-reply task. Each path runs once untimed first: the first run of a
# process pays oneDNN's kernel creation and the allocator's first page faults, which would
# otherwise fall on whichever path runs first.
GSM8K_N = 32
GSM8K_MAX_NEW_TOKENS = 128


@pytest.fixture(scope="module")
def gsm8k_task(data_dir):
    from greater.tasks import load_task

    return load_task("gsm8k", data_dir=data_dir)


@pytest.mark.parametrize("batch_size", [1, BATCH], ids=["batch1", f"batch{BATCH}"])
def test_long_replies_gsm8k(benchmark, lm_default, gsm8k_task, batch_size):
    examples = gsm8k_task.dev[:GSM8K_N]

    def run():
        return _run_ours(lm_default, gsm8k_task, examples, batch_size, GSM8K_MAX_NEW_TOKENS)[1:]

    tokens, seconds = benchmark.pedantic(run, rounds=1, iterations=1,
                                         warmup_rounds=int(batch_size > 1))
    name = f"gsm8k_ours_batch{batch_size}"
    _extra(benchmark, lm_default, name, len(examples), tokens, seconds)
    benchmark.extra_info["max_new_tokens"] = GSM8K_MAX_NEW_TOKENS
    if batch_size == BATCH and "gsm8k_ours_batch1" in RATES:
        ratio = RATES[name] / RATES["gsm8k_ours_batch1"]
        benchmark.extra_info["ratio_vs_gsm8k_ours_batch1"] = round(ratio, 2)
        print(f"gsm8k batched / one at a time: {ratio:.2f}x")


def test_long_replies_gsm8k_transformers_decode_steps(benchmark, lm_default, gsm8k_task,
                                                     monkeypatch):
    """Our engine at batch 16 with every decode step through transformers' forward instead of
    :class:`~greater.lm.decode_step.DecodeStep` (``fast_decode=False``): what that step gives."""
    examples = gsm8k_task.dev[:GSM8K_N]
    monkeypatch.setattr(lm_default, "decode_step", None)

    def run():
        return _run_ours(lm_default, gsm8k_task, examples, BATCH, GSM8K_MAX_NEW_TOKENS)[1:]

    tokens, seconds = benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=1)
    name = f"gsm8k_ours_batch{BATCH}_transformers_steps"
    _extra(benchmark, lm_default, name, len(examples), tokens, seconds)
    benchmark.extra_info["max_new_tokens"] = GSM8K_MAX_NEW_TOKENS
    fast = RATES.get(f"gsm8k_ours_batch{BATCH}")
    if fast is not None:
        benchmark.extra_info["fast_decode_over_transformers_steps"] = round(fast / RATES[name], 2)
        print(f"gsm8k fast decode step / transformers' steps: {fast / RATES[name]:.2f}x")


@pytest.mark.parametrize("packed", [False, True], ids=["as_shipped", "packed_weights"])
def test_long_replies_gsm8k_hf_generate_batched(benchmark, lm_default, gsm8k_task, packed):
    """transformers' batched greedy ``model.generate`` on the same 32 prompts at batch 16
    (left-padded, reasoning only, same bound): the baseline of the issue's 1.5x target, on the
    model as transformers ships it, and for reference with our prepacked CPU weights too."""
    lm = lm_default
    prompt = lm.prompt_ids(ZERO_SHOT_COT_PROMPT)
    rows = [lm.head_ids(ex.input) + prompt + lm.tail_ids for ex in gsm8k_task.dev[:GSM8K_N]]

    def run():
        t0 = time.perf_counter()
        tokens = generate_batched(lm, rows, BATCH, GSM8K_MAX_NEW_TOKENS, packed=packed)
        return tokens, time.perf_counter() - t0

    tokens, seconds = benchmark.pedantic(run, rounds=1, iterations=1,
                                         warmup_rounds=1)
    name = f"gsm8k_hf_generate_batch{BATCH}" + ("_packed" if packed else "")
    _extra(benchmark, lm_default, name, GSM8K_N, tokens, seconds)
    benchmark.extra_info["max_new_tokens"] = GSM8K_MAX_NEW_TOKENS
    ours = RATES.get(f"gsm8k_ours_batch{BATCH}")
    if ours is not None:
        benchmark.extra_info["ours_over_generate"] = round(ours / RATES[name], 2)
        print(f"gsm8k ours / {name}: {ours / RATES[name]:.2f}x")


GSM8K_PAIRED_ROUNDS = 6


def test_long_replies_gsm8k_paired_rounds(benchmark, lm_default, gsm8k_task):
    """Ours at batch 16 against batched ``generate`` (as shipped) on the same 32 prompts,
    alternating for :data:`GSM8K_PAIRED_ROUNDS` rounds in one process after one untimed round
    each. On a shared machine whose speed drifts by tens of percent between minutes, the ratio
    of two runs minutes apart says more about the drift than about the engines; each round's
    ratio here compares runs seconds apart, each round starts with another of the runs (so
    that a drift within a round favours none), and the median of the rounds is recorded, with
    the ratio of all rounds' tokens per second together.

    Two of ours: the evaluation (reasoning, then the answer extractor and the answer, which
    ``generate`` does not do) and the same reasoning-only generation ``generate`` does.
    Neither timing holds the unpacking and re-packing of our weights around ``generate``, nor
    the rebuilding of the fused projections after it (once per model in real use). Where our
    weights are packed, ``generate`` also runs on them (``generate_packed``, for reference:
    what is left of our lead without the kernels)."""
    lm = lm_default
    examples = gsm8k_task.dev[:GSM8K_N]
    prompt = lm.prompt_ids(ZERO_SHOT_COT_PROMPT)
    rows = [lm.head_ids(ex.input) + prompt + lm.tail_ids for ex in examples]

    def ours() -> float:
        _, tokens, seconds = _run_ours(lm, gsm8k_task, examples, BATCH, GSM8K_MAX_NEW_TOKENS)
        return tokens / seconds

    def ours_reasoning_only() -> float:
        t0 = time.perf_counter()
        replies = lm.generate(rows, max_new_tokens=GSM8K_MAX_NEW_TOKENS, batch_size=BATCH)
        return sum(len(reply.ids) for reply in replies) / (time.perf_counter() - t0)

    def generate() -> float:
        with plain_linears(lm.model):  # transformers' model as shipped, unpacked untimed
            t0 = time.perf_counter()
            tokens = generate_batched(lm, rows, BATCH, GSM8K_MAX_NEW_TOKENS, packed=True)
            rate = tokens / (time.perf_counter() - t0)
        if lm.decode_step is not None:
            for n in range(1, BATCH + 1):  # re-fuse the re-packed projections, untimed
                lm.decode_step.fused_for(n)
        return rate

    def generate_packed() -> float:
        t0 = time.perf_counter()
        tokens = generate_batched(lm, rows, BATCH, GSM8K_MAX_NEW_TOKENS, packed=True)
        return tokens / (time.perf_counter() - t0)

    runs = {"ours": ours, "ours_reasoning_only": ours_reasoning_only, "generate": generate}
    if lm.linear_kernels != "plain":
        runs["generate_packed"] = generate_packed
    names = list(runs)

    def rounds():
        for run in runs.values():  # untimed: kernel creation and first page faults
            run()
        results = []
        for k in range(GSM8K_PAIRED_ROUNDS):
            order = names[k % len(names):] + names[: k % len(names)]
            results.append({name: runs[name]() for name in order})
        return results

    results = benchmark.pedantic(rounds, rounds=1, iterations=1)
    benchmark.extra_info.update(machine_info(lm))
    benchmark.extra_info.update({"examples": len(examples),
                                 "max_new_tokens": GSM8K_MAX_NEW_TOKENS, "batch": BATCH})
    for name in names:
        benchmark.extra_info[f"{name}_tokens_per_second"] = [round(r[name], 1) for r in results]
    baselines = [name for name in names if name.startswith("generate")]
    for name, baseline in itertools.product(("ours", "ours_reasoning_only"), baselines):
        ratios = [r[name] / r[baseline] for r in results]
        median = statistics.median(ratios)
        together = sum(r[name] for r in results) / sum(r[baseline] for r in results)
        benchmark.extra_info.update({
            f"{name}_over_{baseline}_per_round": [round(x, 3) for x in ratios],
            f"{name}_over_{baseline}_median": round(median, 3),
            f"{name}_over_{baseline}_mean_rates": round(together, 3)})
        print(f"\ngsm8k {name} / {baseline} per round: {[round(x, 2) for x in ratios]}, "
              f"median {median:.2f}x")


FUSION_PAIRS = 10
FUSION_NEW_TOKENS = 32


def test_decode_steps_fused_against_separate_projections(benchmark, lm_default, gsm8k_task,
                                                         monkeypatch):
    """Our engine's median decode step with the q/k/v and gate/up projections fused (where they
    sum as the separate ones do: :meth:`~greater.lm.decode_step.DecodeStep.fused_for`) against
    the same steps with them run one by one, on 16 GSM8K prompts at batch 16, in
    :data:`FUSION_PAIRS` pairs of generations that alternate which runs first. The tokens are
    the same either way (checked); the recorded figure is the median of the pairs' ratios."""
    lm = lm_default
    step = lm.decode_step
    if step is None:
        pytest.skip(f"{type(lm.model).__name__} has no fast decode step")
    prompt = lm.prompt_ids(ZERO_SHOT_COT_PROMPT)
    rows = [lm.head_ids(ex.input) + prompt + lm.tail_ids for ex in gsm8k_task.dev[:BATCH]]
    fused_for = step.fused_for
    seconds: list[float] = []

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        out = type(step).__call__(step, *args, **kwargs)
        seconds.append(time.perf_counter() - t0)
        return out

    monkeypatch.setattr(lm, "decode_step", timed)

    def median_step(fused: bool) -> tuple[float, list[list[int]]]:
        monkeypatch.setattr(step, "fused_for", fused_for if fused else lambda rows: None)
        seconds.clear()
        replies = lm.generate(rows, max_new_tokens=FUSION_NEW_TOKENS, batch_size=BATCH)
        return statistics.median(seconds), [reply.ids for reply in replies]

    def pairs():
        median_step(True), median_step(False)  # untimed: kernel creation, first page faults
        results = []
        for k in range(FUSION_PAIRS):
            order = (True, False) if k % 2 == 0 else (False, True)
            results.append({fused: median_step(fused) for fused in order})
        return results

    results = benchmark.pedantic(pairs, rounds=1, iterations=1)
    assert all(r[True][1] == r[False][1] for r in results), "fusion changed the tokens"
    ratios = [r[False][0] / r[True][0] for r in results]
    assert step.fused_for(BATCH) is not None, "no fused steps at this batch: nothing compared"
    benchmark.extra_info.update(machine_info(lm))
    benchmark.extra_info.update({
        "rows": BATCH, "max_new_tokens": FUSION_NEW_TOKENS, "fused_kind":
        "packed" if step.fused()[0].packed else "plain",
        "fused_step_ms": [round(r[True][0] * 1e3, 1) for r in results],
        "separate_step_ms": [round(r[False][0] * 1e3, 1) for r in results],
        "separate_over_fused_per_pair": [round(x, 3) for x in ratios],
        "separate_over_fused_median": round(statistics.median(ratios), 3)})
    print(f"\nfused decode steps: {statistics.median(ratios):.3f}x faster (median of pairs "
          f"{[round(x, 2) for x in ratios]})")
