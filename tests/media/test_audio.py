"""load_audio on files made in the test: resampling, exact PCM, errors naming the file."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.io import wavfile

from latentsync.errors import MediaError
from latentsync.media.audio import load_audio
from tests.media.media_files import ODD_NAME, run_ffmpeg_cli, write_grey_video


def test_load_audio_resamples_stereo_mp3_to_16k_mono(tmp_path):
    mp3 = tmp_path / "tone.mp3"
    run_ffmpeg_cli("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=2", "-ac", "2", str(mp3))
    audio = load_audio(mp3)
    assert audio.dtype == np.float32 and audio.ndim == 1
    # mp3 adds encoder delay/padding of about one frame (1152 samples at 44.1 kHz).
    assert abs(len(audio) / 16000 - 2.0) < 0.06
    spectrum = np.abs(np.fft.rfft(audio[4000:20000]))
    assert np.argmax(spectrum) * 16000 / 16000 == pytest.approx(440, abs=2)  # 1 Hz bins


def test_load_audio_pcm16_is_exact(tmp_path):
    pcm = (np.arange(-8000, 8000, dtype=np.int64) * 4).astype(np.int16)
    wav = tmp_path / f"{ODD_NAME}.wav"
    wavfile.write(wav, 16000, pcm)
    np.testing.assert_array_equal(load_audio(wav), pcm.astype(np.float32) / 32768)


@pytest.mark.parametrize("name", ["missing.wav", "text.wav", "text.mp4", "silent_video.mp4", "empty.wav"])
def test_load_audio_errors_name_the_file(tmp_path, name):
    path = tmp_path / name
    if name.startswith("text"):
        path.write_text("this is not media\n")
    elif name == "silent_video.mp4":
        write_grey_video(path, 5, 25)
    elif name == "empty.wav":
        wavfile.write(path, 16000, np.zeros(0, np.int16))
    with pytest.raises(MediaError, match=str(path).replace("\\", "\\\\").replace(".", r"\.")):
        load_audio(path)
