#!/usr/bin/env bash
# Accuracy of a trained SyncNet on held-out videos; extra arguments go to eval/eval_syncnet_acc.py, e.g.
#   bash eval/eval_syncnet_acc.sh --checkpoint debug/syncnet/checkpoints/checkpoint-1000.pt --data_dir data/val
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../tools/venv.sh"
CONFIG_PATH="${CONFIG_PATH:-$LATENTSYNC_ROOT/configs/syncnet/syncnet_16_pixel_attn.yaml}"  # yours: relative to your folder
exec "$LATENTSYNC_PYTHON" -P -m eval.eval_syncnet_acc --config_path "$CONFIG_PATH" "$@"
