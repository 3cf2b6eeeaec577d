"""The sampling loop's arithmetic against the reference (golden ``ddim_step.pt``).

The UNet is replaced by the fixed linear function documented in the vector's config, and VAE encoding
by the stored raw latents, so only scheduling, guidance, mask downsampling, channel order and the
shared initial noise are exercised. Tolerance: the vector's own atol/rtol (1e-5).
"""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDIMScheduler

from latentsync.pipelines import guidance
from latentsync.pipelines.latents import (
    mask_to_latent_size, one_step_sampling, paste_surroundings, shared_initial_noise, unet_input, vae_scale,
)
from tests.conftest import load_golden

GOLDEN = "ddim_step.pt"


@pytest.fixture(scope="module")
def golden() -> dict:
    return load_golden(GOLDEN)


@pytest.fixture()
def scheduler() -> DDIMScheduler:
    return DDIMScheduler.from_pretrained("configs")


def fake_unet(x: torch.Tensor, t: torch.Tensor | int, audio: torch.Tensor) -> torch.Tensor:
    """The linear stand-in from ``config["fake_unet"]``; ``audio`` rows are batch*frames."""
    b, _, f = x.shape[:3]
    latents, mask, masked, ref = x[:, 0:4], x[:, 4:5], x[:, 5:9], x[:, 9:13]
    a = audio.mean(dim=(1, 2)).reshape(b, 1, f, 1, 1)
    channel = torch.arange(4, dtype=x.dtype).reshape(1, 4, 1, 1, 1)
    return 0.5 * latents - 0.25 * mask + 0.1 * masked + 0.2 * ref + 0.001 * float(t) + 0.3 * a + 0.05 * channel


def close(actual: torch.Tensor, expected: torch.Tensor, golden: dict) -> None:
    torch.testing.assert_close(actual, expected, atol=golden["atol"], rtol=golden["rtol"])


def test_scheduler_config_matches_reference(golden, scheduler):
    for key, value in golden["config"]["scheduler_config"].items():
        if key.startswith("_") or key == "skip_prk_steps":
            continue
        assert scheduler.config[key] == value, key


def test_timesteps_and_alphas(golden, scheduler):
    scheduler.set_timesteps(golden["config"]["num_inference_steps"])
    out = golden["outputs"]
    assert scheduler.timesteps.tolist() == out["timesteps"].tolist()
    close(scheduler.alphas_cumprod[scheduler.timesteps], out["alphas_cumprod_at_timesteps"], golden)
    assert scheduler.final_alpha_cumprod.item() == pytest.approx(out["final_alpha_cumprod"], abs=1e-7)
    assert scheduler.init_noise_sigma == out["init_noise_sigma"]


