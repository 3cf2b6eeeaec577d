"""FVD between two folders of videos, plus FID over frames and SSIM/PSNR over paired frames.

FVD: one 16-frame clip of 224 px face crops per video (its own frames 20-35, at its own frame
rate, as LatentSync's evaluation takes them) through the I3D TorchScript network
(``i3d_torchscript.pt``). ``--protocol stylegan-v`` (default) feeds frames in [-1, 1] as the common
implementations do; ``--protocol latentsync`` feeds [0, 1] as LatentSync's evaluation does (its
FVDs are not comparable with the standard ones). The table names the protocol and the frames. FID: Inception-v3 pool features of every
``--frame_stride``-th frame. SSIM/PSNR: fake videos paired with real ones of the same name
(``name.mp4`` or ``name__audio.mp4`` with ``name.mp4``), frame by frame.

    python -m eval.eval_fvd --real_dir data/real --fake_dir results/ --output results/fvd
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from latentsync.metrics.evaluation import (
    add_run_arguments, cli_parser, list_videos, merge_rows, pair_by_name, set_scores, similarity_rows,
)
from latentsync.metrics.fid import INCEPTION_FILE, load_inception
from latentsync.cli import number
from latentsync.metrics.fvd import DEFAULT_PROTOCOL, PROTOCOLS, FaceCropper, clip_description, load_i3d
from latentsync.metrics.model_files import default_path, require_model_files
from latentsync.metrics.report import check_output, run_guarded, table_result
from latentsync.utils.device import pick_device

COLUMNS = ["video", "real", "ssim", "psnr", "error"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli_parser("python -m eval.eval_fvd", __doc__)
    parser.add_argument("--real_dir", required=True, help="folder (or one video) of real videos")
    parser.add_argument("--fake_dir", required=True, help="folder (or one video) of generated videos")
    parser.add_argument("--protocol", default=DEFAULT_PROTOCOL, choices=PROTOCOLS, help="I3D input convention (default: %(default)s)")
    parser.add_argument("--i3d_path", default=default_path("i3d_torchscript.pt"), help="I3D TorchScript file")
    parser.add_argument("--inception_path", default=default_path(INCEPTION_FILE), help="FID Inception-v3 weights")
    parser.add_argument("--no_face_crop", action="store_true", help="FVD on whole frames (videos already face crops)")
    parser.add_argument("--no_fid", action="store_true", help="skip FID")
    parser.add_argument("--no_similarity", action="store_true", help="skip SSIM/PSNR")
    parser.add_argument("--frame_stride", type=number(int, 1), default=1, help="use every N-th frame for FID and SSIM/PSNR")
    parser.add_argument("--batch_size", type=number(int, 1), default=16, help="frames per Inception batch")
    parser.add_argument("--output", help="write the table to OUTPUT.csv, .json and .md")
    add_run_arguments(parser)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> tuple[str, int]:
    device = pick_device(args.device)
    progress = not args.no_progress
    check_output(args.output, "--output")
    require_model_files([args.i3d_path] + ([] if args.no_fid else [args.inception_path]))
    real, fake = list_videos(args.real_dir), list_videos(args.fake_dir)
    i3d = load_i3d(args.i3d_path, device)
    inception = None if args.no_fid else load_inception(args.inception_path, device)
    print(f"FVD protocol: {args.protocol}", flush=True)
    errors: dict[str, str] = {}
    cropper = None if args.no_face_crop else FaceCropper()
    scores = set_scores(real, fake, i3d, inception, args.protocol, cropper, args.frame_stride, args.batch_size,
                         errors, progress)
    pairs = [] if args.no_similarity else pair_by_name(real, fake)
    similarity = list(similarity_rows(pairs, args.frame_stride, progress))
    rows = merge_rows(fake, similarity, [{"video": v, "error": e} for v, e in errors.items()])
    protocols = {"fvd_protocol": args.protocol, "fvd_clip": clip_description(cropper is not None)}
    text, _ = table_result(rows, ["ssim", "psnr"], COLUMNS, args.output, extra=scores, protocols=protocols)
    return text, 0 if scores["fvd"] is not None else 1


def main(argv: Sequence[str] | None = None) -> int:
    return run_guarded(lambda: run(parse_args(argv)), sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
