"""`RunConfig`: the fields every optimiser's config shares, validated in one place."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from greater.evaluate import ZERO_SHOT_COT_PROMPT


def positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class RunConfig:
    """Fields every method's config shares (GReaTer's and the baselines'), so runs compare on
    equal footing: the same training examples, dev/test budgets, generation bounds and seed.

    Attributes:
        initial_prompt: the prompt the search starts from (the paper's zero-shot CoT prompt).
        n_train: training examples, the first ``n_train`` of the train split (paper: 50).
        n_contenders: how many of the best prompts seen are compared on dev.
        n_dev: dev examples used to choose the final prompt (None: the whole dev split).
        n_test: test examples the final prompt is scored on (None: all; 0: skip the test).
        max_new_tokens: bound on each reply of the task model when scoring a prompt.
        batch_size: rows per generation batch of the task model.
        seed: fixes every random draw of the run.
    """

    initial_prompt: str = ZERO_SHOT_COT_PROMPT
    n_train: int = 50
    n_contenders: int = 5
    n_dev: int | None = None
    n_test: int | None = None
    max_new_tokens: int = 512
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_train", "n_contenders", "max_new_tokens", "batch_size"):
            positive_int(name, getattr(self, name))
        if not isinstance(self.initial_prompt, str) or not self.initial_prompt.strip():
            raise ValueError("initial_prompt is empty")
        for name in ("n_dev", "n_test"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or value < 0):
                raise ValueError(f"{name} must be None or a non-negative integer, got {value!r}")
        if self.n_dev == 0:
            raise ValueError("n_dev must be >= 1 (the final prompt is chosen on dev)")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LLMOptimizerConfig(RunConfig):
    """Fields of the methods driven by an optimiser LLM (APE, APO, TextGrad, PE2, OPRO, GEPA).

    Attributes:
        optimizer_max_new_tokens: bound on each reply of the optimiser LLM.
        optimizer_temperature: sampling temperature of the optimiser LLM (0: greedy).
    """

    optimizer_max_new_tokens: int = 256
    optimizer_temperature: float = 0.7

    def __post_init__(self) -> None:
        super().__post_init__()
        positive_int("optimizer_max_new_tokens", self.optimizer_max_new_tokens)
        if not isinstance(self.optimizer_temperature, (int, float)) or \
                self.optimizer_temperature < 0:
            raise ValueError(f"optimizer_temperature must be >= 0, "
                             f"got {self.optimizer_temperature!r}")
