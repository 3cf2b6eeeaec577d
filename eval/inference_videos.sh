#!/usr/bin/env bash
# Generate an evaluation list's videos with a checkpoint; arguments go to eval/inference_videos.py, e.g.
#   bash eval/inference_videos.sh --eval_list eval.csv --checkpoint checkpoints/latentsync_unet.pt --output_dir results/
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../tools/venv.sh"
exec "$LATENTSYNC_PYTHON" -P -m eval.inference_videos "$@"
