"""eval_syncnet_acc: bad input ends with one error line and exit code 1."""

from __future__ import annotations

from eval.eval_syncnet_acc import main


def test_bad_device_is_one_error_line(capsys):
    code = main(["--config_path", "configs/syncnet/syncnet_tiny_cpu.yaml", "--checkpoint", "x.pt", "--device", "tpu"])
    assert code == 1
    assert capsys.readouterr().err.splitlines() == ["error: unknown device 'tpu', choose one of auto, cuda, mps, cpu"]


def test_missing_checkpoint_is_one_error_line(capsys):
    code = main(["--config_path", "configs/syncnet/syncnet_tiny_cpu.yaml", "--checkpoint", "missing.pt", "--device", "cpu"])
    assert code == 1
    assert capsys.readouterr().err.splitlines() == ["error: SyncNet checkpoint not found: missing.pt"]
