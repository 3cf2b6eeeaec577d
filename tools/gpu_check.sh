#!/usr/bin/env bash
# The prepared GPU check (tools/gpu_check.py), from any folder: the project's .venv when there is one,
# else python3 with the packages of .gpucheck/*/bundle.tar.xz (the lent GPU machine). Arguments go to
# tools/gpu_check.py (--help lists them); paths you give are relative to your folder.
#
#   bash tools/gpu_check.sh --device cpu --tiny        # the CPU dry run (what the test suite runs)
#   bash tools/gpu_check.sh                            # CUDA, real sizes, all parts, 8-minute budget
#
# On the lent H200 (device tool `run`): its python3 has torch 2.11 (CUDA 13.0), transformers, OpenCV and
# scikit-image but not diffusers, PyAV, mediapipe, whisper, an ffmpeg binary...; it has no network, and a
# call carries at most 64 MiB with the project's ~19 MiB. So the packages travel as two xz bundles made
# here (40 + 31 MiB), one per call; the first call's packages stay in /tmp/latentsync-gpucheck/site, and
# its random weights in the --workdir, while the machine is warm (30 s after a call): make the second
# call at once. The two budgets (270 + 420 s, ~13 min of device time with the start) leave no time for a
# rerun; a part cut by its budget or timeout still reports what it measured.
#
#   once, here, in the project root (pip downloads cp312 wheels; links .gpucheck/upstream to the
#   upstream checkout, whose latentsync/ folder then travels as a carried path):
#     .venv/bin/python -m tools.gpu_check_bundle
#   call 1 (bundle a: diffusers, whisper, PyAV, bitsandbytes...): training steps, then UNet forwards
#     run(command="bash tools/gpu_check.sh --parts training unet --budget 270 --workdir /tmp/latentsync-gpucheck/work --out \"$OUT\"",
#         carry=[".gpucheck/a"], timeout_s=330)
#   call 2, right after (bundle b: ffmpeg, mediapipe, kornia...; bundle a and the weights from call 1):
#     run(command="bash tools/gpu_check.sh --parts inference upstream train_cli determinism eval --budget 420 --workdir /tmp/latentsync-gpucheck/work --out \"$OUT\"",
#         carry=[".gpucheck/b", ".gpucheck/upstream/latentsync"], timeout_s=480)
#   then, here, after each call: cat <files_at>/gpu_check_section.md >> benchmarks/RESULTS.md
#   (gpu_check.json holds every row, gpu_check_logs.tar.gz every part's log).
# If the machine went back between the calls, call 2's parts report "needs av ... (not installed)".
# The stream part (real-time numbers) fits in neither call, and the two bundles (71 MiB) cannot travel
# together: for it, make call 1 as above (it installs bundle a), then, in place of call 2, the same call
# with --parts stream --budget 420 (it needs bundle b's ffmpeg and mediapipe); the other parts wait.
set -euo pipefail
project="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="$project/.venv/bin/python"
if [ -x "$python" ]; then
  export PYTHONPATH="$project${PYTHONPATH:+:$PYTHONPATH}"
  exec "$python" -P -m tools.gpu_check "$@"
fi
# No .venv: the lent GPU machine. Its python3 gets the carried bundles (built for Python 3.12).
python=python3
site=/tmp/latentsync-gpucheck/site
shopt -s nullglob
for bundle in "$project"/.gpucheck/*/bundle.tar.xz; do
  stamp="$site/.unpacked-$(basename "$(dirname "$bundle")")-$(stat -c %s "$bundle")"
  if [ ! -f "$stamp" ]; then
    mkdir -p "$site"
    echo "gpu_check.sh: unpacking ${bundle#"$project"/} into $site" >&2
    tar -xJf "$bundle" -C "$site"
    touch "$stamp"
  fi
done
extra=()
if [ -d "$site" ]; then
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  # Upstream's pipeline and our mux call a binary named ffmpeg: imageio-ffmpeg's, when there is no other.
  bundled=("$site"/imageio_ffmpeg/binaries/ffmpeg-*)
  if ! command -v ffmpeg >/dev/null 2>&1 && [ ${#bundled[@]} -gt 0 ]; then
    mkdir -p "$site/../bin"
    ln -sf "${bundled[0]}" "$site/../bin/ffmpeg"
    export PATH="$site/../bin:$PATH"
  fi
fi
if ! command -v espeak-ng >/dev/null 2>&1 && [ -f "$project/.gpucheck/b/speech.wav" ]; then
  extra=(--speech "$project/.gpucheck/b/speech.wav")
fi
export PYTHONPATH="$project${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" -P -m tools.gpu_check ${extra[@]+"${extra[@]}"} "$@"
