"""Streaming sessions on tiny random-weight models (CPU), real pixels, no timing: the stream against the offline
run, the avatar cache, speech-pause-speech, sessions side by side, closing, bad input and the real-time clock."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import soxr

from latentsync.errors import NoFaceError, StreamError
from latentsync.media.reader import VideoReader
from latentsync.media.writer import VideoWriter
from latentsync.pipelines import face_pass, video_runner
from latentsync.pipelines.frame_plan import pingpong_index
from latentsync.pipelines.lipsync_pipeline import LipsyncPipeline
from latentsync.settings import InferenceSettings
from latentsync.streaming import StreamOptions, StreamSession, VirtualClock, WallClock
from latentsync.streaming.render import blend

JOIN_SECONDS = 600  # a thread still running after this is a hang, not a slow machine


def _settings(**changes) -> InferenceSettings:
    return InferenceSettings.from_config(**{**dict(inference_steps=2, enable_deepcache=False, seed=5,
                                                   audio_windows="stream"), **changes})


def _options(tmp_path: Path, **changes) -> StreamOptions:
    return StreamOptions(**{**dict(avatar_cache_dir=str(tmp_path / "avatars"), silence_dbfs=None), **changes})


def _stream(pipe, avatar, audio, options, settings=None, chunk=1000, rate=16000):
    """Every frame of a file-driven session (no clock) fed ``audio`` in ``chunk``-sample pieces."""
    with StreamSession(pipe, avatar, settings or _settings(), options) as session:
        for start in range(0, len(audio), chunk):
            session.push_audio(audio[start : start + chunk], rate)
        session.finish()
        frames = list(session)
        stats = session.stats
    return frames, stats


def _offline(pipe, settings, video, audio, folder: Path, monkeypatch) -> list[np.ndarray]:
    """The frames the offline video runner hands its encoder."""
    recorded = []

    class Recording(VideoWriter):
        def write(self, frame):
            recorded.append(np.array(frame))
            super().write(frame)

    folder.mkdir()
    monkeypatch.setattr(video_runner, "VideoWriter", Recording)
    video_runner.sync_video(pipe, settings.replace(video_path=video, audio_path=audio, video_out_path=folder / "o.mp4",
                                                   temp_dir=folder), progress=lambda *_: None)
    return recorded


def _avatar_frames(path) -> list[np.ndarray]:
    return list(VideoReader(path))


# --------------------------------------------------------------------------- the stream is the offline run


@pytest.mark.parametrize("avatar, chunk", [("avatar", 1000), ("avatar_3s", 48000)],
                         ids=["looped-1s-avatar-small-chunks", "3s-avatar-without-face-in-3-frames-one-chunk"])
def test_a_talking_stream_gives_the_offline_runs_frames_exactly(pipe, media, tmp_path, monkeypatch, avatar, chunk):
    """Same avatar, audio, seed and clip boundaries (16-frame clips from frame 0), Whisper's stream mode in
    both: every frame equal, on the CPU, to the last bit; also the audio each frame carries."""
    settings = _settings()
    offline = _offline(pipe, settings, media[avatar], media["audio"], tmp_path / "offline", monkeypatch)
    frames, _ = _stream(pipe, media[avatar], media["speech"], _options(tmp_path), settings, chunk=chunk)
    assert len(frames) == len(offline) == 75
    for k, (streamed, expected) in enumerate(zip(frames, offline)):
        np.testing.assert_array_equal(streamed.image, expected, err_msg=f"frame {k}")
        assert streamed.index == k and streamed.timestamp == k / 25
        np.testing.assert_array_equal(streamed.audio, np.pad(media["speech"], (0, 75 * 640 - 3 * 16000))[640 * k:][:640])
    own = _avatar_frames(media[avatar])
    assert max(np.abs(f.image.astype(int) - own[pingpong_index(f.index, len(own))]).max() for f in frames) > 20
    with_face = [avatar == "avatar" or k not in (30, 31, 32) for k in range(75)]  # frames 30-32 pass through
    assert [f.synced for f in frames] == with_face
    assert [f.alpha for f in frames] == [1.0 if face else 0.0 for face in with_face]


# --------------------------------------------------------------------------- the avatar cache


def test_a_second_session_reads_the_avatar_from_the_cache_and_a_changed_file_is_prepared_again(
        pipe, media, tmp_path, monkeypatch):
    calls = {"detect": 0, "encode": 0}
    detect, encode = face_pass.CountingDetector.detect_batch, LipsyncPipeline.encode_posterior

    def counted_detect(self, frames, consecutive=True):
        calls["detect"] += 1
        return detect(self, frames, consecutive)

    def counted_encode(self, pixel_values):
        calls["encode"] += 1
        return encode(self, pixel_values)

    monkeypatch.setattr(face_pass.CountingDetector, "detect_batch", counted_detect)
    monkeypatch.setattr(LipsyncPipeline, "encode_posterior", counted_encode)
    avatar = tmp_path / "me.mp4"
    avatar.write_bytes(media["avatar"].read_bytes())
    options = _options(tmp_path)
    audio = media["speech"][: 16000]

    def start_up() -> tuple[dict, object, list]:
        before = dict(calls)
        frames, stats = _stream(pipe, avatar, audio, options)
        return {k: calls[k] - before[k] for k in calls}, stats, frames

    first, first_stats, first_frames = start_up()
    second, second_stats, second_frames = start_up()
    assert first["detect"] > 0 and first["encode"] == 2 * 2  # 25 faces: 2 batches of 16, masked + whole
    assert second == {"detect": 0, "encode": 0}  # no detection, no VAE encoding: only the UNet and decodes
    assert first_stats.avatar_prepared and not second_stats.avatar_prepared
    print(f"avatar start-up: prepared {first_stats.avatar_seconds:.3f} s, from the cache {second_stats.avatar_seconds:.3f} s")
    for a, b in zip(first_frames, second_frames):
        np.testing.assert_array_equal(a.image, b.image)
    (entry,) = (tmp_path / "avatars").iterdir()

    # The same name with other bytes: a new entry, prepared again, and its own pixels.
    avatar.write_bytes(media["other"].read_bytes())
    changed, changed_stats, changed_frames = start_up()
    assert changed["detect"] > 0 and changed_stats.avatar_prepared
    assert len(list((tmp_path / "avatars").iterdir())) == 2
    other = _avatar_frames(media["other"])
    assert max(np.abs(f.image.astype(int) - other[pingpong_index(f.index, len(other))]).max()
               for f in changed_frames) > 20  # synced
    with StreamSession(pipe, avatar, _settings(), options.replace(silence_dbfs=-50.0)) as session:
        session.push_audio(np.zeros(16000, np.float32), 16000)  # silence: the avatar's own frames
        session.finish()
        idle = list(session)
    assert all(np.array_equal(f.image, other[f.index]) for f in idle)

    # A setting the preparation depends on (detection cadence) is a new entry too.
    before = dict(calls)
    with StreamSession(pipe, avatar, _settings(detect_every=1), options):
        pass
    assert calls["detect"] > before["detect"] and len(list((tmp_path / "avatars").iterdir())) == 3
    assert entry.is_dir()  # the first entry was left alone


# --------------------------------------------------------------------------- speech, pause, speech


def test_speech_pause_speech_idle_frames_are_the_avatars_pixels_and_the_blend_is_exact(pipe, media, tmp_path):
    """0.8 s of speech, 1.6 s without audio, 0.8 s of speech. Blending over 4 frames against a session that does not
    blend and talks 3 frames longer (the same clips and draws): every blended frame is alpha of the generated
    frame over the avatar's own, each pixel on a straight line between them."""
    speech = media["speech"]
    own = _avatar_frames(media["avatar"])

    def run(blend_frames: int, hangover_frames: int):
        options = _options(tmp_path, blend_frames=blend_frames, hangover_frames=hangover_frames)
        with StreamSession(pipe, media["avatar"], _settings(), options) as session:
            session.push_audio(speech[: 20 * 640], 16000)
            session.push_gap(40 * 640 / 16000)
            session.push_audio(speech[16000 : 16000 + 20 * 640], 16000)
            session.finish()
            return list(session)

    blended, generated = run(4, 2), run(1, 5)
    assert len(blended) == len(generated) == 80
    alphas = [f.alpha for f in blended]
    assert alphas == [1.0] * 22 + [0.75, 0.5, 0.25] + [0.0] * 35 + [0.25, 0.5, 0.75] + [1.0] * 17
    assert [f.alpha for f in generated] == [1.0] * 25 + [0.0] * 35 + [1.0] * 20
    assert np.abs(np.diff(alphas)).max() == 0.25  # never a jump larger than the blend step
    for f, g in zip(blended, generated):
        source = own[pingpong_index(f.index, len(own))]
        if f.alpha == 0:
            np.testing.assert_array_equal(f.image, source)  # the avatar's own pixels, exactly
            assert not f.synced
        elif f.alpha == 1:
            np.testing.assert_array_equal(f.image, g.image)
        else:
            np.testing.assert_array_equal(f.image, blend(source, g.image, f.alpha))
            assert f.synced and np.abs(g.image.astype(int) - source).max() > 20  # something visible is blended
    assert all(not f.audio.any() for f in blended[20:60]) and all(f.audio.any() for f in blended[:20])


