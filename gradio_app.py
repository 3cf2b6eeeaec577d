"""LatentSync in the browser: upload a face video (or a photo) and speech, get the lip-synced video.

Examples (from any folder):
  python gradio_app.py                           # http://127.0.0.1:7860, models from configs/inference.yaml
  python gradio_app.py --share --auth me:secret  # also a public link, behind a login
  python gradio_app.py --host 0.0.0.0 --port 8000 --concurrency 2

The pipelines are loaded once at start (one per job that may run at once: by default one per
GPU, else one) and reused; Gradio's queue runs at most that many jobs and shows waiting users
their place in line. Uploads and results live in a temporary folder made at start (under
--temp_dir) and removed at exit; a session's results go when its tab closes. Nothing outside
that folder is written (except, with --share, Gradio's tunnel client in its own cache).
"""

# No `from __future__ import annotations`: Gradio finds the `gr.Request` parameter by its evaluated annotation.
import argparse
import hashlib
import logging
import os
import queue
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

import torch

from latentsync import paths
from latentsync.config import load_config
from latentsync.errors import ConfigError, LatentSyncError, MediaError
from latentsync.media.audio import SAMPLE_RATE, load_audio
from latentsync.media.probe import probe_video
from latentsync.pipelines.lipsync_pipeline import LipsyncPipeline, SyncReport
from latentsync.pipelines.loading import SCHEDULERS, default_whisper_path, download_hint, load_pipeline, make_scheduler
from latentsync.pipelines.progress import ProgressHook
from latentsync.utils.device import DEVICE_CHOICES, pick_device
from latentsync.utils.logging import configure_logging

logger = logging.getLogger("gradio_app")

VIDEO_TYPES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
IMAGE_TYPES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
AUDIO_TYPES = (".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus", *VIDEO_TYPES)  # or a video's sound
EXAMPLES = [(paths.PROJECT_ROOT / "assets" / "demo_video.mp4", paths.PROJECT_ROOT / "assets" / "demo_audio.wav")]
CACHE_CLEANUP = (1800, 3600)  # every 30 min, Gradio deletes its uploads and results older than an hour
RESULT_SUFFIX = "_lipsynced.mp4"  # face.mp4 -> face_lipsynced.mp4

# What the page says while each stage of the pipeline runs (see latentsync.pipelines.progress).
STAGE_LABELS = {
    "audio": ("Step 1/4: audio features", "steps"),
    "faces": ("Step 2/4: finding the face", "frames"),
    "denoise": ("Step 3/4: lip-syncing", "clips"),
    "write": ("Step 4/4: writing the video", "files"),
}


