# Sourced by the project's shell entry points so that they work from any folder, with no environment
# activated:   source "$(dirname "${BASH_SOURCE[0]}")/tools/venv.sh"   (from a script in the project root)
# Sets LATENTSYNC_ROOT (the project folder) and LATENTSYNC_PYTHON ($PYTHON if set, else the project's
# .venv/bin/python, which setup_env.sh makes), and puts the project first on PYTHONPATH, so that
# "$LATENTSYNC_PYTHON" -P -m scripts.x runs the project's code whatever the current folder holds.
LATENTSYNC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LATENTSYNC_PYTHON="${PYTHON:-$LATENTSYNC_ROOT/.venv/bin/python}"
if [ ! -x "$LATENTSYNC_PYTHON" ]; then
    echo "error: no Python environment at $LATENTSYNC_PYTHON: run 'bash $LATENTSYNC_ROOT/setup_env.sh' first (or set PYTHON)" >&2
    exit 1
fi
export PYTHONPATH="$LATENTSYNC_ROOT${PYTHONPATH:+:$PYTHONPATH}"
