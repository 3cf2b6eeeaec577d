"""eval_syncnet_acc: bad input ends with one error line and exit code 1."""

from __future__ import annotations

import logging

from eval.eval_syncnet_acc import main


def test_bad_device_is_one_error_line(caplog):
    with caplog.at_level(logging.ERROR):
        code = main(["--config_path", "configs/syncnet/syncnet_tiny_cpu.yaml", "--checkpoint", "x.pt", "--device", "tpu"])
    assert code == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["unknown device 'tpu', choose one of auto, cuda, mps, cpu"]


def test_missing_checkpoint_is_one_error_line(caplog):
    with caplog.at_level(logging.ERROR):
        code = main(["--config_path", "configs/syncnet/syncnet_tiny_cpu.yaml", "--checkpoint", "missing.pt", "--device", "cpu"])
    assert code == 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR][0].startswith("checkpoint not found: missing.pt")
