#!/usr/bin/env bash
# Raw talking-head videos -> aligned 25 fps / 16 kHz training clips in OUTPUT_DIR/high_visual_quality/.
#   ./data_processing_pipeline.sh --input_dir data/raw --output_dir data/processed [--skip_sync] ...
# Works from any folder (paths are relative to it); `--help` lists every option.
# A rerun resumes where an interrupted run stopped. --executor ray --ray_address ADDR runs on a Ray cluster.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/tools/venv.sh"
exec "$LATENTSYNC_PYTHON" -P -m preprocess.data_processing_pipeline "$@"
