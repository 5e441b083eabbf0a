"""The README's shell examples are real commands: each `greater ...` line parses with the CLI's
own parser, names only methods/tasks/presets that exist, and every run keeps its result
(``--out``) and says about how long it takes."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from greater.cli import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"
_GREATER = re.compile(r"(?:^|&&\s*)(?:\S*/)?greater\s")


def greater_commands() -> list[tuple[str, list[str]]]:
    """(line, argv after `greater`) for every `greater` command in the README's bash blocks."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    found = []
    for block in blocks:
        for line in block.splitlines():
            match = _GREATER.search(line)
            if match is None:
                continue
            words = shlex.split(line[match.end():], comments=True)
            found.append((line, words))
    return found


COMMANDS = greater_commands()


def test_the_readme_has_greater_commands():
    subcommands = {argv[0] for _line, argv in COMMANDS}
    assert {"optimize", "eval", "list", "provision"} <= subcommands


@pytest.mark.parametrize("line,argv", COMMANDS, ids=[" ".join(a[:3]) for _l, a in COMMANDS])
def test_readme_command_parses(line, argv):
    args = build_parser().parse_args(argv)  # argparse exits (SystemExit) on a bad flag
    if args.command in ("optimize", "eval"):
        assert args.out is not None, f"keeps nothing (no --out): {line}"
        assert re.search(r"# .*~\d+ min", line), f"no time given (# ~N min) for: {line}"
    if args.command == "optimize":
        from greater.optimizer.cli_args import build_config

        build_config(args.method, args)  # every flag applies to the method, values are valid
