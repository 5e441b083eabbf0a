"""Prepacked oneDNN linear weights (greater.lm.cpu_kernels): same numbers, gradients intact."""

from __future__ import annotations

import pytest
import torch

from greater.lm.cpu_kernels import (PACKED_ATTRIBUTE, can_pack, is_packed, pack_linears,
                                    plain_linears, unpack_linears)


def _model(dtype=torch.bfloat16) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.SiLU(),
                               torch.nn.Linear(96, 32, bias=False)).to(dtype)


needs_onednn_bf16 = pytest.mark.skipif(
    not can_pack(_model()), reason="this CPU has no oneDNN bf16 kernels to pack for")


def test_can_pack_only_bf16_on_cpu():
    assert not can_pack(_model(torch.float32))
    assert not can_pack(torch.nn.Module())  # no parameters
    with pytest.raises(ValueError, match="bf16 model on a CPU"):
        pack_linears(_model(torch.float32))


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
