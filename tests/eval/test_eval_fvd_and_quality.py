"""eval_fvd (FVD + FID + SSIM/PSNR) and hyper_iqa end to end on fixture videos."""

import json

import pytest

from eval import eval_fvd, hyper_iqa
from tests.eval.conftest import noisy_copy


@pytest.fixture(scope="module")
def fakes(clips, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fakes")
    for name in ("clip1", "clip2"):
        noisy_copy(clips / f"{name}.mp4", folder / f"{name}__speech.mp4", sigma=12, seed=3)
    return folder


def test_fvd_fid_ssim_psnr_table(auxiliary, clips, fakes, tmp_path, capsys):
    out = tmp_path / "fvd"
    code = eval_fvd.main(["--real_dir", str(clips), "--fake_dir", str(fakes), "--output", str(out),
                          "--i3d_path", str(auxiliary / "i3d_torchscript.pt"),
                          "--inception_path", str(auxiliary / "pt_inception-2015-12-05-6726825d.pth"),
                          "--frame_stride", "10", "--device", "cpu", "--no_progress"])
    printed = capsys.readouterr().out
    assert code == 0
    assert printed.startswith("FVD protocol: stylegan-v\n")
    report = json.loads((tmp_path / "fvd.json").read_text())
    summary = report["summary"]
    assert summary["fvd_protocol"] == "stylegan-v"
    assert summary["fvd_clip"] == "frames 20-35 at the video's own rate, MediaPipe face crops resized to 224 px"
    assert summary["fvd"] > 0 and summary["fid"] > 0  # two real clips against their noisy copies
    rows = {row["video"].rsplit("/", 1)[-1]: row for row in report["rows"]}
    for name in ("clip1__speech.mp4", "clip2__speech.mp4"):
        assert rows[name]["real"].endswith(name.split("__")[0] + ".mp4")  # paired by name
        assert 0.2 < rows[name]["ssim"] < 0.99 and 15 < rows[name]["psnr"] < 40
    assert "cannot open video" in rows["corrupt.mp4"]["error"]  # the corrupt real video is a row, not the end
    assert summary["ssim"] == pytest.approx((rows["clip1__speech.mp4"]["ssim"] + rows["clip2__speech.mp4"]["ssim"]) / 2)


def test_fvd_latentsync_protocol_without_fid(auxiliary, clips, tmp_path, capsys):
    code = eval_fvd.main(["--real_dir", str(clips), "--fake_dir", str(clips), "--protocol", "latentsync",
                          "--i3d_path", str(auxiliary / "i3d_torchscript.pt"), "--no_fid", "--no_similarity",
                          "--device", "cpu", "--no_progress", "--output", str(tmp_path / "self")])
    printed = capsys.readouterr().out
    assert code == 0 and printed.startswith("FVD protocol: latentsync\n")
    summary = json.loads((tmp_path / "self.json").read_text())["summary"]
    assert abs(summary["fvd"]) < 1e-4 and "fid" not in summary  # a set against itself (eigenvalue round-off)


def test_hyper_iqa_rows(auxiliary, clips, tmp_path, capsys):
    code = hyper_iqa.main(["--videos_dir", str(clips), "--model_path", str(auxiliary / "koniq_pretrained.pkl"),
                           "--output", str(tmp_path / "iqa"), "--device", "cpu", "--no_progress"])
    capsys.readouterr()
    assert code == 0
    report = json.loads((tmp_path / "iqa.json").read_text())
    rows = {row["video"].rsplit("/", 1)[-1]: row for row in report["rows"]}
    assert isinstance(rows["clip1.mp4"]["hyperiqa"], float) and rows["clip1.mp4"]["hyperiqa"] != rows["clip2.mp4"]["hyperiqa"]
    assert rows["corrupt.mp4"]["error"]
    assert report["summary"]["hyperiqa_frames"].startswith("first, middle and last frame")
    assert report["summary"]["hyperiqa"] == pytest.approx((rows["clip1.mp4"]["hyperiqa"] + rows["clip2.mp4"]["hyperiqa"]) / 2)
