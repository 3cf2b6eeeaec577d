#!/usr/bin/env bash
# Per-frame SyncNet curves (CSV + PNG) of a video or folder; arguments go to eval/syncnet_detect.py, e.g.
#   bash eval/syncnet_detect.sh --video_path out.mp4 --output_dir debug/sync_curves
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../tools/venv.sh"
exec "$LATENTSYNC_PYTHON" -P -m eval.syncnet_detect "$@"
