"""Overlay the per-frame SyncNet curves of one or more curves files (from ``eval.syncnet_detect``) in one PNG.

    python -m eval.draw_syncnet_lines debug/real/curves.csv debug/generated/curves.csv --output compare.png
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from latentsync.errors import LatentSyncError
from latentsync.metrics.evaluation import cli_parser
from latentsync.metrics.report import check_output, error_line
from latentsync.metrics.sync_curves import curves_of, draw_curves, read_curve_rows
from latentsync.utils.logging import configure_logging


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli_parser("python -m eval.draw_syncnet_lines", __doc__)
    parser.add_argument("curves", nargs="+", help="curves.csv files written by eval.syncnet_detect")
    parser.add_argument("--output", required=True, help="PNG to write")
    parser.add_argument("--title", help="chart title")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    try:
        args = parse_args(argv)
        check_output(args.output, "--output")
        curves = {}
        for path in args.curves:
            prefix = f"{os.path.basename(os.path.dirname(os.path.abspath(path)))}: " if len(args.curves) > 1 else ""
            curves.update(curves_of(read_curve_rows(path), prefix))
        draw_curves(args.output, curves, args.title)
    except (LatentSyncError, ValueError) as err:
        print(error_line(err), file=sys.stderr)
        return 1
    print(f"wrote {args.output} ({len(curves)} curves)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
