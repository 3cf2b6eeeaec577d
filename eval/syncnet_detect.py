"""Per-frame SyncNet distance and confidence of one video or a folder: a curves CSV and a PNG per video.

Faces are tracked and scored as in ``eval.eval_sync_conf``; each 5-frame window's distance at the
track's offset, and its confidence, are written to OUTPUT_DIR/curves.csv and plotted to
OUTPUT_DIR/<video>.png (``eval.draw_syncnet_lines`` overlays several curves files).

    python -m eval.syncnet_detect --video_path out.mp4 --output_dir debug/sync_curves
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from tqdm.auto import tqdm

from latentsync.errors import LatentSyncError
from latentsync.metrics.evaluation import VIDEO_FAILURES, add_sync_arguments, build_sync, failure, list_videos
from latentsync.metrics.report import error_line, publish, summarise
from latentsync.metrics.sync_confidence import score_video
from latentsync.metrics.sync_curves import CURVE_COLUMNS, curve_rows, curves_of, draw_curves
from latentsync.utils.device import DEVICE_CHOICES, pick_device
from latentsync.utils.logging import configure_logging

COLUMNS = ["video", "lse_c", "lse_d", "offset", "png", "error"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m eval.syncnet_detect", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--video_path", help="one video (with its audio track)")
    source.add_argument("--videos_dir", help="a folder of videos")
    parser.add_argument("--output_dir", required=True, help="where curves.csv, the PNGs and the table go")
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
        rows, curves = [], []
        for video in tqdm(videos, desc="sync curves", unit="video", disable=args.no_progress):
            try:
                sync = score_video(video, scorer, detector, settings)
            except VIDEO_FAILURES as err:
                rows.append(failure(video, err))
                continue
            video_curves = curve_rows(video, sync)
            png = os.path.join(args.output_dir, os.path.splitext(os.path.basename(video))[0] + ".png")
            draw_curves(png, curves_of(video_curves), title=os.path.basename(video))
            curves += video_curves
            rows.append({"video": video, "lse_c": sync.confidence, "lse_d": sync.min_dist, "offset": sync.offset,
                         "png": png, "error": ""})
        publish(curves, {}, CURVE_COLUMNS, os.path.join(args.output_dir, "curves"))
        text = publish(rows, summarise(rows, ["lse_c", "lse_d"]), COLUMNS, os.path.join(args.output_dir, "sync"))
    except (LatentSyncError, ValueError) as err:
        print(error_line(err), file=sys.stderr)
        return 1
    print(text)
    return 0 if curves else 1


if __name__ == "__main__":
    sys.exit(main())
