#!/usr/bin/env bash
# Set up LatentSync: a .venv with the pinned requirements, an ffmpeg binary, and the
# inference checkpoints under checkpoints/.
#
#   bash setup_env.sh                   # release 1.6 (default)
#   bash setup_env.sh --release 1.5     # LatentSync 1.5 weights
#   bash setup_env.sh --with-training   # also stable_syncnet.pt and auxiliary/ models
#   bash setup_env.sh --skip-downloads  # environment only (CI, offline machines)
set -euo pipefail
caller="$PWD"
cd "$(dirname "$0")"
project="$PWD"
# Commands printed at the end must run as printed from the caller's folder.
here=""
if [ "$caller" != "$project" ]; then here="cd $(printf '%q' "$project") && "; fi
# The checkpoint step runs from the caller's folder, so the commands it prints work there too.
checkpoints() { (cd "$caller" && PYTHONPATH="$project" "$project/.venv/bin/python" -P -m scripts.download_checkpoints "$@"); }

python_bin="${PYTHON:-python3}"
skip_downloads=0
download_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --skip-downloads) skip_downloads=1 ;;
    --release) download_args+=(--release "$2"); shift ;;
    --with-training) download_args+=(--with-training) ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "setup_env.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if ! "$python_bin" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup_env.sh: Python 3.11 or newer is required ($python_bin is $("$python_bin" --version 2>&1))" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$python_bin" -m venv .venv
fi
echo "== installing requirements"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt

# Muxing needs an ffmpeg binary: the system one, else the one shipped by imageio-ffmpeg.
if command -v ffmpeg >/dev/null 2>&1; then
  echo "== ffmpeg: $(command -v ffmpeg)"
else
  echo "== ffmpeg: $(.venv/bin/python -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())') (from imageio-ffmpeg)"
fi

if [ "$skip_downloads" = 1 ]; then
  echo "== skipping checkpoint downloads"
else
  echo "== checkpoints"
  checkpoints ${download_args[@]+"${download_args[@]}"}
fi

tests="${here}.venv/bin/python -m pytest -m 'not slow' -q"
if [ "$skip_downloads" = 1 ]; then
  checkpoints --check ${download_args[@]+"${download_args[@]}"} && ready=1 || ready=0   # lists what is missing
else
  checkpoints --check ${download_args[@]+"${download_args[@]}"} >/dev/null 2>&1 && ready=1 || ready=0  # listed above
fi
if [ "$ready" = 1 ]; then
  echo "== done: \`${here}./inference.sh\` lip-syncs the demo (assets/ -> video_out.mp4); \`$tests\` runs the tests"
else
  echo "== done, without the checkpoints listed above: the tests work now: \`$tests\`"
  echo "   ./inference.sh needs those files: fetch them with the commands shown, or rerun setup_env.sh where huggingface.co is reachable"
fi
