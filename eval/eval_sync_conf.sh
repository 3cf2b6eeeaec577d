#!/usr/bin/env bash
# SyncNet confidence (LSE-C / LSE-D) of a video or a folder; arguments go to eval/eval_sync_conf.py, e.g.
#   bash eval/eval_sync_conf.sh --videos_dir results/ --output results/sync_conf
set -euo pipefail
python -m eval.eval_sync_conf "$@"
