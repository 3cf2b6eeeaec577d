# Sourced (never run) by the project's .sh entry points, so they work from any folder without an
# activated environment:
#   source "$(dirname "${BASH_SOURCE[0]}")/tools/venv.sh"      # from a script in the project root
#   source "$(dirname "${BASH_SOURCE[0]}")/../tools/venv.sh"   # from a script in eval/
#   exec "$python" -m eval.eval_all "$@"
# Sets $project (the project root, absolute) and $python (the project's .venv/bin/python, or $PYTHON
# if set), and puts the project on PYTHONPATH, so `"$python" -P -m package.module` finds the project's
# modules and not files in the caller's folder. Paths the user passes stay relative to their folder.
project="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$project/.venv/bin/python}"
if [[ ! -x "$python" ]]; then
    echo "error: no Python at $python: run \`bash $project/setup_env.sh\` (or set PYTHON to one with the requirements)" >&2
    exit 1
fi
export PYTHONPATH="$project${PYTHONPATH:+:$PYTHONPATH}"
