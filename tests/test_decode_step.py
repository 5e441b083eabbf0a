"""greater.lm.decode_step: the fast single-token step gives transformers' logits bit for bit.

Checked on the real stand-ins: smollm2-135m (Llama) in bf16 (packed for oneDNN on CPUs with its
bf16 kernels, plain elsewhere) and in fp32 (packed for oneDNN from two rows on; plain weights, the
path a GPU takes, at one row and under ``plain_linears``), with fused q/k/v
and gate/up projections wherever they sum as the separate ones do; qwen2.5-0.5b (Qwen2, biased
q/k/v projections) in bf16 (slow). Generation runs the fast step for every decode step and must
give the same tokens as with the step switched off; one decode step's logits must be equal as
tensors. Unsupported architectures fall back to transformers' forward with a reason.
"""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, Qwen2Config, Qwen2ForCausalLM

from greater.evaluate import ZERO_SHOT_COT_PROMPT
from greater.lm import LM
from greater.lm.cpu_kernels import can_pack, is_packed, plain_linears
from greater.lm.decode_step import DecodeStep, unsupported_reason
from greater.lm.generation import Continuation, left_pad, mask_positions
from greater.lm.kv_cache import cache_keyword, new_prefill_cache
from greater.tasks import load_task


#: Packing needs a CPU with oneDNN bf16 kernels (AVX512-BF16 or AMX): elsewhere (an AVX2-only
#: CPU) bf16 layers run plain.
needs_packing = pytest.mark.skipif(
    not can_pack(torch.nn.Linear(2, 2).to(torch.bfloat16)),
    reason="this CPU has no oneDNN bf16 kernels to pack for")


@pytest.fixture(scope="module")
def gsm8k(data_dir):
    return load_task("gsm8k", data_dir=data_dir)


def _rows(lm: LM, task, n: int) -> list[list[int]]:
    prompt = lm.prompt_ids(ZERO_SHOT_COT_PROMPT)
    return [lm.head_ids(ex.input) + prompt + lm.tail_ids for ex in task.dev[:n]]


def _generate_both_ways(lm: LM, rows, monkeypatch):
    """Generations with the fast step (counting its calls) and with it switched off."""
    step = lm.decode_step
    assert step is not None
    calls = []

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return DecodeStep.__call__(step, *args, **kwargs)

    continuation = Continuation(force_ids=tuple(lm.encode(" The answer is")), max_new_tokens=4)
    monkeypatch.setattr(lm, "decode_step", counted)
    fast = lm.generate(rows, max_new_tokens=24, batch_size=3, continuation=continuation)
    monkeypatch.setattr(lm, "decode_step", None)
    plain = lm.generate(rows, max_new_tokens=24, batch_size=3, continuation=continuation)
    monkeypatch.setattr(lm, "decode_step", step)
    assert len(calls) >= 24, "the decode loop did not use the fast step"
    return fast, plain


def _assert_same_generations(fast, plain):
    assert [g.ids for g in fast] == [g.ids for g in plain]
    assert [g.continuation_ids for g in fast] == [g.continuation_ids for g in plain]
    assert any(len(g.ids) > 5 for g in fast)


def _step_logits_both_ways(lm: LM, rows) -> tuple[torch.Tensor, torch.Tensor]:
    """One decode step after a padded prefill, through the fast step and through transformers."""
    ids, mask = left_pad(rows, lm.tokenizer.pad_token_id)
    positions = mask_positions(mask)
    outs = []
    with torch.inference_mode():
        for use_fast in (True, False):
            cache = new_prefill_cache()
            logits = lm.forward(ids, mask=mask, positions=positions, cache=cache,
                                logits_to_keep=1).logits[:, -1]
            step_ids = logits.argmax(-1, keepdim=True)
            step_mask = torch.cat([mask, torch.ones_like(step_ids)], dim=1)
            step_pos = positions[:, -1:] + 1
            if use_fast:
                outs.append(lm.decode_step(step_ids, mask=step_mask, positions=step_pos,
                                           cache=cache))
            else:
                outs.append(lm.model(input_ids=step_ids, attention_mask=step_mask,
                                     position_ids=step_pos, use_cache=True,
                                     **{cache_keyword(lm.model): cache}).logits)
    return outs[0], outs[1]


