"""One decode step of a Llama-family decoder (Llama, Qwen2) without transformers' per-layer
plumbing: the same operations in the same order on the model's own modules and weights, so the
logits are bit-identical to transformers' forward, with less host work per token.

Why: a decode step feeds one token per row, so every operation is small and a step is bound by
reading the weights and by the host's work around each operation (module calls, keyword
plumbing, and on a CPU one OpenMP wake-up per parallel kernel), not by arithmetic. What this
step does differently from transformers' ``model(...)``, and why the numbers stay the same:

* the layer loop calls the model's own norms, rotary embedding, mask builder
  (``create_causal_mask``) and projections' forwards directly, skipping the decoder-layer,
  attention and MLP wrappers and the module calls (each layer's modules are looked up once,
  :class:`LayerParts`; models with forward hooks are not covered, since the hooks would not
  run);
* with ``sdpa`` attention, ``scaled_dot_product_attention`` is called with exactly the
  arguments transformers' ``sdpa_attention_forward`` gives it for one query token (grouped
  query heads packed as query rows, or ``enable_gqa`` where transformers uses it), decided once
  per step; other registered attention functions are called through transformers' registry;
* queries and keys get their rotary embedding in one elementwise pass instead of two (the
  same operations on every element);
* the query, key and value projections run as one product over their concatenated weights,
  and so do the gate and up projections: each output element is the same dot product over the
  same input. A matmul library chooses its blocking from a product's shape, and for some row
  counts it sums the wider product in another order (oneDNN at a few, measured), so fusion is
  checked once per row count and skipped where the sums differ (:meth:`DecodeStep.fused_for`).
  On plain weights (a GPU, a CPU model left unpacked, one-row fp32 steps) the concatenation
  costs no memory: the layers' own weights become consecutive rows of one tensor, which
  transformers' forward reads as before (:func:`share_rows`). Where the linear layers run on
  prepacked oneDNN weights (:mod:`greater.lm.cpu_kernels`), the concatenated packed weights are
  one more copy of those projections (built on the first packed step, rebuilt after a re-pack);
* on the CPU, a boolean attention mask is turned into the additive one
  ``scaled_dot_product_attention`` makes of it once per step instead of once per layer.

The tests check the logits and whole generations against transformers' forward bit for bit.

:meth:`greater.lm.LM.forward` uses it for single-token steps with a KV cache and no gradient
(the decode loop); prefill, scoring and gradient passes run transformers' forward. Other
architectures (Gemma's scaled embeddings, soft-capping and sliding windows) always run
transformers' forward; :func:`unsupported_reason` says why a model is not covered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from transformers.integrations.sdpa_attention import pack_gqa, use_gqa_in_sdpa
from transformers.masking_utils import create_causal_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from greater.lm.cpu_kernels import PACKED_ATTRIBUTE, pack_weight, packed_product, runs_packed

logger = logging.getLogger(__name__)

#: transformers classes whose forward this step reproduces (their decoder layers are the same).
SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "Qwen2ForCausalLM")
#: Their RMSNorm classes, which :func:`_rms_norm` computes.
SUPPORTED_NORMS = ("LlamaRMSNorm", "Qwen2RMSNorm")


def unsupported_reason(model: torch.nn.Module) -> str | None:
    """Why :class:`DecodeStep` cannot stand in for ``model``'s forward, or None if it can."""
    name = type(model).__name__
    if name not in SUPPORTED_ARCHITECTURES:
        return f"{name} is not one of {', '.join(SUPPORTED_ARCHITECTURES)}"
    config = model.config
    types = set(getattr(config, "layer_types", None) or ["full_attention"])
    if types != {"full_attention"}:
        return f"layer types {sorted(types)}: only full attention is reproduced"
    norm = type(model.model.layers[0].input_layernorm).__name__
    if norm not in SUPPORTED_NORMS:
        return f"norm {norm} is not one of {', '.join(SUPPORTED_NORMS)}"
    implementation = config._attn_implementation
    if implementation not in ALL_ATTENTION_FUNCTIONS:
        return f"attention implementation {implementation!r} is not a registered function"
    for layer in model.model.layers:
        parts = LayerParts.of(layer)
        for linear in parts.qkv + parts.gate_up + [parts.o, parts.down]:
            if type(linear) is not torch.nn.Linear:
                return f"projection {type(linear).__name__} is not a plain torch.nn.Linear"
    hooked = [name for name, module in model.named_modules()
              if module._forward_hooks or module._forward_pre_hooks or hasattr(module, "_hf_hook")]
    if hooked:
        return f"module {hooked[0]!r} has forward hooks (the step calls modules' forwards)"
    return None


