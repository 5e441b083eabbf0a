"""`LM`: a loaded causal LM with the operations every optimiser needs.

Token layout of one example (the paper's, rendered by the tokenizer's own chat template):

    head(question) | prompt tokens | tail | reasoning | extractor | answer
    '<chat>{question}. Use' ' proper logical ...' '<end user><start assistant>' ...

``head`` and ``tail`` come from rendering the chat template once with a sentinel where the
prompt goes and splitting the rendered text there, so no model's template is ever sliced by hand.
The prompt is tokenised on its own (with its leading space), which keeps its tokens stable while
an optimiser edits them one at a time.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Sequence

import torch
from tqdm.auto import tqdm
from transformers.modeling_outputs import CausalLMOutputWithPast

from greater.cost import CostMeter
from greater.devices import free_memory_bytes
from greater.lm.batching import ModelShape, RowCosts, fit_batch_size, run_with_backoff
from greater.lm.cpu_kernels import can_pack, is_packed, pack_linears
from greater.lm.decode_step import DecodeStep, unsupported_reason
from greater.lm.generation import Continuation, Generation, Generator, left_pad, \
    mask_positions
from greater.lm.kv_cache import cache_keyword

logger = logging.getLogger(__name__)

_SENTINEL = "\u2063GREATER_PROMPT\u2063"
#: Text between the question and the optimised prompt (the paper's "{question}. Use {prompt}").
PROMPT_JOINER = ". Use"
#: Tokens that end an assistant turn in the chat formats of the supported families.
_END_OF_TURN_TOKENS = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|endoftext|>", "<|end|>")
MAX_PROMPT_TOKENS = 256
#: Date string handed to chat templates that print one (Llama 3.x: "Today Date: ..."), so a
#: result never depends on the day it was computed; recorded in every result's provenance.
CHAT_DATE = "26 Jul 2024"


class PromptError(ValueError):
    """A prompt that cannot be used (empty, or longer than the model should be given)."""


class LM:
    """A causal LM plus its tokenizer, chat layout, generation engine and cost meter.

    Args:
        model: a transformers causal LM (eval mode, frozen parameters).
        tokenizer: its tokenizer, with a chat template and a pad token.
        name: the registry name or id the model was loaded by (recorded in results).
        device: where ``model`` lives.
        memory_budget: bytes the engine's batches may use; None: the free memory of a CUDA
            device, and no limit elsewhere (see :mod:`greater.lm.batching`).
        pack_weights: run the linear layers on weights prepacked for oneDNN where no gradient
            is needed (:mod:`greater.lm.cpu_kernels`; one extra copy of the weights): in bf16
            the same numbers at most shapes and 2-2.6x faster layers, in fp32 the same numbers
            to float32 rounding (oneDNN's summation order, not MKL's) and 1.3-2.3x faster
            layers from two rows on. None: wherever it applies (an fp32 model on a CPU, or a
            bf16 one on a CPU with oneDNN bf16 kernels); True: required (an error where it does
            not apply); False: never (transformers' own kernels, bit for bit).
        fast_decode: run single-token decode steps through :class:`~greater.lm.decode_step.
            DecodeStep` (transformers' operations without its per-layer plumbing, fused q/k/v
            and gate/up projections: the same logits bit for bit, less host work per token; on
            a packed model one more copy of those weights, on plain weights none: they become
            rows of one tensor). None: for the
            architectures it covers (Llama, Qwen2), transformers' forward elsewhere; True:
            required (an error naming why where it does not apply); False: never.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, *, name: str,
                 device: torch.device | str = "cpu", memory_budget: int | None = None,
                 pack_weights: bool | None = None, fast_decode: bool | None = None) -> None:
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError(f"tokenizer of {name!r} has no chat template")
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.device = torch.device(device)
        if memory_budget is not None and memory_budget < 1:
            raise ValueError(f"memory_budget must be a positive number of bytes, "
                             f"got {memory_budget}")
        self.fixed_memory_budget = memory_budget
        if pack_weights or (pack_weights is None and can_pack(model)):
            pack_linears(model)
        self.decode_step = None if fast_decode is False else DecodeStep.for_model(model)
        if fast_decode and self.decode_step is None:
            raise ValueError(f"fast_decode=True for {name!r}: {unsupported_reason(model)}")
        self.meter = CostMeter()
        self.chat_date = CHAT_DATE
        self.row_costs = RowCosts(ModelShape.of(model))
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.stop_ids = self._find_stop_ids()
        self.generator = Generator(self)
        self._cache_keyword = cache_keyword(model)
        self._head_cache: dict[str, list[int]] = {}
        self._tail_ids: list[int] | None = None

    @classmethod
    def load(cls, name: str, *, dtype: str | torch.dtype | None = None,
             device: str | None = None, cache_dir: str | None = None,
             pack_weights: bool | None = None, fast_decode: bool | None = None) -> "LM":
        """Load a registry name, HF id or local folder (see :func:`greater.models.load_model`)."""
        from greater.models import load_model

        loaded = load_model(name, dtype=dtype, device=device, cache_dir=cache_dir)
        return cls(loaded.model, loaded.tokenizer, name=name, device=loaded.device,
                   pack_weights=pack_weights, fast_decode=fast_decode)

    # ----------------------------------------------------------------- tokens and text
    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def linear_kernels(self) -> str:
        """What the linear layers run on where no gradient is wanted (recorded in provenance):
        ``"onednn-packed"`` (:mod:`greater.lm.cpu_kernels`) or ``"plain"`` (torch's own)."""
        return "onednn-packed" if is_packed(self.model) else "plain"

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` with no special tokens added."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def prompt_ids(self, prompt: str) -> list[int]:
        """Tokens of an instruction prompt as it follows ``PROMPT_JOINER`` (leading space)."""
        if not prompt or not prompt.strip():
            raise PromptError("the prompt is empty")
        ids = self.encode(" " + prompt.strip())
        if len(ids) > MAX_PROMPT_TOKENS:
            raise PromptError(f"the prompt has {len(ids)} tokens; at most {MAX_PROMPT_TOKENS} "
                              "are allowed")
        return ids

    def prompt_text(self, ids: Sequence[int]) -> str:
        """Inverse of :meth:`prompt_ids` (up to tokenisation)."""
        return self.decode(ids).strip()

    def extractor_ids(self, extractor: str) -> list[int]:
        """Tokens of the answer extractor as it follows the reasoning (leading space)."""
        return self.encode(" " + extractor)

    def extractor_answer_ids(self, extractor: str, answer: str) -> tuple[list[int], list[int]]:
        """Tokens of ``" " + extractor + answer`` split into (context, answer) for the loss.

        The split follows the tokenizer's own tokenisation of the joined text, so the answer is
        scored as the model would see it written: where the extractor's last token merges with
        the answer's first characters (Gemma's "$-", "$)"), the merged token is part of the
        answer and the context ends before it. Elsewhere this is ``extractor_ids(extractor)``
        followed by ``encode(answer)``.
        """
        if not answer:
            raise ValueError("the answer is empty")
        context = self.extractor_ids(extractor)
        joined = self.encode(" " + extractor + answer)
        k = 0
        while k < min(len(context), len(joined)) and context[k] == joined[k]:
            k += 1
        return joined[:k], joined[k:]

    def _render(self, user_text: str) -> str:
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": user_text}], tokenize=False, add_generation_prompt=True,
            date_string=self.chat_date)

    def head_ids(self, question: str) -> list[int]:
        """Tokens from the start of the chat up to and including ``PROMPT_JOINER``."""
        if question not in self._head_cache:
            rendered = self._render(question + PROMPT_JOINER + _SENTINEL)
            head, tail = rendered.split(_SENTINEL)
            self._head_cache[question] = self.encode(head)
            if self._tail_ids is None:
                self._tail_ids = self.encode(tail)
        return self._head_cache[question]

    @property
    def tail_ids(self) -> list[int]:
        """Tokens from the end of the user turn to the start of the assistant's reply."""
        if self._tail_ids is None:
            self.head_ids("?")
        assert self._tail_ids is not None
        return self._tail_ids

    def chat_ids(self, user_text: str) -> list[int]:
        """A whole single-turn chat, ready for the assistant's reply."""
        return self.encode(self._render(user_text))

    def _find_stop_ids(self) -> set[int]:
        ids: set[int] = set()
        eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        for value in (eos, self.tokenizer.eos_token_id):
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids.update(int(v) for v in value)
        vocab = self.tokenizer.get_vocab()
        ids.update(vocab[t] for t in _END_OF_TURN_TOKENS if t in vocab)
        return ids

    # ------------------------------------------------------------------- memory
    def memory_budget(self) -> int | None:
        """Bytes a batch may use now: the fixed budget if one was given, else the device's free
        memory (None on the CPU: no limit)."""
        if self.fixed_memory_budget is not None:
            return self.fixed_memory_budget
        return free_memory_bytes(self.device)

    def batch_size_for(self, requested: int, row_bytes: int) -> int:
        """``requested`` lowered to what fits :meth:`memory_budget` at ``row_bytes`` a row."""
        return fit_batch_size(requested, row_bytes, self.memory_budget())

    # ------------------------------------------------------------------- model calls
    def forward(self, ids: torch.Tensor | None = None, *, embeds: torch.Tensor | None = None,
                mask: torch.Tensor, positions: torch.Tensor, cache=None,
                logits_to_keep: int | torch.Tensor = 0):
        """One call of the model; every call goes through here, so its cost is always counted.

        Args:
            ids: ``[B, T]`` token ids fed, or None when ``embeds`` ``[B, T, H]`` are fed instead.
            mask: ``[B, T_cache + T]`` attention mask (1 = a real token) over cache and input.
            positions: ``[B, T]`` position ids of the fed tokens.
            cache: a KV cache the call reads and extends in place, or None for no cache.
            logits_to_keep: as in transformers (0: all positions; n: the last n; a tensor of
                indices: those positions).

        Returns:
            the transformers output; ``.logits`` is ``[B, kept, V]``. Tensors are moved to the
            LM's device here (a no-op for those already there). Single-token steps with a cache
            and no gradient run :attr:`decode_step` where there is one (same logits; the output
            then holds only ``.logits``).
        """
        if (ids is None) == (embeds is None):
            raise ValueError("pass exactly one of ids and embeds")
        fed = ids if ids is not None else embeds
        if (self.decode_step is not None and ids is not None and ids.shape[1] == 1
                and cache is not None and isinstance(logits_to_keep, int)
                and not torch.is_grad_enabled() and not self.model.training):
            logits = self.decode_step(ids.to(self.device), mask=mask.to(self.device),
                                      positions=positions.to(self.device), cache=cache)
            self.meter.add_forward(int(ids.shape[0]))
            return CausalLMOutputWithPast(logits=logits)  # the cache was extended in place
        kwargs = {"input_ids": ids.to(self.device)} if ids is not None else {
            "inputs_embeds": embeds.to(self.device)}
        if cache is not None:
            kwargs[self._cache_keyword] = cache
        out = self.model(attention_mask=mask.to(self.device),
                         position_ids=positions.to(self.device), use_cache=cache is not None,
                         logits_to_keep=logits_to_keep, **kwargs)
        self.meter.add_forward(int(fed.shape[0] * fed.shape[1]))
        return out

    def gradient(self, total: torch.Tensor, wrt: torch.Tensor, *, tokens: int) -> torch.Tensor:
        """d ``total`` / d ``wrt`` by one backward pass over ``tokens`` positions (counted)."""
        (grad,) = torch.autograd.grad(total, wrt)
        self.meter.add_backward(int(tokens))
        return grad

    @torch.no_grad()
    def target_logprobs(self, contexts: Sequence[Sequence[int]],
                        targets: Sequence[Sequence[int]], *,
                        batch_size: int = 8) -> list[torch.Tensor]:
        """Teacher-forced log-probs of ``targets[b]`` after ``contexts[b]``: a list of ``[T_b]``
        (on the host)."""
        if len(contexts) != len(targets):
            raise ValueError("contexts and targets differ in number")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not contexts:
            return []
        longest_row = max(len(c) + len(t) for c, t in zip(contexts, targets))
        row_bytes = self.row_costs.scoring(longest_row, max(len(t) for t in targets) + 1)

        def score(size: int) -> list[torch.Tensor]:
            result: list[torch.Tensor] = []
            for start in range(0, len(contexts), size):
                chunk = targets[start:start + size]
                rows = [list(c) + list(t) for c, t in zip(contexts[start:start + size], chunk)]
                result.extend(self._score_chunk(rows, chunk))
            return result

        return run_with_backoff(score, self.batch_size_for(batch_size, row_bytes),
                                what="scoring")

    def _score_chunk(self, rows: list[list[int]], targets) -> list[torch.Tensor]:
        ids, mask = left_pad(rows, self.tokenizer.pad_token_id)
        longest = max(len(t) for t in targets)
        # Rows are left-padded, so every target sits in the last `longest` positions.
        logits = self.forward(ids, mask=mask, positions=mask_positions(mask),
                              logits_to_keep=longest + 1).logits
        logp = logits.float().log_softmax(-1)  # [B, longest + 1, V]
        width = logp.shape[1]
        out = []
        for b, t in enumerate(targets):
            idx = torch.arange(width - len(t) - 1, width - 1, device=logp.device)
            gold = torch.tensor(list(t), dtype=torch.long, device=logp.device)
            out.append(logp[b, idx].gather(-1, gold.unsqueeze(-1)).squeeze(-1).cpu())
        return out

    @torch.no_grad()
    def next_token_logprobs(self, contexts: Sequence[Sequence[int]], *,
                            batch_size: int = 16) -> torch.Tensor:
        """``[B, V]`` log-probs of the token following each context (on the host)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        row_bytes = self.row_costs.scoring(max(len(c) for c in contexts), 1)

        def score(size: int) -> torch.Tensor:
            rows = []
            for start in range(0, len(contexts), size):
                ids, mask = left_pad(contexts[start:start + size], self.tokenizer.pad_token_id)
                logits = self.forward(ids, mask=mask,
                                      positions=mask_positions(mask),
                                      logits_to_keep=1).logits
                rows.append(logits[:, -1, :].float().log_softmax(-1).cpu())
            return torch.cat(rows)

        return run_with_backoff(score, self.batch_size_for(batch_size, row_bytes),
                                what="scoring")

    # ------------------------------------------------------------------- generation
    def generate(
        self,
        prefixes: Sequence[Sequence[int]],
        suffixes: Sequence[Sequence[int]] | None = None,
        *,
        max_new_tokens: int,
        continuation: Continuation | None = None,
        batch_size: int = 16,
        temperature: float = 0.0,
        seed: int | None = None,
        progress: str | None = None,
    ) -> list[Generation]:
        """Generate for every ``prefix + suffix`` row, ``batch_size`` rows at a time.

        Rows are returned in ``prefix``-major order: row ``p * len(suffixes) + s``. Longer
        prefixes are admitted first (batching is continuous, see
        :class:`~greater.lm.generation.Generator`); each prefix is prefilled once however many
        suffixes follow it. ``progress`` names a progress bar. ``batch_size`` is an upper
        bound: on a device with a memory budget it is lowered to what fits, and halved on
        out-of-memory (:mod:`greater.lm.batching`).
        """
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n_suf = len(suffixes) if suffixes is not None else 1
        order = sorted(range(len(prefixes)), key=lambda p: -len(prefixes[p]))
        longest = max((len(p) for p in prefixes), default=0) + (
            len(suffixes[0]) if suffixes else 0)
        extra = 0 if continuation is None else (
            len(continuation.force_ids) + continuation.max_new_tokens)
        row_bytes = self.row_costs.generation(longest, max_new_tokens + extra)

        def run(size: int) -> list[Generation]:
            rng = None
            if temperature > 0:
                rng = torch.Generator().manual_seed(0 if seed is None else seed)
            bar = tqdm(total=len(prefixes) * n_suf, desc=progress, disable=progress is None,
                       leave=False)
            try:
                return self.generator.run(
                    [prefixes[p] for p in order], suffixes, max_new_tokens=max_new_tokens,
                    batch_size=size, continuation=continuation, temperature=temperature,
                    rng=rng, on_row_done=lambda _r: bar.update(1))
            finally:
                bar.close()

        out = run_with_backoff(run, self.batch_size_for(batch_size, row_bytes),
                               what="generation")
        results: list[Generation | None] = [None] * len(out)
        for k, p in enumerate(order):
            for s in range(n_suf):
                results[p * n_suf + s] = out[k * n_suf + s]
        return [r for r in results if r is not None]

    def chat(self, user_texts: Sequence[str], *, max_new_tokens: int = 256,
             temperature: float = 0.0, seed: int | None = None, batch_size: int = 8) -> list[str]:
        """Reply to each single-turn user message (the optimiser-LLM role of the baselines)."""
        gens = self.generate([self.chat_ids(t) for t in user_texts], max_new_tokens=max_new_tokens,
                             batch_size=batch_size, temperature=temperature, seed=seed)
        self.meter.add_llm_calls(len(user_texts))
        return [self.decode(g.ids) for g in gens]

    # ------------------------------------------------------------------- embeddings
    @property
    def embedding_layer(self) -> torch.nn.Module:
        return self.model.get_input_embeddings()

    @property
    def embed_scale(self) -> float:
        """Factor the input embedding layer applies to its table rows (Gemma: sqrt(hidden)),
        rounded to the model's dtype as the layer itself applies it (bf16: 25.25 not 25.30)."""
        scale = getattr(self.embedding_layer, "embed_scale", None)
        if scale is None:
            return 1.0
        value = float(scale.item() if torch.is_tensor(scale) else scale)
        return float(torch.tensor(value, dtype=self.dtype).item())

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Input embeddings ``[..., H]`` of token ids ``[...]``, exactly as the model embeds them."""
        return self.embedding_layer(ids.to(self.device))

    def vocab_strings(self) -> list[str]:
        """Decoded text of every token id (index = id), cached."""
        return _vocab_strings(self.tokenizer)


@lru_cache(maxsize=8)
def _vocab_strings(tokenizer) -> list[str]:
    n = len(tokenizer)
    return [tokenizer.decode([i]) for i in range(n)]

