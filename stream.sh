#!/usr/bin/env bash
# Stream a talking avatar live with the settings in configs/inference.yaml: audio in (a file, or raw PCM
# on standard input with --audio_path -), lip-synced video out (a .mp4/.ts file, - for standard output,
# or an rtmp:// / srt:// URL), e.g. ./stream.sh --video_path face.mp4 --audio_path speech.wav --output live.ts
# Works from any folder: paths you pass are relative to it; `--help` lists every option.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/tools/venv.sh"
exec "$LATENTSYNC_PYTHON" -P -m scripts.stream --config "$LATENTSYNC_ROOT/configs/inference.yaml" "$@"
