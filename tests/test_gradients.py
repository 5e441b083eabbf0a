"""Acceptance test of GReaTer's gradient over reasoning (greater.lm.gradients), on real models.

Setting: real bbh/boolean_expressions training examples, the zero-shot CoT prompt, the model's own
greedy reasoning (smollm2-135m, fp32) or a fixed short reasoning (gemma3-270m, fp32), and, at
several prompt positions, the model's top-30 allowed next tokens as candidates.

(a) The one-hot gradient equals an independent computation: one plain full forward over
    ``inputs_embeds`` (no KV cache, no padding) with this file's own loss code, differentiated
    with respect to the input embeddings and projected on the candidates' embedding rows times
    ``embed_scale`` (plus, with a perplexity weight, the direct NLL term of the edited token).
(b) The first-order prediction ``grad[c] - grad[current]`` is positively rank-correlated with the
    true loss change measured by ``sequence_losses`` (mean Spearman over positions > 0).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from greater.evaluate import ZERO_SHOT_COT_PROMPT
from greater.lm import LM
from greater.lm.gradients import (
    LossSequence,
    onehot_gradients,
    sequence_losses,
)
from greater.optimizer.candidates import token_is_allowed
from greater.responses import respond
from greater.tasks import load_task

TEMPERATURE = 0.2
N_EXAMPLES = 4
N_CANDIDATES = 30
FIXED_REASONING = "Let's evaluate the expression step by step. not True is False."
# Per-position rank correlation is noisy (one example: -0.05, 0.29, -0.22, 0.69 at positions 1, 3,
# 6, 10), so the acceptance criterion is on the mean over these positions.
SPEARMAN_POSITIONS = (1, 3, 6, 9, 12, 15)  # the prompt has 16 tokens on smollm2
N_SPEARMAN_CANDIDATES = 10  # top candidates whose true loss change is measured per position


# ------------------------------------------------------------------------------ helpers
def build_sequences(lm: LM, task, examples, prompt: list[int],
                    reasonings: list[list[int]]) -> list[LossSequence]:
    """``head | prompt | tail | reasoning | extractor | answer`` per example."""
    extractor = lm.extractor_ids(task.extractor)
    seqs = []
    for ex, reasoning in zip(examples, reasonings):
        head = lm.head_ids(ex.input)
        answer = lm.encode(task.answer_text(ex))
        ids = head + prompt + lm.tail_ids + list(reasoning) + extractor + answer
        seqs.append(LossSequence(tuple(ids), len(head), len(prompt), len(answer)))
    return seqs


def with_token(seqs: list[LossSequence], position: int, token: int) -> list[LossSequence]:
    out = []
    for s in seqs:
        ids = list(s.ids)
        ids[s.prompt_start + position] = token
        out.append(LossSequence(tuple(ids), s.prompt_start, s.prompt_len, s.answer_len))
    return out


def top_allowed_candidates(lm: LM, seqs: list[LossSequence], position: int,
                           n: int = N_CANDIDATES) -> torch.Tensor:
    """The ``n`` allowed tokens the model finds most likely at ``position`` (mean log-prob over
    the examples), plus the current token; sorted ascending."""
    contexts = [list(s.ids[: s.prompt_start + position]) for s in seqs]
    mean = lm.next_token_logprobs(contexts).mean(0)
    special = set(lm.tokenizer.all_special_ids)
    chosen: list[int] = []
    for token in mean.argsort(descending=True).tolist():
        if token not in special and token_is_allowed(lm.tokenizer.decode([token])):
            chosen.append(token)
            if len(chosen) == n:
                break
    current = seqs[0].ids[seqs[0].prompt_start + position]
    return torch.tensor(sorted(set(chosen) | {current}))


def reference_gradients(lm: LM, seqs: list[LossSequence], *, weight: float):
    """Independent loss and gradient: a plain full forward over ``inputs_embeds`` per example.

    Returns:
        loss: the summed loss (answer CE at TEMPERATURE + weight * mean prompt NLL).
        embed_grads: per example, ``[prompt_len, H]`` d loss / d inputs_embeds at the prompt.
        prompt_logp: per example, ``[prompt_len, V]`` log-probs predicting each prompt token.
    """
    total = 0.0
    embed_grads, prompt_logps = [], []
    table = lm.embedding_layer.weight
    for s in seqs:
        ids = torch.tensor(s.ids)
        embeds = (table[ids].float() * lm.embed_scale).unsqueeze(0).requires_grad_(True)
        logits = lm.model(inputs_embeds=embeds).logits[0].float()
        n, a = len(s.ids), s.answer_len
        ce = F.cross_entropy(logits[n - a - 1: n - 1] / TEMPERATURE, ids[n - a:])
        start, length = s.prompt_start, s.prompt_len
        logp = logits[start - 1: start + length - 1].log_softmax(-1)
        nll = -logp.gather(-1, ids[start: start + length, None]).mean()
        loss = ce + weight * nll
        (grad,) = torch.autograd.grad(loss, embeds)
        total += float(loss.detach())
        embed_grads.append(grad[0, start: start + length].detach())
        prompt_logps.append(logp.detach())
    return total, embed_grads, prompt_logps


def expected_onehot_grad(lm: LM, ref, seqs, position: int, candidates: torch.Tensor,
                         weight: float) -> torch.Tensor:
    """Project the reference embedding gradient on the candidates' (scaled) embedding rows."""
    _, embed_grads, prompt_logps = ref
    rows = lm.embedding_layer.weight[candidates].float() * lm.embed_scale  # [C, H]
    grad = sum(rows @ g[position] for g in embed_grads)
    # The edited token's own NLL is linear in its one-hot vector.
    grad = grad - weight / seqs[0].prompt_len * sum(lp[position, candidates] for lp in prompt_logps)
    return grad


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max() / expected.abs().max().clamp(min=1e-12))


