"""Load a model by registry name, Hugging Face id or local folder, ready for GReaTer.

What :func:`load_model` guarantees about the result:

* the model is in eval mode, its parameters have ``requires_grad=False`` (gradients are taken
  with respect to one-hot inputs, never weights), and its weights are dense floating-point
  tensors of the requested dtype on the requested device (never packed GGUF blocks);
* the tokenizer has a chat template, a pad token (the eos token when the files name none) and
  ``padding_side="left"`` (batched generation appends on the right).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from greater.devices import pick_device, pick_dtype
from greater.models.chat_templates import family_chat_template
from greater.models.errors import ModelError
from greater.models.provisioning import is_provisioned, model_dir, provision
from greater.models.registry import STAND_INS, ModelSpec, resolve_model

logger = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A loaded causal LM and its tokenizer.

    Attributes:
        model: the transformers ``PreTrainedModel`` (eval mode, frozen parameters).
        tokenizer: its tokenizer (chat template, pad token, left padding).
        spec: what was loaded.
        device: where the weights are.
        dtype: the weights' dtype.
        path: the folder it was loaded from (``None`` for a hub id).
    """

    model: Any
    tokenizer: Any
    spec: ModelSpec
    device: torch.device
    dtype: torch.dtype
    path: Path | None = None


def load_model(name: str | ModelSpec, *, dtype: str | torch.dtype | None = None,
               device: str | torch.device | None = None,
               cache_dir: str | os.PathLike[str] | None = None,
               provision_missing: bool = True) -> LoadedModel:
    """Load a model by registry name, HF id or local folder.

    Args:
        name: registry name (see ``MODEL_REGISTRY``), ``org/name`` hub id, or a folder written by
            ``save_pretrained``.
        dtype: ``None``/"auto" (see :func:`greater.devices.pick_dtype`), a string such as "bf16",
            or a ``torch.dtype``.
        device: ``None``/"auto", "cpu", "cuda", "cuda:1", "mps" or a ``torch.device``.
        cache_dir: provisioning cache for stand-ins (default ``$GREATER_CACHE_DIR`` or
            ``~/.cache/greater``).
        provision_missing: provision a stand-in that is not in the cache yet (a one-off
            conversion of under a minute); if false, raise instead.

    Raises:
        ModelError: unknown name, stand-in not provisioned, hub download impossible (the message
            says whether to log in, get a network, pass a local folder or use a stand-in), or a
            model whose weights did not load as dense floats.
        ValueError: an invalid or unavailable device or dtype.
    """
    spec = resolve_model(name)
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(dtype, torch_device)
    started = time.perf_counter()

    if spec.kind == "stand-in":
        folder = model_dir(spec, cache_dir)
        if not is_provisioned(folder):
            if not provision_missing:
                raise ModelError(f"{spec.name} is not provisioned in {folder.parent}; call "
                                 f"greater.models.provision({spec.name!r}) or pass "
                                 "provision_missing=True")
            folder = provision(spec, cache_dir)
        assert folder is not None
        tokenizer, model = _load_local(folder, spec, torch_dtype, torch_device)
        path: Path | None = folder
    elif spec.kind == "local":
        path = Path(spec.source)
        tokenizer, model = _load_local(path, spec, torch_dtype, torch_device)
    else:
        path = None
        tokenizer, model = _load_hub(spec, torch_dtype, torch_device)

    check_dense(model, spec.name)
    model.eval()
    model.requires_grad_(False)
    _prepare_tokenizer(tokenizer, model, spec)
    logger.info("loaded %s (%s) on %s in %s in %.1f s", spec.name, spec.kind, torch_device,
                str(torch_dtype).replace("torch.", ""), time.perf_counter() - started)
    return LoadedModel(model=model, tokenizer=tokenizer, spec=spec, device=torch_device,
                       dtype=torch_dtype, path=path)


def check_dense(model: Any, name: str) -> None:
    """Raise :class:`ModelError` unless every parameter is a dense floating-point tensor and the
    input embedding has shape ``(vocab, hidden)``.

    With the ``kernels`` package installed, transformers can keep GGUF weights packed in integer
    blocks, which can neither be saved nor differentiated through.
    """
    embedding = model.get_input_embeddings().weight
    hidden = getattr(model.config.get_text_config(), "hidden_size", None)
    if (not embedding.is_floating_point() or embedding.ndim != 2
            or (hidden is not None and embedding.shape[1] != hidden)):
        raise ModelError(
            f"{name}: input embeddings are {embedding.dtype} with shape {tuple(embedding.shape)}, "
            "not dense floats; GGUF weights were probably kept packed (is the `kernels` package "
            "installed?). Re-provision, or uninstall `kernels`."
        )
    packed = [n for n, p in model.named_parameters() if not p.is_floating_point()]
    if packed:
        raise ModelError(f"{name}: {len(packed)} parameters are not floating point "
                         f"(e.g. {packed[0]}); GGUF weights were kept packed")


