"""StableSyncNet and the sync loss reproduce upstream's outputs on a tiny seeded model (syncnet_tiny.pt)."""

import pytest
import torch
import torch.nn.functional as F

from latentsync.losses import cosine_loss
from latentsync.models.stable_syncnet import StableSyncNet
from tests.conftest import load_golden


@pytest.fixture(scope="module")
def golden():
    return load_golden("syncnet_tiny.pt")


@pytest.fixture(scope="module")
def outputs(golden):
    model = StableSyncNet(golden["config"])
    model.load_state_dict(golden["state_dict"], strict=True)
    model.eval()
    images, mels = golden["inputs"]["image_sequences"], golden["inputs"]["audio_sequences"]
    with torch.no_grad():
        vision, audio = model(images, mels)
        result = {
            "vision_embeds": vision,
            "audio_embeds": audio,
            "vision_features_raw": model.visual_encoder(images),
            "audio_features_raw": model.audio_encoder(mels),
            "cosine_similarity": F.cosine_similarity(vision, audio),
            "sync_loss_y1": cosine_loss(vision.float(), audio.float(), torch.ones(1, 1)).mean(),
            "sync_loss_y0": cosine_loss(vision.float(), audio.float(), torch.zeros(1, 1)).mean(),
        }
    return result


def test_every_golden_output_is_checked(golden, outputs):
    assert set(outputs) == set(golden["outputs"]) == set(golden["atol_per_output"])


@pytest.mark.parametrize(
    "name",
    [
        "vision_embeds",
        "audio_embeds",
        "vision_features_raw",
        "audio_features_raw",
        "cosine_similarity",
        "sync_loss_y1",
        "sync_loss_y0",
    ],
)
def test_output_matches_upstream(golden, outputs, name):
    expected, actual = golden["outputs"][name], outputs[name]
    assert actual.shape == expected.shape
    assert actual.dtype == torch.float32
    torch.testing.assert_close(actual, expected, rtol=golden["rtol"], atol=golden["atol_per_output"][name])


def test_golden_values_are_the_documented_ones(golden):
    # Guards against a silently replaced fixture: the README quotes these numbers.
    assert golden["outputs"]["cosine_similarity"].item() == pytest.approx(0.37026, abs=1e-5)
    assert golden["outputs"]["sync_loss_y1"].item() == pytest.approx(0.99355, abs=1e-5)
    assert golden["outputs"]["sync_loss_y0"].item() == pytest.approx(0.46245, abs=1e-5)


def test_state_dict_keys_match_golden(golden):
    with torch.device("meta"):
        model = StableSyncNet(golden["config"])
    assert [[k, list(v.shape)] for k, v in model.state_dict().items()] == golden["state_dict_keys"]
    assert sum(p.numel() for p in model.parameters()) == golden["num_parameters"]
