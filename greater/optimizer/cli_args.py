"""`greater optimize`: flags that mirror the config fields, and the dispatch to a method.

Every method's config is a dataclass; a flag set on the command line is applied to each field of
the same name, and a flag that the chosen method has no field for is an error (never silently
ignored). Defaults are the config's own (the papers'), so a flag left out changes nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any

METHOD_NAMES = ("greater", "zscot", "ape", "apo", "textgrad", "gcg")
#: Methods that ask an optimiser LLM (the task model itself unless an endpoint is given).
LLM_OPTIMISED = ("ape", "apo", "textgrad")

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
    p.add_argument("--method", default="greater", choices=METHOD_NAMES,
                   help="optimiser (default: greater)")
    for flag, (_field, typ, help_) in _FIELD_FLAGS.items():
        p.add_argument(flag, type=typ, default=None, help=help_)
    p.add_argument("--no-reasoning", action="store_true",
                   help="GReaTer ablation: loss on the answer right after the prompt")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="set any field of the method's config, e.g. --set n_candidates=8 "
                        "(repeatable; see the method's Config class for the fields)")
    p.add_argument("--checkpoint", default=None,
                   help="write the partial result here after every step (default: --out)")
    p.add_argument("--optimizer-base-url", default=None,
                   help="OpenAI-compatible endpoint for the optimiser LLM of APE/APO/TextGrad "
                        "(default: the task model itself)")
    p.add_argument("--optimizer-model", default=None, help="model name at that endpoint")
    p.add_argument("--optimizer-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the endpoint's API key")


def build_config(config_cls, args: argparse.Namespace):
    """The method's config with every flag the user set applied (validated by the config)."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
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
            raise ValueError(f"--{field.replace('_', '-')} does not apply to method "
                             f"{args.method!r}")
        values[field] = value
    types = {f.name: f.type for f in dataclasses.fields(config_cls)}
    for item in args.overrides:
        field, sep, raw = item.partition("=")
        field = field.strip().replace("-", "_")
        if not sep or field not in fields:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of "
                             f"{', '.join(sorted(fields))}")
        annotation = types[field]
        type_name = annotation if isinstance(annotation, str) else getattr(
            annotation, "__name__", str(annotation))
        values[field] = _parse_value(raw.strip(), type_name, field)
    return config_cls(**values)


def _parse_value(raw: str, type_name: str, field: str) -> Any:
    """Convert ``raw`` to the config field's annotated type (bool, int, float, str, or None)."""
    if raw.lower() == "none" and "None" in type_name:
        return None
    try:
        if type_name.startswith("bool"):
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1", "yes")
        if type_name.startswith("int"):
            return int(raw)
        if type_name.startswith("float"):
            return float(raw)
    except ValueError:
        raise ValueError(f"--set {field}={raw!r}: not a valid {type_name}") from None
    return raw


def prepare_optimize(args: argparse.Namespace):
    """Validate the flags before any model is loaded: return a ``run(lm, task)`` callable."""
    from baselines import get_method

    method = get_method(args.method)
    config = build_config(method.config, args)
    kwargs: dict[str, Any] = {"checkpoint": args.checkpoint or args.out}
    if args.optimizer_base_url:
        if args.method not in LLM_OPTIMISED:
            raise ValueError(f"method {args.method!r} uses no optimiser LLM")
        if not args.optimizer_model:
            raise ValueError("--optimizer-base-url needs --optimizer-model")
        from baselines.engines import OpenAIEngine

        if not os.environ.get(args.optimizer_key_env):
            raise ValueError(f"set ${args.optimizer_key_env} to the endpoint's API key")
        kwargs["optimizer_llm"] = OpenAIEngine(base_url=args.optimizer_base_url,
                                               model=args.optimizer_model,
                                               api_key_env=args.optimizer_key_env)

    def run(lm, task):
        return method.optimize(lm, task, config, **kwargs)

    return run
