#!/usr/bin/env bash
# Lip-sync with the settings in configs/inference.yaml (the demo in assets/ -> video_out.mp4).
# Any option overrides the config, e.g. ./inference.sh --video_path face.mp4 --audio_path speech.wav
# Run from the project root; `python -m scripts.inference --help` lists every option.
set -euo pipefail
exec "${PYTHON:-.venv/bin/python}" -m scripts.inference --config configs/inference.yaml "$@"