# --------------------------------------------------------------------------- sessions side by side


def test_two_sessions_at_once_on_one_pipeline_give_what_each_gives_alone(pipe, media, tmp_path):
    jobs = {
        "a": (media["avatar"], _settings(seed=3, inference_steps=3, enable_deepcache=True, deepcache_interval=2),
              dict(clip_frames=8)),
        "b": (media["avatar_3s"], _settings(seed=9, scheduler="dpm++", guidance_scale=2.0), dict(blend_frames=2)),
    }
    speech = media["speech"]

    def run(name: str) -> list:
        avatar, settings, options = jobs[name]
        return [f.image for f in _stream(pipe, avatar, speech[: 2 * 16000], _options(tmp_path, **options),
                                         settings, chunk=777)[0]]

    alone = {name: run(name) for name in jobs}
    together, errors = {}, {}

    def worker(name: str) -> None:
        try:
            together[name] = run(name)
        except BaseException as err:  # noqa: BLE001 - reported by the test thread
            errors[name] = err

    threads = [threading.Thread(target=worker, args=(name,)) for name in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_SECONDS)
    assert errors == {} and not any(t.is_alive() for t in threads)
    for name in jobs:
        assert len(alone[name]) == len(together[name]) == 50
        for k, (x, y) in enumerate(zip(alone[name], together[name])):
            np.testing.assert_array_equal(x, y, err_msg=f"session {name}, frame {k}")


