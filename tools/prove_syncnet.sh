#!/usr/bin/env bash
# Proof that SyncNet training learns, on CPU: synthetic talking heads -> train the tiny config
# (at most run.max_train_minutes) -> accuracy on the held-out clips. Last line: syncnet_val_accuracy=0.NN
#   bash tools/prove_syncnet.sh [WORKDIR [key=value ...]]   (default WORKDIR: debug/prove_syncnet)
# Extra key=value arguments override the training config, e.g. run.max_train_minutes=5.
set -euo pipefail
WORKDIR="$(realpath -m "${1:-debug/prove_syncnet}")"
if [ $# -gt 0 ]; then shift; fi
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -x .venv/bin/python ]; then PATH="$PWD/.venv/bin:$PATH"; fi
CONFIG=configs/syncnet/syncnet_tiny_cpu.yaml
DATA="$WORKDIR/data"

echo "== 1/3 synthetic data in $DATA"
python -m tools.make_synthetic_dataset --output_dir "$DATA" --num_train "${NUM_TRAIN:-48}" --num_val "${NUM_VAL:-16}" \
    --workers "${GEN_WORKERS:-2}"

echo "== 2/3 training ($CONFIG)"
start=$(date +%s)
CONFIG_PATH="$CONFIG" NPROC="${NPROC:-1}" MASTER_PORT="${MASTER_PORT:-29517}" bash train_syncnet.sh \
    --output_dir "$WORKDIR/train" \
    "data.train_fileslist=$DATA/fileslist/train.txt" \
    "data.val_fileslist=$DATA/fileslist/val.txt" \
    "data.audio_mel_cache_dir=$DATA/audio_cache/mel" \
    "$@"
echo "training took $(( $(date +%s) - start )) s"

echo "== 3/3 accuracy on the held-out clips"
checkpoint="$(ls "$WORKDIR"/train/checkpoints/checkpoint-*.pt | sort -V | tail -n 1)"
python -m eval.eval_syncnet_acc --config_path "$CONFIG" --checkpoint "$checkpoint" \
    --fileslist "$DATA/fileslist/val.txt" --num_samples "${EVAL_SAMPLES:-1024}" --seed 1234
