#!/usr/bin/env bash
# Overlay curves files from syncnet_detect in one PNG; arguments go to eval/draw_syncnet_lines.py, e.g.
#   bash eval/draw_syncnet_lines.sh a/curves.csv b/curves.csv --output compare.png
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../tools/venv.sh"
exec "$LATENTSYNC_PYTHON" -P -m eval.draw_syncnet_lines "$@"
