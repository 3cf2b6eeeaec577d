"""Step 1: keep videos that open, have a video and an audio stream and last longer than zero.

Nothing is deleted: a broken source is recorded as dropped in the manifest and left where it is.
"""

from __future__ import annotations

from latentsync.errors import MediaError
from latentsync.media.probe import probe_video
from latentsync.media.reader import VideoReader
from preprocess.runner import Item, Record, dropped, record


def check_video(item: Item, settings) -> list[Record]:
    """Probe the container and decode the first frame; the source itself is the kept output."""
    try:
        info = probe_video(item.source)
    except MediaError as err:
        return dropped(item, _undecodable(err, item.source))
    if info.is_image:
        return dropped(item, "a still image, not a video")
    if not info.has_audio:
        return dropped(item, "no audio stream")
    if info.num_frames <= 0 or info.duration <= 0:
        return dropped(item, "zero length")
    try:
        next(iter(VideoReader(item.source, fps=info.fps)))
    except MediaError as err:
        return dropped(item, _undecodable(err, item.source))
    return [record(item.source, item.source, True, duration_in=info.duration, duration_out=info.duration)]


def _undecodable(err: MediaError, path: str) -> str:
    """One short reason line: the library's own words, without the path the manifest already names."""
    message = str(err).splitlines()[0].replace(f": {path!r}", "").split(": ", 1)[-1]
    return "undecodable: " + message[:160]
