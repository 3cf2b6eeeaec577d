"""Which pixels and samples the SyncNet metric scores: upstream's lossy media route, or the clean one.

``upstream`` (the default: LSE-C / LSE-D that compare with LatentSync's and the papers' numbers)
repeats the media round trips of LatentSync's evaluation (syncnet_python's pipeline), with the same
ffmpeg options and OpenCV calls:

1. the video is re-encoded at 25 fps with ffmpeg's default mp4 encoders (``-qscale:v 2 -async 1
   -r 25``: libx264 ignores the qscale, so CRF 23; the audio becomes AAC);
2. that file's frames are extracted as JPEG at ``-qscale:v 2`` and decoded by OpenCV: faces are
   detected, tracked and cropped on them; its audio is decoded to 16 kHz mono;
3. each track's 224 px crops are written by OpenCV's ``mp4v`` (MPEG-4 part 2) writer at 25 fps and
   the track's audio is muxed in as AAC;
4. that file's frames are extracted as JPEG at ffmpeg's default quality (its 200 kbit/s rate
   control) and decoded by OpenCV, its audio decoded to 16 kHz mono: this is what SyncNet sees.

``clean``: the video is decoded once (25 fps by timestamp, :class:`VideoReader`) and its crops and
audio reach SyncNet without any re-encoding.

Upstream writes every JPEG to disk; here they stream through a pipe (the same bytes) and only
the re-encoded video and each track's small crop video touch a private temporary folder.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from typing import BinaryIO, Iterable, Iterator

import cv2
import numpy as np
from scipy.io import wavfile

from latentsync.errors import MediaError
from latentsync.media.audio import INT16_SCALE, SAMPLE_RATE, load_audio
from latentsync.media.ffmpeg import ffmpeg_exe, ffmpeg_path, raise_if_signalled, run_ffmpeg
from latentsync.media.probe import probe_video
from latentsync.media.reader import VideoReader
from latentsync.utils.files import WORK_PREFIX, owned_prefix, remove_stale

logger = logging.getLogger(__name__)

PROTOCOLS = ("upstream", "clean")
DEFAULT_PROTOCOL = "upstream"
FPS = 25  # the metric's frame rate: videos are brought to it first
SOURCE_JPEG_QSCALE = 2  # upstream's frames of the whole video: JPEG at -qscale:v 2
CROP_FOURCC = "mp4v"  # OpenCV's writer of the track crops
_CHUNK = 1 << 20  # bytes read from ffmpeg's JPEG pipe at a time
_STDERR_TAIL = 2000  # characters of ffmpeg's stderr kept in an error


def check_protocol(protocol: str) -> str:
    """``protocol`` if it is one of :data:`PROTOCOLS`; else a ValueError listing them."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown sync-confidence protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    return protocol


class SyncRoute:
    """One video on its way to the SyncNet scorer under a protocol (a context manager: it owns a work folder).

    :meth:`frames` gives the 25 fps RGB frames that faces are detected and cropped on (each call decodes
    them again), :attr:`audio` the 16 kHz mono audio, and :meth:`track_media` what the scorer gets of one
    face track: its crops, their count and its audio, after the protocol's round trip.
    """

    def __init__(self, video_path: str, protocol: str = DEFAULT_PROTOCOL):
        self.video_path = video_path
        self.protocol = check_protocol(protocol)
        self.audio = np.zeros(0, np.float32)
        self._work: str | None = None
        self._source = video_path  # the file frames are decoded from

    def __enter__(self) -> "SyncRoute":
        if not probe_video(self.video_path).has_audio:  # said here: later errors would name the work copy
            raise MediaError(f"file has no audio stream: {self.video_path!r}")
        if self.protocol == "clean":
            self.audio = load_audio(self.video_path)
            return self
        remove_stale(tempfile.gettempdir(), WORK_PREFIX)
        self._work = tempfile.mkdtemp(prefix=owned_prefix(WORK_PREFIX) + "sync-")
        try:
            self._source = os.path.join(self._work, "video.mp4")
            reencode_at_25_fps(self.video_path, self._source)
            self.audio = load_audio(self._source)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None

    def frames(self) -> Iterator[np.ndarray]:
        """The video's 25 fps RGB frames, as the protocol decodes them."""
        if self.protocol == "upstream":
            return jpeg_frames(self._source, SOURCE_JPEG_QSCALE)
        return iter(VideoReader(self._source, fps=FPS))

    def track_media(
        self, crops: Iterable[np.ndarray], count: int, audio: np.ndarray, name: str
    ) -> tuple[Iterator[np.ndarray], int, np.ndarray]:
        """(crops, number of crops, audio) of one track as the scorer gets them; ``name`` tells tracks apart."""
        if self.protocol == "clean":
            return iter(crops), count, audio
        if self._work is None:
            raise RuntimeError("SyncRoute.track_media called outside its `with` block")
        crop_video = os.path.join(self._work, f"crop{name}.mp4")
        written = write_crop_video(crops, audio, crop_video)
        return jpeg_frames(crop_video, None), written, load_audio(crop_video)