def _device_kwargs(device: torch.device) -> dict:
    # Load straight onto an accelerator (big models would not fit twice in host memory).
    return {} if device.type == "cpu" else {"device_map": {"": device}}


def _load_local(folder: Path, spec: ModelSpec, dtype: torch.dtype,
                device: torch.device) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype,
                                                     local_files_only=True,
                                                     **_device_kwargs(device))
    except (OSError, ValueError) as exc:
        hint = (f" Delete {folder} and provision {spec.name!r} again." if spec.is_stand_in
                else "")
        raise ModelError(f"cannot load {spec.name} from {folder}: {exc}.{hint}") from exc
    return tokenizer, model


def _load_hub(spec: ModelSpec, dtype: torch.dtype, device: torch.device) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf_id = spec.hf_id
    assert hf_id is not None
    try:
        tokenizer = AutoTokenizer.from_pretrained(hf_id)
        model = AutoModelForCausalLM.from_pretrained(hf_id, dtype=dtype, **_device_kwargs(device))
    except Exception as exc:  # noqa: BLE001 - hub, network and auth errors come in many types
        if isinstance(exc, (MemoryError, KeyboardInterrupt)):
            raise
        raise ModelError(_hub_failure_message(hf_id, exc)) from exc
    return tokenizer, model


def _hub_failure_message(hf_id: str, exc: BaseException) -> str:
    """Explain a failed hub load and what to do about it."""
    chain: list[BaseException] = []
    cursor: BaseException | None = exc
    while cursor is not None and len(chain) < 8:
        chain.append(cursor)
        cursor = cursor.__cause__ or cursor.__context__
    kinds = {type(e).__name__ for e in chain}
    text = " ".join(str(e) for e in chain).lower()
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    stand_ins = ", ".join(STAND_INS)
    alternatives = (f"Alternatively pass a local folder written by save_pretrained, or use an "
                    f"offline stand-in: {stand_ins}.")
    if "GatedRepoError" in kinds or "gated" in text or "401" in text or "403" in text:
        reason = (f"{hf_id} is gated or needs authentication: accept its licence on its hub "
                  "page, then log in with `hf auth login` (or set HF_TOKEN).")
    elif offline or "LocalEntryNotFoundError" in kinds or "offline" in text or any(
            word in text for word in ("connection", "resolve", "timed out", "network")):
        why = ("HF_HUB_OFFLINE is set; unset it if this machine has a network" if offline
               else "the hub cannot be reached: check the network or proxy")
        reason = (f"{hf_id} is not in the local hub cache and cannot be downloaded ({why}). "
                  "Download it once on a machine with network access (into the hub cache, or "
                  "save_pretrained it to a folder).")
    elif ("RepositoryNotFoundError" in kinds or "not a valid model identifier" in text
          or "404" in text or "not found" in text):
        reason = (f"{hf_id} was not found on the hub: check the id (private repositories also need "
                  "`hf auth login`).")
    else:
        reason = f"loading {hf_id} from the hub failed."
    return f"{reason} {alternatives} (cause: {type(exc).__name__}: {str(exc)[:300]})"


def _prepare_tokenizer(tokenizer: Any, model: Any, spec: ModelSpec) -> None:
    """Guarantee a chat template, a pad token and left padding."""
    if spec.chat_template is not None:
        tokenizer.chat_template = spec.chat_template
    if not getattr(tokenizer, "chat_template", None):
        model_type = getattr(model.config, "model_type", None)
        template = family_chat_template(model_type)
        if template is None:
            raise ModelError(
                f"{spec.name} has no chat template (a base model?) and none is known for its "
                f"family {model_type!r}; use an instruct model or set tokenizer.chat_template "
                "in a saved folder"
            )
        logger.warning("%s has no chat template; using the %s family's turn format", spec.name,
                       model_type)
        tokenizer.chat_template = template
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ModelError(f"{spec.name}: the tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
