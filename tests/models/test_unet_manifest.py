"""Every UNet config builds exactly the official key/shape list (built on the meta device: no memory)."""

import pytest
import torch

from latentsync.models.unet import UNet3DConditionModel

UNET_CONFIGS = [
    "configs/unet/stage1.yaml",
    "configs/unet/stage1_512.yaml",
    "configs/unet/stage2.yaml",
    "configs/unet/stage2_512.yaml",
    "configs/unet/stage2_efficient.yaml",
]


@pytest.mark.parametrize("config_path", UNET_CONFIGS)
def test_state_dict_matches_manifest(config_path, manifests):
    entry = manifests[config_path]
    with torch.device("meta"):
        model = UNet3DConditionModel.from_config_file(config_path)

    actual = [[key, list(value.shape)] for key, value in model.state_dict().items()]
    assert actual == entry["state_dict"]  # same keys, same order, same shapes
    assert len(actual) == entry["num_state_dict_tensors"]
    assert sum(p.numel() for p in model.parameters()) == entry["num_parameters"]
    assert [name for name, _ in model.named_buffers()] == entry["buffers"]


def test_motion_modules_are_the_stage_difference(manifests):
    stage1 = {key for key, _ in manifests["configs/unet/stage1.yaml"]["state_dict"]}
    with torch.device("meta"):
        stage2 = UNet3DConditionModel.from_config_file("configs/unet/stage2.yaml")
    extra = set(stage2.state_dict()) - stage1
    assert extra and all(".motion_modules." in key for key in extra)
    assert stage1 <= set(stage2.state_dict())
