#!/usr/bin/env bash
# Accuracy of a trained SyncNet on held-out videos; extra arguments go to eval/eval_syncnet_acc.py, e.g.
#   bash eval/eval_syncnet_acc.sh --checkpoint debug/syncnet/checkpoints/checkpoint-1000.pt --data_dir data/val
set -euo pipefail
CONFIG_PATH="${CONFIG_PATH:-configs/syncnet/syncnet_16_pixel_attn.yaml}"
python -m eval.eval_syncnet_acc --config_path "$CONFIG_PATH" "$@"
