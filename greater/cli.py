"""The ``greater`` command line: ``optimize``, ``eval``, ``list`` and ``provision``.

Every error a user can cause (a bad flag, an unknown task or model, an unreachable endpoint, a
checkpoint of another run) ends in one line on stderr and exit status 2; ``--debug`` shows the
traceback instead. Ctrl-C ends with status 130 and says where the partial result is.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

logger = logging.getLogger("greater.cli")

DESCRIPTION = (
    "GReaTer prompt optimisation (gradients over reasoning) and its baselines (zero-shot CoT, "
    "APE, APO, TextGrad, GCG, ...) on one substrate. Every command runs on a CPU with the "
    "default stand-in model; `greater COMMAND --help` shows each command's flags and defaults.")

EPILOG = """examples:
  greater list methods                      # methods and the flags each takes
  greater eval --task bbh/navigate --limit 16 --data-dir ../shared/data --out runs/eval.json
  greater optimize --task bbh/boolean_expressions --steps 3 --n-train 8 \\
      --max-new-tokens 128 --n-dev 16 --n-test 16 --data-dir ../shared/data \\
      --out runs/greater-demo.json             # about 3 minutes on 2 CPU cores
  greater optimize --method apo --preset paper-bbh --task bbh/navigate --out runs/apo.json