def rank(x: torch.Tensor) -> torch.Tensor:
    """Ranks (0-based) with ties averaged."""
    order = x.argsort()
    ranks = torch.empty(len(x), dtype=torch.float64)
    ranks[order] = torch.arange(len(x), dtype=torch.float64)
    for value in x.unique():
        tied = x == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    rx, ry = rank(x.double()), rank(y.double())
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / (rx.norm() * ry.norm()))


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def task(data_dir):
    return load_task("bbh/boolean_expressions", data_dir=data_dir)


@pytest.fixture(scope="module")
def smol_seqs(lm32, task):
    """Loss sequences with smollm2's own greedy reasoning for the first training examples."""
    examples = task.train[:N_EXAMPLES]
    prompt = lm32.prompt_ids(ZERO_SHOT_COT_PROMPT)
    replies = respond(lm32, task, examples, prompt, max_new_tokens=16)
    reasonings = [r[0].reasoning_ids for r in replies]
    assert all(reasonings), "the model should have written some reasoning"
    return build_sequences(lm32, task, examples, prompt, reasonings)


@pytest.fixture(scope="module")
def gemma32():
    return LM.load("gemma3-270m", dtype="fp32", device="cpu")


# --------------------------------------------------------------------------------- tests
def test_rank_correlation_helper():
    assert spearman(torch.tensor([1.0, 2, 3, 4]), torch.tensor([10.0, 20, 30, 40])) == \
        pytest.approx(1.0)
    assert spearman(torch.tensor([1.0, 2, 3, 4]), torch.tensor([4.0, 3, 2, 1])) == \
        pytest.approx(-1.0)
    x, y = torch.tensor([1.0, 2, 2, 3, 5]), torch.tensor([2.0, 1, 4, 3, 7])
    scipy_stats = pytest.importorskip("scipy.stats")
    assert spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic)


@pytest.mark.parametrize("weight", [0.0, 0.2])
def test_onehot_gradient_equals_embedding_gradient_smollm(lm32, smol_seqs, weight):
    positions = (0, 1, 6, 10)
    ref = reference_gradients(lm32, smol_seqs, weight=weight)
    for pos in positions:
        cand = top_allowed_candidates(lm32, smol_seqs, pos)
        assert len(cand) >= N_CANDIDATES
        got = onehot_gradients(lm32, smol_seqs, [pos], cand, temperature=TEMPERATURE,
                               weight=weight)
        expected = expected_onehot_grad(lm32, ref, smol_seqs, pos, cand, weight)
        assert got.grad.shape == (1, len(cand))
        assert relative_error(got.grad[0], expected) < 1e-4, f"position {pos}"
        assert got.loss == pytest.approx(ref[0], rel=1e-4)


@pytest.mark.slow  # converts gemma3 into the cache on first use
def test_onehot_gradient_equals_embedding_gradient_gemma(gemma32, task):
    """Gemma scales its input embeddings by sqrt(hidden) (~25.3); the one-hot path must too."""
    lm = gemma32
    assert lm.embed_scale == pytest.approx(25.3, abs=0.1)
    examples = task.train[:N_EXAMPLES]
    prompt = lm.prompt_ids(ZERO_SHOT_COT_PROMPT)
    seqs = build_sequences(lm, task, examples, prompt,
                           [lm.encode(" " + FIXED_REASONING)] * len(examples))
    ref = reference_gradients(lm, seqs, weight=0.0)
    for pos in (1, 6, 10):
        cand = top_allowed_candidates(lm, seqs, pos)
        got = onehot_gradients(lm, seqs, [pos], cand, temperature=TEMPERATURE, weight=0.0)
        expected = expected_onehot_grad(lm, ref, seqs, pos, cand, 0.0)
        assert relative_error(got.grad[0], expected) < 1e-4, f"position {pos}"
        # Forgetting the scale would be off by a factor of ~25: make sure the check can see it.
        assert relative_error(got.grad[0], expected / lm.embed_scale) > 0.5
        assert got.loss == pytest.approx(ref[0], rel=1e-4)


