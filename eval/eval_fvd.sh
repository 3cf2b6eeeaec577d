#!/usr/bin/env bash
# FVD (+ FID, SSIM, PSNR) between real and generated videos; arguments go to eval/eval_fvd.py, e.g.
#   bash eval/eval_fvd.sh --real_dir data/real --fake_dir results/ --output results/fvd
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../tools/venv.sh"
exec "$LATENTSYNC_PYTHON" -P -m eval.eval_fvd "$@"
