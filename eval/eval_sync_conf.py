"""SyncNet confidence (LSE-C), minimum distance (LSE-D) and offset of one video or a folder.

The classic SyncNet metric as LatentSync and Wav2Lip report it: S3FD face tracks, 224 px crops,
MFCC audio, the +-15-frame offset search. ``--sync_protocol upstream`` (default) scores the crops
and audio after LatentSync's own media round trips (25 fps re-encode, JPEG frames, an mp4v crop
video, JPEG again), so the numbers compare with published ones; ``--sync_protocol clean`` scores
the decoded crops directly. Each video is a row (a failed one gives its reason); the summary is the
mean over scored videos and names the protocol.

    python -m eval.eval_sync_conf --videos_dir results/ --output results/sync_conf
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from latentsync.metrics.evaluation import (
    SYNC_COLUMNS, add_input_arguments, add_sync_arguments, build_sync, cli_parser, device_and_videos, sync_rows,
)
from latentsync.metrics.report import check_output, run_guarded, table_result


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli_parser("python -m eval.eval_sync_conf", __doc__)
    add_input_arguments(parser, "one video (with its audio track)")
    parser.add_argument("--output", help="write the table to OUTPUT.csv, .json and .md")
    add_sync_arguments(parser)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> tuple[str, int]:
    check_output(args.output, "--output")
    device, videos = device_and_videos(args)
    scorer, detector, settings = build_sync(args, device)
    rows = list(sync_rows(videos, scorer, detector, settings, not args.no_progress, args.sync_protocol))
    return table_result(rows, ["lse_c", "lse_d"], SYNC_COLUMNS, args.output,
                        protocols={"sync_protocol": args.sync_protocol})


def main(argv: Sequence[str] | None = None) -> int:
    return run_guarded(lambda: run(parse_args(argv)), sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