# --------------------------------------------------------------------------- closing


def _mapped(folder: Path) -> list[str]:
    with open("/proc/self/maps", encoding="utf-8") as f:
        return [line for line in f if str(folder) in line]


@pytest.mark.parametrize("how", ["close", "drop"])
def test_a_closed_or_dropped_session_leaves_no_thread_or_mapped_file(pipe, media, tmp_path, how):
    before = threading.active_count()
    session = StreamSession(pipe, media["avatar"], _settings(), _options(tmp_path))
    session.push_audio(media["speech"][:32000], 16000)
    first = session.read()
    assert first.index == 0 and first.synced
    assert threading.active_count() > before and _mapped(tmp_path / "avatars")
    if how == "close":
        session.close()
        session.close()  # twice is fine
        with pytest.raises(StreamError, match="closed"):
            session.push_audio(np.zeros(10, np.float32), 16000)
    else:
        del session, first
        gc.collect()
    assert threading.active_count() == before
    assert _mapped(tmp_path / "avatars") == []


# --------------------------------------------------------------------------- input of every kind


def test_stereo_int16_and_other_rates_give_the_frames_of_the_same_mono_16khz_audio(pipe, media, tmp_path):
    speech = media["speech"][: 24000]
    as_int16 = np.round(speech * 32768).clip(-32768, 32767).astype(np.int16)  # exactly what the wav holds
    mono, _ = _stream(pipe, media["avatar"], speech, _options(tmp_path))
    stereo, _ = _stream(pipe, media["avatar"], np.stack([as_int16, as_int16], axis=1), _options(tmp_path), chunk=333)
    for a, b in zip(mono, stereo):
        np.testing.assert_array_equal(a.image, b.image)
    high = soxr.resample(speech, 16000, 44100)
    resampled, _ = _stream(pipe, media["avatar"], high, _options(tmp_path), rate=44100, chunk=4410)
    direct, _ = _stream(pipe, media["avatar"], soxr.resample(high, 44100, 16000).astype(np.float32),
                        _options(tmp_path))
    assert len(resampled) == len(direct) == 38
    for a, b in zip(resampled, direct):
        np.testing.assert_array_equal(a.image, b.image)


def test_bad_input_is_one_clear_error(pipe, media, tmp_path):
    with StreamSession(pipe, media["avatar"], _settings(), _options(tmp_path)) as session:
        for rate in (0, -8000, 22050.5):
            with pytest.raises(StreamError, match="sample_rate must be a positive whole number"):
                session.push_audio(np.zeros(100, np.float32), rate)
        with pytest.raises(StreamError, match=r"looks like \(channels, samples\)"):
            session.push_audio(np.zeros((2, 16000), np.int16), 16000)
        with pytest.raises(StreamError, match="a gap lasts"):
            session.push_gap(-1)
        session.push_audio(np.zeros(0, np.float32), 16000)  # empty: nothing happens
        session.push_audio(media["speech"][:40000], 16000)  # more than two clips at once
        session.finish()
        with pytest.raises(StreamError, match="finished"):
            session.push_audio(np.zeros(10, np.float32), 16000)
        assert len(list(session)) == 63


