"""ffmpeg stopped by a signal is an interruption (StoppedBySignal), never a verdict on the file it read."""

from __future__ import annotations

import signal
import subprocess

import pytest

from latentsync.errors import MediaError, StoppedBySignal
from latentsync.media.ffmpeg import ffmpeg_exe, raise_if_signalled, run_ffmpeg


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_the_exit_status_of_a_signalled_ffmpeg_is_recognised(sig):
    # An endless source: ffmpeg runs until the signal, whenever it arrives (before or after ffmpeg's own
    # handler is in place the status differs: 255 from ffmpeg, or -sig from the kernel; both count).
    with subprocess.Popen([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
                           "testsrc=size=32x32:rate=25", "-f", "null", "-"], stderr=subprocess.DEVNULL) as proc:
        proc.send_signal(sig)
        status = proc.wait(timeout=60)
    assert status != 0
    with pytest.raises(StoppedBySignal, match="ffmpeg was stopped by a signal while it read 'src.mp4'"):
        raise_if_signalled(status, "src.mp4")


def test_a_real_failure_stays_a_media_error(tmp_path):
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(MediaError) as caught:
        run_ffmpeg(["-i", f"file:{tmp_path / 'text.mp4'}", "-f", "null", "-"], tmp_path / "text.mp4", "transcode")
    assert not isinstance(caught.value, StoppedBySignal)
    assert "ffmpeg could not transcode" in str(caught.value)
    raise_if_signalled(1, "x")  # an ordinary failure status is not a signal
