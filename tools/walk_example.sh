#!/usr/bin/env bash
# The README's walked example ("A small example, start to finish"), command for command: tiny models ->
# raw talking-head videos -> data_processing_pipeline.sh -> file lists with a held-out split ->
# train_syncnet.sh -> stage 1 -> stage 2 (with that SyncNet) -> inference.sh -> eval/eval_all.sh,
# on a CPU in minutes. Everything goes into EXAMPLE_DIR (default: debug/example), which the tiny
# configs read from $LATENTSYNC_EXAMPLE. A rerun resumes (finished steps are kept).
#   bash tools/walk_example.sh [EXAMPLE_DIR]
# tests/test_walk_example.py runs it and checks that the README shows these commands.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ $# -gt 0 ]; then export LATENTSYNC_EXAMPLE="$(realpath -m "$1")"; fi

# --- the README's commands
export LATENTSYNC_EXAMPLE="${LATENTSYNC_EXAMPLE:-debug/example}"
X=$LATENTSYNC_EXAMPLE
.venv/bin/python -m tools.tiny_models --out $X/models
.venv/bin/python -m tools.make_synthetic_dataset --raw 3 --output_dir $X/raw
./data_processing_pipeline.sh --input_dir $X/raw --output_dir $X/processed --skip_sync --skip_quality --total_num_workers 1
.venv/bin/python -m tools.write_fileslist $X/processed/high_visual_quality --output $X/fileslist/train.txt \
    --val_output $X/fileslist/val.txt --val_count 1
CONFIG_PATH=configs/syncnet/syncnet_tiny_cpu.yaml bash train_syncnet.sh run.max_train_steps=10
CONFIG_PATH=configs/unet/stage1_tiny_cpu.yaml bash train_unet.sh run.max_train_steps=10
CONFIG_PATH=configs/unet/stage2_tiny_cpu.yaml bash train_unet.sh run.max_train_steps=3
./inference.sh --unet_config_path configs/unet/stage2_tiny_cpu.yaml --inference_ckpt_path $X/stage2/best_checkpoint.pt \
    --whisper_path $X/models/whisper/tiny.pt --vae_path $X/models/vae --inference_steps 2 \
    --video_path $X/raw/talk_000.mp4 --audio_path $X/raw/talk_001.mp4 --video_out_path $X/synced.mp4
(echo video,audio; sed 's/.*/&,&/' $X/fileslist/val.txt) > $X/eval.csv
A=$X/models/auxiliary
bash eval/eval_all.sh --eval_list $X/eval.csv --checkpoint $X/stage2/best_checkpoint.pt --output_dir $X/eval \
    --unet_config_path configs/unet/stage2_tiny_cpu.yaml --whisper_path $X/models/whisper/tiny.pt \
    --vae_path $X/models/vae --inference_steps 2 --frame_stride 25 --i3d_path $A/i3d_torchscript.pt \
    --inception_path $A/pt_inception-2015-12-05-6726825d.pth --hyperiqa_path $A/koniq_pretrained.pkl \
    --syncnet_path $A/syncnet_v2.model --s3fd_path $A/sfd_face.pth --no_face_crop
# --- end of the README's commands
