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

from latentsync.metrics.evaluation import (
    VIDEO_FAILURES, add_input_arguments, add_sync_arguments, build_sync, cli_parser, device_and_videos, failure,
)
from latentsync.metrics.report import check_output, publish, run_guarded, summarise
from latentsync.metrics.sync_confidence import score_video
from latentsync.metrics.sync_curves import CURVE_COLUMNS, curve_rows, curves_of, draw_curves

COLUMNS = ["video", "lse_c", "lse_d", "offset", "png", "error"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli_parser("python -m eval.syncnet_detect", __doc__)
    add_input_arguments(parser, "one video (with its audio track)")
    parser.add_argument("--output_dir", required=True, help="where curves.csv, the PNGs and the table go")
    add_sync_arguments(parser)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> tuple[str, int]:
    check_output(args.output_dir, "--output_dir", folder=True)
    device, videos = device_and_videos(args)
    scorer, detector, settings = build_sync(args, device)
    rows, curves = [], []
    for video in tqdm(videos, desc="sync curves", unit="video", disable=args.no_progress):
        try:
            sync = score_video(video, scorer, detector, settings, protocol=args.sync_protocol)
        except VIDEO_FAILURES as err:
            rows.append(failure(video, err))
            continue
        video_curves = curve_rows(video, sync)
        png = os.path.join(args.output_dir, os.path.splitext(os.path.basename(video))[0] + ".png")
        draw_curves(png, curves_of(video_curves), title=os.path.basename(video))
        curves += video_curves
        rows.append({"video": video, "lse_c": sync.confidence, "lse_d": sync.min_dist, "offset": sync.offset,
                     "png": png, "error": ""})
    protocol = {"sync_protocol": args.sync_protocol}
    publish(curves, protocol, CURVE_COLUMNS, os.path.join(args.output_dir, "curves"), list(protocol))
    text = publish(rows, {**protocol, **summarise(rows, ["lse_c", "lse_d"])}, COLUMNS,
                   os.path.join(args.output_dir, "sync"), list(protocol))
    return text, 0 if curves else 1


def main(argv: Sequence[str] | None = None) -> int:
    return run_guarded(lambda: run(parse_args(argv)), sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
