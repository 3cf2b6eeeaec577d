"""The stream's plan without models: idle and talking frames, the blend, clips, gaps, the end, and real-time placement."""

from __future__ import annotations

import numpy as np
import pytest

from latentsync.pipelines.frame_plan import padded_positions, pingpong_index
from latentsync.streaming.timeline import FRAME_SAMPLES, Planner, Timeline
from latentsync.whisper.stream_windows import TokenReach, samples_needed

LOUD = 0.1  # -20 dBFS


def planner(**changes) -> Planner:
    options = dict(blend_frames=4, hangover_frames=2, silence_dbfs=-50.0)
    options.update(changes)
    clip = options.pop("clip_frames", 8)
    sources = options.pop("sources", 10)
    return Planner(sources, clip, TokenReach((2, 2)), **options)


def frames_of(clips) -> list:
    return [frame for clip in clips for frame in clip.frames]


def tone(frames: int, level: float = LOUD) -> np.ndarray:
    t = np.arange(frames * FRAME_SAMPLES) / 16000
    return (level * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_silence_is_idle_frame_by_frame_and_speech_is_clips_with_a_blend_in_and_out():
    plan = planner()
    plan.push(np.zeros(5 * FRAME_SAMPLES, np.float32), None)  # 5 silent frames: idle as soon as they are known
    idle = plan.plan()
    assert [(c.start, len(c.frames), c.talking) for c in idle] == [(k, 1, False) for k in range(5)]
    plan.push(tone(10), None)  # frames 5..14 speech
    assert plan.plan() == []  # the first clip [5, 13) waits for its tokens' audio and the look-ahead
    plan.push(np.zeros(20 * FRAME_SAMPLES, np.float32), None)
    clips = plan.plan()
    talking = [c for c in clips if c.talking]
    assert [(c.start, len(c.frames), c.run_start) for c in talking] == [(5, 8, 5), (13, 8, 5)]
    alphas = [f.alpha for f in frames_of(talking)]
    # In over 4 frames from the first voiced frame; out after 2 frames of hangover past the last (14).
    assert alphas == [0.25, 0.5, 0.75] + [1.0] * 9 + [0.75, 0.5, 0.25, 0.0]
    assert [f.voiced for f in frames_of(talking)] == [True] * 10 + [False] * 6
    steps = np.diff([0.0, *alphas, 0.0])
    assert np.abs(steps).max() <= 0.25 + 1e-12
    after = [c for c in clips if c.start >= 21]
    assert all(not c.talking and len(c.frames) == 1 for c in after)  # idle again, frame by frame
    assert all(f.source == pingpong_index(f.index, 10) for f in frames_of(clips))


def test_a_talking_clip_waits_exactly_for_the_audio_its_tokens_and_the_look_ahead_need():
    plan = planner(silence_dbfs=None)
    need = samples_needed(8, 0, TokenReach((2, 2)))
    assert need == 8 * FRAME_SAMPLES + 4 * 320 + 10 * 320  # clip, tokens' reach (80 ms), look-ahead (200 ms)
    audio = tone(need // FRAME_SAMPLES + 1)
    plan.push(audio[: need - 1], None)
    assert plan.plan() == []
    plan.push(audio[need - 1 : need], None)
    (clip,) = plan.plan()
    assert (clip.start, len(clip.frames), clip.talking) == (0, 8, True)
    assert plan.audio_lead() == pytest.approx(need / 16000)


def test_the_first_frame_of_a_stream_takes_its_target_at_once():
    plan = planner(silence_dbfs=None)
    plan.push(tone(40), None)
    alphas = [f.alpha for f in frames_of(plan.plan())]
    assert alphas[0] == 1.0 and set(alphas) == {1.0}


def test_a_finished_stream_ends_with_the_audio_and_pads_its_last_clip_backward():
    plan = planner(silence_dbfs=None, clip_frames=16)
    plan.push(tone(21)[: 20 * FRAME_SAMPLES + 1], None)  # 20 frames and one sample: 21 output frames
    plan.finish()
    clips = plan.plan()
    assert plan.done and plan.total_frames == 21
    assert [(c.start, len(c.frames)) for c in clips] == [(0, 16), (16, 5)]
    assert clips[1].positions == tuple(padded_positions(5, 16))
    assert clips[1].num_samples == 20 * FRAME_SAMPLES + 1
    assert plan.plan() == []


def test_a_gap_is_idle_and_the_next_speech_starts_a_new_run():
    plan = planner(silence_dbfs=None, hangover_frames=0, blend_frames=1)
    plan.push(tone(8), None)
    plan.gap(30 * FRAME_SAMPLES / 16000)
    plan.push(tone(8), None)
    plan.finish()
    clips = plan.plan()
    runs = sorted({c.run_start for c in clips if c.talking})
    assert runs == [0, 38]
    idle = [f.index for f in frames_of(clips) if f.alpha == 0]
    assert idle == list(range(8, 38))
    assert all(not f.audio.any() for f in frames_of(clips) if 8 <= f.index < 38)  # a gap's audio is silence


def test_on_a_clock_time_commits_idle_frames_without_any_push_and_never_stalls():
    plan = planner(compute_margin=0.1, jitter=0.04)
    committed = []
    for step in range(50):  # 2 s with no audio at all
        committed += plan.plan(now=step * 0.04)
    indices = [f.index for f in frames_of(committed)]
    assert indices == list(range(len(indices))) and len(indices) >= 49
    assert all(not c.talking for c in committed)


def test_on_a_clock_speech_after_a_pause_starts_latency_ahead_and_its_clips_are_ready_before_they_are_due():
    plan = planner(compute_margin=0.1, jitter=0.04, silence_dbfs=None)
    now, committed = 0.0, []
    for _ in range(25):  # 1 s of nothing
        committed += plan.plan(now)
        now += 0.04
    first_push = now
    speech = tone(50)
    for start in range(0, len(speech), 640):  # 2 s of speech in 40 ms chunks, pushed as a microphone would
        plan.push(speech[start : start + 640], now)
        committed += plan.plan(now)
        now += 0.04
    for _ in range(75):
        committed += plan.plan(now)
        now += 0.04
    talking = [c for c in committed if c.talking]
    start = talking[0].start
    assert start == int(np.ceil((first_push + plan.latency) * 25))  # placed latency ahead
    assert plan.latency == pytest.approx(plan.audio_lead() + 0.1 + 0.04)
    # Each talking clip was committed with its audio in full, compute_margin before it was due.
    voiced = [f.index for c in talking for f in c.frames if f.voiced]
    assert voiced == list(range(start, start + 50))
    indices = [f.index for f in frames_of(committed)]
    assert indices == list(range(len(indices)))  # every frame once, in order: no stall, no gap in the output


def test_on_a_clock_late_audio_is_a_gap_not_a_stall():
    plan = planner(compute_margin=0.1, jitter=0.0, silence_dbfs=None, hangover_frames=0, blend_frames=1)
    plan.push(tone(2), 0.0)  # 80 ms, then nothing: the clip is committed when due, the rest silence
    committed = []
    now = 0.0
    while not committed or committed[-1].frames[-1].index < 60:
        committed += plan.plan(now)
        now += 0.04
    talking = [c for c in committed if c.talking]
    assert len(talking) == 1
    assert [f.voiced for f in talking[0].frames] == [True, True] + [False] * 6


def test_timeline_reads_back_across_growth_and_release():
    timeline = Timeline()
    data = np.arange(100_000, dtype=np.float32)
    for start in range(0, len(data), 777):
        timeline.write(data[start : start + 777])
    np.testing.assert_array_equal(timeline.read(5, 90_000), data[5:90_000])
    timeline.forget_before(60_000)
    np.testing.assert_array_equal(timeline.read(60_000, 100_010), np.concatenate([data[60_000:], np.zeros(10)]))
    with pytest.raises(IndexError):
        timeline.read(10, 20)
