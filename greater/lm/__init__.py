"""A loaded causal LM: chat layout, batched KV-cached generation, scoring and token gradients."""

from greater.lm.generation import Continuation, Generation
from greater.lm.model import LM, MAX_PROMPT_TOKENS, PROMPT_JOINER, PromptError

__all__ = ["LM", "Continuation", "Generation", "PromptError", "PROMPT_JOINER", "MAX_PROMPT_TOKENS"]
