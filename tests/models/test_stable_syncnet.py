"""StableSyncNet building blocks, config validation, dtypes and strict checkpoint loading (tiny sizes)."""

import copy

import pytest
import torch
import torch.nn.functional as F

from latentsync.errors import CheckpointError, ConfigError
from latentsync.models.checkpoint import save_checkpoint
from latentsync.models.stable_syncnet import DownsampleResnetBlock, StableSyncNet
from tests.conftest import load_golden


@pytest.fixture(scope="module")
def golden():
    return load_golden("syncnet_tiny.pt")


def _tiny(golden) -> StableSyncNet:
    model = StableSyncNet(golden["config"])
    model.load_state_dict(golden["state_dict"])
    return model


@pytest.mark.parametrize(
    "factor, pad, in_hw, out_hw",
    [
        ((2, 2), (0, 1, 0, 1), (8, 12), (4, 6)),
        ((1, 2), (0, 1, 1, 1), (8, 12), (8, 6)),
        ((2, 1), (1, 1, 0, 1), (8, 12), (4, 12)),
        ((2, 3), (0, 1, 0, 1), (5, 13), (2, 4)),
    ],
)
def test_downsample_padding_and_size(factor, pad, in_hw, out_hw):
    block = DownsampleResnetBlock(32, 32, factor)
    assert block.pad == pad  # (left, right, top, bottom)
    assert block.downsample_conv.stride == factor and block.downsample_conv.padding == (0, 0)
    out = block(torch.randn(1, 32, *in_hw))
    assert tuple(out.shape[-2:]) == out_hw


def test_downsample_pads_bottom_right_with_zeros():
    block = DownsampleResnetBlock(32, 32, (2, 2))
    with torch.no_grad():
        for conv in (block.conv1, block.conv2):
            conv.weight.zero_()
            conv.bias.zero_()
        block.downsample_conv.weight.zero_()
        block.downsample_conv.bias.zero_()
        block.downsample_conv.weight[:, :, 0, 0] = torch.eye(32)  # output (i, j) reads padded input (2i, 2j)
        block.downsample_conv.weight[:, :, 2, 2] = torch.eye(32)  # ... plus (2i+2, 2j+2)
    x = torch.randn(1, 32, 4, 4)
    out = block(x)
    # Bottom-right corner output reads x[2, 2] and the zero padding at (4, 4).
    torch.testing.assert_close(out[0, :, 1, 1], x[0, :, 2, 2])
    torch.testing.assert_close(out[0, :, 0, 0], x[0, :, 0, 0] + x[0, :, 2, 2])


def test_factor_one_has_no_downsample_conv():
    assert DownsampleResnetBlock(32, 64, (1, 1)).downsample_conv is None
    block = DownsampleResnetBlock(32, 32, (1, 1))
    assert block.conv_shortcut is None and block.downsample_conv is None


def test_attention_blocks_are_interleaved_in_down_blocks(golden):
    model = StableSyncNet(golden["config"])
    kinds = [type(b).__name__ for b in model.visual_encoder.down_blocks]
    assert kinds == ["DownsampleResnetBlock"] * 5 + ["AttentionBlock2D", "DownsampleResnetBlock", "AttentionBlock2D"]


def test_missing_attn_blocks_means_none(golden):
    config = copy.deepcopy(golden["config"])
    del config["visual_encoder"]["attn_blocks"]
    model = StableSyncNet(config)
    assert len(model.visual_encoder.down_blocks) == len(config["visual_encoder"]["block_out_channels"])


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["audio_encoder"].update(attn_blocks=[0, 0]), "attn_blocks has 2 entries"),
        (lambda c: c["visual_encoder"].update(downsample_factors=[2, 2]), "downsample_factors has 2 entries"),
        (lambda c: c["visual_encoder"].update(layers_per_block=2), "layers_per_block"),
        (lambda c: c["visual_encoder"].pop("in_channels"), "in_channels"),
        (lambda c: c["audio_encoder"].update(block_out_channels=[48] * 7), "multiples of 32"),
        (lambda c: c["audio_encoder"].update(downsample_factors=[[2, 1, 1]] * 7), "height, width"),
        (lambda c: c.pop("audio_encoder"), "audio_encoder"),
    ],
)
def test_bad_config_raises_config_error(golden, edit, message):
    config = copy.deepcopy(golden["config"])
    edit(config)
    with pytest.raises(ConfigError, match=message):
        StableSyncNet(config)


