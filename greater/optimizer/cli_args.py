"""`greater optimize`: flags that mirror the config fields, and the dispatch to a method.

Methods come from the registry (:mod:`greater.methods`). Every method's config is a dataclass;
a flag set on the command line is applied to the field of the same name, and a flag that the
chosen method has no field for is an error (never silently ignored). A config starts from the
method's defaults, then ``--preset``, then the flags: an explicit flag always wins.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from greater.methods import get_method, method_names
from greater.presets import PRESETS, build_config as build_method_config, config_fields, \
    parse_field_value

# flag -> (config field, type, help)
_FIELD_FLAGS: dict[str, tuple[str, Any, str]] = {
    "--steps": ("steps", int, "optimisation steps"),
    "--n-train": ("n_train", int, "training examples (the first N of the train split)"),
    "--top-k": ("top_k", int, "candidate width (top-k per example / per position)"),
    "--n-rescore": ("n_rescore", int, "GReaTer: candidates re-scored by generation (0: argmin)"),
    "--perplexity-weight": ("perplexity_weight", float, "lambda, weight of the prompt NLL"),
    "--n-dev": ("n_dev", int, "dev examples used to choose the final prompt"),
    "--n-test": ("n_test", int, "test examples scored at the end (0 skips the test)"),
    "--initial-prompt": ("initial_prompt", str, "prompt to start from (default: zero-shot CoT)"),
    "--seed": ("seed", int, "seed of every random draw (default 0)"),
}


def add_optimize_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="greater", choices=method_names(),
                   help="optimiser, from the method registry (default: greater)")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="start from a named preset (the research code's settings); explicit "
                        "flags override it: " + "; ".join(f"{p.name}: {p.description}"
                                                          for p in PRESETS.values()))
    for flag, (_field, typ, help_) in _FIELD_FLAGS.items():
        p.add_argument(flag, type=typ, default=None, help=help_)
    p.add_argument("--no-reasoning", action="store_true",
                   help="GReaTer ablation: loss on the answer right after the prompt")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="set any field of the method's config, e.g. --set n_candidates=8 "
                        "(repeatable; see the method's Config class for the fields)")
    p.add_argument("--checkpoint", default=None,
                   help="write the partial result here after every step (default: --out); a "
                        "file there holding a partial run of the same configuration is resumed")
    p.add_argument("--restart", action="store_true",
                   help="start over even if the checkpoint holds a partial run")
    p.add_argument("--optimizer-base-url", default=None,
                   help="OpenAI-compatible endpoint for the optimiser LLM of APE/APO/TextGrad "
                        "(default: the task model itself)")
    p.add_argument("--optimizer-model", default=None, help="model name at that endpoint")
    p.add_argument("--optimizer-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the endpoint's API key")


def build_config(method: str, args: argparse.Namespace):
    """The method's config: defaults, then ``--preset``, then every flag the user set."""
    config_cls = get_method(method).config_cls
    fields = config_fields(config_cls)
    values: dict[str, Any] = {}
    wanted = {field: getattr(args, flag.lstrip("-").replace("-", "_"))
              for flag, (field, _t, _h) in _FIELD_FLAGS.items()}
    wanted["max_new_tokens"] = args.max_new_tokens
    wanted["batch_size"] = args.batch_size
    if args.no_reasoning:
        wanted["use_reasoning"] = False
    for field, value in wanted.items():
        if value is None:
            continue
        if field not in fields:
            if field in ("max_new_tokens", "batch_size"):
                continue  # common generation flags; methods without generation ignore them
            flag = "--no-reasoning" if field == "use_reasoning" else \
                "--" + field.replace("_", "-")
            raise ValueError(f"{flag} does not apply to method {method!r}")
        values[field] = value
    for item in args.overrides:
        field, sep, raw = item.partition("=")
        field = field.strip().replace("-", "_")
        if not sep or field not in fields:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of "
                             f"{', '.join(sorted(fields))}")
        values[field] = parse_field_value(raw, fields[field], f"--set {field}")
    return build_method_config(method, args.preset, values)


def prepare_optimize(args: argparse.Namespace):
    """Validate the flags before any model is loaded: return a ``run(lm, task)`` callable."""
    spec = get_method(args.method)
    config = build_config(args.method, args)
    checkpoint = args.checkpoint or args.out
    if checkpoint is not None and args.restart:
        from pathlib import Path

        Path(checkpoint).unlink(missing_ok=True)
    kwargs: dict[str, Any] = {"checkpoint": checkpoint, "preset": args.preset}
    if args.optimizer_base_url:
        if not spec.uses_optimizer_llm:
            raise ValueError(f"method {args.method!r} uses no optimiser LLM "
                             "(--optimizer-base-url does not apply)")
        if not args.optimizer_model:
            raise ValueError("--optimizer-base-url needs --optimizer-model")
        from greater.engines import OpenAIEngine

        if not os.environ.get(args.optimizer_key_env):
            raise ValueError(f"set ${args.optimizer_key_env} to the endpoint's API key")
        kwargs["optimizer_llm"] = OpenAIEngine(base_url=args.optimizer_base_url,
                                               model=args.optimizer_model,
                                               api_key_env=args.optimizer_key_env)

    def run(lm, task):
        return spec.optimize(lm, task, config, **kwargs)

    return run
