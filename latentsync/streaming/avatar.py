"""An avatar prepared once for streaming: its frames, face track, crops, matrices and VAE posteriors, cached on disk.

:func:`prepare_avatar` does for every frame of an avatar video (or photo) what an offline run does
before denoising: read at 25 fps, detect and track the face (the face pass of
:mod:`latentsync.pipelines.face_pass`, so a video without the face is the same
:class:`~latentsync.errors.NoFaceError`), align and crop it, and encode the masked and the whole face
with the VAE. It keeps the VAE posterior's *parameters*, not a sample: a talking clip draws its
latents from them with the session's generator, in offline's order, so it gets exactly the latents an
offline run draws (the encoder runs in batches of ``clip_frames``, the size of an offline clip,
because a convolution's float results depend on the batch size). A talking frame then costs only the
UNet steps, one VAE decode and the paste-back.

The result is cached under ``StreamOptions.avatar_cache_dir`` (default
:func:`latentsync.paths.avatar_cache_dir`), one folder per key: the SHA-256 of the avatar file's
bytes plus everything the preparation depends on (crop resolution, mask image, face detector and its
options, face index, warp back-end, the VAE's weights, dtype and device type, the encoding batch).
A changed file or setting is a new key, never a stale entry; entries are written under a temporary
name and renamed into place, and opened read-only, memory-mapped (sessions on one avatar share them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from itertools import islice

import numpy as np
import torch

from latentsync.face.alignment import AlignedFrame, FaceAligner
from latentsync.face.detection import FaceDetector
from latentsync.face.mask import load_fixed_mask, prepare_masks_and_masked_images
from latentsync.media.reader import VideoReader
from latentsync.pipelines.face_pass import CountingDetector, FacePass
from latentsync.pipelines.frame_plan import VIDEO_FPS
from latentsync.pipelines.video_runner import face_stage_options
from latentsync.settings import InferenceSettings
from latentsync.utils.content_cache import cache_key, sha256_file
from latentsync.utils.files import TEMP_PREFIX, owned_prefix, remove_stale

logger = logging.getLogger(__name__)

CACHE_VERSION = "1"
_ARRAYS = ("frames", "faces", "matrices", "has_face", "masked_posterior", "reference_posterior")
_vae_digests: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # VAE module -> digest of its weights
_key_locks: dict[str, threading.Lock] = {}  # one preparation per key at a time in this process
_key_locks_guard = threading.Lock()


@dataclass
class Avatar:
    """A prepared avatar: ``frames`` (n, H, W, 3) RGB uint8 at 25 fps, ``faces`` (n, r, r, 3) aligned crops,
    ``matrices`` (n, 2, 3) frame-to-crop, ``has_face`` (n,), and the VAE posterior parameters (n, 2C, r/8, r/8)
    of the masked and whole faces (float32; zero where there is no face). ``folder`` is its cache entry
    (None: held in memory); ``prepared`` says whether this call computed it (False: read from the cache)."""

    path: str
    key: str
    folder: str | None
    frames: np.ndarray
    faces: np.ndarray
    matrices: np.ndarray
    has_face: np.ndarray
    masked_posterior: np.ndarray
    reference_posterior: np.ndarray
    prepared: bool
    seconds: float  # what opening it took

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def resolution(self) -> int:
        return self.faces.shape[1]

    def aligned(self, index: int) -> AlignedFrame:
        """Frame ``index`` as the aligner's restore takes it (no face: it passes through)."""
        if not self.has_face[index]:
            return AlignedFrame(self.frames[index], None, None)
        return AlignedFrame(self.frames[index], self.faces[index], self.matrices[index])

    def close(self) -> None:
        """Release the memory maps of the cache entry (the arrays are unusable afterwards)."""
        for name in _ARRAYS:
            array = getattr(self, name)
            mapped = getattr(array, "_mmap", None)
            setattr(self, name, np.zeros((0,) + array.shape[1:], array.dtype))
            if mapped is not None:
                del array
                mapped.close()


