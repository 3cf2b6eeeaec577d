#!/usr/bin/env bash
# Train the LatentSync U-Net. Extra arguments go to scripts/train_unet.py, e.g.
#   CONFIG_PATH=configs/unet/stage2.yaml NPROC=8 bash train_unet.sh --output_dir debug/stage2
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 NPROC=8 bash train_unet.sh   (then NODE_RANK=1 on the other node)
set -euo pipefail
CONFIG_PATH="${CONFIG_PATH:-configs/unet/stage1.yaml}"
torchrun --nnodes "${NNODES:-1}" --node_rank "${NODE_RANK:-0}" --master_addr "${MASTER_ADDR:-127.0.0.1}" \
    --nproc_per_node "${NPROC:-1}" --master_port "${MASTER_PORT:-25679}" \
    -m scripts.train_unet --config_path "$CONFIG_PATH" "$@"
