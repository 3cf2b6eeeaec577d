"""Real-time lip sync: speech streams in, the talking avatar streams out at 25 fps.

Quick use (the models are loaded once; any number of sessions share them, from several threads)::

    from latentsync.pipelines.loading import load_pipeline_for
    from latentsync.settings import InferenceSettings
    from latentsync.streaming import StreamOptions, StreamSession, WallClock

    settings = InferenceSettings.from_config(inference_steps=10, scheduler="dpm++")
    pipe = load_pipeline_for(settings)
    with StreamSession(pipe, "avatar.mp4", settings, StreamOptions(clip_frames=8), clock=WallClock()) as session:
        session.push_audio(chunk, 48000)          # any size; int16/float; (n,) or (n, channels)
        frame = session.read()                    # StreamFrame, at 25 fps; None once a finished stream ends
        frame.index, frame.timestamp, frame.image, frame.audio, frame.synced, frame.alpha

The API (every name below is importable from ``latentsync.streaming``):

``StreamSession(pipeline, avatar, settings, options=StreamOptions(), *, clock=None, face_detector=None)``
    Opens a session. ``pipeline``: a loaded :class:`~latentsync.pipelines.lipsync_pipeline.LipsyncPipeline`
    (:func:`~latentsync.pipelines.loading.load_pipeline_for`); never changed by a session.
    ``avatar``: a face video (played forward, backward, forward... as offline inference loops it), a
    photo, or an :class:`Avatar` from :func:`prepare_avatar`. ``settings``: an
    :class:`~latentsync.settings.InferenceSettings` (sampler, steps, guidance, seed, deep cache, face
    index and detection; its file paths are not used). ``options``: :class:`StreamOptions` (clip length,
    blend, silence gate, avatar cache folder, acceleration). ``face_detector``: None for the pipeline's.
    Opening prepares the avatar (or reads it from the cache) and raises what is wrong before anything
    streams: :class:`~latentsync.errors.NoFaceError` for an avatar without the face (the offline
    message), :class:`~latentsync.errors.MediaError` for an unreadable file,
    :class:`~latentsync.errors.ConfigError` for a bad setting or option. ``open_session(...)`` is the same.

    ``clock``: None runs *as fast as possible*: the stream's time is the audio pushed (``push_gap``
    adds a pause), nothing waits for a clock, and the frames depend only on the calls made (file-driven
    use, tests). A :class:`WallClock` makes the session *real-time*: frames are due at 25 fps from the
    moment it opens, whether or not speech arrives (a gap in the pushes yields the avatar's own
    frames, never a stall); speech pushed after a pause is placed ``session.latency`` seconds ahead,
    just far enough for its first clip to be ready in time. A :class:`VirtualClock` is the same
    real-time logic on a clock moved by ``clock.advance(seconds)``, deterministic, for tests.

``session.push_audio(samples, sample_rate)``
    ``samples``: (n,) mono or (n, channels) (averaged to mono), int16 (/32768), int32 (/2**31) or float
    PCM; any ``sample_rate`` (resampled to 16 kHz by a streaming resampler, so the chunking does not
    change the result); any chunk size, empty chunks included. A bad chunk or rate (0, negative, not a
    whole number) is a :class:`~latentsync.errors.StreamError`, as is pushing after ``finish``/``close``.
``session.push_gap(seconds)``
    A pause without audio (its frames are the avatar's own after the blend out).
``session.finish()``
    No more audio: the stream ends ``ceil(samples / 640)`` frames after its start, as an offline output
    lasting as long as the audio (the last clip padded backward as offline pads it).
``session.read(timeout=None) -> StreamFrame | None``, ``for frame in session``
    The next frame, in order, once it is ready (on a clock: not before it is due). None at the end of a
    finished stream (or on timeout). A :class:`StreamFrame` holds ``index``, ``timestamp`` (index / 25 s),
    ``image`` (H, W, 3) RGB uint8, ``audio`` (640,) float32 at 16 kHz (this frame's audio; zeros in a
    gap), ``synced`` (the mouth is generated) and ``alpha`` (0: the avatar's own pixels, exactly;
    1: the generated frame; in between while speech blends in or out). An error in the session's
    threads is raised here, unchanged.
``session.stats`` (:class:`StreamStats`), ``session.latency``, ``session.avatar``
    Frames out, synced, late (ready after due), dropped (reader too slow, real time), start-up of the
    avatar (prepared now or from the cache), seconds per clip.
``session.close()`` (or leaving ``with``; also when the session object is dropped)
    Stops at once: threads joined, the avatar's cache files released, its tensors dropped.

``prepare_avatar(pipeline, path, settings, *, clip_frames=None, cache_dir=None, face_detector=None) -> Avatar``
    The avatar's frames, face track, crops, matrices and VAE posteriors, computed once and cached by
    content under ``cache_dir`` (None: ``~/.cache/latentsync/avatars`` or ``$XDG_CACHE_HOME/latentsync/avatars``;
    "" keeps it in memory). See :mod:`latentsync.streaming.avatar` for what the key covers.

Speech and silence: a frame is voiced when its audio is pushed and at least ``silence_dbfs`` loud; the
face talks from a voiced frame until ``hangover_frames`` after the last one, and its alpha moves by at
most ``1 / blend_frames`` per frame (:mod:`latentsync.streaming.timeline`). Talking frames are
generated in clips of ``clip_frames`` from the first frame of each talking run; their audio tokens
come from Whisper's ``stream`` window mode (:mod:`latentsync.whisper.stream_windows`), which offline
inference also offers (``audio_windows: stream``): a stream whose every frame talks gives exactly the
frames of the offline run with that mode, the same seed and the same clip boundaries.
"""

from latentsync.streaming.avatar import Avatar, prepare_avatar
from latentsync.streaming.clock import Clock, VirtualClock, WallClock
from latentsync.streaming.options import StreamOptions
from latentsync.streaming.render import StreamFrame
from latentsync.streaming.session import StreamSession, StreamStats, open_session

__all__ = [
    "Avatar",
    "Clock",
    "StreamFrame",
    "StreamOptions",
    "StreamSession",
    "StreamStats",
    "VirtualClock",
    "WallClock",
    "open_session",
    "prepare_avatar",
]