# --------------------------------------------------------------------------- arguments


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep the description's line breaks and show each option's default."""


def build_parser() -> argparse.ArgumentParser:
    """Model options as in scripts/inference.py (defaults from configs/inference.yaml), then server options."""
    defaults = load_config(paths.INFERENCE_CONFIG)

    def project(key: str) -> str | None:  # the config's paths are relative to the project, flags to the caller
        return None if defaults[key] is None else os.fspath(paths.project_path(defaults[key]))

    parser = argparse.ArgumentParser(prog="python gradio_app.py", description=__doc__, formatter_class=_HelpFormatter)
    add = parser.add_argument
    add("--unet_config_path", default=project("unet_config_path"),
        help="UNet config (stage2_512.yaml: 1.6, stage2.yaml: 1.5)")
    add("--inference_ckpt_path", default=project("inference_ckpt_path"),
        help="UNet weights, {'state_dict', 'global_step'} .pt")
    add("--whisper_path", default=project("whisper_path"),
        help="Whisper checkpoint; None: picked by the UNet's audio width")
    add("--vae_path", default=project("vae_path"), help="folder of a diffusers AutoencoderKL")
    add("--device", choices=DEVICE_CHOICES, default=defaults.device,
        help="where to run; auto = cuda, then mps, then cpu")
    add("--face_detector", choices=("auto", "insightface", "mediapipe"), default=defaults.face_detector)
    add("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every network interface)")
    add("--port", type=int, default=7860, help="port to listen on")
    add("--share", action="store_true", help="also publish a temporary public *.gradio.live link (off: local only)")
    add("--auth", metavar="USER:PASS", help="ask for this user name and password before showing the page")
    add("--concurrency", type=int, help="jobs run at once, each with its own pipeline (default: one per GPU, else 1)")
    add("--max_queue", type=int, default=20, help="jobs that may wait in line; more are turned away")
    add("--max_seconds", type=float, default=60.0, help="longest video or audio accepted, in seconds")
    add("--temp_dir", help="parent of the app's temporary folder (default: the system's)")
    add("-v", "--verbose", action="store_true", help="debug logging")
    parser.set_defaults(generation=defaults)  # the CLI's generation defaults seed the page's controls
    return parser


def parse_auth(text: str | None) -> tuple[str, str] | None:
    """``user:pass`` -> (user, pass); the password may contain colons."""
    if text is None:
        return None
    user, sep, password = text.partition(":")
    if not (sep and user and password):
        raise ConfigError("--auth must look like USER:PASS")
    return user, password


# --------------------------------------------------------------------------- models


def missing_checkpoints(args: argparse.Namespace) -> list[str]:
    """One line per model file that is not where the arguments say: what it is and how to fetch it."""
    config = load_config(args.unet_config_path, required=("model.cross_attention_dim",))
    width = config.model.cross_attention_dim
    whisper = args.whisper_path or default_whisper_path(width)
    wanted = [
        ("UNet checkpoint", args.inference_ckpt_path, "latentsync_unet.pt", os.path.isfile),
        ("Whisper checkpoint", whisper, paths.WHISPER_BY_WIDTH.get(width, "whisper/tiny.pt"), os.path.isfile),
        ("VAE folder", args.vae_path, "vae", os.path.isdir),
    ]
    return [
        f"{what} `{path}`: {download_hint(args.unet_config_path, name)}"
        for what, path, name, exists in wanted
        if not exists(path)
    ]


def job_devices(device: str, concurrency: int | None) -> list[torch.device]:
    """The device of each concurrent job's pipeline: by default one job per CUDA GPU, else one job."""
    try:
        chosen = pick_device(device)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    gpus = torch.cuda.device_count() if chosen.type == "cuda" else 0
    count = max(gpus, 1) if concurrency is None else concurrency
    if count < 1:
        raise ConfigError(f"--concurrency must be >= 1, got {count}")
    if gpus > 1:
        return [torch.device("cuda", i % gpus) for i in range(count)]
    return [chosen] * count


@dataclass(frozen=True)
class Job:
    """One request, checked: the files and the generation settings."""

    video: str
    audio: str
    output: str
    work_dir: str
    steps: int
    scheduler: str  # "ddim" or "dpm++" (latentsync.pipelines.loading.SCHEDULERS)
    guidance: float
    seed: int
    deepcache_interval: int | None  # None: deep cache off
    face_index: int | None  # None: the largest face
    audio_windows: str


