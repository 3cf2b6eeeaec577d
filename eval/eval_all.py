"""One command from a checkpoint to a table: generate an evaluation list's videos, then score them.

Inference runs through ``python -m scripts.inference --batch`` (inference settings this script does
not define, such as ``--inference_steps 20``, are passed on to it, checked before anything runs); then every output gets LSE-C / LSE-D / offset (classic SyncNet), hyperIQA,
and SSIM / PSNR against its source video, and the set gets FVD and FID against the source videos.
Writes OUTPUT_DIR/metrics.csv (per video), metrics.json (rows and summary), metrics.md, and
prints the Markdown. A video that fails is a row with its reason. The summary (and every CSV row)
names the protocols: sync_protocol (--sync_protocol), fvd_protocol (--protocol), fvd_clip and
hyperiqa_frames.

    python -m eval.eval_all --eval_list eval.csv --checkpoint checkpoints/latentsync_unet.pt --output_dir results/
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from latentsync.cli import number
from latentsync.metrics.evaluation import (
    add_run_arguments, add_sync_arguments, build_sync, cli_parser, merge_rows, quality_rows, set_scores,
    similarity_rows, sync_rows,
)
from latentsync.metrics.fid import INCEPTION_FILE, load_inception
from latentsync.metrics.fvd import DEFAULT_PROTOCOL, PROTOCOLS, FaceCropper, clip_description, load_i3d
from latentsync.metrics.image_quality import FRAMES_DESCRIPTION
from latentsync.metrics.inference_runs import read_eval_list, run_inference
from latentsync.errors import CheckpointError, LatentSyncError
from latentsync.metrics.model_files import default_path, require_model_files
from latentsync.metrics.report import check_output, run_guarded, table_result
from latentsync.models.hyperiqa import HyperNet
from latentsync.settings import check_setting_flags
from latentsync.utils.device import pick_device

COLUMNS = ["video", "source", "audio", "lse_c", "lse_d", "offset", "hyperiqa", "ssim", "psnr", "error"]
MEANS = ["lse_c", "lse_d", "hyperiqa", "ssim", "psnr"]


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = cli_parser("python -m eval.eval_all", __doc__, allow_abbrev=False)
    parser.add_argument("--eval_list", required=True, help="CSV of video,audio rows (relative to the CSV)")
    parser.add_argument("--checkpoint", help="UNet weights to generate with (omit with --skip_inference)")
    parser.add_argument("--unet_config_path", help="UNet config of the checkpoint (default: the inference config's)")
    parser.add_argument("--output_dir", required=True, help="generated videos and the metrics table")
    parser.add_argument("--skip_inference", action="store_true", help="score the outputs already in OUTPUT_DIR")
    parser.add_argument("--protocol", default=DEFAULT_PROTOCOL, choices=PROTOCOLS, help="FVD protocol (default: %(default)s)")
    parser.add_argument("--i3d_path", default=default_path("i3d_torchscript.pt"), help="I3D TorchScript file")
    parser.add_argument("--inception_path", default=default_path(INCEPTION_FILE), help="FID Inception-v3 weights")
    parser.add_argument("--hyperiqa_path", default=default_path("koniq_pretrained.pkl"), help="hyperIQA weights")
    parser.add_argument("--no_face_crop", action="store_true", help="FVD on whole frames")
    parser.add_argument("--frame_stride", type=number(int, 1), default=1, help="every N-th frame for FID and SSIM/PSNR")
    add_run_arguments(parser)  # --device is passed on to inference too
    add_sync_arguments(parser)
    args, extra = parser.parse_known_args(argv)
    if not args.skip_inference and not args.checkpoint:
        parser.error("--checkpoint is required unless --skip_inference is given")
    check_setting_flags(extra)
    return args, extra


def evaluate(args: argparse.Namespace, extra: list[str]) -> tuple[str, int]:
    device = pick_device(args.device)
    progress = not args.no_progress
    check_output(args.output_dir, "--output_dir", folder=True)
    pairs = read_eval_list(args.eval_list, args.output_dir)
    # Every model file is checked before the (long) inference run, all named at once.
    no_unet = "" if args.skip_inference or os.path.isfile(args.checkpoint) else f"--checkpoint {args.checkpoint!r} does not exist"
    require_model_files([args.i3d_path, args.inception_path, args.hyperiqa_path, args.syncnet_path, args.s3fd_path],
                        f"; and {no_unet}" if no_unet else "")
    if no_unet:
        raise CheckpointError(no_unet)
    if not args.skip_inference:
        status = run_inference(pairs, args.checkpoint, args.output_dir, args.unet_config_path,
                               [*extra, "--device", args.device])
        if status and not any(os.path.isfile(p.output) for p in pairs):
            raise LatentSyncError(f"inference made none of the {len(pairs)} videos (its error is above); nothing to score")
    made = [p for p in pairs if os.path.isfile(p.output)]
    missing = [{"video": p.output, "error": "no output: inference failed for this pair"} for p in pairs if p not in made]
    outputs = [p.output for p in made]
    sources = sorted({p.video for p in made})  # the real set: sources of the generated videos

    scorer, detector, settings = build_sync(args, device)
    sync = list(sync_rows(outputs, scorer, detector, settings, progress, args.sync_protocol))
    quality = list(quality_rows(outputs, HyperNet.from_file(args.hyperiqa_path, device), progress))
    similarity = list(similarity_rows([(p.video, p.output) for p in made], args.frame_stride, progress))
    errors: dict[str, str] = {}
    cropper = None if args.no_face_crop else FaceCropper()
    scores = set_scores(sources, outputs, load_i3d(args.i3d_path, device), load_inception(args.inception_path, device),
                        args.protocol, cropper, args.frame_stride, 16, errors, progress)
    info = [{"video": p.output, "source": p.video, "audio": p.audio} for p in pairs]
    rows = merge_rows([p.output for p in pairs], info, missing, sync, quality, similarity,
                      [{"video": v, "error": e} for v, e in errors.items()])
    protocols = {"sync_protocol": args.sync_protocol, "fvd_protocol": args.protocol,
                 "fvd_clip": clip_description(cropper is not None), "hyperiqa_frames": FRAMES_DESCRIPTION}
    return table_result(rows, MEANS, COLUMNS, os.path.join(args.output_dir, "metrics"), extra=scores,
                        protocols=protocols)


def main(argv: Sequence[str] | None = None) -> int:
    return run_guarded(lambda: evaluate(*parse_args(argv)), sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