@dataclass(frozen=True)
class FusedProjections:
    """One layer's concatenated projections (see module docstring).

    Attributes:
        qkv: ``[q_out + 2 * kv_out, hidden]`` weight; ``qkv_bias`` its bias or None.
        gate_up: ``[2 * intermediate, hidden]`` weight; ``gate_up_bias`` its bias or None.
        packed: the weights are packed for oneDNN (:func:`~greater.lm.cpu_kernels.pack_weight`),
            a copy; else they are plain and the layers' own weights are rows of them.
    """

    qkv: torch.Tensor
    qkv_bias: torch.Tensor | None
    gate_up: torch.Tensor
    gate_up_bias: torch.Tensor | None
    packed: bool

    def qkv_product(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., hidden]`` -> ``[..., q_out + 2 * kv_out]``: queries, keys, values end to end."""
        return self._product(x, self.qkv, self.qkv_bias)

    def gate_up_product(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., hidden]`` -> ``[..., 2 * intermediate]``: gate, then up."""
        return self._product(x, self.gate_up, self.gate_up_bias)

    def _product(self, x: torch.Tensor, weight: torch.Tensor,
                 bias: torch.Tensor | None) -> torch.Tensor:
        return packed_product(x, weight, bias) if self.packed else F.linear(x, weight, bias)


def share_rows(layers: list[torch.nn.Linear]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Make the layers' weights (and biases) consecutive rows of one tensor; return it.

    Each layer's ``weight`` becomes a view of rows of the concatenation (a leading-dimension
    slice, so contiguous: its forward computes what it computed before), and the old storage is
    freed: fusing costs no memory. Returns the ``[sum of out, in]`` weight and the biases end to
    end, or None where the layers have none (Llama and Qwen2 give all or none of them one).
    """
    with torch.inference_mode(False), torch.no_grad():
        weight = torch.cat([layer.weight.detach() for layer in layers])
        bias = (None if layers[0].bias is None
                else torch.cat([layer.bias.detach() for layer in layers]))
        start = 0
        for layer in layers:
            end = start + layer.out_features
            layer.weight.data = weight[start:end]
            if bias is not None:
                layer.bias.data = bias[start:end]
            start = end
    return weight, bias


def _shares_rows(layers: list[torch.nn.Linear], weight: torch.Tensor) -> bool:
    """Whether the layers' weights are still the consecutive rows of ``weight``."""
    address, row_bytes = weight.data_ptr(), weight.stride(0) * weight.element_size()
    for layer in layers:
        if layer.weight.data_ptr() != address:
            return False
        address += layer.out_features * row_bytes
    return True


@dataclass(frozen=True)
class LayerParts:
    """The modules of one decoder layer that the step calls, looked up once."""

    attention: torch.nn.Module
    input_norm: torch.nn.Module
    post_norm: torch.nn.Module
    q: torch.nn.Linear
    k: torch.nn.Linear
    v: torch.nn.Linear
    o: torch.nn.Linear
    gate: torch.nn.Linear
    up: torch.nn.Linear
    down: torch.nn.Linear
    act: Callable[[torch.Tensor], torch.Tensor]

    @property
    def qkv(self) -> list[torch.nn.Linear]:
        return [self.q, self.k, self.v]

    @property
    def gate_up(self) -> list[torch.nn.Linear]:
        return [self.gate, self.up]

    @classmethod
    def of(cls, layer: torch.nn.Module) -> "LayerParts":
        attention, mlp = layer.self_attn, layer.mlp
        return cls(attention=attention, input_norm=layer.input_layernorm,
                   post_norm=layer.post_attention_layernorm, q=attention.q_proj,
                   k=attention.k_proj, v=attention.v_proj, o=attention.o_proj,
                   gate=mlp.gate_proj, up=mlp.up_proj, down=mlp.down_proj, act=mlp.act_fn)


