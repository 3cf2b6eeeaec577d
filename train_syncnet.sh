#!/usr/bin/env bash
# Train StableSyncNet. Extra arguments go to scripts/train_syncnet.py, e.g.
#   NPROC=2 bash train_syncnet.sh --output_dir debug/syncnet run.max_train_steps=1000
set -euo pipefail
CONFIG_PATH="${CONFIG_PATH:-configs/syncnet/syncnet_16_pixel_attn.yaml}"
torchrun --nnodes "${NNODES:-1}" --nproc_per_node "${NPROC:-1}" --master_port "${MASTER_PORT:-25678}" \
    -m scripts.train_syncnet --config_path "$CONFIG_PATH" "$@"
