"""``greater report``: the report pages of a results store (reads the store only).

The report code lives in the repository's ``reports/`` package (installed with it); this
module only adds the command and turns a store error into a clear message.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def add_report_command(sub: argparse._SubParsersAction, **kw: Any) -> None:
    """Add the ``report`` subcommand to the ``greater`` parser (``kw``: ``add_parser``'s
    keyword arguments shared by every command, e.g. its help formatter)."""
    rep = sub.add_parser("report", help="render a results store's tables and figures "
                         "(index.html, report.md, figures/) without running a model",
                         description="Render a results store's comparison, paired tests, "
                         "compute-matched comparison, curves, ablation, transfer and provenance "
                         "to DIR/index.html, DIR/report.md and DIR/figures/ (reads the store "
                         "only).", **kw)
    rep.add_argument("--store", type=Path, required=True, help="results store (SQLite)")
    rep.add_argument("--out", type=Path, required=True, help="report folder to write")
    rep.add_argument("--grid", default=None,
                     help="report only this grid of the store (default: every grid it holds)")
    rep.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    rep.set_defaults(handler=_cmd_report)


def _cmd_report(args) -> int:
    from greater.store import StoreError

    from reports.render import write_report

    try:
        index = write_report(args.store, args.out, grid=args.grid)
    except StoreError as exc:
        print(f"greater: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {index} and {index.with_name('report.md')}")
    return 0