def _concatenated_bias(layers: list[torch.nn.Linear]) -> torch.Tensor | None:
    """The layers' biases end to end, or None (Llama and Qwen2 give all or none of them one)."""
    if layers[0].bias is None:
        return None
    return torch.cat([layer.bias.detach() for layer in layers])


class DecodeStep:
    """The decode step of one supported model; construct with :meth:`for_model`."""

    def __init__(self, model: torch.nn.Module) -> None:
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"no fast decode step for this model: {reason}")
        self.model = model
        self.decoder = model.model
        self.config = model.config
        self.parts = [LayerParts.of(layer)
                      for layer in self.decoder.layers[: self.config.num_hidden_layers]]
        first = self.parts[0]
        self.head_dim = first.attention.head_dim
        self.query_heads = first.q.out_features // self.head_dim
        self.kv_heads = first.k.out_features // self.head_dim
        self.intermediate = first.gate.out_features
        self._plain: list[FusedProjections] | None = None
        self._packed: list[FusedProjections] | None = None
        self._packed_from: torch.Tensor | None = None  # the packed weight they were built beside
        # (packed, rows) -> whether the fused products equal the separate ones
        self._fusable: dict[tuple[bool, int], bool] = {}

    @classmethod
    def for_model(cls, model: torch.nn.Module) -> "DecodeStep | None":
        """The step for ``model``, or None where it is not supported (logged)."""
        reason = unsupported_reason(model)
        if reason is not None:
            logger.info("decode steps run transformers' forward: %s", reason)
            return None
        return cls(model)

    def fused(self, rows: int | None = None) -> list[FusedProjections]:
        """The fused projections of the weights the layers run on now (at ``rows`` rows, where
        given): packed while the model runs packed there (built on first use and after a
        re-pack), else plain (the layers' weights made rows of one tensor on first use, and
        again where a weight was replaced since). A packed fp32 model runs one-row products
        plain (:func:`~greater.lm.cpu_kernels.runs_packed`)."""
        first = self.parts[0].q
        marker = getattr(first, PACKED_ATTRIBUTE, None)
        if marker is not None and (rows is None or runs_packed(rows, first.weight.dtype)):
            if self._packed is None or self._packed_from is not marker:
                self._packed = [self._fuse_packed(parts) for parts in self.parts]
                self._packed_from = marker
                self._fusable = {key: same for key, same in self._fusable.items() if not key[0]}
                size = sum(sum(p.weight.numel() * p.weight.element_size()
                               for p in parts.qkv + parts.gate_up) for parts in self.parts)
                logger.info("fused packed q/k/v and gate/up projections (%.0f MiB)",
                            size / 2**20)
            return self._packed
        if self._plain is None or not all(
                _shares_rows(parts.qkv, fused.qkv) and _shares_rows(parts.gate_up, fused.gate_up)
                for parts, fused in zip(self.parts, self._plain)):
            self._plain = [self._fuse_plain(parts) for parts in self.parts]
            self._fusable = {key: same for key, same in self._fusable.items() if key[0]}
        return self._plain

    def fused_for(self, rows: int) -> list[FusedProjections] | None:
        """:meth:`fused` where a step of ``rows`` rows gets the same numbers from them, else
        None (the projections run one by one).

        A matmul library picks its blocking from the product's shape, and for some row counts
        (oneDNN, measured: 96 rows at SmolLM2's widths, 64 and 128 at Qwen2.5-0.5B's, 33 and
        more at Llama-3-8B's) the wider fused product sums in another order than the separate
        ones. So each row count is checked once, on a seeded random input through the first
        layer's weights (the blocking depends on the shape, which every layer shares), and runs
        unfused where the sums differ.
        """
        fused = self.fused(rows)
        key = (fused[0].packed, rows)
        same = self._fusable.get(key)
        if same is None:
            same = self._fusable[key] = _fused_products_agree(self.parts[0], fused[0], rows)
            if not same:
                logger.info("decode steps of %d rows run unfused projections (the fused ones "
                            "sum in another order)", rows)
        return fused if same else None

    @staticmethod
    def _fuse_packed(parts: LayerParts) -> FusedProjections:
        with torch.no_grad():
            return FusedProjections(
                qkv=pack_weight(torch.cat([p.weight for p in parts.qkv])),
                qkv_bias=_concatenated_bias(parts.qkv),
                gate_up=pack_weight(torch.cat([p.weight for p in parts.gate_up])),
                gate_up_bias=_concatenated_bias(parts.gate_up), packed=True)

    @staticmethod
    def _fuse_plain(parts: LayerParts) -> FusedProjections:
        qkv, qkv_bias = share_rows(parts.qkv)
        gate_up, gate_up_bias = share_rows(parts.gate_up)
        return FusedProjections(qkv=qkv, qkv_bias=qkv_bias, gate_up=gate_up,
                                gate_up_bias=gate_up_bias, packed=False)

    def __call__(self, ids: torch.Tensor, *, mask: torch.Tensor, positions: torch.Tensor,
                 cache) -> torch.Tensor:
        """Logits ``[B, 1, V]`` for ``ids`` ``[B, 1]`` at ``positions`` ``[B, 1]``, with the
        ``[B, T_cache + 1]`` attention ``mask``; extends ``cache`` in place."""
        rows = ids.shape[0]
        hidden = self.decoder.embed_tokens(ids)  # [B, 1, H]
        attention_mask = create_causal_mask(config=self.config, inputs_embeds=hidden,
                                            attention_mask=mask, cache=cache,
                                            position_ids=positions)
        if (attention_mask is not None and attention_mask.dtype == torch.bool
                and hidden.device.type == "cpu"):
            # What the CPU's scaled_dot_product_attention makes of a boolean mask in every
            # layer, made once (other devices' kernels may treat boolean masks their own way).
            attention_mask = torch.zeros(attention_mask.shape, dtype=hidden.dtype,
                                         device=hidden.device).masked_fill_(
                                             attention_mask.logical_not(), float("-inf"))
        cos, sin = self.decoder.rotary_emb(hidden, position_ids=positions)  # [B, 1, D]
        # Projections are laid out [B, 1, heads, D]: the rotary factors broadcast over heads.
        cos, sin = cos.unsqueeze(2), _signed_sin(sin.unsqueeze(2))
        attend = self._attention(attention_mask)
        fused = self.fused_for(rows)
        head_dim, query_heads = self.head_dim, self.query_heads
        q_width = query_heads * head_dim
        qk_width = (query_heads + self.kv_heads) * head_dim
        for index, layer in enumerate(self.parts):
            x = _rms_norm(layer.input_norm, hidden)
            if fused is not None:
                qkv = fused[index].qkv_product(x)
                qk = _rotate(qkv[..., :qk_width].view(rows, 1, -1, head_dim), cos, sin)
                query, key = qk[:, :, :query_heads], qk[:, :, query_heads:]
                value = qkv[..., qk_width:].view(rows, 1, -1, head_dim)
            else:
                query = _rotate(_linear(layer.q, x).view(rows, 1, -1, head_dim), cos, sin)
                key = _rotate(_linear(layer.k, x).view(rows, 1, -1, head_dim), cos, sin)
                value = _linear(layer.v, x).view(rows, 1, -1, head_dim)
            key, value = cache.update(key.transpose(1, 2), value.transpose(1, 2), index)
            out = attend(layer.attention, query.transpose(1, 2), key, value, attention_mask)
            hidden = hidden + _linear(layer.o, out.reshape(rows, 1, q_width))
            x = _rms_norm(layer.post_norm, hidden)
            if fused is not None:
                gate_up = fused[index].gate_up_product(x)
                gate, up = gate_up[..., : self.intermediate], gate_up[..., self.intermediate:]
            else:
                gate, up = _linear(layer.gate, x), _linear(layer.up, x)
            hidden = hidden + _linear(layer.down, layer.act(gate) * up)
        return self.model.lm_head(_rms_norm(self.decoder.norm, hidden))

    def _attention(self, attention_mask: torch.Tensor | None
                   ) -> Callable[..., torch.Tensor]:
        """This step's attention: ``attend(module, query [B, Hq, 1, D], keys, values, mask)``
        gives ``[B, Hq, 1, D]`` or a layout that reshapes to ``[B, 1, Hq * D]`` head by head.

        For ``sdpa`` it calls ``scaled_dot_product_attention`` directly with exactly the
        arguments transformers' ``sdpa_attention_forward`` passes it for one query token
        (grouped heads through ``enable_gqa`` or packed query rows, ``is_causal=False``),
        decided once per step instead of once per layer; any other implementation is called
        through transformers' registry.
        """
        implementation = self.config._attn_implementation
        if implementation != "sdpa":
            registered = ALL_ATTENTION_FUNCTIONS[implementation]

            def attend(module, query, key, value, mask):
                extra = ({"sliding_window": module.sliding_window}
                         if hasattr(module, "sliding_window") else {})
                return registered(module, query, key, value, mask, dropout=0.0,
                                  scaling=module.scaling, **extra)[0]
            return attend
        groups = self.query_heads // self.kv_heads
        if groups == 1:
            def attend(module, query, key, value, mask):
                return F.scaled_dot_product_attention(query, key, value, attn_mask=mask,
                                                      scale=module.scaling)
            return attend
        like = self.decoder.embed_tokens.weight.new_empty((1, 1, 1, self.head_dim))
        if use_gqa_in_sdpa(attention_mask, like, like):
            def attend(module, query, key, value, mask):
                return F.scaled_dot_product_attention(query, key, value, attn_mask=mask,
                                                      scale=module.scaling, enable_gqa=True)
            return attend
        grouped = pack_gqa(attention_mask, groups)

        def attend(module, query, key, value, mask):
            # One query token: each key/value head's query heads become its query rows.
            return F.scaled_dot_product_attention(pack_gqa(query, groups), key, value,
                                                  attn_mask=grouped, scale=module.scaling)
        return attend


