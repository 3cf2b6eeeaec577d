"""cosine_loss equals torch's BCELoss on the cosine similarity, per sample, and is robust to precision."""

import pytest
import torch
import torch.nn.functional as F

from latentsync.losses import cosine_loss


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