def test_an_avatar_without_a_face_fails_before_streaming_and_leaves_nothing(pipe, media, tmp_path):
    before = threading.active_count()
    with pytest.raises(NoFaceError, match=r"no face found in any of the 13 frames of '.*blank.mp4'"):
        StreamSession(pipe, media["blank"], _settings(), _options(tmp_path))
    assert threading.active_count() == before
    assert not (tmp_path / "avatars").exists() or list((tmp_path / "avatars").iterdir()) == []


def test_a_photo_is_a_one_frame_avatar(pipe, media, tmp_path):
    photo = tmp_path / "photo.png"
    still = _avatar_frames(media["avatar"])[0]
    cv2.imwrite(str(photo), cv2.cvtColor(still, cv2.COLOR_RGB2BGR))
    frames, stats = _stream(pipe, photo, media["speech"][:16000], _options(tmp_path))
    assert len(frames) == 25 and len(stats_avatar := _avatar_frames(photo)) == 1
    assert all(f.synced for f in frames)
    assert max(np.abs(f.image.astype(int) - stats_avatar[0]).max() for f in frames) > 20


# --------------------------------------------------------------------------- real time


def _live(pipe, media, tmp_path, clock, script) -> tuple[list, float, float]:
    """A real-time session on ``clock`` driven by ``script`` (a list of 40 ms steps: a chunk of audio or None):
    its frames, its latency and the clock's time when frame 0 was due."""
    frames = []
    with StreamSession(pipe, media["avatar"], _settings(), _options(tmp_path, silence_dbfs=-50.0, clip_frames=8,
                                                                     compute_margin=0.1), clock=clock) as session:
        start = session.start_time
        for chunk in script:
            if chunk is not None:
                session.push_audio(chunk, 16000)
            clock.advance(0.04)
            while _due(clock, start, frames):  # a frame read as soon as it is due, as a player would; never early
                frames.append(session.read())
        latency = session.latency
    return frames, latency, start


def _due(clock, start, frames) -> bool:
    """Whether the next frame is due by now (it must then come, however long generating it takes)."""
    return start + len(frames) / 25 <= clock.now() + 1e-9


def test_on_a_virtual_clock_a_pause_in_the_pushes_gives_avatar_frames_never_a_stall(pipe, media, tmp_path):
    speech = media["speech"]
    chunks = [speech[i : i + 640] for i in range(0, 25 * 640, 640)]
    script = [None] * 10 + chunks + [None] * 50 + chunks + [None] * 40  # 0.4 s, 1 s speech, 2 s nothing, ...
    frames, latency, start = _live(pipe, media, tmp_path, VirtualClock(), script)
    again, _, _ = _live(pipe, media, tmp_path, VirtualClock(), script)
    assert start == pytest.approx(0.1)  # frame 0 due one idle lead (the compute margin) after opening
    due = int((len(script) * 0.04 - start) * 25 + 1e-9) + 1  # frames due by the end of the script
    assert [f.index for f in frames] == list(range(due))  # one frame per 40 ms, none missing
    for a, b in zip(frames, again):
        np.testing.assert_array_equal(a.image, b.image)  # deterministic
    own = _avatar_frames(media["avatar"])
    synced = [f.index for f in frames if f.synced]
    # The first speech (pushed at 0.4 s on the clock) is placed latency ahead; the face talks only around speech.
    first = int(np.ceil((0.4 - start + latency) * 25 - 1e-9))
    assert synced[0] == first
    second_push = (10 + 25 + 50) * 0.04 - start  # on the session's time line
    assert min(k for k in synced if k > first + 40) >= second_push * 25
    for f in frames:
        if not f.synced:
            np.testing.assert_array_equal(f.image, own[pingpong_index(f.index, len(own))])


def test_on_the_wall_clock_without_speech_the_avatars_own_frames_stream(pipe, media, tmp_path):
    own = _avatar_frames(media["avatar"])
    with StreamSession(pipe, media["avatar"], _settings(), _options(tmp_path, compute_margin=0.05),
                       clock=WallClock()) as session:
        frames = [session.read(timeout=JOIN_SECONDS) for _ in range(4)]
    assert [f.index for f in frames] == [0, 1, 2, 3]
    for f in frames:
        np.testing.assert_array_equal(f.image, own[f.index])
        assert not f.synced and not f.audio.any()
