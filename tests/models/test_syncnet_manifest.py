"""SyncNet configs and the Wav2Lip SyncNet build exactly the official key/shape lists (on the meta device)."""

import pytest
import torch

from latentsync.config import load_config
from latentsync.models.stable_syncnet import StableSyncNet
from latentsync.models.wav2lip_syncnet import Wav2LipSyncNet

SYNCNET_CONFIGS = [
    "configs/syncnet/syncnet_16_latent.yaml",
    "configs/syncnet/syncnet_16_pixel.yaml",
    "configs/syncnet/syncnet_16_pixel_attn.yaml",
]
WAV2LIP_ENTRY = "latentsync/models/wav2lip_syncnet.py:Wav2LipSyncNet()"


def _assert_matches(model: torch.nn.Module, entry: dict) -> None:
    actual = [[key, list(value.shape)] for key, value in model.state_dict().items()]
    assert actual == entry["state_dict"]  # same keys, same order, same shapes
    assert len(actual) == entry["num_state_dict_tensors"]
    assert sum(p.numel() for p in model.parameters()) == entry["num_parameters"]
    assert [name for name, _ in model.named_buffers()] == entry["buffers"]


@pytest.mark.parametrize("config_path", SYNCNET_CONFIGS)
def test_stable_syncnet_matches_manifest(config_path, manifests):
    with torch.device("meta"):
        model = StableSyncNet.from_config_file(config_path)
    _assert_matches(model, manifests[config_path])


def test_dict_config_and_plain_dict_build_the_same_model(manifests):
    config = load_config("configs/syncnet/syncnet_16_pixel_attn.yaml").model  # read-only DictConfig
    with torch.device("meta"):
        model = StableSyncNet(config)
    _assert_matches(model, manifests["configs/syncnet/syncnet_16_pixel_attn.yaml"])
    assert isinstance(model.config["visual_encoder"]["attn_blocks"], list)  # plain data, saveable


def test_wav2lip_syncnet_matches_manifest(manifests):
    with torch.device("meta"):
        model = Wav2LipSyncNet()
    _assert_matches(model, manifests[WAV2LIP_ENTRY])
    assert manifests[WAV2LIP_ENTRY]["num_parameters"] == 65_215_360


def test_syncnet_25_pixel_builds_without_attention(manifests):
    # Upstream cannot build this config (no attn_blocks); here that means no attention blocks.
    assert manifests["configs/syncnet/syncnet_25_pixel.yaml"].get("state_dict") is None
    config = load_config("configs/syncnet/syncnet_25_pixel.yaml")
    assert "attn_blocks" not in config.model.visual_encoder
    with torch.device("meta"):
        model = StableSyncNet(config.model)
    keys = list(model.state_dict())
    assert not any(".attn." in key for key in keys)
    assert len(model.visual_encoder.down_blocks) == 8 and len(model.audio_encoder.down_blocks) == 6
    assert model.visual_encoder.conv_in.weight.shape == (128, 75, 3, 3)
    assert model.audio_encoder.conv_in.weight.shape == (64, 1, 3, 3)

    frames = config.data.num_frames
    with torch.device("meta"):
        vision, audio = model(torch.empty(2, frames * 3, 128, 256), torch.empty(2, 1, 80, 80))
        vision_raw = model.visual_encoder(torch.empty(2, frames * 3, 128, 256))
        audio_raw = model.audio_encoder(torch.empty(2, 1, 80, 80))
    assert tuple(vision_raw.shape) == (2, 1024, 1, 1)
    assert tuple(audio_raw.shape) == (2, 1024, 1, 1)
    assert tuple(vision.shape) == tuple(audio.shape) == (2, 1024)


@pytest.mark.parametrize(
    "config_path, image_shape, mel_frames, width",
    [
        ("configs/syncnet/syncnet_16_latent.yaml", (64, 32, 32), 52, 1024),
        ("configs/syncnet/syncnet_16_pixel.yaml", (48, 128, 256), 52, 2048),
        ("configs/syncnet/syncnet_16_pixel_attn.yaml", (48, 128, 256), 52, 2048),
    ],
)
def test_official_inputs_reach_one_by_one(config_path, image_shape, mel_frames, width):
    with torch.device("meta"):
        model = StableSyncNet.from_config_file(config_path)
        vision_raw = model.visual_encoder(torch.empty(1, *image_shape))
        audio_raw = model.audio_encoder(torch.empty(1, 1, 80, mel_frames))
    assert tuple(vision_raw.shape) == tuple(audio_raw.shape) == (1, width, 1, 1)
