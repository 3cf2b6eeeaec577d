#!/usr/bin/env bash
# Train StableSyncNet. Extra arguments go to scripts/train_syncnet.py (flags and key=value in any order), e.g.
#   NPROC=2 bash train_syncnet.sh --output_dir debug/syncnet run.max_train_steps=1000
# Works from any folder with the project's .venv; CONFIG_PATH and paths you pass are relative to your folder.
# Rerunning a command resumes its run; a failure ends with one `error:` line and exit status 1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/tools/venv.sh"
CONFIG_PATH="${CONFIG_PATH:-$LATENTSYNC_ROOT/configs/syncnet/syncnet_16_pixel_attn.yaml}"
exec "$LATENTSYNC_PYTHON" -P -m latentsync.training.launch --nnodes "${NNODES:-1}" --node_rank "${NODE_RANK:-0}" \
    ${MASTER_ADDR:+--master_addr "$MASTER_ADDR"} ${MASTER_PORT:+--master_port "$MASTER_PORT"} \
    --nproc_per_node "${NPROC:-1}" -m scripts.train_syncnet --config_path "$CONFIG_PATH" "$@"
