"""Each evaluation script has a .sh launcher (strict bash, arguments passed on) and a --help."""

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
    assert text.rstrip().endswith(f'python -m eval.{name} "$@"') and launcher.stat().st_mode & 0o111
    module = importlib.import_module(f"eval.{name}")
    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m eval.{name}")


def test_launcher_runs_the_script_with_its_arguments(tmp_path):
    venv_bin = REPO_ROOT / ".venv" / "bin"
    done = subprocess.run(["bash", str(REPO_ROOT / "eval" / "draw_syncnet_lines.sh"), str(tmp_path / "none.csv"),
                           "--output", str(tmp_path / "x.png")], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, env={"PATH": f"{venv_bin}:/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == f"error: curves file not found: '{tmp_path / 'none.csv'}'"
