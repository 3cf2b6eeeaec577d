"""hyperIQA quality (0-100, higher is better) of one video or a folder, with the reference's protocol.

First, middle and last frame; centre crop 224 px without resizing; ImageNet normalisation; the mean
score (``koniq_pretrained.pkl``, loaded unchanged; nothing is downloaded). The data filter keeps
videos scoring at least 40.

    python -m eval.hyper_iqa --videos_dir results/ --output results/hyper_iqa
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from latentsync.errors import LatentSyncError
from latentsync.metrics.evaluation import list_videos, quality_rows
from latentsync.metrics.model_files import default_path, require_model_file
from latentsync.metrics.report import error_line, publish, summarise
from latentsync.models.hyperiqa import HyperNet
from latentsync.utils.device import DEVICE_CHOICES, pick_device
from latentsync.utils.logging import configure_logging

COLUMNS = ["video", "hyperiqa", "error"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m eval.hyper_iqa", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--video_path", help="one video")
    source.add_argument("--videos_dir", help="a folder of videos")
    parser.add_argument("--model_path", default=default_path("koniq_pretrained.pkl"), help="hyperIQA weights")
    parser.add_argument("--output", help="write the table to OUTPUT.csv, .json and .md")
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    try:
        device = pick_device(args.device)
        videos = list_videos(args.video_path or args.videos_dir)
        model = HyperNet.from_file(require_model_file(args.model_path), device)
        rows = list(quality_rows(videos, model, progress=not args.no_progress))
        summary = summarise(rows, ["hyperiqa"])
        text = publish(rows, summary, COLUMNS, args.output)
    except (LatentSyncError, ValueError) as err:
        print(error_line(err), file=sys.stderr)
        return 1
    print(text)
    return 0 if summary["failed"] < len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
