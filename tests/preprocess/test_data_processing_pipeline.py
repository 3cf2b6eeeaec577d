"""The data processing pipeline on a small generated raw set (tests/preprocess/raw_set.py).

One run over the set is shared by the package (conftest.py; one to three minutes on two shared
cores): which files are kept and dropped and why, the clips' format, the manifests, resume without
decoding, read-only inputs.
"""

from __future__ import annotations

import json
import os
import sys
import time

import av
import pytest

from latentsync.data.syncnet_dataset import SyncNetDataset
from latentsync.data.unet_dataset import UNetDataset
from latentsync.media.audio import load_audio
from latentsync.media.probe import probe_video
from latentsync.whisper.audio2feature import Audio2Feature
from preprocess import data_processing_pipeline as pipeline
from tests.preprocess.conftest import FINAL, OPTIONS, finals, fingerprint, manifest
from tools.tiny_models import write_whisper


def test_keeps_and_drops_the_right_files_for_the_right_reasons(raw, processed):
    folder, expected = raw
    output_dir = processed["output_dir"]
    assert processed["code"] == 0
    assert finals(output_dir) == FINAL
    assert fingerprint(folder) == processed["before"]  # inputs untouched, the corrupt one included

    reasons: dict[str, list[str]] = {}
    for step in ("remove_broken_videos", "resample_fps_hz", "detect_shot", "segment_videos", "affine_transform"):
        for line in manifest(output_dir, step):
            if not line["kept"]:
                name = os.path.basename(line["source"])
                reasons.setdefault(name, []).append(line["reason"])
    for name, (count, reason) in expected.items():
        stem = os.path.splitext(name)[0]
        assert sum(f.startswith(stem + "_") for f in FINAL) == count, name
        if reason:
            dropped = [r for source, rs in reasons.items() if source.startswith(stem) for r in rs]
            assert any(reason in r for r in dropped), (name, dropped)
    # The video that loses its face halfway is dropped for that, not for anything else.
    fades = [line for line in manifest(output_dir, "affine_transform") if "face_fades" in line["source"]]
    assert len(fades) == 1 and 0.3 < fades[0]["scores"]["face_lost"] < 0.7

    with open(os.path.join(output_dir, "manifests", "summary.txt")) as f:
        summary = f.read()
    assert "remove_broken_videos" in summary and "no audio stream (1)" in summary
    assert "final clips: 6" in summary


def test_the_cut_is_split_and_clips_last_5_to_10_s(processed):
    output_dir = processed["output_dir"]
    shots = {os.path.basename(line["source"]): line["shots"] for line in manifest(output_dir, "detect_shot")}
    assert len(shots["cut.mp4"]) == 2 and abs(shots["cut.mp4"][0][1] - 140) <= 2  # the cut is at 5.6 s
    assert len(shots["long25s.mp4"]) == 1
    segments = [line for line in manifest(output_dir, "segment_videos") if line["kept"]]
    lengths = {os.path.basename(line["output"]): line["frames"][1] - line["frames"][0] for line in segments}
    assert all(125 <= n <= 250 for n in lengths.values()), lengths
    assert [lengths[f"long25s_{k:03d}.mp4"] for k in range(3)] in ([208, 209, 208], [209, 208, 208], [208, 208, 209])


def test_outputs_are_25_fps_16_khz_mono_aligned_squares_the_syncnet_dataset_reads(processed):
    output_dir = processed["output_dir"]
    paths = sorted(os.path.join(output_dir, pipeline.FINAL_DIR, name) for name in FINAL)
    for path in paths:
        info = probe_video(path)
        assert (info.fps, info.width, info.height) == (25.0, 256, 256)
        assert 125 <= info.num_frames <= 250
        with av.open(path) as container:
            kinds = [s.type for s in container.streams]
            audio = container.streams.audio[0]
            assert kinds.count("video") == 1 and kinds.count("audio") == 1 and len(kinds) == 2, kinds
            assert audio.rate == 16000 and audio.channels == 1
        assert abs(len(load_audio(path)) / 16000 - info.duration) < 0.1
    dataset = SyncNetDataset(paths, num_frames=5, resolution=32, lower_half=True)
    for index in range(len(paths)):
        sample = dataset[index]
        assert sample["frames"].shape == (5, 3, 16, 32) and sample["audio_samples"].shape == (1, 80, 16)
    assert dataset.skipped == {}


