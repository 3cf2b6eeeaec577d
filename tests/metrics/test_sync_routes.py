"""The sync-confidence protocols: upstream's media route equals its commands run by hand; clean differs.

Upstream's route (eval/syncnet_detect.py and eval/syncnet/syncnet_eval.py of LatentSync) is redone
here step by step with the same ffmpeg options, OpenCV calls and files on disk, on a 30 fps clip
made in the test; the pixels and samples the scorer gets must be exactly those.
"""

from __future__ import annotations

import glob
import io
import os
import subprocess
import tempfile

import cv2
import numpy as np
import pytest
import torch
from scipy.io import wavfile

from latentsync.errors import MediaError
from latentsync.metrics.face_tracks import TrackSettings, crop_face, crop_geometry
from latentsync.metrics.sync_confidence import SyncScorer, score_video
from latentsync.metrics.sync_routes import PROTOCOLS, SyncRoute, check_protocol, split_jpegs
from latentsync.models.s3fd import S3FD, S3FDDetector
from latentsync.models.syncnet_classic import ClassicSyncNet
from latentsync.media.ffmpeg import ffmpeg_exe
from latentsync.utils.files import WORK_PREFIX, owned_prefix
from tests.data.synthetic_clips import burst_audio
from tools.eval_models import write_official_file
from tools.synthetic_media import write_talking_video

CPU = torch.device("cpu")
SETTINGS = TrackSettings(conf_threshold=0.52, min_track=20)  # golden-weight S3FD scores boxes about 0.5


def _ffmpeg(*args) -> None:
    subprocess.run([ffmpeg_exe(), "-y", "-nostdin", "-loglevel", "error", *map(str, args)], check=True)


def _read_jpegs(folder) -> list[np.ndarray]:
    return [cv2.imread(name) for name in sorted(glob.glob(os.path.join(folder, "*.jpg")))]