class Lipsyncer:
    """The pipelines loaded at start, one per job that may run at once, or why they could not be loaded."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.slots = 1
        self.problem: str | None = None  # Markdown shown in the page when no model could be loaded
        self.summary = "no models loaded"
        self._free: queue.SimpleQueue[LipsyncPipeline] = queue.SimpleQueue()
        try:
            missing = missing_checkpoints(args)
            if missing:
                self.problem = "The model files are missing, so nothing can be lip-synced yet:\n\n" + "\n".join(
                    f"- {line}" for line in missing
                ) + "\n\nFetch them, then restart the app."
                return
            devices = job_devices(args.device, args.concurrency)
            for device in devices:
                self._free.put(self._load(device))
        except LatentSyncError as err:
            self.problem = f"The models could not be loaded: {err}"
            return
        self.slots = len(devices)
        self.summary = describe_models(args, self._peek(), devices)

    def _load(self, device: torch.device) -> LipsyncPipeline:
        args = self.args
        pipeline = load_pipeline(args.unet_config_path, args.inference_ckpt_path, whisper_path=args.whisper_path,
                                 vae_path=args.vae_path, device=device.type, face_detector=args.face_detector)
        return pipeline.to(device) if device.index else pipeline  # one job per GPU: cuda:1, cuda:2...

    def _peek(self) -> LipsyncPipeline:
        pipeline = self._free.get()
        self._free.put(pipeline)
        return pipeline

    def run(self, job: Job, progress: ProgressHook) -> SyncReport:
        """Lip-sync one job on a free pipeline (the queue never runs more jobs than there are pipelines)."""
        if self.problem:
            raise LatentSyncError(self.problem)
        pipeline = self._free.get()
        try:
            if job.deepcache_interval:
                pipeline.enable_deepcache(job.deepcache_interval)
            else:
                pipeline.disable_deepcache()
            pipeline.audio_encoder.windows = job.audio_windows
            if not isinstance(pipeline.scheduler, SCHEDULERS[job.scheduler]):
                pipeline.scheduler = make_scheduler(job.scheduler)
            return pipeline(
                job.video,
                job.audio,
                job.output,
                num_inference_steps=job.steps,
                guidance_scale=job.guidance,
                generator=pipeline.make_generator(job.seed),
                face_index=job.face_index,
                temp_dir=job.work_dir,
                progress=progress,
            )
        finally:
            self._free.put(pipeline)


def describe_models(args: argparse.Namespace, pipeline: LipsyncPipeline, devices: list[torch.device]) -> str:
    """The footer: which weights, which release, where they run, and the versions of the code."""
    manifest = load_config(paths.CHECKPOINTS_MANIFEST)
    config = paths.project_path(args.unet_config_path)
    release = next((f"LatentSync {name}" for name, r in manifest.releases.items()
                    if paths.project_path(r.unet_config) == config), "custom UNet config")
    where = ", ".join(sorted({f"{d} ({torch.cuda.get_device_name(d)})" if d.type == "cuda" else str(d)
                              for d in devices}))
    versions = ", ".join(f"{package} {metadata.version(package)}" for package in ("torch", "diffusers", "gradio"))
    return (
        f"{release}: UNet `{Path(args.inference_ckpt_path).name}` ({Path(args.unet_config_path).name}, "
        f"{pipeline.resolution} px, {pipeline.num_frames} frames per clip), Whisper "
        f"`{Path(pipeline.audio_encoder.model_path).name}`, VAE `{Path(args.vae_path).name}` · "
        f"device {where}, {pipeline.dtype} · {versions}"
    )


# --------------------------------------------------------------------------- requests


def _name(path: str) -> str:
    return os.path.basename(path)


def check_inputs(video: str | None, photo: str | None, audio: str | None, max_seconds: float) -> tuple[str, str]:
    """The face file and the audio file of a request, checked before any model work (MediaError if unusable)."""
    if video and photo:
        raise MediaError("Both a video and a photo were given: clear one of them.")
    face = video or photo
    if not face:
        raise MediaError("Upload a video or a photo of a face.")
    if not audio:
        raise MediaError("Upload or record the speech audio.")
    if Path(face).suffix.lower() not in VIDEO_TYPES + IMAGE_TYPES:
        raise MediaError(
            f"{_name(face)!r} is not a video or a photo: use {', '.join(VIDEO_TYPES)} or {', '.join(IMAGE_TYPES)}."
        )
    if Path(audio).suffix.lower() not in AUDIO_TYPES:
        raise MediaError(f"{_name(audio)!r} is not an audio file: use {', '.join(AUDIO_TYPES)}.")
    try:
        info = probe_video(face)
    except MediaError as err:
        raise MediaError(f"{_name(face)!r} cannot be read as a video or a photo; is it really one?") from err
    try:
        seconds = len(load_audio(audio)) / SAMPLE_RATE
    except MediaError as err:
        raise MediaError(f"{_name(audio)!r} cannot be read as audio (or holds no sound); is it really audio?") from err
    for what, length in (("video", 0.0 if info.is_image else info.duration), ("audio", seconds)):
        if length > max_seconds:
            raise MediaError(f"The {what} lasts {length:.1f} s; this server takes at most {max_seconds:g} s. Trim it.")
    return face, audio


def readable(err: LatentSyncError, *files: str) -> str:
    """An error's first line with server-side paths shortened to the names the user uploaded."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    for path in files:
        if path:
            text = text.replace(path, _name(path))
    return text


def progress_hook(progress: Callable) -> ProgressHook:
    """The pipeline's progress hook drawing each stage with ``progress`` (a ``gr.Progress``).

    Face detection runs ahead of the lip-syncing in a thread (see latentsync.pipelines.progress):
    once lip-syncing has started, the page keeps its bar and adds how far the face search is.
    """
    clips: tuple[int, int] | None = None  # lip-syncing's (done, total), once it has started
    faces = ""

    def report(stage: str, done: int, total: int) -> None:
        nonlocal clips, faces
        if stage == "faces" and clips is not None:
            faces = f"; face search {done}/{total} frames" if done < total else ""
            stage, (done, total) = "denoise", clips
        desc, unit = STAGE_LABELS.get(stage, (stage, "steps"))
        if stage == "denoise":
            clips = (done, total)
            desc = f"{desc}, {done}/{total} clips done{faces}"
        progress((done, total), desc=desc, unit=unit)

    return report


