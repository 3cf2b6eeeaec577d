"""Wav2LipSyncNet: fixed architecture, nominal input sizes reach 1x1 and give unit embeddings."""

import pytest
import torch

from latentsync.models.wav2lip_syncnet import Wav2LipSyncNet


def test_unknown_activation_is_rejected():
    with pytest.raises(ValueError, match="gelu"):
        Wav2LipSyncNet(act_fn="gelu")


@pytest.mark.parametrize("act_fn", ["leaky", "relu", "silu", "tanh"])
def test_last_units_use_relu_whatever_the_activation(act_fn):
    with torch.device("meta"):
        model = Wav2LipSyncNet(act_fn=act_fn)
    for encoder, n_relu in ((model.visual_encoder, 3), (model.audio_encoder, 2)):
        names = [type(unit.act_fn).__name__ for unit in encoder]
        assert names[-n_relu:] == ["ReLU"] * n_relu
        expected = {"leaky": "LeakyReLU", "relu": "ReLU", "silu": "SiLU", "tanh": "Tanh"}[act_fn]
        assert set(names[:-n_relu]) == {expected}


def test_nominal_inputs_reach_one_by_one_on_meta():
    with torch.device("meta"):
        model = Wav2LipSyncNet()
        assert tuple(model.visual_encoder(torch.empty(2, 15, 128, 256)).shape) == (2, 1024, 1, 1)
        assert tuple(model.audio_encoder(torch.empty(2, 1, 80, 16)).shape) == (2, 1024, 1, 1)


def test_forward_gives_unit_non_negative_embeddings():
    # 65M parameters (260 MB fp32); one eval-mode forward on CPU takes about a second.
    model = Wav2LipSyncNet().eval()
    with torch.no_grad():
        vision, audio = model(torch.rand(1, 15, 128, 256) * 2 - 1, torch.randn(1, 1, 80, 16))
    assert vision.shape == audio.shape == (1, 1024)
    torch.testing.assert_close(vision.norm(dim=1), torch.ones(1))
    torch.testing.assert_close(audio.norm(dim=1), torch.ones(1))
    assert (vision >= 0).all() and (audio >= 0).all()
    assert (vision > 0).sum() > 10  # not collapsed to a single active unit
