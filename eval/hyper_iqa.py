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

from latentsync.metrics.evaluation import add_input_arguments, cli_parser, device_and_videos, quality_rows
from latentsync.metrics.image_quality import FRAMES_DESCRIPTION
from latentsync.metrics.model_files import default_path, require_model_file
from latentsync.metrics.report import check_output, run_guarded, table_result
from latentsync.models.hyperiqa import HyperNet

COLUMNS = ["video", "hyperiqa", "error"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli_parser("python -m eval.hyper_iqa", __doc__)
    add_input_arguments(parser)
    parser.add_argument("--model_path", default=default_path("koniq_pretrained.pkl"), help="hyperIQA weights")
    parser.add_argument("--output", help="write the table to OUTPUT.csv, .json and .md")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> tuple[str, int]:
    check_output(args.output, "--output")
    device, videos = device_and_videos(args)
    model = HyperNet.from_file(require_model_file(args.model_path), device)
    rows = list(quality_rows(videos, model, progress=not args.no_progress))
    return table_result(rows, ["hyperiqa"], COLUMNS, args.output, protocols={"hyperiqa_frames": FRAMES_DESCRIPTION})


def main(argv: Sequence[str] | None = None) -> int:
    return run_guarded(lambda: run(parse_args(argv)), sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
