"""mux_audio: a round trip through an odd frame size and a path full of shell characters."""

from __future__ import annotations

import numpy as np
from scipy.io import wavfile

from latentsync.media.audio import load_audio
from latentsync.media.mux import mux_audio
from latentsync.media.probe import probe_video
from latentsync.media.reader import VideoReader
from tests.media.media_files import ODD_NAME, write_grey_video


def test_write_mux_round_trip_with_odd_size_and_odd_path(tmp_path):
    folder = tmp_path / ODD_NAME
    folder.mkdir()
    video = folder / f"{ODD_NAME}.mp4"
    width, height = 65, 49  # odd: padded to 66x50 for yuv420p
    write_grey_video(video, 50, 25, size=(width, height))  # 2.0 s
    info = probe_video(video)
    assert (info.num_frames, info.width, info.height, info.has_audio) == (50, 66, 50, False)

    audio = folder / f"{ODD_NAME}.wav"
    t = np.arange(int(2.5 * 16000)) / 16000
    wavfile.write(audio, 16000, (0.3 * np.sin(2 * np.pi * 300 * t) * 32767).astype(np.int16))

    out = folder / f"out {ODD_NAME}.mp4"
    mux_audio(video, audio, out)
    muxed = probe_video(out)
    assert muxed.has_audio and muxed.num_frames == 50 and muxed.fps == 25.0
    assert abs(len(load_audio(out)) / 16000 - 2.0) < 0.05  # cut to the video by -shortest
    assert len(VideoReader(out)) == 50
    assert sorted(p.name for p in folder.iterdir()) == sorted([video.name, audio.name, out.name])
