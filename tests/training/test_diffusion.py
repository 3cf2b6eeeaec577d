"""U-Net training numerics: noise priors, the x0 estimate against add_noise, audio dropout."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler

from latentsync.pipelines.guidance import with_null_audio
from latentsync.pipelines.latents import one_step_sampling
from latentsync.training.diffusion import audio_dropout_draw, drop_audio, mixed_noise_stds, training_noise


@pytest.fixture(scope="module")
def scheduler() -> DDIMScheduler:
    return DDIMScheduler.from_pretrained("configs")


def test_one_step_estimate_inverts_add_noise_at_every_timestep(scheduler):
    generator = torch.Generator().manual_seed(1)
    x0 = torch.randn(8, 4, 3, 5, 5, generator=generator, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
    timesteps = torch.tensor([0, 1, 100, 499, 500, 900, 998, 999])
    alphas = scheduler.alphas_cumprod.to(torch.float64)
    noisy = scheduler.add_noise(x0, noise, timesteps)
    torch.testing.assert_close(one_step_sampling(alphas, noisy, noise, timesteps), x0, rtol=1e-9, atol=1e-9)
    # A wrong noise estimate moves x0 by sqrt((1 - abar)/abar) times the error, largest at high t.
    wrong = one_step_sampling(alphas, noisy, noise + 0.01, timesteps)
    shift = (wrong - x0).flatten(1).mean(dim=1)
    expected = -0.01 * ((1 - alphas[timesteps]) / alphas[timesteps]).sqrt()
    torch.testing.assert_close(shift, expected, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("alpha", [1.0, 0.5, 2.0])
def test_mixed_noise_has_the_configured_shared_and_independent_variance(alpha):
    shared_std, independent_std = mixed_noise_stds(alpha)
    assert shared_std**2 == pytest.approx(alpha**2 / (1 + alpha**2))
    assert shared_std**2 + independent_std**2 == pytest.approx(1.0)
    like = torch.empty(4000, 2, 4, 3, 3)
    noise = training_noise(like, mixed=True, alpha=alpha, generator=torch.Generator().manual_seed(0))
    assert noise.shape == like.shape
    assert noise.var().item() == pytest.approx(1.0, abs=0.02)
    # The covariance of two frames of one video is the shared variance; the frame difference carries the rest.
    frames = noise.movedim(2, 0).reshape(4, -1)
    covariance = (frames[0] * frames[3]).mean().item()
    assert covariance == pytest.approx(shared_std**2, abs=0.02)
    assert (frames[0] - frames[1]).var().item() == pytest.approx(2 * independent_std**2, abs=0.03)


def test_unmixed_noise_is_one_draw_for_every_frame():
    noise = training_noise(torch.empty(3, 4, 5, 2, 2), mixed=False, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noise, noise[:, :, :1].expand_as(noise))
    assert noise[0].std() > 0.3 and not torch.equal(noise[0], noise[1])


def test_audio_dropout_replaces_exactly_the_chosen_samples_by_the_null_condition():
    embeds = torch.randn(4, 16, 50, 8) + 3.0
    dropped = torch.tensor([False, True, False, True])
    out = drop_audio(embeds, dropped)
    null = with_null_audio(embeds[1:2], guidance_scale=2.0)[:1]  # what inference guides with
    for sample in (1, 3):
        assert torch.equal(out[sample : sample + 1], null)
    for sample in (0, 2):
        assert torch.equal(out[sample], embeds[sample])
    assert torch.equal(drop_audio(embeds, torch.zeros(4, dtype=torch.bool)), embeds)


def test_audio_dropout_draw_rate():
    generator = torch.Generator().manual_seed(0)
    assert not audio_dropout_draw(1000, 0.0, generator).any()
    assert audio_dropout_draw(20000, 0.25, generator).float().mean().item() == pytest.approx(0.25, abs=0.015)
