"""The ``greater`` command line: ``provision``, ``eval`` and ``optimize``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

logger = logging.getLogger("greater.cli")

DATA_DIR_HELP = "benchmark data folder (default: $GREATER_DATA_DIR; else the Hugging Face hub)"


def _add_common(p: argparse.ArgumentParser) -> None:
    from greater.models import DEFAULT_MODEL

    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"registry name, HF id or local folder (default: {DEFAULT_MODEL})")
    p.add_argument("--task", default="bbh/boolean_expressions",
                   help="bbh/<task>, gsm8k or folio (default: bbh/boolean_expressions)")
    p.add_argument("--data-dir", default=os.environ.get("GREATER_DATA_DIR"), help=DATA_DIR_HELP)
    p.add_argument("--dtype", default=None, help="bf16, fp16 or fp32 (default: best for device)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: auto)")
    p.add_argument("--max-new-tokens", type=int, default=512,
                   help="bound on the reasoning generated per example (default: 512)")
    p.add_argument("--batch-size", type=int, default=16, help="rows per generation batch")
    p.add_argument("--out", type=Path, default=None, help="write the JSON result here")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="greater", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    prov = sub.add_parser("provision", help="install and convert stand-in models into the cache")
    prov.add_argument("models", nargs="*", help="stand-in names (default: the default model)")
    prov.add_argument("--cache-dir", default=None, help="default: $GREATER_CACHE_DIR or "
                      "~/.cache/greater")

    ev = sub.add_parser("eval", help="accuracy of a prompt on a task split")
    _add_common(ev)
    ev.add_argument("--split", default="dev", choices=["train", "dev", "test"])
    ev.add_argument("--prompt", default=None, help="instruction prompt (default: zero-shot CoT)")
    ev.add_argument("--limit", type=int, default=None, help="evaluate the first N examples only")

    opt = sub.add_parser("optimize", help="optimise a prompt with GReaTer or a baseline")
    _add_common(opt)
    from greater.optimizer.cli_args import add_optimize_arguments

    add_optimize_arguments(opt)
    from greater.cli_grid import add_grid_commands

    add_grid_commands(sub)
    return parser


def _load(args):
    from greater.lm import LM
    from greater.tasks import load_task

    task = load_task(args.task, data_dir=args.data_dir)
    lm = LM.load(args.model, dtype=args.dtype, device=args.device)
    return lm, task


def _cmd_provision(args) -> int:
    from greater.models import DEFAULT_MODEL, provision

    for name in args.models or [DEFAULT_MODEL]:
        path = provision(name, cache_dir=args.cache_dir)
        print(f"{name}: {path}")
    return 0


def _cmd_eval(args) -> int:
    from greater.evaluate import ZERO_SHOT_COT_PROMPT, evaluate

    lm, task = _load(args)
    prompt = ZERO_SHOT_COT_PROMPT if args.prompt is None else args.prompt  # "" is an error
    result = evaluate(lm, task, prompt=prompt, split=args.split, limit=args.limit,
                      max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    print(f"model {result.model}  task {result.task}  split {result.split}  "
          f"accuracy {result.accuracy:.3f} ({result.n_correct}/{result.n_examples}, "
          f"{result.n_unparsed} unparsed)  generated {result.cost.generated_tokens} tokens "
          f"in {result.cost.wall_seconds:.1f} s")
    if args.out:
        from greater.result import write_json_atomic

        write_json_atomic(args.out, result.to_dict())
        print(f"wrote {args.out}")
    return 0


def _announce_resume(path: Path | None) -> None:
    """Tell the user when ``path`` holds a run that will be continued or returned."""
    if path is None or not Path(path).is_file():
        return
    from greater.result import OptimizationResult

    saved = OptimizationResult.load(path)
    if saved.partial:
        print(f"greater: resuming the partial run in {path} after step {len(saved.history)} "
              "(--restart starts over)", file=sys.stderr)
    else:
        print(f"greater: {path} already holds the finished run; showing it (--restart "
              "starts over)", file=sys.stderr)


def _fmt(acc: float | None) -> str:
    return "-" if acc is None else f"{acc:.3f}"


def _cmd_optimize(args) -> int:
    from greater.optimizer.cli_args import prepare_optimize

    run = prepare_optimize(args)  # bad flags fail here, before a model is loaded
    checkpoint = args.checkpoint or args.out
    _announce_resume(checkpoint)
    lm, task = _load(args)
    try:
        result = run(lm, task)
    except KeyboardInterrupt:
        where = f"; the partial result (resumable) is in {checkpoint}" if checkpoint else \
            " (nothing kept: pass --out to keep partial results)"
        print(f"greater: interrupted{where}", file=sys.stderr)
        return 130
    print(f"method {result.method}  task {result.task}  model {result.model}\n"
          f"best prompt: {result.best_prompt!r}\n"
          f"dev accuracy  {_fmt(result.dev_accuracy)} (strict {_fmt(result.dev_accuracy_strict)})"
          f"   initial prompt {_fmt(result.initial_dev_accuracy)}\n"
          f"test accuracy {_fmt(result.test_accuracy)} (strict {_fmt(result.test_accuracy_strict)})"
          f"   initial prompt {_fmt(result.initial_test_accuracy)}\n"
          f"wall {result.cost.wall_seconds:.1f} s")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.out:
        result.save(args.out)
        print(f"wrote {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    from greater.lm import PromptError
    from greater.models import ModelError
    from greater.tasks import TaskError

    try:
        from greater.cli_grid import grid_command_handler

        handler = {"provision": _cmd_provision, "eval": _cmd_eval, "optimize": _cmd_optimize
                   }.get(args.command) or grid_command_handler(args.command)
        return handler(args)
    except (ModelError, TaskError, PromptError, ValueError) as exc:
        print(f"greater: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("greater: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