class Workspace:
    """The app's temporary folder: Gradio's cache (uploads, the results it serves) and one folder per session."""

    def __init__(self, parent: str | None) -> None:
        self.root = tempfile.mkdtemp(prefix="latentsync-gradio-", dir=parent)
        self.gradio_cache = os.path.join(self.root, "gradio")
        self.sessions = os.path.join(self.root, "sessions")
        os.mkdir(self.gradio_cache)
        os.mkdir(self.sessions)

    def _session_path(self, session_hash: str) -> str:
        # The hash comes from the browser: only a digest of it names a folder.
        return os.path.join(self.sessions, hashlib.sha256(session_hash.encode()).hexdigest()[:32])

    def new_job_dir(self, session_hash: str) -> str:
        """A fresh folder for one job's result and working files, inside its session's folder."""
        session = self._session_path(session_hash)
        os.makedirs(session, exist_ok=True)
        return tempfile.mkdtemp(prefix="job-", dir=session)

    def remove_job_dir(self, folder: str | None) -> None:
        if folder and os.path.dirname(os.path.dirname(folder)) == self.sessions:
            shutil.rmtree(folder, ignore_errors=True)

    def remove_session(self, session_hash: str) -> None:
        """Delete a closed session's folder: every result it made (Gradio serves its own copies)."""
        shutil.rmtree(self._session_path(session_hash), ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def new_job(work_dir: str, face: str, audio: str, settings: dict) -> Job:
    """A job writing its result and working files into ``work_dir``; seed -1 draws one."""
    seed = int(settings["seed"])
    face_index = int(settings["face_index"])
    return Job(
        video=face,
        audio=audio,
        output=os.path.join(work_dir, Path(face).stem + RESULT_SUFFIX),
        work_dir=work_dir,
        steps=int(settings["steps"]),
        scheduler=settings["scheduler"],
        guidance=float(settings["guidance"]),
        seed=seed if seed != -1 else int(torch.seed() % (2**31)),
        deepcache_interval=int(settings["deepcache_interval"]) if settings["deepcache"] else None,
        face_index=None if face_index < 0 else face_index,
        audio_windows=settings["audio_windows"],
    )


# --------------------------------------------------------------------------- the page


def build_demo(service: Lipsyncer, workspace: Workspace, args: argparse.Namespace):
    """The Blocks page; its one event, ``/lipsync``, is also the API."""
    import gradio as gr  # after main() pointed GRADIO_TEMP_DIR at the workspace

    defaults = args.generation

    def lipsync(video, photo, audio, steps, guidance, seed, deepcache, deepcache_interval, face_index, audio_windows,
                scheduler, request: gr.Request, progress=gr.Progress()):
        settings = dict(steps=steps, guidance=guidance, seed=seed, deepcache=deepcache, scheduler=scheduler,
                        deepcache_interval=deepcache_interval, face_index=face_index, audio_windows=audio_windows)
        work_dir = None
        try:
            face, speech = check_inputs(video, photo, audio, args.max_seconds)
            if service.problem:
                raise LatentSyncError("The models are not loaded; the message at the top of the page says why.")
            work_dir = workspace.new_job_dir(request.session_hash or "api")
            job = new_job(work_dir, face, speech, settings)
            start = time.monotonic()
            report = service.run(job, progress_hook(progress))
        except LatentSyncError as err:
            workspace.remove_job_dir(work_dir)
            logger.info("request refused: %s", err)
            raise gr.Error(readable(err, video, photo, audio), duration=None) from err
        except Exception as err:  # a bug: keep serving, log the details, tell the user plainly
            workspace.remove_job_dir(work_dir)
            logger.exception("request failed")
            raise gr.Error(f"Something went wrong on the server ({type(err).__name__}); the log has the details.",
                           duration=None) from err
        seconds = time.monotonic() - start
        done = (f"Done in {seconds:.1f} s: {report.frames} frames, {report.synced_frames} lip-synced, "
                f"{report.frames_without_face} without a face (copied unchanged). Seed {job.seed}, sampler {job.scheduler}.")
        logger.info("%s -> %s", done, report.output_path)
        return report.output_path, done

    def end_session(request: gr.Request) -> None:
        workspace.remove_session(request.session_hash)

    with gr.Blocks(title="LatentSync", analytics_enabled=False, delete_cache=CACHE_CLEANUP) as demo:
        gr.Markdown("# LatentSync lip-sync\nUpload a video (or a photo) of a face and the speech it should say.")
        if service.problem:
            gr.Markdown(f"## Not ready\n{service.problem}", elem_id="problem")
        with gr.Row():
            with gr.Column():
                with gr.Tabs():
                    with gr.Tab("Video"):
                        video = gr.Video(label="Face video", sources=["upload"], elem_id="video")
                    with gr.Tab("Photo"):
                        photo = gr.Image(label="Face photo", type="filepath", format="png", sources=["upload"],
                                         elem_id="photo")
                audio = gr.Audio(label="Speech", type="filepath", sources=["upload", "microphone"], elem_id="audio")
                with gr.Accordion("Advanced options", open=False):
                    steps = gr.Slider(1, 100, value=defaults.inference_steps, step=1, label="Inference steps")
                    scheduler = gr.Radio(list(SCHEDULERS), value=defaults.scheduler,
                                         label="Sampler (dpm++: about as good at 10 steps as ddim at 20)")
                    guidance = gr.Slider(1.0, 3.0, value=defaults.guidance_scale, step=0.1,
                                         label="Guidance scale (1.0: off)")
                    seed = gr.Number(value=defaults.seed, precision=0, label="Seed (-1: random)")
                    deepcache = gr.Checkbox(value=defaults.enable_deepcache, label="Deep cache (faster)")
                    deepcache_interval = gr.Slider(1, 10, value=defaults.deepcache_interval, step=1,
                                                   label="Deep cache: recompute deep features every N steps")
                    face_index = gr.Number(value=-1 if defaults.face_index is None else defaults.face_index,
                                           precision=0, label="Face to sync (-1: largest; 0: leftmost, 1: next...)")
                    audio_windows = gr.Radio(["overlap", "upstream"], value=defaults.audio_windows,
                                             label="Audio windows (upstream: the reference's 30 s windows)")
                button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column():
                result = gr.Video(label="Lip-synced video", interactive=False, buttons=["download"], elem_id="result")
                summary = gr.Markdown(elem_id="summary")
        examples = [[os.fspath(v), os.fspath(a)] for v, a in EXAMPLES if v.is_file() and a.is_file()]
        if examples:
            gr.Examples(examples, inputs=[video, audio], label="Example")
        gr.Markdown(f"<small>{service.summary}</small>", elem_id="footer")
        button.click(
            lipsync,
            inputs=[video, photo, audio, steps, guidance, seed, deepcache, deepcache_interval, face_index,
                    audio_windows, scheduler],
            outputs=[result, summary],
            api_name="lipsync",
            concurrency_limit=service.slots,
            concurrency_id="pipelines",
        )
        demo.unload(end_session)  # the tab closed: its results go
    demo.queue(max_size=args.max_queue, default_concurrency_limit=service.slots)
    return demo


# --------------------------------------------------------------------------- main


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt  # Gradio's serving loop closes the server on it; main() then cleans up


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        auth = parse_auth(args.auth)
    except LatentSyncError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    configure_logging(args.verbose)
    start_dir = os.getcwd()
    workspace = Workspace(args.temp_dir)
    os.environ["GRADIO_TEMP_DIR"] = workspace.gradio_cache
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    signal.signal(signal.SIGTERM, _stop)
    try:
        service = Lipsyncer(args)
        if service.problem:
            logger.warning("%s", service.problem)
        demo = build_demo(service, workspace, args)
        os.chdir(workspace.root)  # what Gradio writes to relative paths (.gradio/) lands in the workspace too
        _, local_url, share_url = demo.launch(
            server_name=args.host,
            server_port=args.port,
            share=args.share,
            auth=auth,
            allowed_paths=[workspace.root],
            ssr_mode=False,
            footer_links=["api"],
            quiet=True,
            prevent_thread_lock=True,
        )
        logger.info("serving on %s%s (Ctrl+C stops)", local_url, f" and {share_url}" if share_url else "")
        demo.block_thread()
    except OSError as err:  # the port is taken, the address is wrong...
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        os.chdir(start_dir)
        workspace.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
