import os
import shlex
import subprocess
import sys

from tests.conftest import REPO_ROOT


def run_download(tmp_path, *args):
    config = tmp_path / "checkpoints.yaml"
    config.write_text(
        f"""
releases:
  "1.6": {{repo_id: ByteDance/LatentSync-1.6, unet_config: configs/unet/stage2_512.yaml, files: [latentsync_unet.pt, whisper/tiny.pt]}}
training_files: [stable_syncnet.pt]
training_patterns: ["auxiliary/*"]
vae: {{repo_id: stabilityai/sd-vae-ft-mse, local_dir: {tmp_path}/ckpt/vae, files: [config.json]}}
local_dir: {tmp_path}/ckpt
"""
    )
    # Port 9 (discard) on loopback: refused at once, like a machine without internet.
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0"}
    return subprocess.run(
        [sys.executable, "-m", "scripts.download_checkpoints", "--config", str(config), *args],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_offline_lists_each_missing_file_with_its_command_and_exits_zero(tmp_path):
    (tmp_path / "ckpt" / "whisper").mkdir(parents=True)
    (tmp_path / "ckpt" / "whisper" / "tiny.pt").write_bytes(b"present")
    result = run_download(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "2 checkpoint files are missing" in result.stderr
    assert "hf download ByteDance/LatentSync-1.6 latentsync_unet.pt" in result.stderr
    assert "hf download stabilityai/sd-vae-ft-mse config.json" in result.stderr
    assert "tiny.pt" not in result.stderr.split("missing")[1]


def test_unknown_release_is_an_error(tmp_path):
    result = run_download(tmp_path, "--release", "9.9")
    assert result.returncode == 1
    assert "unknown release '9.9'" in result.stderr


def test_check_lists_missing_files_with_commands_that_exist_and_fails(tmp_path):
    result = run_download(tmp_path, "--check")
    assert result.returncode == 1
    commands = [line.split("<- ", 1)[1] for line in result.stderr.splitlines() if "<- " in line]
    assert len(commands) == 3
    for command in commands:
        words = shlex.split(command)
        # The hf CLI is only inside the virtual environment; the command names it there, runnable from cwd.
        assert words[0].endswith(os.path.join(".venv", "bin", "hf")) and words[1] == "download"
        assert os.path.isfile(os.path.join(REPO_ROOT, words[0])) or os.path.isabs(words[0])
