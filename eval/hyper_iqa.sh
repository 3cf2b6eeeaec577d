#!/usr/bin/env bash
# hyperIQA quality (0-100) of a video or a folder; arguments go to eval/hyper_iqa.py, e.g.
#   bash eval/hyper_iqa.sh --videos_dir results/ --output results/hyper_iqa
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../tools/venv.sh"
exec "$LATENTSYNC_PYTHON" -P -m eval.hyper_iqa "$@"
