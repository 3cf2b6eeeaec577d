"""SyncNet confidence (LSE-C), minimum distance (LSE-D) and offset of one video or a folder.

The classic SyncNet metric as LatentSync and Wav2Lip report it: S3FD face tracks, 224 px crops,
MFCC audio, the +-15-frame offset search. Each video is a row (a failed one gives its reason);
the summary is the mean over scored videos.

    python -m eval.eval_sync_conf --videos_dir results/ --output results/sync_conf
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from latentsync.errors import LatentSyncError
from latentsync.metrics.evaluation import SYNC_COLUMNS, add_sync_arguments, build_sync, list_videos, sync_rows
from latentsync.metrics.report import error_line, publish, summarise
from latentsync.utils.device import DEVICE_CHOICES, pick_device
from latentsync.utils.logging import configure_logging



def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m eval.eval_sync_conf", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--video_path", help="one video (with its audio track)")
    source.add_argument("--videos_dir", help="a folder of videos")
    parser.add_argument("--output", help="write the table to OUTPUT.csv, .json and .md")
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    add_sync_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    try:
        device = pick_device(args.device)
        videos = list_videos(args.video_path or args.videos_dir)
        scorer, detector, settings = build_sync(args, device)
        rows = list(sync_rows(videos, scorer, detector, settings, progress=not args.no_progress))
        summary = summarise(rows, ["lse_c", "lse_d"])
        text = publish(rows, summary, SYNC_COLUMNS, args.output)
    except (LatentSyncError, ValueError) as err:
        print(error_line(err), file=sys.stderr)
        return 1
    print(text)
    return 0 if summary["failed"] < len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
