#!/usr/bin/env bash
# SyncNet confidence (LSE-C / LSE-D) of a video or a folder; arguments go to eval/eval_sync_conf.py, e.g.
#   bash eval/eval_sync_conf.sh --videos_dir results/ --output results/sync_conf
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../tools/venv.sh"
exec "$LATENTSYNC_PYTHON" -P -m eval.eval_sync_conf "$@"