def test_sequence_losses_equal_onehot_loss(lm32, smol_seqs, capsys):
    cand = top_allowed_candidates(lm32, smol_seqs, 3, n=8)
    got = onehot_gradients(lm32, smol_seqs, [3], cand, temperature=TEMPERATURE, weight=0.2,
                           batch_size=3)  # two chunks: gradients and terms are accumulated
    terms = sequence_losses(lm32, smol_seqs, temperature=TEMPERATURE, weight=0.2,
                            progress="scoring rows")
    bar = capsys.readouterr().err
    assert "scoring rows" in bar and f"{len(smol_seqs)}/{len(smol_seqs)}" in bar
    torch.testing.assert_close(terms.total, got.terms.total, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(terms.answer_ce, got.terms.answer_ce, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(terms.prompt_nll, got.terms.prompt_nll, rtol=1e-4, atol=1e-5)
    assert float(terms.total.sum()) == pytest.approx(got.loss, rel=1e-4)
    torch.testing.assert_close(terms.total, terms.answer_ce + 0.2 * terms.prompt_nll)
    # The prompt NLL agrees with teacher-forced log-probs of the prompt after its question.
    s = smol_seqs[0]
    lp = lm32.target_logprobs([s.ids[: s.prompt_start]],
                         [s.ids[s.prompt_start: s.prompt_start + s.prompt_len]])[0]
    assert float(terms.prompt_nll[0]) == pytest.approx(float(-lp.mean()), rel=1e-4)


def test_multi_position_gradients_match_single_position(lm32, smol_seqs):
    positions = [1, 6, 10]
    union = torch.cat([top_allowed_candidates(lm32, smol_seqs, p, n=10) for p in positions])
    cand = union.unique()
    multi = onehot_gradients(lm32, smol_seqs, positions, cand, temperature=TEMPERATURE,
                             weight=0.2)
    assert multi.grad.shape == (3, len(cand))
    for row, pos in enumerate(positions):
        single = onehot_gradients(lm32, smol_seqs, [pos], cand, temperature=TEMPERATURE,
                                  weight=0.2)
        assert relative_error(multi.grad[row], single.grad[0]) < 1e-4, f"position {pos}"
        # The two passes run the cached prefix up to different positions, so their float32
        # sums have other shapes: 1.2e-5 apart on an AVX2-only CPU (AMD EPYC), less on AMX.
        assert multi.loss == pytest.approx(single.loss, rel=1e-4)


def test_onehot_gradients_validate_inputs(lm32, smol_seqs):
    cand = torch.tensor([5, 6, 7])
    with pytest.raises(ValueError, match="not a candidate"):
        onehot_gradients(lm32, smol_seqs, [2], cand)
    current = smol_seqs[0].ids[smol_seqs[0].prompt_start]
    with pytest.raises(ValueError, match="sorted"):
        onehot_gradients(lm32, smol_seqs, [3, 1], torch.tensor([current]))
    with pytest.raises(ValueError, match="outside"):
        onehot_gradients(lm32, smol_seqs, [smol_seqs[0].prompt_len], torch.tensor([current]))
    with pytest.raises(ValueError, match="no sequences"):
        onehot_gradients(lm32, [], [0], torch.tensor([current]))
    with pytest.raises(ValueError):
        LossSequence((1, 2, 3), prompt_start=1, prompt_len=2, answer_len=1)


def test_first_order_prediction_rank_correlates_with_true_loss_change(lm32, smol_seqs):
    """Acceptance: mean over positions of Spearman(grad[c] - grad[cur], true delta loss) > 0."""
    correlations = {}
    base = float(sequence_losses(lm32, smol_seqs, temperature=TEMPERATURE, weight=0.0)
                 .total.sum())
    for pos in SPEARMAN_POSITIONS:
        current = smol_seqs[0].ids[smol_seqs[0].prompt_start + pos]
        cand = top_allowed_candidates(lm32, smol_seqs, pos, n=N_SPEARMAN_CANDIDATES)
        grad = onehot_gradients(lm32, smol_seqs, [pos], cand, temperature=TEMPERATURE,
                                weight=0.0)
        assert grad.loss == pytest.approx(base, rel=1e-4)
        g = grad.grad[0]
        cur_index = int((cand == current).nonzero()[0, 0])
        others = [k for k in range(len(cand)) if k != cur_index]
        predicted = torch.stack([g[k] - g[cur_index] for k in others])
        rows = [s for k in others for s in with_token(smol_seqs, pos, int(cand[k]))]
        totals = sequence_losses(lm32, rows, temperature=TEMPERATURE, weight=0.0,
                                 batch_size=16).total.view(len(others), len(smol_seqs))
        true_delta = totals.sum(1) - base
        correlations[pos] = spearman(predicted, true_delta)
    mean = sum(correlations.values()) / len(correlations)
    print(f"\nSpearman per position (weight 0): "
          f"{ {p: round(c, 3) for p, c in correlations.items()} } mean {mean:.3f}")
    assert mean > 0, correlations
