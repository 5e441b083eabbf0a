"""Prepacked oneDNN linear weights (greater.lm.cpu_kernels): bf16 the same numbers, fp32 the same
to rounding, gradients intact."""

from __future__ import annotations

import pytest
import torch

from greater.lm.cpu_kernels import (FP32_PACKED_MIN_ROWS, PACKED_ATTRIBUTE, can_pack, is_packed,
                                    pack_linears, plain_linears, runs_packed, unpack_linears)


def _model(dtype=torch.bfloat16) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.SiLU(),
                               torch.nn.Linear(96, 32, bias=False)).to(dtype)


needs_onednn_bf16 = pytest.mark.skipif(
    not can_pack(_model()), reason="this CPU has no oneDNN bf16 kernels to pack for")


def test_can_pack_fp32_and_bf16_with_native_kernels():
    assert can_pack(_model(torch.float32))
    assert can_pack(_model()) == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert not can_pack(_model(torch.float16))
    assert not can_pack(torch.nn.Module())  # no parameters
    with pytest.raises(ValueError, match="fp32 model on a CPU with oneDNN"):
        pack_linears(_model(torch.float16))


def test_packed_kernel_from_two_fp32_rows_on_and_always_in_bf16():
    assert not runs_packed(1, torch.float32) and runs_packed(FP32_PACKED_MIN_ROWS, torch.float32)
    assert runs_packed(1, torch.bfloat16)
    assert not runs_packed(16, torch.float16)


@pytest.mark.parametrize("shape", [(5, 64), (3, 7, 64), (40, 64)])
def test_packed_fp32_equals_plain_to_rounding_and_is_deterministic(shape):
    """oneDNN sums in its own order: the same products as MKL's to float32 rounding, and the
    same numbers on every call."""
    model = _model(torch.float32)
    x = torch.randn(*shape)
    with torch.inference_mode():
        plain = model(x)
        report = pack_linears(model)
        packed, again = model(x), model(x)
    assert report.layers == 2 and report.bytes == (64 * 96 + 96 * 32) * 4
    assert packed.shape == plain.shape
    torch.testing.assert_close(packed, plain, rtol=1e-5, atol=1e-5)
    assert torch.equal(packed, again)


def test_one_fp32_row_runs_the_plain_kernel():
    """At one row the plain (MKL) product is the faster: a packed fp32 layer runs it, so its
    result is the plain model's bit for bit."""
    model = _model(torch.float32)
    x = torch.randn(1, 1, 64)
    with torch.inference_mode():
        plain = model(x)
        pack_linears(model)
        assert torch.equal(model(x), plain)


def test_fp32_gradient_passes_use_the_plain_weights():
    model = _model(torch.float32)
    x = torch.randn(4, 64, requires_grad=True)
    (grad_plain,) = torch.autograd.grad(model(x).sum(), x)
    pack_linears(model)
    (grad_packed,) = torch.autograd.grad(model(x).sum(), x)
    assert torch.equal(grad_packed, grad_plain)


@needs_onednn_bf16
@pytest.mark.parametrize("shape", [(1, 64), (5, 64), (3, 7, 64)])
def test_packed_forward_equals_plain_bit_for_bit(shape):
    model = _model()
    x = torch.randn(*shape, dtype=torch.bfloat16)
    with torch.inference_mode():
        plain = model(x)
    report = pack_linears(model)
    assert report.layers == 2 and is_packed(model)
    assert report.bytes == (64 * 96 + 96 * 32) * 2
    with torch.inference_mode():
        packed = model(x)
    assert packed.shape == plain.shape
    assert torch.equal(packed, plain)


@needs_onednn_bf16
def test_gradient_passes_use_the_plain_weights():
    model = _model()
    pack_linears(model)
    x = torch.randn(4, 64, dtype=torch.bfloat16, requires_grad=True)
    (grad_packed,) = torch.autograd.grad(model(x).float().sum(), x)
    unpack_linears(model)
    (grad_plain,) = torch.autograd.grad(model(x).float().sum(), x)
    assert torch.equal(grad_packed, grad_plain)
    with torch.no_grad():  # no gradient wanted: the packed kernel, same numbers
        plain = model(x)
        pack_linears(model)
        assert torch.equal(model(x), plain)


@needs_onednn_bf16
def test_unpack_and_plain_linears_restore_the_module():
    model = _model()
    pack_linears(model)
    pack_linears(model)  # idempotent
    layer = model[0]
    with plain_linears(model):
        assert not is_packed(model)
        assert "forward" not in vars(layer) and not hasattr(layer, PACKED_ATTRIBUTE)
    assert is_packed(model) and hasattr(layer, PACKED_ATTRIBUTE)
    assert unpack_linears(model) == 2
    assert not is_packed(model)
    with plain_linears(model):  # an unpacked model stays unpacked
        pass
    assert not is_packed(model)
    # the state dict never holds the packed copies
    assert set(model.state_dict()) == {"0.weight", "0.bias", "2.weight"}