def avatar_key(pipeline, path: str | os.PathLike, settings: InferenceSettings, detector: FaceDetector,
               clip_frames: int) -> str:
    """The cache key of an avatar file prepared with these settings on this pipeline (see the module docstring)."""
    device = pipeline.vae.device
    options = face_stage_options(settings, pipeline.unet.device)
    parts = [
        CACHE_VERSION, sha256_file(path), VIDEO_FPS, pipeline.resolution, sha256_file(pipeline.mask_image_path),
        type(detector).__name__, options.detect_every, options.detect_max_side, options.face_box,
        "tensor-warp" if options.warp_device is not None else "opencv-warp", settings.face_index,
        _vae_digest(pipeline.vae), pipeline.vae.dtype, device.type, clip_frames,
    ]
    return cache_key(*parts)


def _vae_digest(vae: torch.nn.Module) -> str:
    """SHA-256 of the VAE's weights (computed once per loaded VAE)."""
    if vae not in _vae_digests:
        digest = hashlib.sha256()
        for name, tensor in sorted(vae.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
        _vae_digests[vae] = digest.hexdigest()
    return _vae_digests[vae]


def prepare_avatar(
    pipeline,
    path: str | os.PathLike,
    settings: InferenceSettings,
    *,
    clip_frames: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    face_detector: FaceDetector | None = None,
) -> Avatar:
    """The avatar at ``path`` (a face video, looped forward and backward, or a photo), from the cache or prepared now.

    ``clip_frames``: the sessions' clip length (None: the pipeline's); ``cache_dir``: None for
    :func:`latentsync.paths.avatar_cache_dir`, "" to keep it in memory only; ``face_detector``: None for
    the pipeline's. A file without the face raises :class:`~latentsync.errors.NoFaceError`.
    """
    from latentsync import paths

    started = time.perf_counter()
    detector = face_detector if face_detector is not None else pipeline.face_detector
    if detector is None:
        raise ValueError("no face detector: pass face_detector= or build the pipeline with load_pipeline()")
    clip_frames = clip_frames or pipeline.num_frames
    VideoReader(path, fps=VIDEO_FPS)  # probes the file: a missing or unreadable one fails here
    key = avatar_key(pipeline, path, settings, detector, clip_frames)
    folder = None
    if cache_dir != "":
        cache_dir = os.fspath(cache_dir) if cache_dir is not None else os.fspath(paths.avatar_cache_dir())
        folder = os.path.join(cache_dir, key)
    with _key_lock(key):
        if folder is not None:
            cached = _open_entry(folder, path, key, started)
            if cached is not None:
                return cached
        arrays = _compute(pipeline, path, settings, detector, clip_frames)
        if folder is None:
            return Avatar(os.fspath(path), key, None, **arrays, prepared=True, seconds=time.perf_counter() - started)
        _write_entry(folder, arrays, path, key)
        avatar = _open_entry(folder, path, key, started)
    avatar.prepared = True
    return avatar


def _key_lock(key: str) -> threading.Lock:
    with _key_locks_guard:
        return _key_locks.setdefault(key, threading.Lock())


def _compute(pipeline, path, settings: InferenceSettings, detector: FaceDetector, clip_frames: int) -> dict:
    """Read, detect, track, align and encode every frame of the avatar (what the cache holds)."""
    reader = VideoReader(path, fps=VIDEO_FPS)
    count = len(reader)
    counting = CountingDetector(detector)
    options = face_stage_options(settings, torch.device("cpu"))
    tracking = FaceAligner(detector=counting, face_index=settings.face_index, options=options)
    faces_pass = FacePass(reader, count, tracking, counting, settings.face_index, lambda *_: None, background=False)
    faces_pass.check(wait=True)  # NoFaceError before anything else
    aligner = FaceAligner(pipeline.resolution, face_index=settings.face_index,
                          options=face_stage_options(settings, pipeline.unet.device))
    r = pipeline.resolution
    frames = np.zeros((count, reader.height, reader.width, 3), np.uint8)
    faces = np.zeros((count, r, r, 3), np.uint8)
    matrices = np.zeros((count, 2, 3), np.float32)
    has_face = np.zeros(count, bool)
    for i, aligned in enumerate(aligner.align_frames(islice(reader, count), faces_pass.detections.wait())):
        frames[i] = aligned.frame
        if aligned.found:
            faces[i], matrices[i], has_face[i] = aligned.face, aligned.matrix, True
    masked, reference = _encode_posteriors(pipeline, faces, has_face, clip_frames)
    logger.info("prepared avatar %s: %d frames, face in %d", path, count, int(has_face.sum()))
    return dict(frames=frames, faces=faces, matrices=matrices, has_face=has_face, masked_posterior=masked,
                reference_posterior=reference)


@torch.no_grad()
def _encode_posteriors(pipeline, faces: np.ndarray, has_face: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """VAE posterior parameters of the masked and whole faces, encoded ``batch`` at a time (a short last
    batch filled with repeats), as an offline clip encodes them."""
    mask = load_fixed_mask(pipeline.resolution, pipeline.mask_image_path)
    side = pipeline.resolution // pipeline.vae_scale_factor
    shape = (len(faces), 2 * pipeline.vae.config.latent_channels, side, side)
    masked, reference = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    with_face = np.flatnonzero(has_face)
    for first in range(0, len(with_face), batch):
        chosen = with_face[first : first + batch]
        filled = np.concatenate([chosen, np.full(batch - len(chosen), chosen[-1])])
        pixel_values, masked_pixel_values, _ = prepare_masks_and_masked_images(faces[filled], mask)
        masked[chosen] = pipeline.encode_posterior(masked_pixel_values)[: len(chosen)].float().cpu().numpy()
        reference[chosen] = pipeline.encode_posterior(pixel_values)[: len(chosen)].float().cpu().numpy()
    return masked, reference


def _write_entry(folder: str, arrays: dict, path, key: str) -> None:
    """The entry under a temporary name beside ``folder``, renamed into place (another writer's may win)."""
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    remove_stale(parent, TEMP_PREFIX)
    work = tempfile.mkdtemp(prefix=owned_prefix(TEMP_PREFIX) + key[:16] + "-", dir=parent)
    try:
        for name, array in arrays.items():
            np.save(os.path.join(work, name + ".npy"), array)
        meta = {"version": CACHE_VERSION, "key": key, "source": os.path.abspath(os.fspath(path)),
                "frames": len(arrays["frames"]), "shapes": {n: list(a.shape) for n, a in arrays.items()}}
        with open(os.path.join(work, "meta.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
        if os.path.isdir(folder):
            shutil.rmtree(folder, ignore_errors=True)  # an unreadable entry of the same key (checked before)
        try:
            os.rename(work, folder)
        except OSError:  # another process put the same entry in place first
            if not os.path.isdir(folder):
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _open_entry(folder: str, path, key: str, started: float) -> Avatar | None:
    """The cached entry, memory-mapped read-only, or None if there is none (or it is unreadable)."""
    try:
        with open(os.path.join(folder, "meta.json"), encoding="utf-8") as f:
            meta = json.load(f)
        arrays = {name: np.load(os.path.join(folder, name + ".npy"), mmap_mode="r") for name in _ARRAYS}
        if meta.get("key") != key or any(list(arrays[n].shape) != meta["shapes"][n] for n in _ARRAYS):
            raise ValueError("its files do not match its meta.json")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError) as err:
        logger.warning("ignoring unreadable avatar cache entry %s (%s); preparing again", folder, err)
        return None
    return Avatar(os.fspath(path), key, folder, **arrays, prepared=False, seconds=time.perf_counter() - started)