def reencode_at_25_fps(src: str, dst: str) -> None:
    """Upstream's first step: re-encode at 25 fps with ffmpeg's default mp4 encoders.

    ``-async 1`` (deprecated by ffmpeg in favour of the aresample filter) is spelled as the filter it
    inserts, ``aresample=async=1:first_pts=0`` (the tests get the same frames and samples both ways).
    """
    run_ffmpeg(["-y", "-loglevel", "error", "-i", ffmpeg_path(src), "-qscale:v", str(SOURCE_JPEG_QSCALE),
                 "-af", "aresample=async=1:first_pts=0", "-r", str(FPS), ffmpeg_path(dst)], src, "re-encode")


def write_crop_video(crops: Iterable[np.ndarray], audio: np.ndarray, path: str) -> int:
    """Upstream's crop video: RGB crops through OpenCV's mp4v writer at 25 fps, ``audio`` (16 kHz) muxed in as AAC.

    Returns the number of crops written.
    """
    stem = os.path.splitext(path)[0]
    silent, wav = stem + "t.mp4", stem + ".wav"
    writer = None
    count = 0
    for crop in crops:
        if writer is None:
            height, width = crop.shape[:2]
            writer = cv2.VideoWriter(silent, cv2.VideoWriter_fourcc(*CROP_FOURCC), FPS, (width, height))
            if not writer.isOpened():
                raise MediaError(f"OpenCV cannot write {CROP_FOURCC} video to {silent!r} (no FFmpeg back-end?)")
        writer.write(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        count += 1
    if writer is None:
        raise ValueError("a face track without crops")
    writer.release()
    samples = np.clip(np.round(np.asarray(audio, np.float64) * INT16_SCALE), -32768, 32767).astype(np.int16)
    wavfile.write(wav, SAMPLE_RATE, samples)
    run_ffmpeg(["-y", "-loglevel", "error", "-i", ffmpeg_path(silent), "-i", ffmpeg_path(wav),
                 "-c:v", "copy", "-c:a", "aac", ffmpeg_path(path)], path, "mux the crops of")
    os.remove(silent)
    os.remove(wav)
    return count


def jpeg_frames(video_path: str, qscale: int | None) -> Iterator[np.ndarray]:
    """RGB frames of ``video_path`` after ffmpeg's JPEG encoder and OpenCV's JPEG decoder.

    ``qscale``: ffmpeg's ``-qscale:v`` (2 is near-lossless), or None for its default rate control.
    The JPEGs stream through a pipe (the bytes ``-f image2`` files would hold); stopping early ends ffmpeg.
    """
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-i", ffmpeg_path(video_path), "-an"]
    if qscale is not None:
        cmd += ["-qscale:v", str(qscale)]
    cmd += ["-c:v", "mjpeg", "-f", "image2pipe", "pipe:1"]
    logger.debug("running %s", cmd)
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr)
        try:
            for data in split_jpegs(process.stdout):
                image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                if image is None:
                    raise MediaError(f"OpenCV could not decode a JPEG frame of {video_path!r}")
                yield cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        finally:
            process.stdout.close()
            if process.poll() is None:
                process.kill()
            process.wait()
        if process.returncode != 0:
            raise_if_signalled(process.returncode, video_path)
            stderr.seek(0)
            message = stderr.read().decode("utf-8", "replace").strip()[-_STDERR_TAIL:]
            raise MediaError(f"ffmpeg could not extract JPEG frames from {video_path!r}:\n{message}")


def split_jpegs(stream: BinaryIO) -> Iterator[bytes]:
    """The JPEG files of a concatenated stream (ffmpeg's ``image2pipe``), cut where each one's markers end."""
    buffer = bytearray()
    while True:
        end = jpeg_length(buffer)
        while end is None:
            data = stream.read1(_CHUNK)
            if not data:
                if buffer:
                    raise MediaError(f"JPEG stream ends inside a frame ({len(buffer)} bytes left)")
                return
            buffer += data
            end = jpeg_length(buffer)
        yield bytes(buffer[:end])
        del buffer[:end]


def jpeg_length(data: bytes | bytearray) -> int | None:
    """Length of the JPEG file at the start of ``data``, or None while it is incomplete.

    Walks the marker segments (each with its length) to the scan, then the entropy-coded data to
    the next marker that is neither a stuffed 0xFF00 nor a restart marker, up to the end of image.
    """
    if len(data) < 2:
        return None
    if data[0] != 0xFF or data[1] != 0xD8:
        raise MediaError("not a JPEG stream (no start-of-image marker)")
    pos = 2
    while True:
        if pos + 2 > len(data):
            return None
        if data[pos] != 0xFF:
            raise MediaError(f"corrupt JPEG stream (no marker at byte {pos})")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0xD9:  # end of image
            return pos + 2
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            pos += 2
            continue
        if pos + 4 > len(data):
            return None
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker != 0xDA:  # not start of scan
            continue
        while True:  # entropy-coded data
            pos = data.find(b"\xff", pos)
            if pos < 0 or pos + 1 >= len(data):
                return None
            following = data[pos + 1]
            if following != 0x00 and not 0xD0 <= following <= 0xD7:
                break
            pos += 2
