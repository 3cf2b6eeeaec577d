"""Each evaluation script has a .sh launcher (strict bash, the project's .venv from any folder, arguments
passed on) and a --help."""

import importlib
import subprocess

import pytest

from tests.conftest import REPO_ROOT

SCRIPTS = ["eval_sync_conf", "eval_fvd", "hyper_iqa", "syncnet_detect", "draw_syncnet_lines", "inference_videos", "eval_all"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_launcher_and_help(name, capsys):
    launcher = REPO_ROOT / "eval" / f"{name}.sh"
    text = launcher.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
    assert 'source "$(dirname "${BASH_SOURCE[0]}")/../tools/venv.sh"' in text
    assert text.rstrip().endswith(f'exec "$LATENTSYNC_PYTHON" -P -m eval.{name} "$@"') and launcher.stat().st_mode & 0o111
    module = importlib.import_module(f"eval.{name}")
    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m eval.{name}")


def test_launcher_runs_the_script_with_its_arguments(tmp_path):
    # From another folder, with no virtual environment on PATH: the launcher finds the project's .venv.
    done = subprocess.run(["bash", str(REPO_ROOT / "eval" / "draw_syncnet_lines.sh"), "none.csv",
                           "--output", "x.png"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == "error: curves file not found: 'none.csv'"
    assert list(tmp_path.iterdir()) == []
