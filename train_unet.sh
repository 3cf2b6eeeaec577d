#!/usr/bin/env bash
# Train the LatentSync U-Net. Extra arguments go to scripts/train_unet.py (flags and key=value in any order), e.g.
#   CONFIG_PATH=configs/unet/stage2.yaml NPROC=8 bash train_unet.sh --output_dir debug/stage2
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 MASTER_PORT=25679 NPROC=8 bash train_unet.sh   (then NODE_RANK=1 on the other node)
# Works from any folder with the project's .venv; CONFIG_PATH and paths you pass are relative to your folder.
# Rerunning a command resumes its run; a failure ends with one `error:` line and exit status 1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/tools/venv.sh"
CONFIG_PATH="${CONFIG_PATH:-$LATENTSYNC_ROOT/configs/unet/stage1.yaml}"
exec "$LATENTSYNC_PYTHON" -P -m latentsync.training.launch --nnodes "${NNODES:-1}" --node_rank "${NODE_RANK:-0}" \
    ${MASTER_ADDR:+--master_addr "$MASTER_ADDR"} ${MASTER_PORT:+--master_port "$MASTER_PORT"} \
    --nproc_per_node "${NPROC:-1}" -m scripts.train_unet --config_path "$CONFIG_PATH" "$@"
