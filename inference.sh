#!/usr/bin/env bash
# Lip-sync with the settings in configs/inference.yaml (the demo in assets/ -> video_out.mp4).
# Any option overrides the config, e.g. ./inference.sh --video_path face.mp4 --audio_path speech.wav
# Works from any folder: paths you pass are relative to it; `--help` lists every option.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/tools/venv.sh"
exec "$LATENTSYNC_PYTHON" -P -m scripts.inference --config "$LATENTSYNC_ROOT/configs/inference.yaml" "$@"
