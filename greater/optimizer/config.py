"""`GreaterConfig`: every knob of a GReaTer run, validated at construction."""

from __future__ import annotations

from dataclasses import dataclass

from greater.lm.model import MAX_PROMPT_TOKENS
from greater.run_config import RunConfig, positive_int

TOKEN_FILTERS = ("ascii", "none")


@dataclass(frozen=True)
class GreaterConfig(RunConfig):
    """Configuration of :func:`greater.optimizer.optimize`. Defaults are the paper's.

    The shared fields (``initial_prompt``, ``n_train``, ``n_contenders``, ``n_dev``,
    ``n_test``, ``max_new_tokens``, ``batch_size``, ``seed``) are :class:`RunConfig`'s.

    Attributes:
        steps: optimisation steps (one prompt position edited per step; paper: 100-125).
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
        use_reasoning: False is the paper's ablation: the loss is on the answer right after
            the prompt and extractor, with no reasoning chain in between.
        token_filter: "ascii" allows only tokens made of ASCII letters and spaces, plus exactly
            "." and "," (the paper's filter); "none" allows every non-special token.
        max_prompt_tokens: the prompt never grows beyond this; the walk wraps to 0 there (at
            most the LM's prompt limit; an initial prompt longer than this is refused).
        grad_batch_size: examples per forward/backward pass of the gradient.
    """

    steps: int = 100
    top_k: int = 10
    n_intersections: int = 5
    intersection_size: int = 5
    min_candidates: int = 6
    top_k_growth: int = 2
    n_rescore: int = 3
    perplexity_weight: float = 0.2
    ce_temperature: float = 0.2
    use_reasoning: bool = True
    token_filter: str = "ascii"
    max_prompt_tokens: int = 64
    grad_batch_size: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("steps", "top_k", "n_intersections", "intersection_size", "min_candidates",
                     "max_prompt_tokens", "grad_batch_size"):
            positive_int(name, getattr(self, name))
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
        if self.max_prompt_tokens > MAX_PROMPT_TOKENS:
            raise ValueError(f"max_prompt_tokens ({self.max_prompt_tokens}) is above the "
                             f"model's prompt limit ({MAX_PROMPT_TOKENS})")
        if self.intersection_size > self.n_train:
            raise ValueError(f"intersection_size ({self.intersection_size}) cannot exceed "
                             f"n_train ({self.n_train}): raise n_train or lower "
                             "intersection_size")
