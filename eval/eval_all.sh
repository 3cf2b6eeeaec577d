#!/usr/bin/env bash
# From a checkpoint to a metrics table (LSE-C, LSE-D, FVD, FID, SSIM, PSNR, hyperIQA); arguments go to eval/eval_all.py, e.g.
#   bash eval/eval_all.sh --eval_list eval.csv --checkpoint checkpoints/latentsync_unet.pt --output_dir results/
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../tools/venv.sh"
exec "$LATENTSYNC_PYTHON" -P -m eval.eval_all "$@"