def test_constructor_leaves_training_mode(golden):
    assert StableSyncNet(golden["config"]).training


def test_embeddings_are_unit_and_non_negative(golden):
    model = _tiny(golden).eval()
    with torch.no_grad():
        vision, audio = model(torch.rand(3, 48, 32, 64) * 2 - 1, torch.randn(3, 1, 80, 52))
    assert vision.shape == audio.shape == (3, 64)
    torch.testing.assert_close(vision.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(audio.norm(dim=1), torch.ones(3))
    assert (vision >= 0).all() and (audio >= 0).all()


def test_batch_items_are_independent(golden):
    model = _tiny(golden).eval()
    images, mels = golden["inputs"]["image_sequences"], golden["inputs"]["audio_sequences"]
    with torch.no_grad():
        vision, audio = model(torch.cat([images, torch.randn_like(images)]), torch.cat([mels, torch.randn_like(mels)]))
    torch.testing.assert_close(vision[:1], golden["outputs"]["vision_embeds"], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(audio[:1], golden["outputs"]["audio_embeds"], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dtype, atol", [(torch.bfloat16, 3e-2), (torch.float16, 5e-3)])
def test_half_precision_follows_weights(golden, dtype, atol):
    model = _tiny(golden).eval().to(dtype)
    images, mels = golden["inputs"]["image_sequences"], golden["inputs"]["audio_sequences"]
    with torch.no_grad():
        vision, audio = model(images, mels)  # float32 inputs are cast to the weights' dtype
    assert vision.dtype == audio.dtype == dtype
    similarity = F.cosine_similarity(vision.float(), audio.float())
    torch.testing.assert_close(similarity, golden["outputs"]["cosine_similarity"], rtol=0, atol=atol)


def test_gradient_checkpointing_gives_the_same_gradients(golden):
    images = golden["inputs"]["image_sequences"]
    grads = []
    for enabled in (False, True):
        model = _tiny(golden).eval()
        model.set_gradient_checkpointing(enabled)
        x = images.clone().requires_grad_(True)
        vision, audio = model(x, golden["inputs"]["audio_sequences"])
        (vision * audio).sum().backward()
        grads.append((x.grad, model.visual_encoder.conv_in.weight.grad))
    torch.testing.assert_close(grads[0], grads[1])


def test_from_checkpoint_loads_strictly_and_freezes(golden, tmp_path):
    ckpt = tmp_path / "syncnet.pt"
    save_checkpoint(ckpt, _tiny(golden), global_step=7)
    full_config = {"model": golden["config"], "ckpt": {"inference_ckpt_path": str(ckpt)}}

    model = StableSyncNet.from_checkpoint(full_config)  # path from ckpt.inference_ckpt_path
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        vision, _ = model(golden["inputs"]["image_sequences"], golden["inputs"]["audio_sequences"])
    torch.testing.assert_close(vision, golden["outputs"]["vision_embeds"], rtol=1e-4, atol=3e-8)

    bf16 = StableSyncNet.from_checkpoint(golden["config"], ckpt, dtype=torch.bfloat16)
    assert bf16.visual_encoder.conv_in.weight.dtype == torch.bfloat16


def test_from_checkpoint_names_a_renamed_key(golden, tmp_path):
    state_dict = dict(_tiny(golden).state_dict())
    old = "visual_encoder.down_blocks.5.attn.to_q.weight"
    state_dict["visual_encoder.down_blocks.5.attn.query.weight"] = state_dict.pop(old)
    ckpt = tmp_path / "renamed.pt"
    torch.save({"state_dict": state_dict, "global_step": 0}, ckpt)
    with pytest.raises(CheckpointError) as info:
        StableSyncNet.from_checkpoint(golden["config"], ckpt)
    assert old in str(info.value)
    assert "visual_encoder.down_blocks.5.attn.query.weight" in str(info.value)


def test_from_checkpoint_without_any_path_is_a_config_error(golden):
    with pytest.raises(ConfigError, match="inference_ckpt_path"):
        StableSyncNet.from_checkpoint({"model": golden["config"], "ckpt": {"inference_ckpt_path": ""}})