def _fused_products_agree(parts: LayerParts, fused: FusedProjections, rows: int) -> bool:
    """Whether ``fused``'s products equal the layer's separate ones (as the step would run them)
    bit for bit on a seeded random ``[rows, 1, hidden]`` input."""
    weight = parts.q.weight
    generator = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn((rows, 1, weight.shape[1]), generator=generator).to(weight.device,
                                                                        weight.dtype)

    def separate(projections: list[torch.nn.Linear]) -> torch.Tensor:
        return torch.cat([_linear(p, x) for p in projections], dim=-1)

    with torch.no_grad():
        return (torch.equal(fused.qkv_product(x), separate(parts.qkv))
                and torch.equal(fused.gate_up_product(x), separate(parts.gate_up)))


def _linear(layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` without the module call (its packed product where it runs packed):
    :func:`unsupported_reason` turns down models with hooks, which this would skip."""
    return layer.forward(x)


def _signed_sin(sin: torch.Tensor) -> torch.Tensor:
    """``sin`` ``[..., D]`` with its first half negated, for :func:`_rotate`."""
    half = sin.shape[-1] // 2
    return torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)


def _rotate(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of ``x`` ``[B, T, heads, D]`` with ``cos``/``signed_sin``
    ``[B, T, 1, D]``, element by element as transformers' ``apply_rotary_pos_emb`` computes
    ``x * cos + rotate_half(x) * sin``. ``rotate_half(x)`` is ``cat(-x2, x1)``; here the halves
    are swapped in one op and the sign sits in ``signed_sin``: ``(-a) * b`` and ``a * (-b)`` are
    the same number in IEEE arithmetic, signed zeros included."""
    swapped = x.unflatten(-1, (2, -1)).flip(-2).flatten(-2)
    return (x * cos) + (swapped * signed_sin)


def _rms_norm(norm: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)`` for the Llama/Qwen2 RMSNorm, the same operations with fewer temporaries:
    ``weight * (x32 * rsqrt(mean(x32 ** 2) + eps)).to(x.dtype)`` with ``x32`` a float32 copy."""
    h = x.to(torch.float32, copy=True)
    scale = h.pow(2).mean(-1, keepdim=True).add_(norm.variance_epsilon).rsqrt_()
    return h.mul_(scale).to(x.dtype).mul_(norm.weight)