class RecordingScorer(SyncScorer):
    """The real scorer, keeping what it was given: (crops, frame count, audio) per track."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def score(self, crops, num_frames, audio):
        crops = list(crops)
        self.seen.append((crops, num_frames, audio))
        return super().score(crops, num_frames, audio)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("aux")
    write_official_file(folder / "syncnet_v2.model", "syncnet_v2")
    write_official_file(folder / "sfd_face.pth", "s3fd")
    syncnet = ClassicSyncNet.from_file(folder / "syncnet_v2.model", CPU)
    s3fd = S3FD.from_file(folder / "sfd_face.pth", CPU)
    return syncnet, S3FDDetector(s3fd, CPU)


@pytest.fixture(scope="module")
def clip_30fps(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "talking_30fps.mp4"
    write_talking_video(path, burst_audio(1.92, seed=3), fps=30, size=(256, 256), seed=3)  # 58 frames
    return path


@pytest.fixture(scope="module")
def scored(models, clip_30fps):
    """protocol -> (the video's verdict, what the scorer was given per track)."""
    syncnet, detector = models
    results = {}
    for protocol in PROTOCOLS:
        scorer = RecordingScorer(syncnet, CPU)
        results[protocol] = (score_video(str(clip_30fps), scorer, detector, SETTINGS, protocol=protocol), scorer.seen)
    return results


def _upstream_by_hand(video, tracks, work) -> tuple[list, list, np.ndarray, list]:
    """Upstream's commands, files and OpenCV calls: (source frames, per-track (crops before the mp4v
    writer, JPEG crops read back, their audio))."""
    os.makedirs(work / "frames")
    _ffmpeg("-i", video, "-qscale:v", "2", "-async", "1", "-r", "25", work / "video.mp4")
    _ffmpeg("-i", work / "video.mp4", "-qscale:v", "2", "-f", "image2", work / "frames" / "%06d.jpg")
    _ffmpeg("-i", work / "video.mp4", "-ac", "1", "-vn", "-acodec", "pcm_s16le", "-ar", "16000", work / "audio.wav")
    frames = _read_jpegs(work / "frames")
    per_track = []
    for index, track in enumerate(tracks):
        stem = work / f"{index:05d}"
        half, cx, cy = crop_geometry(track, SETTINGS.smooth_kernel)
        writer = cv2.VideoWriter(f"{stem}t.mp4", cv2.VideoWriter_fourcc(*"mp4v"), 25, (224, 224))
        written = []
        for k, frame in enumerate(track.frames):
            written.append(crop_face(frames[frame], half[k], cx[k], cy[k], SETTINGS.crop_scale))
            writer.write(written[-1])
        writer.release()
        _ffmpeg("-i", work / "audio.wav", "-ss", "%.3f" % (track.start / 25), "-to", "%.3f" % (track.end / 25),
                f"{stem}.wav")
        _ffmpeg("-i", f"{stem}t.mp4", "-i", f"{stem}.wav", "-c:v", "copy", "-c:a", "aac", f"{stem}.mp4")
        os.makedirs(f"{stem}_eval")
        _ffmpeg("-i", f"{stem}.mp4", "-f", "image2", os.path.join(f"{stem}_eval", "%06d.jpg"))
        _ffmpeg("-i", f"{stem}.mp4", "-async", "1", "-ac", "1", "-vn", "-acodec", "pcm_s16le", "-ar", "16000",
                os.path.join(f"{stem}_eval", "audio.wav"))
        rate, audio = wavfile.read(os.path.join(f"{stem}_eval", "audio.wav"))
        assert rate == 16000
        per_track.append((written, _read_jpegs(f"{stem}_eval"), audio.astype(np.float32) / 32768))
    _, source_audio = wavfile.read(work / "audio.wav")
    return frames, per_track, source_audio.astype(np.float32) / 32768


def _mean_abs(a, b) -> float:
    return float(np.abs(np.stack(a).astype(np.float64) - np.stack(b)).mean())


def test_upstream_route_is_upstreams_commands_by_hand(scored, clip_30fps, tmp_path):
    with SyncRoute(str(clip_30fps), "upstream") as route:
        route_frames, route_audio = list(route.frames()), route.audio
    result, seen = scored["upstream"]
    assert result.protocol == "upstream" and len(result.tracks) >= 1

    frames, per_track, source_audio = _upstream_by_hand(clip_30fps, result.tracks, tmp_path / "by_hand")
    # Faces are found on the 25 fps JPEG frames (58 frames at 30 fps: about 48), audio from the re-encode.
    assert len(frames) == len(route_frames) and abs(len(frames) - 48) <= 2
    for ours, theirs in zip(route_frames, frames):
        np.testing.assert_array_equal(ours, theirs[..., ::-1])
    np.testing.assert_array_equal(route_audio, source_audio)
    # The scorer gets exactly the crops read back from the mp4v video's default-quality JPEGs, and its audio.
    assert len(seen) == len(result.tracks)
    for (crops, count, audio), (written, read_back, track_audio) in zip(seen, per_track):
        assert count == len(read_back) == len(written) == len(crops)
        for ours, theirs in zip(crops, read_back):
            np.testing.assert_array_equal(ours, theirs[..., ::-1])
        np.testing.assert_array_equal(audio, track_audio)
        # The round trip is lossy: mp4v + JPEG move the crops by levels, not by pictures.
        assert 1.0 < _mean_abs(written, read_back) < 20.0
    leftovers = glob.glob(os.path.join(tempfile.gettempdir(), owned_prefix(WORK_PREFIX) + "sync-*"))
    assert leftovers == []  # the work folder is gone


def test_clean_route_scores_the_decoded_crops(scored):
    (clean, clean_seen), (upstream, upstream_seen) = scored["clean"], scored["upstream"]
    assert clean.protocol == "clean" and [t.start for t in clean.tracks] == [t.start for t in upstream.tracks]
    for (clean_crops, clean_count, _), (upstream_crops, upstream_count, _) in zip(clean_seen, upstream_seen):
        # Timestamps (clean) and ffmpeg's -r 25 (upstream) may differ by a frame at the end of a 30 fps video.
        assert abs(clean_count - upstream_count) <= 1
        n = min(clean_count, upstream_count)
        assert 1.0 < _mean_abs(clean_crops[:n], upstream_crops[:n]) < 30.0
    assert clean.confidence != upstream.confidence and clean.min_dist != upstream.min_dist


def test_upstream_route_names_the_users_file_without_audio(tmp_path):
    silent = tmp_path / "silent.mp4"
    write_talking_video(silent, burst_audio(0.5, seed=1), size=(64, 64), with_audio=False)
    with pytest.raises(MediaError, match="no audio stream: .*silent.mp4"):
        SyncRoute(str(silent), "upstream").__enter__()


def test_unknown_protocol_lists_the_choices():
    assert check_protocol("clean") == "clean"
    with pytest.raises(ValueError, match="choose one of upstream, clean"):
        check_protocol("lossless")


class _Trickle(io.RawIOBase):
    """A pipe that hands out at most ``step`` bytes per read."""

    def __init__(self, data: bytes, step: int):
        self.data, self.pos, self.step = data, 0, step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self.data[self.pos : self.pos + min(self.step, len(buffer))]
        buffer[: len(chunk)] = chunk
        self.pos += len(chunk)
        return len(chunk)


def test_split_jpegs_cuts_a_concatenated_stream_into_its_files():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8), np.zeros((16, 16, 3), np.uint8),
              np.full((33, 17, 3), 255, np.uint8)]
    options = [[cv2.IMWRITE_JPEG_QUALITY, 5], [cv2.IMWRITE_JPEG_QUALITY, 100],
               [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], [cv2.IMWRITE_JPEG_RST_INTERVAL, 1]]
    files = [cv2.imencode(".jpg", image, option)[1].tobytes() for image in images for option in options]
    stream = b"".join(files)
    for step in (1, 7, len(stream)):
        assert list(split_jpegs(io.BufferedReader(_Trickle(stream, step)))) == files
    with pytest.raises(MediaError, match="ends inside a frame"):
        list(split_jpegs(io.BufferedReader(_Trickle(stream[:-5], 64))))
    with pytest.raises(MediaError, match="not a JPEG stream"):
        list(split_jpegs(io.BufferedReader(_Trickle(b"RIFF" + stream, 64))))
