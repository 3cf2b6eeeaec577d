"""FVD / FID / SSIM / PSNR: the upstream Fréchet golden case, zero on identical sets, growth with perturbation."""

import numpy as np
import pytest
import skimage.data
import cv2
import torch

from latentsync.errors import CheckpointError
from latentsync.metrics.fid import INCEPTION_FILE, inception_features, load_inception
from latentsync.metrics.frechet import FeatureStats, frechet_distance, stats_distance, trace_sqrt_product
from latentsync.metrics.evaluation import video_fvd_stats
from latentsync.metrics.fvd import CLIP_FRAMES, CLIP_START, clip_description, i3d_features, i3d_input, load_i3d
from latentsync.metrics.image_similarity import psnr, ssim
from latentsync.metrics.model_files import require_model_file
from tests.golden_weights import eval_golden
from tests.metrics.eval_fixtures import coded_indices, write_index_coded_video
from tools.eval_models import write_inception, write_tiny_i3d

CPU = torch.device("cpu")


def test_golden_fvd_formula():
    data = eval_golden()["fvd"]
    fake, real = data["feats_fake"].numpy(), data["feats_real"].numpy()
    assert stats_distance(FeatureStats.of(fake), FeatureStats.of(real)) == pytest.approx(data["fvd"], rel=1e-4)
    assert abs(stats_distance(FeatureStats.of(fake), FeatureStats.of(fake))) < 1e-9


def test_streaming_stats_equal_numpy_in_any_chunking():
    feats = np.random.default_rng(0).standard_normal((50, 7))
    stats = FeatureStats(7)
    for chunk in np.array_split(feats, [3, 4, 30]):
        stats.update(chunk)
    np.testing.assert_allclose(stats.mean, feats.mean(0), atol=1e-12)
    np.testing.assert_allclose(stats.cov, np.cov(feats, rowvar=False), atol=1e-12)


def test_frechet_of_known_gaussians():
    # 1-D: (mu1 - mu2)^2 + s1 + s2 - 2 sqrt(s1 s2) = 4 + 4 + 1 - 2 * 2 = 5
    assert frechet_distance(np.array([0.0]), np.array([[4.0]]), np.array([2.0]), np.array([[1.0]])) == pytest.approx(5)


