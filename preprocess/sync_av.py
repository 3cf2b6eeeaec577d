"""Step 6: audio-visual offset and confidence; shift the audio so the offset is 0, drop bad clips.

The scorer is the evaluation's classic SyncNet (``--sync_scorer classic``, the reference's choice)
or a StableSyncNet checkpoint (``--sync_scorer stable``). Both report the offset k in frames with
k > 0 meaning the audio leads the picture; the audio is then delayed by k frames (or advanced, for
k < 0), padded with silence, and cut to the video's length, as the reference's ``-itsoffset`` does.
"""

from __future__ import annotations

import functools
import os

import numpy as np
from scipy.io import wavfile

from latentsync.config import load_config
from latentsync.metrics.stable_sync import StableSyncScorer
from latentsync.metrics.sync_confidence import SyncScorer, score_video
from latentsync.models.s3fd import S3FD, S3FDDetector
from latentsync.models.stable_syncnet import StableSyncNet
from latentsync.models.syncnet_classic import ClassicSyncNet
from latentsync.utils.device import pick_device
from latentsync.media.audio import INT16_SCALE, load_audio
from latentsync.media.mux import mux_audio
from preprocess.runner import Item, Record, dropped, publish, record, work_folder
from preprocess.settings import FPS, SAMPLE_RATE


@functools.lru_cache(maxsize=1)
def scorer(settings):
    """The configured scorer, built once per worker process: a function clip path -> (offset, confidence)."""
    device = pick_device(settings.device)
    if settings.sync_scorer == "stable":
        config = load_config(settings.syncnet_config)
        model = StableSyncNet.from_checkpoint(config, settings.syncnet_ckpt, device=device)
        stable = StableSyncScorer(model, config["data"], vshift=settings.vshift)
        return lambda path: _verdict(stable.score(path))
    syncnet = ClassicSyncNet.from_file(settings.classic_syncnet_path, device)
    classic = SyncScorer(syncnet, device, vshift=settings.vshift)
    detector = S3FDDetector(S3FD.from_file(settings.s3fd_path, device), device)
    return lambda path: _verdict(score_video(path, classic, detector))


def _verdict(result) -> tuple[int, float]:
    return int(result.offset), float(result.confidence)


def shift_audio(audio: np.ndarray, frames: int, fps: float = FPS, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Delay ``audio`` by ``frames`` video frames (advance it for negative values), same length, silence-padded."""
    samples = round(frames * sample_rate / fps)
    if samples >= 0:
        return np.concatenate([np.zeros(min(samples, len(audio)), audio.dtype), audio[: max(0, len(audio) - samples)]])
    return np.concatenate([audio[-samples:], np.zeros(min(-samples, len(audio)), audio.dtype)])


FOLDER_PREFIX = "av_synced_"  # + the threshold


def folder(settings) -> str:
    """The step's folder under the output folder, named for its threshold as upstream's is."""
    return f"{FOLDER_PREFIX}{settings.sync_conf_threshold:g}"


def output_path(settings, key: str) -> str:
    return os.path.join(settings.output_dir, folder(settings), key)


def sync_clip(item: Item, settings) -> list[Record]:
    offset, confidence = scorer(settings)(item.source)
    scores = {"offset": offset, "confidence": round(confidence, 4)}
    duration = item.data.get("duration_out")
    if confidence < settings.sync_conf_threshold:
        reason = f"sync confidence under {settings.sync_conf_threshold:g}"
        return dropped(item, reason, scores=scores, duration_in=duration)
    if abs(offset) > settings.max_offset:
        return dropped(item, f"|offset| over {settings.max_offset} frames", scores=scores, duration_in=duration)
    out = output_path(settings, item.key)
    if offset == 0:
        publish(item.source, out)
    else:
        with work_folder(settings) as tmp:
            wav = os.path.join(tmp, "shifted.wav")
            pcm = np.clip(np.round(shift_audio(load_audio(item.source), offset) * INT16_SCALE), -32768, 32767)
            wavfile.write(wav, SAMPLE_RATE, pcm.astype(np.int16))
            mux_audio(item.source, wav, out)
    return [record(item.source, out, True, scores=scores, duration_in=duration, duration_out=duration)]