@pytest.mark.parametrize("which", ["lm16", "lm32"])
def test_fast_step_matches_transformers_bit_for_bit(which, request, gsm8k, monkeypatch):
    lm = request.getfixturevalue(which)
    rows = _rows(lm, gsm8k, 5)
    fast, plain = _step_logits_both_ways(lm, rows)
    assert fast.shape == plain.shape == (5, 1, lm.model.config.vocab_size)
    assert torch.equal(fast, plain)
    _assert_same_generations(*_generate_both_ways(lm, rows, monkeypatch))


@needs_packing
def test_packed_model_fuses_projections_and_follows_repacking(lm16, gsm8k):
    step = lm16.decode_step
    fused = step.fused()
    assert fused is not None and len(fused) == lm16.model.config.num_hidden_layers
    config = lm16.model.config
    kv_width = config.num_key_value_heads * step.head_dim
    assert fused[0].qkv.shape[0] == config.num_attention_heads * step.head_dim + 2 * kv_width
    rows = _rows(lm16, gsm8k, 3)
    with plain_linears(lm16.model):
        assert not step.fused()[0].packed  # plain layers: their weights fused in place
        fast, plain = _step_logits_both_ways(lm16, rows)
        assert torch.equal(fast, plain)
    refused = step.fused()
    assert refused is not None and refused[0].qkv is not fused[0].qkv  # rebuilt after re-pack
    fast, plain = _step_logits_both_ways(lm16, rows)
    assert torch.equal(fast, plain)


@pytest.mark.parametrize("which", ["lm16", "lm32"])
def test_fusion_only_at_row_counts_where_the_sums_agree(which, request):
    """The once-per-row-count check (first layer, one seeded input) predicts whether another
    layer's fused products equal its separate ones on another input: packed bf16 weights where
    the CPU packs them, plain bf16 elsewhere; fp32 packed from two rows on, plain at one."""
    step = request.getfixturevalue(which).decode_step
    parts = step.parts[-1]
    generator = torch.Generator().manual_seed(123)
    used = []
    for rows in (1, 5, 16, 64, 96):
        fused = step.fused(rows)[-1]
        x = torch.randn((rows, 1, parts.q.in_features),
                        generator=generator).to(parts.q.weight.dtype)
        with torch.no_grad():
            agree = (torch.equal(fused.qkv_product(x), torch.cat([p(x) for p in parts.qkv], -1))
                     and torch.equal(fused.gate_up_product(x),
                                     torch.cat([p(x) for p in parts.gate_up], -1)))
        assert (step.fused_for(rows) is not None) == agree, rows
        used.append(agree)
    assert any(used), "no row count ran fused: the fused path went untested"


def test_plain_fusion_costs_no_memory_and_follows_replaced_weights(lm32, gsm8k):
    """On plain weights the layers' own q/k/v and gate/up weights become rows of the fused
    tensors (no copy); a weight replaced later is seen (the rows are made again), gradients
    still flow through the layers, and the step still gives transformers' logits."""
    with plain_linears(lm32.model):  # fp32 on a CPU runs packed by default
        step = lm32.decode_step
        fused = step.fused()
        assert not fused[0].packed
        for parts, layer in zip(step.parts, fused):
            assert parts.q.weight.data_ptr() == layer.qkv.data_ptr()
            up_rows = layer.gate_up[parts.gate.out_features]
            assert parts.up.weight.data_ptr() == up_rows.data_ptr()
        middle = step.parts[len(step.parts) // 2]
        middle.v.weight = torch.nn.Parameter(middle.v.weight.detach().clone(),
                                             requires_grad=False)
        again = step.fused()
        assert again is not fused
        index = len(step.parts) // 2
        assert middle.v.weight.data_ptr() == again[index].qkv[
            middle.q.out_features + middle.k.out_features].data_ptr()
        x = torch.randn(2, middle.q.in_features, requires_grad=True)
        (grad,) = torch.autograd.grad(middle.q(x).sum(), x)
        assert torch.allclose(grad, middle.q.weight.sum(0).expand(2, -1), rtol=1e-5, atol=1e-5)
        fast, plain = _step_logits_both_ways(lm32, _rows(lm32, gsm8k, 3))
        assert torch.equal(fast, plain)


def test_packed_fp32_runs_one_row_steps_plain(lm32, gsm8k):
    """fp32 on the CPU is packed, except where MKL's one-row kernel is the faster: a one-row
    step runs the plain fused projections (the layers' own weights), a wider one the packed
    ones, and both give transformers' logits (which run the same kernels) bit for bit."""
    step = lm32.decode_step
    assert is_packed(lm32.model) and lm32.linear_kernels == "onednn-packed"
    assert not step.fused(1)[0].packed and step.fused(2)[0].packed
    for n in (1, 2):
        fast, plain = _step_logits_both_ways(lm32, _rows(lm32, gsm8k, n))
        assert torch.equal(fast, plain), n


@pytest.mark.slow
def test_fast_step_on_qwen2(gsm8k, monkeypatch):
    lm = LM.load("qwen2.5-0.5b", dtype="bf16", device="cpu")
    assert lm.model.model.layers[0].self_attn.q_proj.bias is not None
    rows = _rows(lm, gsm8k, 4)
    fast, plain = _step_logits_both_ways(lm, rows)
    assert torch.equal(fast, plain)
    _assert_same_generations(*_generate_both_ways(lm, rows, monkeypatch))


def test_unsupported_models_keep_transformers_forward():
    tiny = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4))
    assert "GPT2LMHeadModel" in unsupported_reason(gpt2)
    assert DecodeStep.for_model(gpt2) is None
    with pytest.raises(ValueError, match="no fast decode step"):
        DecodeStep(gpt2)
    sliding = Qwen2ForCausalLM(Qwen2Config(**tiny, use_sliding_window=True, sliding_window=8,
                                           max_window_layers=1))
    assert "sliding_attention" in unsupported_reason(sliding)
    assert unsupported_reason(Qwen2ForCausalLM(Qwen2Config(**tiny))) is None


