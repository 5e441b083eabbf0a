"""The engine's memory handling, on the CPU: batch sizes from a budget, back-off on a simulated
out-of-memory, the slot KV cache's layout, cost counted by the one forward, and prefix sharing
in scoring (smollm2-135m, fp32, where a real model is used)."""

from __future__ import annotations

import pytest
import torch

from greater.lm import LM
from greater.lm.batching import (
    ModelShape,
    RowCosts,
    fit_batch_size,
    is_out_of_memory,
    run_with_backoff,
)
from greater.lm.gradients import LossSequence, sequence_losses
from greater.lm.kv_cache import SlotCache, new_prefill_cache

SHAPE = ModelShape(layers=2, hidden=8, intermediate=16, kv_heads=2, head_dim=4, vocab=10,
                   dtype_bytes=2)


# ------------------------------------------------------------------ sizing from a budget
def test_fit_batch_size_from_a_budget():
    assert fit_batch_size(64, 1000, None) == 64  # no budget: as requested
    assert fit_batch_size(64, 1000, 10_000) == 8  # 80% of 10 kB at 1 kB a row
    assert fit_batch_size(4, 1000, 10_000) == 4  # never above the request
    assert fit_batch_size(64, 1000, 10) == 1  # always at least one row
    with pytest.raises(ValueError, match="batch size"):
        fit_batch_size(0, 1000, None)
    with pytest.raises(ValueError, match="row_bytes"):
        fit_batch_size(4, 0, None)


def test_row_costs_grow_with_length_and_count_the_cache():
    costs = RowCosts(SHAPE)
    # keys + values, 2 layers, 2 heads, head_dim 4, 2 bytes: 64 bytes per position
    assert costs.kv_cache(10) == 640
    assert costs.generation(100, 50) > costs.generation(100, 10) > costs.generation(10, 10)
    assert costs.gradient(100, 4) > costs.scoring(100, 4)


def test_model_shape_reads_the_config(lm32):
    shape = ModelShape.of(lm32.model)
    config = lm32.model.config
    assert (shape.layers, shape.hidden, shape.vocab) == (
        config.num_hidden_layers, config.hidden_size, config.vocab_size)
    assert shape.kv_heads == config.num_key_value_heads and shape.dtype_bytes == 4


def test_lm_lowers_the_generation_batch_to_its_budget(lm32, monkeypatch):
    seen: list[int] = []
    original = lm32.generator.run

    def spy(*args, **kwargs):
        seen.append(kwargs["batch_size"])
        return original(*args, **kwargs)

    monkeypatch.setattr(lm32.generator, "run", spy)
    rows = [lm32.chat_ids("Say hi."), lm32.chat_ids("List two colours.")]
    row_bytes = lm32.row_costs.generation(max(map(len, rows)), 3)
    monkeypatch.setattr(lm32, "fixed_memory_budget", int(1.5 * row_bytes / 0.8))
    small = lm32.generate(rows, max_new_tokens=3, batch_size=16)
    monkeypatch.setattr(lm32, "fixed_memory_budget", None)
    plain = lm32.generate(rows, max_new_tokens=3, batch_size=16)
    assert seen == [1, 16]  # 1.5 rows fit the budget; the CPU has none of its own
    assert [g.ids for g in small] == [g.ids for g in plain]


# ------------------------------------------------------------------ back-off on OOM
def test_run_with_backoff_halves_until_it_fits():
    tried: list[int] = []

    def fn(size: int) -> int:
        tried.append(size)
        if size > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return size

    assert run_with_backoff(fn, 16) == 2
    assert tried == [16, 8, 4, 2]


def test_run_with_backoff_reraises_other_errors_and_one_row_failures():
    def fails(size: int) -> int:
        raise ValueError("not memory")

    with pytest.raises(ValueError):
        run_with_backoff(fails, 8)

    def never_fits(size: int) -> int:
        raise RuntimeError("CUDA error: out of memory")

    with pytest.raises(RuntimeError):
        run_with_backoff(never_fits, 4)
    assert is_out_of_memory(RuntimeError("HIP out of memory")) and not is_out_of_memory(
        RuntimeError("shape mismatch"))


def test_generation_and_scoring_back_off_on_a_simulated_oom(lm32, monkeypatch):
    rows = [lm32.chat_ids(t) for t in ("Say hi.", "Name a fruit.", "Count to three.")]
    expected = [g.ids for g in lm32.generate(rows, max_new_tokens=4, batch_size=3)]
    expected_lp = lm32.next_token_logprobs(rows, batch_size=3)
    original = lm32.forward
    batches: list[int] = []

    def forward(ids=None, **kwargs):
        fed = ids if ids is not None else kwargs["embeds"]
        batches.append(fed.shape[0])
        if fed.shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(ids, **kwargs)

    monkeypatch.setattr(lm32, "forward", forward)
    got = [g.ids for g in lm32.generate(rows, max_new_tokens=4, batch_size=3)]
    assert got == expected
    assert batches[0] == 3 and max(batches[batches.index(1):]) == 1
    batches.clear()
    # one row at a time: fp32 products run packed at 3 rows and MKL's at one (the output
    # layer, on the last position), the same numbers to float32 rounding
    torch.testing.assert_close(lm32.next_token_logprobs(rows, batch_size=3), expected_lp,
                               rtol=1e-5, atol=1e-4)
    assert batches[0] == 3 and 1 in batches


# ------------------------------------------------------------------ where things live
def _prefill(lm: LM, rows: list[list[int]]):
    from greater.lm.generation import left_pad

    ids, mask = left_pad(rows, lm.tokenizer.pad_token_id)
    cache = new_prefill_cache()
    lm.forward(ids, mask=mask, positions=(mask.cumsum(-1) - 1).clamp(min=0), cache=cache,
               logits_to_keep=1)
    return cache, mask, [len(r) for r in rows]


