"""Training set-up: precision choice, device choice, trainable-module selection, loaders."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

from latentsync.errors import ConfigError, DeviceError
from latentsync.training.setup import (
    build_accelerator,
    build_optimizer,
    build_train_loader,
    mixed_precision_mode,
    select_trainable,
    steps_per_epoch,
)
from tests.training.conftest import ToyData


def test_mixed_precision_mode(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert mixed_precision_mode(True, cpu) == "bf16"
    assert mixed_precision_mode(False, cpu) == "no"
    mps = torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", lambda major, minor: (major, minor) <= (14, 0))
    assert mixed_precision_mode(True, mps) == "bf16"
    monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", lambda major, minor: False)
    assert mixed_precision_mode(True, mps) == "no"
    assert mixed_precision_mode(False, cuda) == "no"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert mixed_precision_mode(True, cuda) == "bf16"
    assert mixed_precision_mode(True, cuda, cuda_prefers="fp16") == "fp16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert mixed_precision_mode(True, cuda) == "fp16"


def test_bad_or_unavailable_device_is_a_device_error(monkeypatch):
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        build_accelerator("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="CUDA is not available"):
        build_accelerator("cuda")


def test_select_trainable_freezes_everything_else():
    model = nn.ModuleDict({"motion_modules": nn.Linear(2, 2), "attentions": nn.Linear(2, 2), "conv_in": nn.Linear(2, 2)})
    trained = select_trainable(model, ["motion_modules.", "attentions."])
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names == {"motion_modules.weight", "motion_modules.bias", "attentions.weight", "attentions.bias"}
    assert len(trained) == 4
    assert len(select_trainable(model)) == 6  # None: everything
    with pytest.raises(ValueError, match="no parameter name contains"):
        select_trainable(model, ["unet."])


def test_train_loader_resumes_after_the_consumed_batches():
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)
    full = iter(build_train_loader(ToyData(), accelerator, batch_size=3, seed=5))
    batches = [next(full)["video_index"].tolist() for _ in range(8)]
    resumed = iter(build_train_loader(ToyData(), accelerator, batch_size=3, seed=5, start_step=2))  # 2 steps x 2 x 3
    assert [next(resumed)["video_index"].tolist() for _ in range(4)] == batches[4:8]
    assert steps_per_epoch(len(ToyData()), accelerator, batch_size=3) == 2  # 10 keys / (3 x 2) per step, rounded up


def test_eight_bit_adamw_comes_from_bitsandbytes_on_cuda_only(monkeypatch):
    params = [nn.Parameter(torch.ones(3))]
    made = []

    def adamw8bit(params, lr, weight_decay):
        made.append((params, lr, weight_decay))
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)

    fake = types.SimpleNamespace(optim=types.SimpleNamespace(AdamW8bit=adamw8bit))
    monkeypatch.setitem(sys.modules, "bitsandbytes", fake)
    build_optimizer(params, 1e-4, 0.01, eight_bit=True, device=torch.device("cuda"))
    assert made == [(params, 1e-4, 0.01)]
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        build_optimizer(params, 1e-4, eight_bit=True, device=torch.device("cpu"))
    assert len(made) == 1
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # not installed
    with pytest.raises(ConfigError, match="pip install bitsandbytes"):
        build_optimizer(params, 1e-4, eight_bit=True, device=torch.device("cuda"))
    plain = build_optimizer(params, 1e-4)
    assert isinstance(plain, torch.optim.AdamW) and plain.defaults["fused"]
