"""The UNet reproduces upstream's outputs and intermediate activations (tests/fixtures/golden)."""

import pytest
import torch

from latentsync.models.unet import UNet3DConditionModel
from tests.conftest import load_golden

GOLDEN_FILES = ["unet_tiny_motion.pt", "unet_tiny_stage1.pt"]


def _capture_intermediates(model: UNet3DConditionModel, store: dict) -> list:
    """Forward hooks recording what the golden notes list under ``intermediate.*``."""

    def keep(name, pick=lambda output: output):
        return lambda module, args, output: store.__setitem__(f"intermediate.{name}", pick(output))

    hooks = [
        model.time_proj.register_forward_hook(keep("time_proj")),
        model.time_embedding.register_forward_hook(keep("time_embedding")),
        model.mid_block.register_forward_hook(keep("mid_block")),
        model.up_blocks[0].register_forward_hook(keep("up_blocks.0")),
    ]
    for i in (1, 2, 3):  # down blocks return (hidden, skips): keep the hidden state
        hooks.append(model.down_blocks[i].register_forward_hook(keep(f"down_blocks.{i}", lambda out: out[0])))
    return hooks


@pytest.mark.parametrize("name", GOLDEN_FILES)
def test_unet_matches_golden(name):
    golden = load_golden(name)
    model = UNet3DConditionModel.from_config(golden["config"])
    model.load_state_dict(golden["state_dict"], strict=True)
    model.eval()
    inputs, expected = golden["inputs"], golden["outputs"]
    sample, timestep, ehs = inputs["sample"], inputs["timestep"], inputs["encoder_hidden_states"]
    frames = sample.shape[2]

    actual = {}
    with torch.no_grad():
        hooks = _capture_intermediates(model, actual)
        actual["sample"] = model(sample, timestep, encoder_hidden_states=ehs).sample
        for hook in hooks:
            hook.remove()

        null_audio = ehs.clone()
        null_audio[:frames] = 0  # batch 0 of the CFG batch gets silent audio
        actual["sample_cfg_null_audio"] = model(sample, timestep, encoder_hidden_states=null_audio).sample

        ehs_4d = ehs.reshape(sample.shape[0], frames, *ehs.shape[1:])
        actual["sample_per_batch_timesteps_4d_ehs"] = model(
            sample, inputs["timesteps_per_batch"], encoder_hidden_states=ehs_4d
        ).sample

    assert set(actual) == set(expected)
    for key, want in expected.items():
        got = actual[key]
        assert got.shape == want.shape, key
        assert torch.allclose(got, want, rtol=golden["rtol"], atol=golden["atol_per_output"][key]), (
            f"{key}: max abs deviation {(got - want).abs().max().item():.3g}"
        )
    # The audio really conditions the output, and only batch 0 changed.
    assert not torch.allclose(actual["sample_cfg_null_audio"][0], actual["sample"][0], atol=1e-3)
    assert torch.allclose(actual["sample_cfg_null_audio"][1], actual["sample"][1], rtol=0, atol=1e-6)
