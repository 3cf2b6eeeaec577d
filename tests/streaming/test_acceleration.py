"""The accelerated UNet's fallback (the CUDA paths run in tools/gpu_check.py's stream part): the plain UNet where
compiling does not apply, and the plain UNet's output when a compiled one fails."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from latentsync.streaming.acceleration import FallbackUNet, accelerated_unet


class Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(3.0))

    def forward(self, x: torch.Tensor, *, deep_cache=None) -> torch.Tensor:
        return self.weight * x


@pytest.mark.parametrize("acceleration", ["none", "compile", "cudagraphs"])
def test_on_the_cpu_the_session_runs_the_unet_itself(acceleration, caplog):
    unet = Scale()
    caplog.set_level(logging.INFO)
    assert accelerated_unet(unet, acceleration) is unet
    if acceleration != "none":
        assert f"acceleration {acceleration} needs CUDA" in caplog.text


def test_a_compiled_unet_that_fails_falls_back_to_the_plain_one_for_good(caplog):
    unet, calls = Scale(), []

    def broken(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("no compiler for this kernel")

    wrapped = FallbackUNet(broken, unet, "compile")
    x = torch.arange(4.0)
    with caplog.at_level(logging.WARNING):
        torch.testing.assert_close(wrapped(x, deep_cache=None), 3 * x)
        torch.testing.assert_close(wrapped(x + 1), 3 * (x + 1))
    assert len(calls) == 1  # tried once, then the plain UNet only
    assert "compile UNet failed (RuntimeError: no compiler for this kernel); running it eagerly" in caplog.text
    assert isinstance(wrapped.failed, RuntimeError)


def test_a_working_compiled_unet_is_used():
    unet = Scale()
    wrapped = FallbackUNet(lambda x: 2 * x, unet, "compile")
    torch.testing.assert_close(wrapped(torch.ones(2)), torch.full((2,), 2.0))
    assert wrapped.failed is None


def test_an_unknown_acceleration_is_refused():
    with pytest.raises(ValueError, match="unknown acceleration 'turbo'"):
        accelerated_unet(Scale(), "turbo")