def test_shared_initial_noise(golden, scheduler):
    cfg = golden["config"]
    generator = torch.Generator("cpu").manual_seed(cfg["generator_seed"])
    latent_hw = (cfg["height"] // cfg["vae_scale_factor"], cfg["width"] // cfg["vae_scale_factor"])
    noise = shared_initial_noise(
        cfg["n_video_frames"], 4, latent_hw, dtype=torch.float32, device=torch.device("cpu"),
        generator=generator, init_noise_sigma=scheduler.init_noise_sigma,
    )
    close(noise, golden["inputs"]["all_latents"], golden)
    close(noise[:, :, :1], golden["inputs"]["initial_noise_one_frame"], golden)


def test_denoising_loop(golden, scheduler):
    cfg, inputs, out = golden["config"], golden["inputs"], golden["outputs"]
    g = cfg["guidance_scale"]
    scale = cfg["vae_scaling_factor"]
    latent_hw = (cfg["height"] // cfg["vae_scale_factor"], cfg["width"] // cfg["vae_scale_factor"])
    scheduler.set_timesteps(cfg["num_inference_steps"])
    all_latents = inputs["all_latents"]
    n, clip = cfg["n_video_frames"], cfg["num_frames"]
    assert len(out["windows"]) == math.ceil(n / clip)

    finals = []
    for index, window in enumerate(out["windows"]):
        start, stop = window["frames"]
        assert (start, stop) == (index * clip, min(n, (index + 1) * clip))
        f = stop - start
        latents = all_latents[:, :, start:stop]
        close(latents, window["initial_latents"], golden)

        audio = guidance.with_null_audio(inputs["audio_chunks"][start:stop], g)
        mask = mask_to_latent_size(inputs["mask_pixels"].repeat(f, 1, 1, 1), latent_hw)
        mask = guidance.double_for_guidance(mask.permute(1, 0, 2, 3).unsqueeze(0), g)
        masked = vae_scale(inputs["masked_image_latents_raw"][start:stop], scale, cfg["vae_shift_factor"])
        masked = guidance.double_for_guidance(masked.permute(1, 0, 2, 3).unsqueeze(0), g)
        ref = vae_scale(inputs["ref_latents_raw"][start:stop], scale, cfg["vae_shift_factor"])
        ref = guidance.double_for_guidance(ref.permute(1, 0, 2, 3).unsqueeze(0), g)
        close(mask, window["mask_latents"], golden)
        close(masked, window["masked_image_latents"], golden)
        close(ref, window["ref_latents"], golden)

        for step, t in enumerate(scheduler.timesteps):
            x = scheduler.scale_model_input(guidance.double_for_guidance(latents, g), t)
            x = unet_input(x, mask, masked, ref)
            if step == 0 and window["unet_input_step0"] is not None:
                close(x, window["unet_input_step0"], golden)
            eps = guidance.split_and_guide(fake_unet(x, t, audio), g)
            close(eps, window["noise_pred_after_cfg"][step], golden)
            result = scheduler.step(eps, t, latents, eta=cfg["eta"])
            close(result.pred_original_sample, window["pred_original_sample"][step], golden)
            # Our one-step x0 must agree with the scheduler's own prediction inside the loop.
            x0 = one_step_sampling(scheduler.alphas_cumprod, latents, eps, t.reshape(1))
            close(x0, window["pred_original_sample"][step], golden)
            latents = result.prev_sample
            close(latents, window["latents_after_step"][step], golden)
        finals.append(latents)

    close(torch.cat(finals, dim=2), out["final_latents"], golden)


def test_one_step_sampling_and_add_noise(golden, scheduler):
    osp = golden["inputs"]["one_step_sampling"]
    out = golden["outputs"]
    x0 = one_step_sampling(scheduler.alphas_cumprod, osp["x_t"], osp["pred_noise"], osp["timesteps"])
    close(x0, out["one_step_sampling"], golden)
    close(scheduler.alphas_cumprod[osp["timesteps"]], out["alphas_cumprod_at_osp_timesteps"], golden)
    noisy = scheduler.add_noise(osp["x_0_for_add_noise"], osp["pred_noise"], osp["timesteps"])
    close(noisy, out["add_noise"], golden)
    # x0 recovered from the forward process is the clean sample again.
    back = one_step_sampling(scheduler.alphas_cumprod, noisy, osp["pred_noise"], osp["timesteps"])
    torch.testing.assert_close(back, osp["x_0_for_add_noise"], atol=2e-3, rtol=1e-3)


def test_guidance_identity_without_cfg():
    eps = torch.randn(2, 4, 3, 2, 2)
    assert guidance.split_and_guide(eps, 1.0) is eps
    audio = torch.randn(3, 50, 8)
    assert guidance.with_null_audio(audio, 1.0) is audio
    doubled = guidance.with_null_audio(audio, 2.0)
    assert doubled.shape == (6, 50, 8) and doubled[:3].abs().sum() == 0


def test_mask_downsampling_is_top_left_nearest():
    mask = torch.ones(1, 1, 16, 16)
    mask[0, 0, 8, 8] = 0.0  # top-left pixel of latent cell (1, 1)
    mask[0, 0, 1, 1] = 0.0  # inside cell (0, 0) but not its top-left: ignored
    small = mask_to_latent_size(mask, (2, 2))
    assert small[0, 0].tolist() == [[1.0, 1.0], [1.0, 0.0]]


def test_paste_surroundings_keeps_unmasked_pixels():
    generated, original = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    keep = torch.zeros(1, 1, 4, 4)
    keep[..., :2, :] = 1
    out = paste_surroundings(generated, original, keep)
    assert out[..., :2, :].eq(1).all() and out[..., 2:, :].eq(0).all()
