"""inference_videos and eval_all end to end: tiny UNet checkpoint -> generated videos -> metrics table."""

import csv
import json

import pytest

from eval import eval_all, inference_videos
from tests.eval.conftest import SYNC_FLAGS, sync_model_flags
from tests.tiny_models import tiny_models  # noqa: F401  (session fixture)


def _inference_flags(models, tmp_path) -> list[str]:
    return ["--unet_config_path", str(models.unet_config), "--whisper_path", str(models.whisper),
            "--vae_path", str(models.vae), "--inference_steps", "1", "--face_detector", "mediapipe",
            "--temp_dir", str(tmp_path)]


@pytest.fixture()
def eval_list(clips, tmp_path):
    listing = tmp_path / "eval.csv"
    listing.write_text(f"video,audio\n{clips / 'clip1.mp4'},{clips / 'clip1.mp4'}\n{clips / 'clip2.mp4'},{clips / 'clip2.mp4'}\n"
                       f"{clips / 'corrupt.mp4'},{clips / 'clip1.mp4'}\n")
    return listing


@pytest.mark.slow
def test_checkpoint_to_metrics_table(tiny_models, auxiliary, eval_list, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "results"
    code = eval_all.main([
        "--eval_list", str(eval_list), "--checkpoint", str(tiny_models.unet_ckpt), "--output_dir", str(out),
        "--i3d_path", str(auxiliary / "i3d_torchscript.pt"),
        "--inception_path", str(auxiliary / "pt_inception-2015-12-05-6726825d.pth"),
        "--hyperiqa_path", str(auxiliary / "koniq_pretrained.pkl"), "--frame_stride", "10",
        *sync_model_flags(auxiliary), *SYNC_FLAGS, *_inference_flags(tiny_models, tmp_path),
    ])
    printed = capsys.readouterr().out
    assert code == 0
    report = json.loads((out / "metrics.json").read_text())
    rows = {row["video"].rsplit("/", 1)[-1]: row for row in report["rows"]}
    assert set(rows) == {"clip1__clip1.mp4", "clip2__clip2.mp4", "corrupt__clip1.mp4"}
    assert rows["corrupt__clip1.mp4"]["error"].startswith("no output")
    for name in ("clip1__clip1.mp4", "clip2__clip2.mp4"):
        row = rows[name]
        assert (out / name).is_file()
        assert row["error"] == "" and row["tracks"] == 2
        for key in ("lse_c", "lse_d", "hyperiqa", "ssim", "psnr"):
            assert isinstance(row[key], float), key
    summary = report["summary"]
    assert summary["fvd"] > 0 and summary["fid"] > 0 and summary["fvd_protocol"] == "stylegan-v"
    assert summary["videos"] == 3 and summary["failed"] == 1
    protocols = {"sync_protocol": "upstream", "fvd_protocol": "stylegan-v",
                 "fvd_clip": "frames 20-35 at the video's own rate, MediaPipe face crops resized to 224 px",
                 "hyperiqa_frames": "first, middle and last frame at the video's own rate, centre crop 224 px"}
    assert {key: summary[key] for key in protocols} == protocols
    with open(out / "metrics.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == 3 and all({key: r[key] for key in protocols} == protocols for r in csv_rows)
    assert "| fvd |" in printed and "| lse_c |" in printed

    # A rerun scores the existing outputs without generating them again.
    before = (out / "clip1__clip1.mp4").stat().st_mtime_ns
    assert inference_videos.main(["--eval_list", str(eval_list), "--checkpoint", str(tiny_models.unet_ckpt),
                                  "--output_dir", str(out), "--device", "cpu", *_inference_flags(tiny_models, tmp_path)]) == 1
    assert (out / "clip1__clip1.mp4").stat().st_mtime_ns == before  # kept: the batch run skips done pairs
    with open(out / "pairs.csv", newline="") as f:
        assert [r["output"].rsplit("/", 1)[-1] for r in csv.DictReader(f)] == sorted(rows)


def test_eval_all_checks_model_files_before_inference(eval_list, tmp_path, capsys):
    code = eval_all.main(["--eval_list", str(eval_list), "--checkpoint", str(tmp_path / "unet.pt"),
                          "--output_dir", str(tmp_path / "out"), "--i3d_path", str(tmp_path / "i3d_torchscript.pt")])
    err = capsys.readouterr().err
    # Every missing file is named in the one line: here all five scorers' files and the UNet checkpoint.
    assert code == 1 and err.startswith("error: 5 model files not found") and err.count("\n") == 1, err
    for name in ("auxiliary/i3d_torchscript.pt", "pt_inception-2015-12-05-6726825d.pth", "koniq_pretrained.pkl",
                 "syncnet_v2.model", "sfd_face.pth", f"--checkpoint '{tmp_path / 'unet.pt'}' does not exist"):
        assert name in err, name
    assert not (tmp_path / "out").exists()


def test_bad_eval_list_is_one_error_line(tmp_path, capsys):
    listing = tmp_path / "eval.csv"
    listing.write_text("a.mp4,b.wav,extra\n")
    code = inference_videos.main(["--eval_list", str(listing), "--checkpoint", "x.pt", "--output_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and err == f"error: {listing} line 1: expected video,audio, got 3 fields\n"
