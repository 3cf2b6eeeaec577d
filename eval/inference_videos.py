"""Generate the videos of an evaluation list with a checkpoint, through the project's inference CLI.

The list is a CSV of ``video,audio`` rows (relative to the CSV); outputs are
OUTPUT_DIR/<video>__<audio>.mp4. Options this script does not know are passed on to
``python -m scripts.inference`` (e.g. ``--inference_steps 20 --guidance_scale 1.5``); existing
outputs are kept, so a rerun resumes.

    python -m eval.inference_videos --eval_list eval.csv --checkpoint checkpoints/latentsync_unet.pt --output_dir results/
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from latentsync.errors import LatentSyncError
from latentsync.metrics.evaluation import cli_parser
from latentsync.metrics.inference_runs import read_eval_list, run_inference
from latentsync.metrics.report import check_output, error_line
from latentsync.utils.logging import configure_logging


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = cli_parser("python -m eval.inference_videos", __doc__, allow_abbrev=False)
    parser.add_argument("--eval_list", required=True, help="CSV of video,audio rows")
    parser.add_argument("--checkpoint", required=True, help="UNet weights ({'state_dict', 'global_step'} .pt)")
    parser.add_argument("--unet_config_path", help="UNet config of the checkpoint (default: the inference config's)")
    parser.add_argument("--output_dir", required=True, help="where the generated videos go")
    return parser.parse_known_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    try:
        args, extra = parse_args(argv)
        check_output(args.output_dir, "--output_dir", folder=True)
        pairs = read_eval_list(args.eval_list, args.output_dir)
        status = run_inference(pairs, args.checkpoint, args.output_dir, args.unet_config_path, extra)
    except LatentSyncError as err:
        print(error_line(err), file=sys.stderr)
        return 1
    print(f"{len(pairs)} pairs, inference exit status {status}: outputs in {args.output_dir}")
    return status


if __name__ == "__main__":
    sys.exit(main())
