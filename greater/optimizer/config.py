"""`GreaterConfig`: every knob of a GReaTer run, validated at construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from greater.evaluate import ZERO_SHOT_COT_PROMPT

TOKEN_FILTERS = ("ascii", "none")


@dataclass(frozen=True)
class GreaterConfig:
    """Configuration of :func:`greater.optimizer.optimize`. Defaults are the paper's.

    Attributes:
        steps: optimisation steps (one prompt position edited per step; paper: 100-125).
        n_train: training examples, the first ``n_train`` of the train split (paper: 50).
        top_k: per-example top-k of the next-token distribution for proposals (paper: 10; 40
            in its BBH scripts).
        n_intersections: q, how many random intersections are united (paper: 5).
        intersection_size: examples per intersection (paper: 5).
        min_candidates: grow ``top_k`` until at least this many candidates survive (paper: 6).
        top_k_growth: how much ``top_k`` grows per retry (paper: 2).
        n_rescore: candidates with the most negative gradient re-scored by regenerating
            reasoning and answers (paper: 3). 0 takes the gradient's argmin unscored, as the
            authors' toolkit does.
        perplexity_weight: lambda, weight of the prompt's mean NLL in the loss (paper: 0.2);
            the re-scoring uses lambda / 10 as the paper's code does.
        ce_temperature: temperature dividing the answer logits in the cross-entropy (0.2).
        max_new_tokens: bound on each generated reasoning chain.
        use_reasoning: False is the paper's ablation: the loss is on the answer right after
            the prompt and extractor, with no reasoning chain in between.
        token_filter: "ascii" allows only tokens made of ASCII letters and spaces, plus exactly
            "." and "," (the paper's filter); "none" allows every non-special token.
        initial_prompt: the prompt the search starts from (the paper's zero-shot CoT prompt).
        max_prompt_tokens: the prompt never grows beyond this; the walk wraps to 0 there.
        n_contenders: how many of the best prompts seen (by train accuracy) are compared on dev.
        n_dev: dev examples used to choose the final prompt (None: the whole dev split).
        n_test: test examples the final prompt is scored on (None: all; 0: skip the test).
        batch_size: rows per generation batch.
        grad_batch_size: examples per forward/backward pass of the gradient.
        seed: fixes every random draw of the run.
    """

    steps: int = 100
    n_train: int = 50
    top_k: int = 10
    n_intersections: int = 5
    intersection_size: int = 5
    min_candidates: int = 6
    top_k_growth: int = 2
    n_rescore: int = 3
    perplexity_weight: float = 0.2
    ce_temperature: float = 0.2
    max_new_tokens: int = 512
    use_reasoning: bool = True
    token_filter: str = "ascii"
    initial_prompt: str = ZERO_SHOT_COT_PROMPT
    max_prompt_tokens: int = 64
    n_contenders: int = 5
    n_dev: int | None = None
    n_test: int | None = None
    batch_size: int = 16
    grad_batch_size: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        positive = ("steps", "n_train", "top_k", "n_intersections", "intersection_size",
                    "min_candidates", "max_new_tokens", "max_prompt_tokens", "n_contenders",
                    "batch_size", "grad_batch_size")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.top_k_growth < 1:
            raise ValueError(f"top_k_growth must be >= 1 (or top-k could never grow), "
                             f"got {self.top_k_growth}")
        if self.n_rescore < 0:
            raise ValueError(f"n_rescore must be >= 0, got {self.n_rescore}")
        if self.perplexity_weight < 0:
            raise ValueError(f"perplexity_weight must be >= 0, got {self.perplexity_weight}")
        if self.ce_temperature <= 0:
            raise ValueError(f"ce_temperature must be > 0, got {self.ce_temperature}")
        if self.token_filter not in TOKEN_FILTERS:
            raise ValueError(f"token_filter must be one of {TOKEN_FILTERS}, "
                             f"got {self.token_filter!r}")
        if not self.initial_prompt.strip():
            raise ValueError("initial_prompt is empty")
        if self.intersection_size > self.n_train:
            raise ValueError(f"intersection_size ({self.intersection_size}) cannot exceed "
                             f"n_train ({self.n_train})")
        if self.min_candidates > self.top_k * self.n_intersections * 10:
            raise ValueError("min_candidates is unreachably large for top_k and n_intersections")
        for name in ("n_dev", "n_test"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be None or a non-negative integer, got {value!r}")
        if self.n_dev == 0:
            raise ValueError("n_dev must be >= 1 (the final prompt is chosen on dev)")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
