#!/usr/bin/env bash
# Proof that U-Net training learns to lip-sync, on CPU (about an hour with the cores to itself):
# synthetic talking heads -> a small VAE -> the tiny SyncNet -> stage 1 (<= 15 min) -> stage 2 with
# every loss (LPIPS and TREPA with random-init backbones, logged as such) -> the trained UNet
# lip-syncs held-out clips to their own audio and the SyncNet judges them. Last lines:
#   stage1_loss_drop=0.NN  stage2_sync_loss_drop=0.NN  generated_sync_accuracy=0.NN
#   bash tools/prove_unet.sh [WORKDIR [key=value ...]]   (default WORKDIR: debug/prove_unet)
# key=value arguments override the configs of every training run (SyncNet, stage 1, stage 2), e.g. a
# quick end-to-end check: NUM_TRAIN=4 NUM_VAL=2 VAE_MINUTES=0.2 EVAL_SAMPLES=64 bash tools/prove_unet.sh
#   /tmp/smoke run.max_train_steps=10 run.validation_steps=5 ckpt.save_ckpt_steps=5
# SYNCNET_CKPT=path reuses a SyncNet of configs/syncnet/syncnet_tiny_cpu.yaml (tools/prove_syncnet.sh).
# On a shared machine: OMP_NUM_THREADS=1 bash tools/prove_unet.sh
set -euo pipefail
WORKDIR="$(realpath -m "${1:-debug/prove_unet}")"
OVERRIDES=("${@:2}")
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -x .venv/bin/python ]; then PATH="$PWD/.venv/bin:$PATH"; fi
DATA="$WORKDIR/data"
DATA_ARGS=(
    "data.train_fileslist=$DATA/fileslist/train.txt" "data.val_fileslist=$DATA/fileslist/val.txt"
    "data.audio_embeds_cache_dir=$DATA/audio_cache/embeds" "data.audio_mel_cache_dir=$DATA/audio_cache/mel"
    "data.vae_path=$WORKDIR/vae" "data.whisper_path=$WORKDIR/whisper/tiny.pt"
)

echo "== 1/7 synthetic data in $DATA"
python -m tools.make_synthetic_dataset --output_dir "$DATA" --num_train "${NUM_TRAIN:-48}" --num_val "${NUM_VAL:-16}" \
    --workers "${GEN_WORKERS:-2}"

echo "== 2/7 a small VAE for the synthetic faces"
if [ ! -d "$WORKDIR/vae" ]; then
    python -m tools.train_tiny_vae --train_fileslist "$DATA/fileslist/train.txt" \
        --val_fileslist "$DATA/fileslist/val.txt" --output_dir "$WORKDIR/vae" --minutes "${VAE_MINUTES:-4}"
fi

echo "== 3/7 a tiny transparent Whisper (features = local mel content; see tools/tiny_models.py:write_whisper)"
python -c 'import sys; from pathlib import Path; from tools.tiny_models import write_whisper
write_whisper(Path(sys.argv[1]), transparent=True)' "$WORKDIR/whisper"

echo "== 4/7 SyncNet (configs/syncnet/syncnet_tiny_cpu.yaml)"
SYNCNET="${SYNCNET_CKPT:-$WORKDIR/syncnet/best_checkpoint.pt}"
if [ ! -f "$SYNCNET" ]; then
    CONFIG_PATH=configs/syncnet/syncnet_tiny_cpu.yaml MASTER_PORT="${MASTER_PORT:-29518}" bash train_syncnet.sh \
        --output_dir "$WORKDIR/syncnet" "data.train_fileslist=$DATA/fileslist/train.txt" \
        "data.val_fileslist=$DATA/fileslist/val.txt" "data.audio_mel_cache_dir=$DATA/audio_cache/mel" \
        ${OVERRIDES[@]+"${OVERRIDES[@]}"}
fi

echo "== 5/7 stage 1 (configs/unet/stage1_tiny_cpu.yaml)"
start=$(date +%s)
CONFIG_PATH=configs/unet/stage1_tiny_cpu.yaml MASTER_PORT="${MASTER_PORT:-29518}" bash train_unet.sh \
    --output_dir "$WORKDIR/stage1" "${DATA_ARGS[@]}" ${OVERRIDES[@]+"${OVERRIDES[@]}"}
echo "stage 1 took $(( $(date +%s) - start )) s"

echo "== 6/7 stage 2 (configs/unet/stage2_tiny_cpu.yaml)"
start=$(date +%s)
CONFIG_PATH=configs/unet/stage2_tiny_cpu.yaml MASTER_PORT="${MASTER_PORT:-29518}" bash train_unet.sh \
    --output_dir "$WORKDIR/stage2" --init_ckpt_path "$WORKDIR/stage1/best_checkpoint.pt" \
    "ckpt.syncnet_ckpt_path=$SYNCNET" "${DATA_ARGS[@]}" ${OVERRIDES[@]+"${OVERRIDES[@]}"}
echo "stage 2 took $(( $(date +%s) - start )) s"

echo "== 7/7 held-out clips lip-synced by the trained UNet, judged by the SyncNet"
unet="$(ls "$WORKDIR"/stage2/checkpoints/checkpoint-*.pt | sort -V | tail -n 1)"
rm -rf "$WORKDIR/generated"
python -m tools.generate_synced_clips --unet_config configs/unet/stage2_tiny_cpu.yaml --unet_ckpt "$unet" \
    --vae "$WORKDIR/vae" --whisper "$WORKDIR/whisper/tiny.pt" --fileslist "$DATA/fileslist/val.txt" \
    --output_dir "$WORKDIR/generated"
real=$(python -m eval.eval_syncnet_acc --config_path configs/syncnet/syncnet_tiny_cpu.yaml --checkpoint "$SYNCNET" \
    --fileslist "$DATA/fileslist/val.txt" --num_samples "${EVAL_SAMPLES:-1024}" --seed 1234 | tail -n 1)
generated=$(python -m eval.eval_syncnet_acc --config_path configs/syncnet/syncnet_tiny_cpu.yaml --checkpoint "$SYNCNET" \
    --fileslist "$WORKDIR/generated/fileslist.txt" --num_samples "${EVAL_SAMPLES:-1024}" --seed 1234 | tail -n 1)
echo "real held-out clips: ${real}"
python -m tools.unet_proof_report --stage1 "$WORKDIR/stage1" --stage2 "$WORKDIR/stage2"
echo "generated_sync_accuracy=${generated#syncnet_val_accuracy=}"
