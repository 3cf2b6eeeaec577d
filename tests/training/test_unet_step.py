"""Pieces of the U-Net step: what the frozen SyncNet sees of a prediction, and the step settings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from latentsync.training.unet import StepSettings, sync_judge_input


def test_pixel_syncnet_sees_the_resized_lower_half_frame_major():
    pixels = torch.randn(2 * 5, 3, 64, 64)  # (b f) c h w, b=2, f=5
    visual = sync_judge_input(pixels, torch.empty(0), 5, {"resolution": 32, "lower_half": True})
    assert visual.shape == (2, 15, 16, 32)
    resized = F.interpolate(pixels, size=(32, 32), mode="bicubic", align_corners=False)
    torch.testing.assert_close(visual[1, 3:6], resized[6, :, 16:])  # sample 1, frame 1 -> channels 3..5
    same_size = sync_judge_input(pixels, torch.empty(0), 5, {"resolution": 64, "lower_half": False})
    assert torch.equal(same_size[0, 12:15], pixels[4])


def test_latent_syncnet_sees_the_predicted_latents():
    latents = torch.randn(2, 4, 5, 8, 8)  # b c f h w
    visual = sync_judge_input(None, latents, 5, {"resolution": 256, "lower_half": True, "latent_space": True})
    assert visual.shape == (2, 20, 4, 8)
    assert torch.equal(visual[0, 4:8], latents[0, :, 1, 4:])


def test_weights_follow_the_stage():
    def config(pixel, syncnet, audio=True):
        return OmegaConf.create({
            "model": {"add_audio_layer": audio},
            "run": {"pixel_space_supervise": pixel, "use_syncnet": syncnet, "recon_loss_weight": 1,
                    "sync_loss_weight": 0.05, "perceptual_loss_weight": 0.1, "trepa_loss_weight": 10,
                    "use_mixed_noise": True, "mixed_noise_alpha": 1, "audio_dropout_prob": 0.1},
        })

    stage1 = StepSettings.from_config(config(False, False))
    assert (stage1.sync_weight, stage1.perceptual_weight, stage1.trepa_weight) == (0, 0, 0)
    stage2 = StepSettings.from_config(config(True, True))
    assert (stage2.sync_weight, stage2.perceptual_weight, stage2.trepa_weight) == (0.05, 0.1, 10)
    assert stage2.audio_dropout_prob == 0.1
    assert StepSettings.from_config(config(True, True, audio=False)).use_syncnet is False