def test_slot_cache_places_rows_at_the_end_and_moves_one_row_on_release(lm32):
    a = lm32.encode("one two three four five six")
    b = lm32.encode("seven eight")
    cache = SlotCache.for_model(lm32.model, slots=3, capacity=8, device=lm32.device)
    pre, mask, n = _prefill(lm32, [a])
    cache.admit(pre, mask, n)
    assert cache.length == len(a) and cache.rows == 1
    pre_b, mask_b, n_b = _prefill(lm32, [b])
    cache.admit(pre_b, mask_b, n_b)
    # The shorter row ends at the same column: its first columns are masked.
    expected = torch.tensor([[1] * len(a), [0] * (len(a) - len(b)) + [1] * len(b)])
    assert torch.equal(cache.mask, expected)
    layer = cache.layers[0]
    torch.testing.assert_close(layer.key_buffer[1, :, len(a) - len(b):len(a)],
                               pre_b.layers[0].keys[0])
    # Masks and caches live on the model's device, in preallocated buffers.
    assert cache.mask_buffer.device == lm32.device
    assert layer.key_buffer.device == next(lm32.model.parameters()).device
    assert layer.key_buffer.shape[0] == 3 and layer.key_buffer.shape[2] >= len(a)
    # Releasing slot 0 moves the last row into it (one row copied).
    assert cache.release(0) == 1
    assert cache.rows == 1 and torch.equal(cache.mask, expected[1:])
    torch.testing.assert_close(layer.key_buffer[0, :, len(a) - len(b):len(a)],
                               pre_b.layers[0].keys[0])


def test_slot_cache_shifts_for_a_longer_prefix_and_drops_unused_columns(lm32):
    short, long = lm32.encode("a b"), lm32.encode(" ".join(["word"] * 40))
    cache = SlotCache.for_model(lm32.model, slots=2, capacity=4, device="cpu")
    pre, mask, n = _prefill(lm32, [short])
    cache.admit(pre, mask, n)
    pre_l, mask_l, n_l = _prefill(lm32, [long])
    cache.admit(pre_l, mask_l, n_l)  # longer than the axis: everything shifts right
    assert cache.length == len(long)
    assert cache.mask[0].tolist() == [0] * (len(long) - len(short)) + [1] * len(short)
    cache.release(1)  # the long row leaves; admitting again drops the unused columns
    pre2, mask2, n2 = _prefill(lm32, [short])
    cache.admit(pre2, mask2, n2)
    assert cache.length == len(short) and cache.mask.tolist() == [[1] * len(short)] * 2


# ------------------------------------------------------------------ cost and sharing
def test_every_model_call_is_counted_by_the_one_forward(lm32):
    before = lm32.meter.snapshot()
    rows = [lm32.chat_ids("Say hi."), lm32.chat_ids("Name three colours please.")]
    lm32.generate(rows, max_new_tokens=3, batch_size=2)
    lm32.target_logprobs([rows[0]], [[5, 6]])
    after = lm32.meter.snapshot()
    # prefill (2 rows) + up to 2 decode steps (generation) + one scoring pass
    assert 2 <= after.forward_passes - before.forward_passes <= 4
    assert after.forward_tokens - before.forward_tokens >= 2 * max(map(len, rows))
    with pytest.raises(ValueError, match="exactly one"):
        lm32.forward(mask=torch.ones(1, 1), positions=torch.zeros(1, 1))


def test_scoring_shares_the_question_prefix_across_prompts(lm32, data_dir):
    from greater.tasks import load_task

    task = load_task("bbh/boolean_expressions", data_dir=data_dir)
    base = lm32.prompt_ids("think step by step and answer.")
    swap = lm32.encode(" carefully")[0]
    prompts = [base, base[:1] + [swap] + base[2:], base[:3] + [swap] + base[4:]]  # GCG swaps
    seqs = []
    for ex in task.train[:2]:
        head = lm32.head_ids(ex.input)
        answer = lm32.encode(task.answer_text(ex))
        for p in prompts:
            ids = head + p + lm32.tail_ids + lm32.extractor_ids(task.extractor) + answer
            seqs.append(LossSequence(tuple(ids), len(head), len(p), len(answer)))
    before = lm32.meter.snapshot().forward_tokens
    shared = sequence_losses(lm32, seqs, batch_size=8)
    shared_tokens = lm32.meter.snapshot().forward_tokens - before
    alone = [sequence_losses(lm32, [s]) for s in seqs]
    for k, one in enumerate(alone):
        torch.testing.assert_close(shared.total[k], one.total[0], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(shared.answer_ce[k], one.answer_ce[0], rtol=1e-4, atol=1e-4)
    # Each question's prefix ran once, not once per prompt.
    head_tokens = sum(len(lm32.head_ids(ex.input)) for ex in task.train[:2])
    assert shared_tokens < sum(len(s.ids) for s in seqs) - head_tokens


def test_the_time_axis_grows_past_its_initial_capacity(lm32, monkeypatch):
    from greater.lm import generation, kv_cache

    rows = [lm32.chat_ids("Write a short poem about the sea."), lm32.chat_ids("Say hi.")]
    expected = [g.ids for g in lm32.generate(rows, max_new_tokens=12, batch_size=2)]
    monkeypatch.setattr(kv_cache, "CAPACITY_STEP", 4)
    monkeypatch.setattr(generation, "INITIAL_NEW_COLUMNS", 1)
    assert [g.ids for g in lm32.generate(rows, max_new_tokens=12, batch_size=2)] == expected
