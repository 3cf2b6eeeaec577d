"""VideoMAE-v2 reproduces the upstream tiny golden vectors and builds ViT-g with the official key layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from latentsync.errors import CheckpointError
from latentsync.trepa.loss import normalized_features, trepa_loss, videomae_input
from latentsync.trepa.videomae import (
    VideoMAEDimensions,
    VideoMAEv2,
    load_videomae,
    random_videomae,
    sinusoid_position_table,
)
from tests.conftest import load_golden

TREPA_MANIFEST = "trepa:VideoMAEv2 vit_giant_patch14_224"


@pytest.fixture(scope="module")
def golden() -> dict:
    return load_golden("videomae_tiny.pt")


def golden_dims(config: dict) -> VideoMAEDimensions:
    # The reference's norm_layer factory carries the eps; drop_path/mean-pooling/with_cp have no weights.
    kwargs = {key: value for key, value in config.items() if key in VideoMAEDimensions.field_names()}
    return VideoMAEDimensions(norm_eps=config["norm_layer_eps"], **kwargs)


@pytest.fixture(scope="module")
def tiny(golden) -> VideoMAEv2:
    model = VideoMAEv2(golden_dims(golden["config"]))
    model.load_state_dict(golden["state_dict"], strict=True)
    return model.eval()


def close(actual: torch.Tensor, golden: dict, name: str) -> None:
    expected = golden["outputs"][name]
    torch.testing.assert_close(actual, expected, rtol=golden["rtol"], atol=golden["atol_per_output"][name])


def test_golden_keys_and_parameter_count(golden, tiny):
    assert [[k, list(v.shape)] for k, v in tiny.state_dict().items()] == golden["state_dict_keys"]
    assert sum(p.numel() for p in tiny.parameters()) == golden["num_parameters"] == 42_804


def test_position_table_rows(golden, tiny):
    rows = tiny.position_table[[0, 1, 2, 2047]]
    torch.testing.assert_close(rows, golden["pos_embed_rows_0_1_2_2047"], rtol=0, atol=1e-7)


def test_golden_features_and_loss(golden, tiny):
    clip_a, clip_b = golden["inputs"]["clip_a"], golden["inputs"]["clip_b"]
    with torch.no_grad():
        close(tiny.forward_features(videomae_input(clip_a, 224)), golden, "features_a")
        close(tiny.forward_features(videomae_input(clip_b, 224)), golden, "features_b")
        close(normalized_features(tiny, clip_a), golden, "features_a_normalized")
        close(normalized_features(tiny, clip_b), golden, "features_b_normalized")
        loss = trepa_loss(tiny, clip_a, clip_b)
    assert loss.shape == (2,)
    close(loss.mean(), golden, "trepa_loss")


def test_identical_videos_give_zero_and_different_ones_do_not(tiny):
    video = torch.rand(2, 3, 16, 32, 32) * 2 - 1
    assert trepa_loss(tiny, video, video.clone()).abs().max().item() == 0.0
    assert (trepa_loss(tiny, video, video.flip(2)) > 1e-6).all()  # same frames, reversed in time


def test_gradient_reaches_the_generated_video_only_and_checkpointing_agrees(golden, tiny):
    clip_a, clip_b = golden["inputs"]["clip_a"], golden["inputs"]["clip_b"]
    grads = []
    for checkpointed in (False, True):
        tiny.gradient_checkpointing = checkpointed
        generated, real = clip_a.clone().requires_grad_(True), clip_b.clone().requires_grad_(True)
        trepa_loss(tiny, generated, real).mean().backward()
        assert real.grad is None and generated.grad.abs().sum() > 0
        grads.append(generated.grad)
    tiny.gradient_checkpointing = False
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-9)
    assert not any(p.requires_grad for p in random_videomae(golden_dims(golden["config"])).parameters())


def test_other_frame_counts_resample_the_table_in_time(tiny):
    table = tiny.positions_for(8)
    assert table.shape == (4 * 16 * 16, 22)
    torch.testing.assert_close(tiny.positions_for(16), tiny.position_table)
    # The spatial layout is untouched: the first token-frame keeps its rows up to interpolation weights.
    assert tiny.forward_features(torch.rand(1, 3, 8, 224, 224)).shape == (1, 22)


def test_vit_giant_matches_the_official_manifest(manifests):
    entry = manifests[TREPA_MANIFEST]
    with torch.device("meta"):
        model = VideoMAEv2()
    assert [[k, list(v.shape)] for k, v in model.state_dict().items()] == entry["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == entry["num_parameters"] == 1_011_855_918
    assert model.position_table.shape == (2048, 1408) and model.position_table.device.type == "cpu"


def test_load_reads_the_official_wrapper_strictly(golden, tmp_path):
    dims = golden_dims(golden["config"])
    path = tmp_path / "vit.pth"
    torch.save({"model": golden["state_dict"], "epoch": 3}, path)
    model = load_videomae(path, dims)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    torch.testing.assert_close(model.head.weight, golden["state_dict"]["head.weight"].float())

    torch.save({"module": {k: v for k, v in golden["state_dict"].items() if k != "fc_norm.bias"}}, path)
    with pytest.raises(CheckpointError, match="missing keys: fc_norm.bias"):
        load_videomae(path, dims)
    with pytest.raises(CheckpointError, match="not found"):
        load_videomae(tmp_path / "absent.pth", dims)


def test_half_precision_model_returns_float32_features(tiny):
    half = VideoMAEv2(tiny.dims)
    half.load_state_dict(tiny.state_dict())
    half = half.to(torch.bfloat16).eval()
    video = torch.rand(1, 3, 16, 16, 16) * 2 - 1
    with torch.no_grad():
        features = normalized_features(half, video)
        reference = normalized_features(tiny, video)
    assert features.dtype == torch.float32
    torch.testing.assert_close(features, reference, atol=0.05, rtol=0)
    assert isinstance(half.blocks[0].mlp.act, nn.GELU)