"""

DATA_DIR_HELP = "benchmark data folder (default: $GREATER_DATA_DIR; else the Hugging Face hub)"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every real default; None and False defaults are described in the help text."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_ = action.help or ""
        if action.default in (None, False, [], argparse.SUPPRESS) or "default" in help_:
            return help_
        return super()._get_help_string(action)


def _version() -> str:
    from greater import __version__

    return f"greater {__version__}"


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    """Flags every subcommand has: logging and tracebacks."""
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    p.add_argument("--debug", action="store_true",
                   help="show the full traceback of an error instead of one line")


def _add_common(p: argparse.ArgumentParser, *, method_defaults: bool) -> None:
    """Model, task and generation flags of ``eval`` and ``optimize``.

    With ``method_defaults`` the generation flags default to the method's config (or the
    preset's), so that a preset is never overridden by a default the user did not type.
    """
    from greater.models import DEFAULT_MODEL

    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="registry name (`greater list models`), Hugging Face id or local folder")
    p.add_argument("--task", default="bbh/boolean_expressions",
                   help="bbh/<task>, gsm8k or folio (`greater list tasks`)")
    p.add_argument("--data-dir", default=os.environ.get("GREATER_DATA_DIR"), help=DATA_DIR_HELP)
    p.add_argument("--dtype", default=None, choices=["bf16", "fp16", "fp32"],
                   help="number format of the task model (default: bf16 where the device has "
                        "it, else fp32)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: cuda "
                                                  "when present, else cpu)")
    if method_defaults:
        p.add_argument("--max-new-tokens", type=int, default=None,
                       help="bound on the reasoning generated per example (default: 512, or "
                            "the preset's)")
        p.add_argument("--batch-size", type=int, default=None,
                       help="rows per generation batch (default: 16)")
    else:
        p.add_argument("--max-new-tokens", type=int, default=512,
                       help="bound on the reasoning generated per example")
        p.add_argument("--batch-size", type=int, default=16, help="rows per generation batch")
    p.add_argument("--out", type=Path, default=None, help="write the JSON result here")


def build_parser() -> argparse.ArgumentParser:
    from greater.cli_list import add_list_parser

    kw: dict[str, Any] = {"formatter_class": HelpFormatter}
    parser = argparse.ArgumentParser(prog="greater", description=DESCRIPTION, epilog=EPILOG, **kw)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    opt = sub.add_parser("optimize", help="optimise a prompt with GReaTer or a baseline",
                         description="Optimise a prompt; the result (best prompt, dev/test "
                         "accuracy beside the initial prompt's, history, cost, provenance) is "
                         "printed and written to --out, which also makes the run resumable.",
                         epilog=EPILOG, **kw)
    _add_common(opt, method_defaults=True)
    from greater.optimizer.cli_args import add_optimize_arguments

    add_optimize_arguments(opt)
    _add_run_flags(opt)
    opt.set_defaults(handler=_cmd_optimize)

    ev = sub.add_parser("eval", help="accuracy of a prompt on a task split",
                        description="Accuracy of one prompt on a split of a task.", **kw)
    _add_common(ev, method_defaults=False)
    ev.add_argument("--split", default="dev", choices=["train", "dev", "test"],
                    help="which canonical split to score (BBH 50/100/100, GSM8K 100/100/1319, "
                         "FOLIO 100/100/204 examples)")
    ev.add_argument("--prompt", default=None,
                    help="instruction prompt, at most 256 tokens (default: the zero-shot CoT "
                         "prompt)")
    ev.add_argument("--limit", type=int, default=None,
                    help="evaluate the first N examples only (default: the whole split)")
    _add_run_flags(ev)
    ev.set_defaults(handler=_cmd_eval)

    add_list_parser(sub, **kw)
    from greater.cli_grid import add_grid_commands

    add_grid_commands(sub)  # grid, results: handlers from grid_command_handler
    from greater.cli_report import add_report_command

    add_report_command(sub, **kw)

    prov = sub.add_parser("provision", help="install and convert stand-in models into the cache",
                          **kw)
    prov.add_argument("models", nargs="*", help="stand-in names (default: the default model)")
    prov.add_argument("--cache-dir", default=None,
                      help="default: $GREATER_CACHE_DIR or ~/.cache/greater")
    _add_run_flags(prov)
    prov.set_defaults(handler=_cmd_provision)
    return parser


def _load_task(args):
    """The task named by ``--task``, with a command-line answer for a group name."""
    from greater.tasks import TASK_GROUPS, load_task

    group = TASK_GROUPS.get(args.task.strip().lower())
    if group is not None:
        raise ValueError(f"{args.task} is a group of {len(group)} tasks; run one task at a "
                         f"time with --task bbh/<name> (`greater list tasks`), or all of them "
                         f"as a grid (greater grid run SPEC)")
    return load_task(args.task, data_dir=args.data_dir)


def _load_lm(args):
    from greater.lm import LM

    return LM.load(args.model, dtype=args.dtype, device=args.device)


def _cmd_provision(args) -> int:
    from greater.models import DEFAULT_MODEL, provision

    for name in args.models or [DEFAULT_MODEL]:
        path = provision(name, cache_dir=args.cache_dir)
        print(f"{name}: {path}")
    return 0


def _cmd_eval(args) -> int:
    from greater.evaluate import ZERO_SHOT_COT_PROMPT, evaluate

    task = _load_task(args)
    lm = _load_lm(args)
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


def _partial_note(checkpoint: str | None) -> str:
    """Where the partial result of an interrupted run is, in words."""
    if checkpoint is None:
        return "nothing was kept (pass --out to keep partial results and resume)"
    from greater.result import OptimizationResult

    path = Path(checkpoint)
    if not path.is_file():
        return f"no step had finished, so {path} was not written"
    saved = OptimizationResult.load(path)
    if not saved.partial:
        return f"the finished result is in {path}"
    return (f"the partial result after step {len(saved.history)} is in {path} (status "
            "\"partial\"); run the same command again to resume")


def _announce_resume(path: str | None) -> None:
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


def _fmt(acc: float | None, strict: float | None = None) -> str:
    if acc is None:
        return "-"
    return f"{acc:.3f}" if strict is None else f"{acc:.3f} (strict {strict:.3f})"


def summary(result, task) -> str:
    """The lines a person reads at the end of ``greater optimize``."""
    from greater.optimizer.cli_args import in_flag_words

    cfg, prov = result.config, result.provenance
    n_dev = len(task.dev[:cfg.get("n_dev")] if cfg.get("n_dev") is not None else task.dev)
    n_test_cfg = cfg.get("n_test")
    n_test = len(task.test[:n_test_cfg] if n_test_cfg is not None else task.test)
    n_train = prov.get("n_train_used", cfg.get("n_train"))
    asked = "" if n_train == cfg.get("n_train") else f" (asked for {cfg.get('n_train')})"
    same = result.best_prompt == result.initial_prompt
    lines = [
        f"{result.method} on {result.task} with {result.model}: {len(result.history)} "
        f"step{'' if len(result.history) == 1 else 's'}, "
        f"{n_train} training examples{asked}, {result.cost.wall_seconds:.1f} s",
        f"initial prompt: {result.initial_prompt!r}",
        "best prompt:    " + ("the initial prompt (no other prompt did better on dev)" if same
                              else repr(result.best_prompt)),
        f"{'':<22}{'best':<24}initial",
        f"{f'dev accuracy ({n_dev})':<22}"
        f"{_fmt(result.dev_accuracy, result.dev_accuracy_strict):<24}"
        f"{_fmt(result.initial_dev_accuracy)}",
    ]
    if result.test_accuracy is None:
        lines.append(f"{'test accuracy':<22}skipped (--n-test 0)")
    else:
        lines.append(f"{f'test accuracy ({n_test})':<22}"
                     f"{_fmt(result.test_accuracy, result.test_accuracy_strict):<24}"
                     f"{_fmt(result.initial_test_accuracy)}")
    lines += [f"warning: {in_flag_words(w)}" for w in result.warnings]
    return "\n".join(lines)


def _cmd_optimize(args) -> int:
    from greater.optimizer.cli_args import prepare_optimize

    run = prepare_optimize(args)  # bad flags and a bad endpoint fail here, before any loading
    task = _load_task(args)
    _announce_resume(run.checkpoint)
    lm = _load_lm(args)
    try:
        result = run(lm, task)
    except KeyboardInterrupt:
        print(f"greater: interrupted; {_partial_note(run.checkpoint)}", file=sys.stderr)
        return 130
    except Exception as exc:
        if run.checkpoint is None or not _is_user_error(exc):
            raise
        raise CommandError(f"{one_line(exc)}; {_partial_note(run.checkpoint)}") from exc
    print(summary(result, task))
    if args.out:
        result.save(args.out)
        print(f"wrote {args.out}")
    return 0


class CommandError(ValueError):
    """A user's error, reworded for the command line."""


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors a user can cause (TaskError, PromptError, ResumeError and SchemaError are
    ValueErrors): reported in one line, never as a traceback."""
    from greater.engines import EngineError
    from greater.models import ModelError

    return (ValueError, ModelError, EngineError, OSError)


def _is_user_error(exc: BaseException) -> bool:
    return isinstance(exc, _user_errors())


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` as one line."""
    return re.sub(r"\s*\n\s*", " ", str(exc) or type(exc).__name__).strip()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    from greater.cli_grid import grid_command_handler

    handler: Callable[[argparse.Namespace], int] = \
        getattr(args, "handler", None) or grid_command_handler(args.command)
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("greater: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if getattr(args, "debug", False) or not _is_user_error(exc):
            raise
        from greater.optimizer.cli_args import in_flag_words

        print(f"greater: error: {in_flag_words(one_line(exc))}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