def test_the_unet_dataset_reads_the_outputs(processed, tmp_path):
    output_dir = processed["output_dir"]
    paths = sorted(os.path.join(output_dir, pipeline.FINAL_DIR, name) for name in FINAL)
    encoder = Audio2Feature(write_whisper(tmp_path / "whisper"), device="cpu", num_frames=16,
                            cache_dir=tmp_path / "embeds")
    dataset = UNetDataset(paths, num_frames=16, resolution=64, audio_encoder=encoder, load_mel=True,
                          mel_cache_dir=str(tmp_path / "mel"), seed=0)
    for index in range(len(paths)):
        sample = dataset[(0, index)]
        assert abs(int(sample["start_idx"]) - int(sample["ref_start_idx"])) >= 16
        for key in ("gt_pixel_values", "masked_pixel_values", "ref_pixel_values"):
            assert sample[key].shape == (16, 3, 64, 64)
        assert sample["gt_pixel_values"].std() > 0.05  # a face, not a blank frame
        assert sample["mel"].shape == (1, 80, 52) and sample["audio_embeds"].shape == (16, 50, 64)
    assert dataset.skipped == {}


def test_rerun_of_a_finished_set_decodes_nothing(raw, processed, monkeypatch, capsys):
    folder, _ = raw
    output_dir = processed["output_dir"]
    mtimes = {name: os.stat(os.path.join(output_dir, pipeline.FINAL_DIR, name)).st_mtime_ns for name in FINAL}

    def no_decoding(*args, **kwargs):
        raise AssertionError("a finished set was decoded again")

    monkeypatch.setattr(av, "open", no_decoding)
    monkeypatch.setattr("subprocess.run", no_decoding)
    start = time.perf_counter()
    assert pipeline.main(["--input_dir", folder, "--output_dir", output_dir, *OPTIONS]) == 0
    assert time.perf_counter() - start < 10
    assert finals(output_dir) == FINAL
    assert mtimes == {n: os.stat(os.path.join(output_dir, pipeline.FINAL_DIR, n)).st_mtime_ns for n in FINAL}
    assert "final clips: 6" in capsys.readouterr().out


def test_missing_model_files_stop_before_any_work(raw, tmp_path, capsys):
    folder, _ = raw
    output_dir = tmp_path / "out"
    code = pipeline.main(["--input_dir", folder, "--output_dir", str(output_dir), "--device", "cpu",
                          "--s3fd_path", str(tmp_path / "none.pth"), "--classic_syncnet_path", str(tmp_path / "x.model")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "hf download" in err and "x.model" in err
    assert not output_dir.exists()  # nothing was started
    code = pipeline.main(["--input_dir", folder, "--output_dir", str(output_dir), "--skip_sync",
                          "--quality_model_path", str(tmp_path / "koniq_pretrained.pkl")])
    assert code == 1 and "koniq_pretrained.pkl" in capsys.readouterr().err
    code = pipeline.main(["--input_dir", folder, "--output_dir", str(output_dir), "--skip_quality",
                          "--sync_scorer", "stable"])
    assert code == 1 and "--syncnet_config" in capsys.readouterr().err


def test_output_inside_the_input_is_refused(raw, capsys):
    folder, _ = raw
    assert pipeline.main(["--input_dir", os.path.dirname(folder), "--output_dir", folder, *OPTIONS]) == 1
    assert "inside --input_dir" in capsys.readouterr().err


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
