"""cosine_loss equals torch's BCELoss on the cosine similarity, per sample, and is robust to precision."""

import pytest
import torch
import torch.nn.functional as F

from latentsync.errors import CheckpointError
from latentsync.losses import cosine_loss, noise_prediction_loss, perceptual_loss


def test_matches_bce_of_cosine_similarity():
    vision, audio = torch.rand(6, 32), torch.rand(6, 32)
    y = torch.tensor([[1.0], [0.0], [1.0], [0.0], [1.0], [0.0]])
    similarity = F.cosine_similarity(vision, audio)
    expected = torch.nn.BCELoss(reduction="none")(similarity[:, None], y)[:, 0]
    loss = cosine_loss(vision, audio, y)
    assert loss.shape == (6,)
    torch.testing.assert_close(loss, expected)
    # By hand for one item: -log(s) for y=1, -log(1-s) for y=0.
    assert loss[0].item() == pytest.approx(-torch.log(similarity[0]).item(), rel=1e-6)
    assert loss[1].item() == pytest.approx(-torch.log1p(-similarity[1]).item(), rel=1e-6)


def test_label_may_be_flat_and_batch_of_one_keeps_its_dim():
    vision, audio = torch.rand(1, 8), torch.rand(1, 8)
    flat = cosine_loss(vision, audio, torch.ones(1))
    assert flat.shape == (1,)
    torch.testing.assert_close(flat, cosine_loss(vision, audio, torch.ones(1, 1)))


def test_log_is_clamped_at_minus_100():
    vision = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    audio = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # similarity 0, then 1
    torch.testing.assert_close(cosine_loss(vision, audio, torch.ones(2, 1)), torch.tensor([100.0, 0.0]))
    torch.testing.assert_close(cosine_loss(vision, audio, torch.zeros(2, 1)), torch.tensor([0.0, 100.0]))


def test_similarity_rounding_above_one_is_not_an_error():
    # Scaled copies have similarity 1 mathematically; float rounding can push it just past 1.
    vision = torch.rand(64, 37) + 1e-3
    audio = vision * torch.rand(64, 1) * 7
    loss = cosine_loss(vision, audio, torch.ones(64, 1))
    assert torch.isfinite(loss).all() and loss.max() < 1e-5


def test_gradient_pushes_similarity_towards_the_label():
    vision = torch.rand(4, 16, requires_grad=True)
    audio = torch.rand(4, 16)
    before = F.cosine_similarity(vision, audio).detach()
    cosine_loss(vision, audio, torch.ones(4, 1)).mean().backward()
    with torch.no_grad():
        after = F.cosine_similarity(vision - 0.1 * vision.grad, audio)
    assert (after > before).all()


def test_half_precision_inputs_and_autocast():
    vision, audio = torch.rand(3, 16), torch.rand(3, 16)
    y = torch.ones(3, 1)
    reference = cosine_loss(vision, audio, y)
    half = cosine_loss(vision.half(), audio.bfloat16(), y.half())
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, reference, rtol=0, atol=2e-2)
    # On CUDA, torch's own BCE raises inside autocast; cosine_loss must not.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = cosine_loss(vision, audio, y)
    torch.testing.assert_close(inside, reference)


# --- U-Net training losses ---------------------------------------------------


def test_perfect_noise_prediction_gives_zero_recon_loss():
    noise = torch.randn(3, 4, 16, 8, 8)
    assert torch.equal(noise_prediction_loss(noise, noise.clone()), torch.zeros(3))
    off = noise.clone()
    off[1] += 0.5  # only sample 1 is wrong, by 0.5 everywhere
    torch.testing.assert_close(noise_prediction_loss(off, noise), torch.tensor([0.0, 0.25, 0.0]))
    assert noise_prediction_loss(off.half(), noise).dtype == torch.float32
    torch.testing.assert_close(noise_prediction_loss(off, noise).mean(), F.mse_loss(off, noise))


def test_lpips_with_random_trunk_is_logged_loudly_zero_for_identical_frames_lower_half_only(tmp_path, caplog):
    from latentsync.models.perceptual import load_lpips_vgg

    with pytest.raises(CheckpointError, match="setup_env.sh --with-training"):
        load_lpips_vgg(tmp_path / "vgg16-397923af.pth")
    with pytest.raises(CheckpointError, match="vgg16-397923af.pth not found|not found: .*vgg16"):
        load_lpips_vgg(tmp_path / "vgg16-397923af.pth", allow_random_init=True)  # set but missing: always an error
    with caplog.at_level("WARNING"):
        model = load_lpips_vgg("", allow_random_init=True)
    assert "RANDOMLY INITIALISED" in caplog.text
    assert not model.training and not any(p.requires_grad for p in model.parameters())

    frames = torch.rand(4, 3, 64, 64) * 2 - 1
    assert torch.equal(perceptual_loss(model, frames, frames.clone()), torch.zeros(4))
    upper_changed = frames.clone()
    upper_changed[:, :, :32] = -upper_changed[:, :, :32]
    assert torch.equal(perceptual_loss(model, upper_changed, frames), torch.zeros(4))
    lower_changed = frames.clone()
    lower_changed[2, :, 40:] = 1.0
    loss = perceptual_loss(model, lower_changed, frames)
    assert loss.shape == (4,) and loss[2] > 1e-4 and loss[[0, 1, 3]].abs().max() == 0


def test_lpips_trunk_loads_a_torchvision_vgg16_file(tmp_path):
    from latentsync.models.perceptual import load_lpips_vgg

    # The 13 convolutions of torchvision's vgg16().features, by layer index, plus a classifier entry to drop.
    convs = {0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128), 10: (256, 128), 12: (256, 256), 14: (256, 256),
             17: (512, 256), 19: (512, 512), 21: (512, 512), 24: (512, 512), 26: (512, 512), 28: (512, 512)}
    state_dict = {"classifier.6.bias": torch.zeros(1000)}
    for index, (out_ch, in_ch) in convs.items():
        state_dict[f"features.{index}.weight"] = torch.randn(out_ch, in_ch, 3, 3)
        state_dict[f"features.{index}.bias"] = torch.randn(out_ch)
    path = tmp_path / "vgg16-397923af.pth"
    torch.save(state_dict, path)
    model = load_lpips_vgg(path)
    torch.testing.assert_close(getattr(model.net.slice3, "10").weight, state_dict["features.10.weight"])
    torch.testing.assert_close(getattr(model.net.slice5, "28").bias, state_dict["features.28.bias"])
    # The same network as the package builds itself (calibration layers, input scaling), given this trunk.
    import warnings

    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        reference = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False)
    reference.net.load_state_dict(model.net.state_dict())
    assert reference.state_dict().keys() == model.state_dict().keys()
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    a, b = torch.rand(2, 3, 32, 64) * 2 - 1, torch.rand(2, 3, 32, 64) * 2 - 1
    assert torch.equal(model(a, b), reference(a, b).detach())
    del state_dict["features.28.bias"]
    torch.save(state_dict, path)
    with pytest.raises(CheckpointError, match="slice5.28.bias"):
        load_lpips_vgg(path)
