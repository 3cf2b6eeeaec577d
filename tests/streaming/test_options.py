"""Stream options are checked once, when made: a bad one is a ConfigError naming it."""

from __future__ import annotations

import pytest

from latentsync.errors import ConfigError
from latentsync.streaming import StreamOptions


@pytest.mark.parametrize("changes, says", [
    (dict(clip_frames=0), "clip_frames must be a whole number >= 1"),
    (dict(clip_frames=8.0), "clip_frames must be a whole number >= 1"),
    (dict(blend_frames=0), "blend_frames must be a whole number >= 1"),
    (dict(buffer_frames=-1), "buffer_frames must be a whole number >= 1"),
    (dict(hangover_frames=-2), "hangover_frames must be a whole number >= 0"),
    (dict(silence_dbfs=3.0), "silence_dbfs must be a level in dB full scale <= 0"),
    (dict(silence_dbfs=float("nan")), "silence_dbfs must be a level"),
    (dict(compute_margin=-0.1), "compute_margin must be a number of seconds >= 0"),
    (dict(jitter=float("inf")), "jitter must be a number of seconds >= 0"),
    (dict(acceleration="turbo"), "acceleration must be one of none, compile, cudagraphs"),
])
def test_bad_options_name_themselves(changes, says):
    with pytest.raises(ConfigError, match=f"stream option {says}"):
        StreamOptions(**changes)


def test_good_options_and_replace():
    options = StreamOptions(clip_frames=8, silence_dbfs=None, hangover_frames=0)
    assert options.replace(blend_frames=2).blend_frames == 2 and options.clip_frames == 8
    with pytest.raises(ConfigError, match="blend_frames"):
        options.replace(blend_frames=0)
