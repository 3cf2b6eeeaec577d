"""UNet3DConditionModel on CPU: training step in fp32/bf16, checkpointing, loading rules, call forms."""

import logging
import math

import pytest
import torch

from latentsync.errors import CheckpointError
from latentsync.models.checkpoint import load_checkpoint, save_checkpoint
from latentsync.models.unet import UNet3DConditionModel

BATCH, FRAMES, SIZE, AUDIO_TOKENS, AUDIO_DIM = 2, 3, 8, 5, 16


def tiny_config(**overrides) -> dict:
    """The stage2 structure at toy width: 32 channels (motion-module GroupNorms need 32 groups)."""
    config = dict(
        in_channels=13,
        out_channels=4,
        block_out_channels=[32, 32, 32, 32],
        layers_per_block=1,
        norm_num_groups=8,
        attention_head_dim=4,
        cross_attention_dim=AUDIO_DIM,
        add_audio_layer=True,
        use_motion_module=True,
        motion_module_resolutions=[1, 8],
        motion_module_type="Vanilla",
        motion_module_kwargs=dict(num_attention_heads=8, num_transformer_block=1),
    )
    config.update(overrides)
    return config


def randomise(model: torch.nn.Module) -> torch.nn.Module:
    """Non-zero weights everywhere (fresh conv_in/conv_out/motion proj_out are zero and would hide bugs)."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim > 1:
                param.normal_(std=1 / math.sqrt(param[0].numel()))
            elif "norm" in name and name.endswith("weight"):
                param.normal_(mean=1.0, std=0.1)
            else:
                param.normal_(std=0.1)
    return model


def inputs(dtype=torch.float32, size=SIZE):
    sample = torch.randn(BATCH, 13, FRAMES, size, size, dtype=dtype)
    audio = torch.randn(BATCH * FRAMES, AUDIO_TOKENS, AUDIO_DIM, dtype=dtype)
    return sample, torch.tensor([10, 700]), audio


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_forward_backward(dtype):
    model = randomise(UNet3DConditionModel.from_config(tiny_config())).to(dtype).train()
    sample, timesteps, audio = inputs(dtype)
    out = model(sample, timesteps, encoder_hidden_states=audio).sample
    assert out.shape == (BATCH, 4, FRAMES, SIZE, SIZE) and out.dtype == dtype
    out.float().square().mean().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.dtype == dtype, name
        assert torch.isfinite(param.grad).all(), name
    assert model.conv_in.weight.grad.abs().sum() > 0
    assert model.down_blocks[0].motion_modules[0].temporal_transformer.proj_in.weight.grad.abs().sum() > 0


def test_gradient_checkpointing_gives_the_same_gradients():
    model = randomise(UNet3DConditionModel.from_config(tiny_config())).train()
    sample, timesteps, audio = inputs()

    def gradients():
        model.zero_grad()
        model(sample, timesteps, encoder_hidden_states=audio).sample.square().mean().backward()
        return {name: param.grad.clone() for name, param in model.named_parameters()}

    plain = gradients()
    calls = []

    def counting_checkpoint(module, *args):
        calls.append(type(module).__name__)
        return torch.utils.checkpoint.checkpoint(module, *args, use_reentrant=False)

    model.enable_gradient_checkpointing(counting_checkpoint)
    checkpointed = gradients()
    assert {"ResnetBlock3D", "Transformer3DModel", "VanillaTemporalModule"} <= set(calls)
    for name, grad in plain.items():
        assert torch.allclose(checkpointed[name], grad, rtol=1e-5, atol=1e-7), name


def test_fresh_model_outputs_zero_and_return_dict_false_gives_a_tuple():
    model = UNet3DConditionModel.from_config(tiny_config()).eval()
    sample, timesteps, audio = inputs()
    with torch.no_grad():
        (out,) = model(sample, timesteps, encoder_hidden_states=audio, return_dict=False)
    assert out.shape == (BATCH, 4, FRAMES, SIZE, SIZE) and not out.any()


def test_timestep_forms_and_audio_layouts_agree():
    model = randomise(UNet3DConditionModel.from_config(tiny_config())).eval()
    sample, _, audio = inputs()
    with torch.no_grad():
        reference = model(sample, torch.tensor([500, 500]), audio).sample
        for timestep in (500, 500.0, torch.tensor(500), torch.tensor([500])):
            assert torch.allclose(model(sample, timestep, audio).sample, reference, rtol=0, atol=1e-6), timestep
        audio_4d = audio.reshape(BATCH, FRAMES, AUDIO_TOKENS, AUDIO_DIM)
        assert torch.allclose(model(sample, 500, audio_4d).sample, reference, rtol=0, atol=1e-6)
        # Per-clip timesteps really are per clip: clip 1 changes, clip 0 does not.
        mixed = model(sample, torch.tensor([500, 20]), audio).sample
        assert torch.allclose(mixed[0], reference[0], rtol=0, atol=1e-6)
        assert not torch.allclose(mixed[1], reference[1], atol=1e-3)
        with pytest.raises(ValueError, match="timestep"):
            model(sample, torch.tensor([1, 2, 3]), audio)
        with pytest.raises(ValueError, match="encoder_hidden_states"):
            model(sample, 500, audio[:FRAMES])


def test_sizes_that_are_not_multiples_of_eight():
    model = randomise(UNet3DConditionModel.from_config(tiny_config())).eval()
    sample, timesteps, audio = inputs(size=10)  # 10 -> 5 -> 3 -> 2 and back
    with torch.no_grad():
        out = model(sample, timesteps, audio).sample
    assert out.shape == (BATCH, 4, FRAMES, 10, 10) and torch.isfinite(out).all()


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    source = randomise(UNet3DConditionModel.from_config(tiny_config())).eval()
    save_checkpoint(tmp_path / "unet.pt", source, global_step=7)
    loaded = UNet3DConditionModel.from_checkpoint(tiny_config(), tmp_path / "unet.pt").eval()
    sample, timesteps, audio = inputs()
    with torch.no_grad():
        assert torch.equal(loaded(sample, timesteps, audio).sample, source(sample, timesteps, audio).sample)
    assert load_checkpoint(UNet3DConditionModel.from_config(tiny_config()), tmp_path / "unet.pt") == 7
    bf16 = UNet3DConditionModel.from_checkpoint(tiny_config(), tmp_path / "unet.pt", dtype=torch.bfloat16)
    assert bf16.dtype == torch.bfloat16
    assert torch.equal(bf16.conv_in.weight, source.conv_in.weight.to(torch.bfloat16))


def test_renamed_key_is_named(tmp_path):
    state_dict = randomise(UNet3DConditionModel.from_config(tiny_config())).state_dict()
    key = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"
    state_dict[key.replace("to_k", "to_key")] = state_dict.pop(key)
    torch.save({"state_dict": state_dict, "global_step": 1}, tmp_path / "renamed.pt")
    with pytest.raises(CheckpointError) as info:
        UNet3DConditionModel.from_checkpoint(tiny_config(), tmp_path / "renamed.pt")
    assert f"missing keys: {key}" in str(info.value)
    assert "to_key.weight" in str(info.value)


def test_misshaped_tensor_is_named_with_both_shapes(tmp_path):
    state_dict = UNet3DConditionModel.from_config(tiny_config()).state_dict()
    key = "mid_block.resnets.1.conv1.weight"
    state_dict[key] = torch.zeros(32, 16, 3, 3)
    torch.save({"state_dict": state_dict}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=rf"{key} \(checkpoint \(32, 16, 3, 3\), model \(32, 32, 3, 3\)\)"):
        UNet3DConditionModel.from_checkpoint(tiny_config(), tmp_path / "bad.pt")


def test_stage1_checkpoint_into_stage2_only_when_asked(tmp_path):
    stage1 = randomise(UNet3DConditionModel.from_config(tiny_config(use_motion_module=False))).eval()
    save_checkpoint(tmp_path / "stage1.pt", stage1, global_step=3)

    with pytest.raises(CheckpointError, match="missing keys: down_blocks.0.motion_modules.0"):
        UNet3DConditionModel.from_checkpoint(tiny_config(), tmp_path / "stage1.pt")

    torch.manual_seed(5)
    fresh = UNet3DConditionModel.from_config(tiny_config())
    torch.manual_seed(5)
    stage2 = UNet3DConditionModel.from_checkpoint(
        tiny_config(), tmp_path / "stage1.pt", allow_new_motion_modules=True
    ).eval()
    loaded, fresh_weights = stage2.state_dict(), fresh.state_dict()
    motion_keys = [key for key in loaded if ".motion_modules." in key]
    assert motion_keys
    for key, value in loaded.items():
        expected = fresh_weights[key] if key in motion_keys else stage1.state_dict()[key]
        assert torch.equal(value, expected), key
    # Zero-initialised motion modules are identities: stage2 starts exactly where stage1 ended.
    sample, timesteps, audio = inputs()
    with torch.no_grad():
        assert torch.allclose(stage2(sample, timesteps, audio).sample, stage1(sample, timesteps, audio).sample,
                              rtol=0, atol=1e-6)


def test_stable_diffusion_init_skips_only_the_reshaped_keys(caplog):
    # A stand-in for an SD UNet: 4 input channels, text-width (24) cross-attention, no motion modules.
    sd_like = randomise(
        UNet3DConditionModel.from_config(tiny_config(in_channels=4, cross_attention_dim=24, use_motion_module=False))
    ).state_dict()
    model = UNet3DConditionModel.from_config(tiny_config())
    fresh = {key: value.clone() for key, value in model.state_dict().items()}

    with caplog.at_level(logging.INFO, logger="latentsync.models.checkpoint"):
        model.init_from_stable_diffusion(sd_like, source="fake SD")
    assert "fake SD" in caplog.text and "conv_in.weight" in caplog.text

    reshaped = {key for key in sd_like if sd_like[key].shape != fresh[key].shape}
    assert reshaped and all(
        key.startswith("conv_in.") or ".attn2.to_k." in key or ".attn2.to_v." in key for key in reshaped
    )
    for key, value in model.state_dict().items():
        if key in reshaped or ".motion_modules." in key:
            assert torch.equal(value, fresh[key]), key  # kept fresh (conv_in stays zero)
        else:
            assert torch.equal(value, sd_like[key]), key
    assert not model.conv_in.weight.any()

    # Any other mismatch is still an error.
    sd_like["up_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight"] = torch.zeros(32, 8)
    with pytest.raises(CheckpointError, match=r"attn1\.to_q\.weight \(checkpoint \(32, 8\)"):
        model.init_from_stable_diffusion(sd_like)


def test_from_config_file_reads_the_model_section():
    with torch.device("meta"):
        model = UNet3DConditionModel.from_config_file("configs/unet/stage2_efficient.yaml")
    assert model.config.motion_module_decoder_only and model.config.cross_attention_dim == 384
    assert not any(".motion_modules." in key for key in model.state_dict() if key.startswith("down_blocks."))