def _clips(seed: int, count: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = cv2.resize(skimage.data.astronaut(), (224, 224))
    clips = []
    for _ in range(count):
        shift = rng.integers(-20, 20, 2)
        frames = [np.roll(base, (int(shift[0]) + t, int(shift[1])), (0, 1)) for t in range(16)]
        clips.append(np.stack(frames))
    return np.stack(clips)


@pytest.fixture(scope="module")
def i3d(tmp_path_factory):
    return load_i3d(write_tiny_i3d(tmp_path_factory.mktemp("aux") / "i3d_torchscript.pt"), CPU)


@pytest.mark.parametrize("protocol", ["stylegan-v", "latentsync"])
def test_fvd_is_zero_on_itself_and_grows_with_perturbation(i3d, protocol):
    clips = _clips(0)
    real = FeatureStats.of(i3d_features(i3d, torch.from_numpy(clips), protocol))
    distances = []
    for sigma in (0, 10, 40, 80):
        noisy = np.clip(clips + np.random.default_rng(1).normal(0, sigma, clips.shape), 0, 255).astype(np.uint8)
        distances.append(stats_distance(real, FeatureStats.of(i3d_features(i3d, torch.from_numpy(noisy), protocol))))
    # Identical sets: zero up to the matrix root's error on 6 samples of 400-d features (rank 5).
    assert abs(distances[0]) < 1e-3 * distances[1]
    assert distances[1] < distances[2] < distances[3]


def test_protocol_ranges():
    clip = torch.tensor([0, 255], dtype=torch.uint8).view(1, 2, 1, 1, 1).expand(1, 2, 1, 1, 3)
    assert i3d_input(clip, "stylegan-v").flatten().tolist()[:2] == [-1.0, 1.0]
    assert i3d_input(clip, "latentsync").flatten().tolist()[:2] == [0.0, 1.0]
    with pytest.raises(ValueError, match="stylegan-v, latentsync"):
        i3d_input(clip, "tf")


class RecordingI3D(torch.nn.Module):
    """Keeps the clips it is fed; its features are zeros."""

    def __init__(self):
        super().__init__()
        self.inputs = []

    def forward(self, x, rescale=False, resize=False, return_features=False):
        self.inputs.append(x)
        return torch.zeros(x.shape[0], 400)


@pytest.mark.parametrize("count,expected", [(60, list(range(20, 36))), (30, list(range(14, 30)))])
def test_fvd_feeds_the_videos_own_frames_20_to_35(tmp_path, count, expected):
    # 30 fps: resampling to 25 fps first would feed frames 24, 25, 26, 27, 28, 30, ... instead.
    video = write_index_coded_video(tmp_path / "coded_30fps.mp4", count, fps=30)
    i3d, errors = RecordingI3D(), {}
    video_fvd_stats([str(video)], i3d, "latentsync", None, errors, progress=False)
    assert errors == {}
    (x,) = i3d.inputs
    assert x.shape == (1, 3, CLIP_FRAMES, 224, 224) and 0 <= x.min() and x.max() <= 1  # upstream's [0, 1] range
    frames = (x[0].permute(1, 2, 3, 0) * 255).round().numpy()
    assert coded_indices(frames) == expected  # a shorter video: its last 16 frames
    assert clip_description(False).startswith(f"frames {CLIP_START}-{CLIP_START + CLIP_FRAMES - 1} at the video's own rate")


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    return write_inception(tmp_path_factory.mktemp("aux") / INCEPTION_FILE)


def test_fid_is_zero_on_itself_and_grows_with_noise(inception_file):
    model = load_inception(inception_file, CPU)
    images = np.stack([cv2.resize(img, (64, 64)) for img in (
        skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(), skimage.data.rocket())])
    real = FeatureStats.of(inception_features(model, images))
    distances = []
    for sigma in (0, 10, 60):
        noisy = np.clip(images + np.random.default_rng(0).normal(0, sigma, images.shape), 0, 255).astype(np.uint8)
        distances.append(stats_distance(real, FeatureStats.of(inception_features(model, noisy))))
    assert abs(distances[0]) < 1e-3 * distances[1]
    assert 0 < distances[1] < distances[2]


def test_inception_file_with_a_wrong_key_is_an_error_naming_it(inception_file, tmp_path):
    state = torch.load(inception_file, weights_only=True)
    state["Mixed_9z.weight"] = state.pop("Conv2d_1a_3x3.conv.weight")
    torch.save(state, tmp_path / INCEPTION_FILE)
    with pytest.raises(CheckpointError, match="Mixed_9z.weight"):
        load_inception(tmp_path / INCEPTION_FILE, CPU)


def test_missing_model_files_name_their_fetch_command(tmp_path):
    with pytest.raises(CheckpointError, match=r"hf download ByteDance/LatentSync-1.6 auxiliary/syncnet_v2.model"):
        require_model_file(tmp_path / "syncnet_v2.model")
    with pytest.raises(CheckpointError, match=r"curl -L -o checkpoints/auxiliary/" + INCEPTION_FILE):
        load_inception(tmp_path / INCEPTION_FILE, CPU)
    with pytest.raises(CheckpointError, match="auxiliary/i3d_torchscript.pt"):
        load_i3d(tmp_path / "i3d_torchscript.pt", CPU)
    (tmp_path / "i3d_torchscript.pt").write_bytes(b"not torchscript")
    with pytest.raises(CheckpointError, match="not a TorchScript I3D"):
        load_i3d(tmp_path / "i3d_torchscript.pt", CPU)


def test_ssim_and_psnr_on_known_images():
    image = cv2.resize(skimage.data.astronaut(), (128, 128))
    assert ssim(image, image) == pytest.approx(1.0)
    assert psnr(image, image) == float("inf")
    noisy = [np.clip(image + np.random.default_rng(0).normal(0, s, image.shape), 0, 255).astype(np.uint8) for s in (5, 20, 50)]
    ssims = [ssim(image, n) for n in noisy]
    psnrs = [psnr(image, n) for n in noisy]
    assert 1 > ssims[0] > ssims[1] > ssims[2] > 0
    assert psnrs[0] > psnrs[1] > psnrs[2]
    # PSNR of a constant error e: 10 log10(255^2 / e^2)
    assert psnr(np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 5, np.uint8)) == pytest.approx(20 * np.log10(255 / 5))


def test_trace_of_the_root_matches_scipy_on_full_rank_and_singular_covariances():
    import scipy.linalg

    rng = np.random.default_rng(0)
    for samples in (200, 6):  # full rank, then rank 5 of 20
        a, b = (np.cov(rng.standard_normal((samples, 20)) @ rng.standard_normal((20, 20)), rowvar=False) for _ in range(2))
        expected = np.real(np.trace(scipy.linalg.sqrtm(a @ b)))
        assert trace_sqrt_product(a, b) == pytest.approx(expected, rel=1e-6, abs=1e-8)
