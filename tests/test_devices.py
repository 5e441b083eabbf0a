"""Device placement, checked on the CPU: the free-memory budget, and code that must never mix
devices run on the ``meta`` device (an op mixing ``meta`` and host tensors raises, as one mixing
CUDA and host tensors does; indexing results are checked to stay on the indexed device).

The GPU benchmark (benchmarks/test_bench_gpu.py) runs every method once on CUDA as well.
"""

from __future__ import annotations

import torch

from baselines.gcg import top_k_swaps, top_k_token_ids
from greater import devices
from greater.lm.kv_cache import SlotCache, new_prefill_cache


def test_free_memory_is_a_budget_only_on_cuda(monkeypatch):
    assert devices.free_memory_bytes("cpu") is None
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (3 * 2**30, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 2**30)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 2**29)
    # free on the device plus what torch's allocator holds unused
    assert devices.free_memory_bytes("cuda") == 3 * 2**30 + 2**29


def _gcg_inputs(device):
    torch.manual_seed(0)
    candidates = torch.tensor([2, 3, 5, 7, 11, 13])
    allowed = torch.zeros(16, dtype=torch.bool)
    allowed[[2, 3, 5, 7, 13]] = True  # 11 is a candidate but not allowed
    grad = torch.randn(3, len(candidates)).to(device)
    return grad, candidates, allowed, [3, 4, 13]


def test_gcg_top_k_stays_on_the_gradients_device():
    grad, candidates, allowed, prompt = _gcg_inputs("meta")
    top = top_k_token_ids(grad, candidates, allowed, prompt, top_k=8)
    assert top.device.type == "meta"
    # k: 5 allowed candidates, one fewer where the current token is one of them (3, 13)
    assert top.shape == (3, 4)


def test_gcg_top_k_swaps_on_the_host():
    grad, candidates, allowed, prompt = _gcg_inputs("cpu")
    top = top_k_swaps(grad, candidates, allowed, prompt, top_k=3)
    assert top.device.type == "cpu" and top.shape == (3, 3)
    for pos, tok in enumerate(prompt):
        row = top[pos].tolist()
        assert tok not in row and 11 not in row
        scores = {int(c): float(grad[pos, k]) for k, c in enumerate(candidates)}
        eligible = sorted((scores[c], c) for c in scores if allowed[c] and c != tok)
        assert row == [c for _, c in eligible[:3]]


def test_slot_cache_keeps_masks_and_caches_on_the_model_device():
    """A SlotCache fed ``meta`` states keeps everything on ``meta``: no step copies from or to
    the host (an op mixing devices would raise)."""
    layers, heads, dim = 2, 2, 4
    cache = SlotCache(layers, slots=3, capacity=4, device="meta")
    prefill = new_prefill_cache()
    for layer in range(layers):
        prefill.update(torch.zeros(2, heads, 5, dim, device="meta"),
                       torch.zeros(2, heads, 5, dim, device="meta"), layer)
    slots = cache.admit(prefill, torch.ones(2, 5, dtype=torch.long, device="meta"), [5, 3])
    assert list(slots) == [0, 1] and cache.first_column[:2] == [0, 2]
    mask = cache.begin_step(None, 1)
    assert mask.device.type == "meta" and mask.shape == (2, 6)
    for layer in range(layers):
        keys, _ = cache.update(torch.zeros(2, heads, 1, dim, device="meta"),
                               torch.zeros(2, heads, 1, dim, device="meta"), layer)
        assert keys.device.type == "meta" and keys.shape == (2, heads, 6, dim)
    assert cache.release(0) == 1 and cache.rows == 1
    assert all(layer.key_buffer.device.type == "meta" for layer in cache.layers)
