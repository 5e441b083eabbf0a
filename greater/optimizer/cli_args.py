"""`greater optimize`: flags that mirror the config fields, and the dispatch to a method.

Methods come from the registry (:mod:`greater.methods`). Every method's config is a dataclass;
a flag set on the command line is applied to the field of the same name, and a flag that the
chosen method has no field for is an error (never silently ignored). A config starts from the
method's defaults, then ``--preset``, then the flags: an explicit flag always wins. Messages
about the config name the flags the user typed (``--n-train``), not the config fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from greater.methods import MethodSpec, get_method, method_names
from greater.presets import PRESETS, build_config as build_method_config, config_fields, \
    parse_field_value

logger = logging.getLogger(__name__)

#: flag -> (config field, type, help). Fields without a flag are set with ``--set FIELD=VALUE``.
FIELD_FLAGS: dict[str, tuple[str, Any, str]] = {
    "--steps": ("steps", int, "optimisation steps"),
    "--n-train": ("n_train", int, "training examples (the first N of the train split; BBH has "
                                  "50, GSM8K and FOLIO 100)"),
    "--top-k": ("top_k", int, "candidate width (top-k per example / per position)"),
    "--n-rescore": ("n_rescore", int, "GReaTer: candidates re-scored by generation (0: argmin)"),
    "--perplexity-weight": ("perplexity_weight", float, "lambda, weight of the prompt NLL"),
    "--max-prompt-tokens": ("max_prompt_tokens", int,
                            "GReaTer: the prompt never grows beyond this many tokens (at most "
                            "256, the task model's prompt limit)"),
    "--n-dev": ("n_dev", int, "dev examples used to choose the final prompt (none: the whole "
                              "dev split)"),
    "--n-test": ("n_test", int, "test examples scored at the end (none: the whole test split; "
                                "0 skips the test)"),
    "--initial-prompt": ("initial_prompt", str, "prompt to start from (at most 256 tokens)"),
    "--seed": ("seed", int, "seed of every random draw"),
}
#: Flags of the common parser that are config fields of every method that generates.
COMMON_FIELD_FLAGS = {"--max-new-tokens": "max_new_tokens", "--batch-size": "batch_size"}
NO_REASONING_FLAG = "--no-reasoning"


def field_flag(field: str) -> str:
    """The flag a user types to set config field ``field``."""
    if field == "use_reasoning":
        return NO_REASONING_FLAG
    for flag, (name, _t, _h) in FIELD_FLAGS.items():
        if name == field:
            return flag
    for flag, name in COMMON_FIELD_FLAGS.items():
        if name == field:
            return flag
    return f"--set {field}"


def in_flag_words(message: str) -> str:
    """``message`` with config field names written as the flags that set them: ``n_train`` ->
    ``--n-train``, ``intersection_size`` -> ``--set intersection_size``. Names with an
    underscore are replaced anywhere, one-word names (``steps``) only at the start."""
    fields = {f for name in method_names() for f in config_fields(get_method(name).config_cls)}
    if not fields:
        return message
    names = "|".join(sorted(fields, key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w\-=/.])(?<!--set )({names})(?![\w=/])")

    def replace(m: re.Match) -> str:
        field = m.group(1)
        return field_flag(field) if "_" in field or m.start() == 0 else field

    return pattern.sub(replace, message)


def methods_with_field(field: str) -> list[str]:
    """The registered methods whose config has ``field``."""
    return [m for m in method_names() if field in config_fields(get_method(m).config_cls)]


def method_flags(method: str) -> tuple[list[str], list[str]]:
    """What ``--method METHOD`` takes: its flags, and the fields only ``--set`` reaches."""
    fields = config_fields(get_method(method).config_cls)
    flags = [flag for flag, (field, _t, _h) in FIELD_FLAGS.items() if field in fields]
    flags += [flag for flag, field in COMMON_FIELD_FLAGS.items() if field in fields]
    if "use_reasoning" in fields:
        flags.append(NO_REASONING_FLAG)
    flagged = {FIELD_FLAGS[f][0] for f in flags if f in FIELD_FLAGS} | \
        set(COMMON_FIELD_FLAGS.values()) | {"use_reasoning"}
    return flags, [f for f in fields if f not in flagged]


def _field_default_help(field: str) -> str:
    """'default: 50' when every method agrees, else 'default: greater 100, apo 6, ...'."""
    defaults: dict[str, Any] = {}
    for name in methods_with_field(field):
        for f in dataclasses.fields(get_method(name).config_cls):
            if f.name == field:
                defaults[name] = f.default
    if not defaults:
        return ""
    values = set(map(repr, defaults.values()))
    if len(values) == 1:
        value = next(iter(defaults.values()))
        return "" if value is None or isinstance(value, str) else f"default: {value}"
    return "default: " + ", ".join(f"{m} {v}" for m, v in defaults.items())


def add_optimize_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="greater", choices=method_names(),
                   help="optimiser, from the method registry (`greater list methods` shows "
                        "which flags each takes)")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="start from a named preset (the research code's settings; `greater "
                        "list presets`); explicit flags override it")
    for flag, (field, typ, help_) in FIELD_FLAGS.items():
        default = _field_default_help(field)
        p.add_argument(flag, type=typ, default=None,
                       help=f"{help_} ({default})" if default else help_)
    p.add_argument(NO_REASONING_FLAG, action="store_true",
                   help="GReaTer ablation: loss on the answer right after the prompt")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="set any other field of the method's config, e.g. --set "
                        "n_candidates=8 (repeatable; `greater list methods` names the fields)")
    p.add_argument("--checkpoint", default=None,
                   help="write the partial result here after every step (default: --out); a "
                        "file there holding a partial run of the same configuration is resumed")
    p.add_argument("--restart", action="store_true",
                   help="start over even if the checkpoint holds a partial run")
    p.add_argument("--optimizer-base-url", default=None,
                   help="OpenAI-compatible endpoint (e.g. http://127.0.0.1:8000/v1) for the "
                        "optimiser LLM of the methods that ask one; checked before the task "
                        "model loads (default: the task model itself)")
    p.add_argument("--optimizer-model", default=None, help="model name at that endpoint")
    p.add_argument("--optimizer-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the endpoint's API key")


def _not_applicable(flag: str, method: str, field: str) -> ValueError:
    takers = methods_with_field(field)
    where = f"it applies to {', '.join(takers)}" if takers else "no method takes it"
    return ValueError(f"{flag} does not apply to --method {method} ({where}; `greater list "
                      "methods` shows each method's flags)")


def build_config(method: str, args: argparse.Namespace):
    """The method's config: defaults, then ``--preset``, then every flag the user set.

    Raises:
        ValueError: a flag the method has no field for, a bad ``--set``, or a value the config
            refuses; the message names the flags, not the config fields.
    """
    config_cls = get_method(method).config_cls
    fields = config_fields(config_cls)
    values: dict[str, Any] = {}
    wanted = {field: getattr(args, flag.lstrip("-").replace("-", "_"))
              for flag, (field, _t, _h) in FIELD_FLAGS.items()}
    for flag, field in COMMON_FIELD_FLAGS.items():
        wanted[field] = getattr(args, flag.lstrip("-").replace("-", "_"), None)
    if args.no_reasoning:
        wanted["use_reasoning"] = False
    for field, value in wanted.items():
        if value is None:
            continue
        if field not in fields:
            if field in COMMON_FIELD_FLAGS.values():
                continue  # common generation flags; methods without generation ignore them
            raise _not_applicable(field_flag(field), method, field)
        values[field] = value
    for item in args.overrides:
        field, sep, raw = item.partition("=")
        field = field.strip().replace("-", "_")
        if not sep or field not in fields:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of "
                             f"{', '.join(sorted(fields))}")
        values[field] = parse_field_value(raw, fields[field], f"--set {field}")
    try:
        return build_method_config(method, args.preset, values)
    except ValueError as exc:
        raise ValueError(in_flag_words(str(exc))) from exc


def optimizer_engine(args: argparse.Namespace, uses_optimizer_llm: bool):
    """The endpoint engine named by ``--optimizer-base-url`` (None: none named), checked with
    one cheap request so that a wrong URL, port or key fails before the task model loads."""
    if not args.optimizer_base_url:
        if args.optimizer_model:
            raise ValueError("--optimizer-model needs --optimizer-base-url")
        return None
    if not uses_optimizer_llm:
        raise ValueError(f"--method {args.method} uses no optimiser LLM (--optimizer-base-url "
                         "does not apply)")
    if not args.optimizer_model:
        raise ValueError("--optimizer-base-url needs --optimizer-model")
    if not os.environ.get(args.optimizer_key_env):
        raise ValueError(f"set ${args.optimizer_key_env} to the endpoint's API key (any "
                         "non-empty value for a keyless server), or name another variable with "
                         "--optimizer-key-env")
    from greater.engines import OpenAIEngine

    engine = OpenAIEngine(base_url=args.optimizer_base_url, model=args.optimizer_model,
                          api_key_env=args.optimizer_key_env)
    engine.check()
    return engine


@dataclass
class PreparedRun:
    """A ``greater optimize`` run whose flags are validated and whose endpoint answered; calling
    it with the task model and the task runs the method."""

    spec: MethodSpec
    config: Any
    checkpoint: str | None
    preset: str | None
    optimizer_llm: Any = None

    def __call__(self, lm, task):
        return self.spec.optimize(lm, task, self.config, checkpoint=self.checkpoint,
                                  preset=self.preset, optimizer_llm=self.optimizer_llm)


def prepare_optimize(args: argparse.Namespace) -> PreparedRun:
    """Validate the flags and check the endpoint before any model is loaded."""
    spec = get_method(args.method)
    config = build_config(args.method, args)
    engine = optimizer_engine(args, spec.uses_optimizer_llm)
    checkpoint = args.checkpoint or (str(args.out) if args.out else None)
    if checkpoint is not None and args.restart:
        Path(checkpoint).unlink(missing_ok=True)
    return PreparedRun(spec, config, checkpoint, args.preset, engine)