def test_fast_decode_option(lm16):
    plain = LM(lm16.model, lm16.tokenizer, name="smollm2-135m", fast_decode=False)
    assert plain.decode_step is None
    assert LM(lm16.model, lm16.tokenizer, name="smollm2-135m").decode_step is not None
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=lm16.model.config.vocab_size, n_embd=32,
                                      n_layer=1, n_head=4))
    with pytest.raises(ValueError, match="fast_decode=True for 'tiny-gpt2'.*GPT2LMHeadModel"):
        LM(gpt2, lm16.tokenizer, name="tiny-gpt2", fast_decode=True, pack_weights=False)


def _tiny_llama(kv_heads: int) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=kv_heads,
                         attn_implementation="sdpa")
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("kv_heads", [4, 2])  # plain multi-head and grouped-query attention
@pytest.mark.parametrize("padded", [False, True])  # no mask (grouped heads via enable_gqa) or one
def test_fast_step_attention_paths(kv_heads, padded):
    """Every way the step calls scaled_dot_product_attention gives transformers' logits."""
    model = _tiny_llama(kv_heads)
    step = DecodeStep(model)
    ids = torch.tensor([[5, 6, 7, 8, 9], [0, 0, 3, 4, 5]] if padded else [[5, 6, 7, 8, 9]])
    mask = (ids != 0).long() if padded else torch.ones_like(ids)
    positions = mask_positions(mask)
    outs = []
    with torch.inference_mode():
        for fast in (True, False):
            cache = new_prefill_cache()
            model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                  **{cache_keyword(model): cache})
            step_ids = torch.full((ids.shape[0], 1), 11)
            step_mask = torch.cat([mask, torch.ones_like(step_ids)], dim=1)
            step_pos = positions[:, -1:] + 1
            if fast:
                outs.append(step(step_ids, mask=step_mask, positions=step_pos, cache=cache))
            else:
                outs.append(model(input_ids=step_ids, attention_mask=step_mask,
                                  position_ids=step_pos, use_cache=True,
                                  **{cache_keyword(model): cache}).logits)
    assert torch.equal(outs[0], outs[1])


def test_models_with_hooks_or_wrapped_projections_keep_transformers_forward():
    model = _tiny_llama(2)
    assert unsupported_reason(model) is None
    handle = model.model.layers[1].mlp.register_forward_hook(lambda *args: None)
    assert "forward hooks" in unsupported_reason(model)
    handle.remove()
    model.model.layers[0].self_attn.q_proj = torch.nn.Sequential(
        model.model.layers[0].self_attn.q_proj)
    assert "not a plain torch.nn.Linear" in unsupported_reason(model)
