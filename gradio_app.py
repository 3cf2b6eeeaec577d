"""LatentSync in the browser: upload a face video (or a photo) and speech, get the lip-synced video; or
stream it live (the Live tab, stream_app.py): speak into the microphone and watch the avatar answer.

Examples (from any folder):
  python gradio_app.py                           # http://127.0.0.1:7860, settings from configs/inference.yaml
  python gradio_app.py --share --auth me:secret  # also a public link, behind a login
  python gradio_app.py --host 0.0.0.0 --port 8000 --concurrency 2 --config my_inference.yaml

The settings (latentsync/settings.py) are the CLI's: those the server fixes (models, device,
detector, folders) are flags, the others controls of the page and parameters of its API, all
starting at the values of --config.

The pipelines are loaded once at start (one per job that may run at once: by default one per
GPU, else one) and reused; Gradio's queue runs at most that many jobs and shows waiting users
their place in line. Uploads and results live in a temporary folder made at start (under
--temp_dir, created if missing) and removed at exit; a session's results go when its tab
closes. Nothing outside that folder is written (except, with --share, Gradio's tunnel client in
its own cache).

The Live tab streams each visitor's own session (at most --live_sessions at once) on the first
pipeline, with the server's settings (--config and the flags, not the Lip-sync tab's controls);
avatars prepared for it are kept in the temporary folder too.
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
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import torch

from latentsync import paths
from latentsync.cli import made_folder
from latentsync.errors import ConfigError, LatentSyncError, MediaError, one_line
from latentsync.media.audio import SAMPLE_RATE, load_audio
from latentsync.media.formats import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS
from latentsync.media.probe import probe_video
from latentsync.pipelines.lipsync_pipeline import LipsyncPipeline
from latentsync.pipelines.loading import load_pipeline_for, missing_model_files, release_of
from latentsync.pipelines.progress import ProgressHook
from latentsync.pipelines.video_runner import SyncReport, sync_video
from latentsync.settings import (
    SETTINGS, WEB_CONTROL, WEB_FLAG, HelpFormatter, InferenceSettings, SettingSpec, add_setting_flags, parse_settings,
)
from latentsync.streaming import StreamOptions
from latentsync.utils.device import pick_device
from latentsync.utils.files import check_writable_folder
from latentsync.utils.logging import configure_logging
from stream_app import LiveStreams, add_live_tab, face_inputs, pick_avatar

logger = logging.getLogger("gradio_app")

SERVER_SETTINGS = tuple(spec.name for spec in SETTINGS if spec.web == WEB_FLAG)  # flags of this app
CONTROLS = tuple(spec for spec in SETTINGS if spec.web == WEB_CONTROL)  # per request: controls and API parameters
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


def build_parser() -> argparse.ArgumentParser:
    """``--config`` and the settings the server fixes (models, device, folders), then the server's own options.

    Every other setting (steps, sampler, guidance, seed, deep cache, face, windows, detection,
    encoding) is a control of the page and a parameter of its API, its default from the config.
    """
    parser = argparse.ArgumentParser(prog="python gradio_app.py", description=__doc__, formatter_class=HelpFormatter)
    add_setting_flags(parser, SERVER_SETTINGS)
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every network interface)")
    add("--port", type=int, default=7860, help="port to listen on")
    add("--share", action="store_true", help="also publish a temporary public *.gradio.live link (off: local only)")
    add("--auth", metavar="USER:PASS", help="ask for this user name and password before showing the page")
    add("--concurrency", type=int, help="jobs run at once, each with its own pipeline (default: one per GPU, else 1)")
    add("--max_queue", type=int, default=20, help="jobs that may wait in line; more are turned away")
    add("--max_seconds", type=float, default=60.0, help="longest video or audio accepted, in seconds")
    add("--live_sessions", type=int, default=2, help="visitors who may stream live at once (the Live tab); 0: no "
        "Live tab")
    add("-v", "--verbose", action="store_true", help="debug logging")
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


class Lipsyncer:
    """The pipelines loaded at start, one per job that may run at once, or why they could not be loaded.

    A job is a settings object; nothing of it is set on a pipeline, so jobs with any settings share them.
    """

    def __init__(self, args: argparse.Namespace, settings: InferenceSettings) -> None:
        self.settings = settings
        self.slots = 1
        self.problem: str | None = None  # Markdown shown in the page when no model could be loaded
        self.summary = "no models loaded"
        self._free: queue.SimpleQueue[LipsyncPipeline] = queue.SimpleQueue()
        try:
            missing = missing_model_files(settings.unet_config_path, settings.inference_ckpt_path,
                                          settings.whisper_path, settings.vae_path)
            if missing:
                self.problem = "The model files are missing, so nothing can be lip-synced yet:\n\n" + "\n".join(
                    f"- {line}" for line in missing
                ) + "\n\nFetch them, then restart the app."
                return
            devices = job_devices(settings.device, args.concurrency)
            for device in devices:
                self._free.put(self._load(device, args.verbose))
        except LatentSyncError as err:
            self.problem = f"The models could not be loaded: {err}"
            return
        self.slots = len(devices)
        self.summary = describe_models(settings, self._peek(), devices)

    def _load(self, device: torch.device, verbose: bool) -> LipsyncPipeline:
        pipeline = load_pipeline_for(self.settings, device=device.type, show_native_logs=verbose)
        return pipeline.to(device) if device.index else pipeline  # one job per GPU: cuda:1, cuda:2...

    def shared_pipeline(self) -> LipsyncPipeline:
        """The first pipeline, which live sessions share with the jobs that run on it."""
        return self._peek()

    def _peek(self) -> LipsyncPipeline:
        pipeline = self._free.get()
        self._free.put(pipeline)
        return pipeline

    def run(self, job: InferenceSettings, progress: ProgressHook) -> SyncReport:
        """Lip-sync one job on a free pipeline (the queue never runs more jobs than there are pipelines)."""
        if self.problem:
            raise LatentSyncError(self.problem)
        pipeline = self._free.get()
        try:
            return sync_video(pipeline, job, progress=progress)
        finally:
            self._free.put(pipeline)


def describe_models(settings: InferenceSettings, pipeline: LipsyncPipeline, devices: list[torch.device]) -> str:
    """The footer: which weights, which release, where they run, and the versions of the code."""
    release = release_of(settings.unet_config_path)
    where = ", ".join(sorted({f"{d} ({torch.cuda.get_device_name(d)})" if d.type == "cuda" else str(d)
                              for d in devices}))
    versions = ", ".join(f"{package} {metadata.version(package)}" for package in ("torch", "diffusers", "gradio"))
    return (
        f"{f'LatentSync {release}' if release else 'custom UNet config'}: UNet "
        f"`{Path(settings.inference_ckpt_path).name}` ({Path(settings.unet_config_path).name}, "
        f"{pipeline.resolution} px, {pipeline.num_frames} frames per clip), Whisper "
        f"`{Path(pipeline.audio_encoder.model_path).name}`, VAE `{Path(settings.vae_path).name}` · "
        f"device {where}, {pipeline.dtype} · {versions}"
    )


# --------------------------------------------------------------------------- requests


def _name(path: str) -> str:
    return os.path.basename(path)


def check_inputs(video: str | None, photo: str | None, audio: str | None, max_seconds: float) -> tuple[str, str]:
    """The face file and the audio file of a request, checked before any model work (MediaError if unusable)."""
    face = pick_avatar(video, photo)
    if not audio:
        raise MediaError("Upload or record the speech audio.")
    sound = AUDIO_EXTENSIONS + VIDEO_EXTENSIONS  # or a video's sound
    if Path(audio).suffix.lower() not in sound:
        raise MediaError(f"{_name(audio)!r} is not an audio file: use {', '.join(sound)}.")
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
    """An error as one line, with server-side paths shortened to the names the user uploaded."""
    text = one_line(err)
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


def control_value(spec: SettingSpec, value: Any) -> Any:
    """A setting's value as its control shows it: an optional number's none is -1 (e.g. the largest face)."""
    return -1 if value is None and spec.optional else value


def setting_value(spec: SettingSpec, shown: Any) -> Any:
    """A control's value as the setting (the inverse of :func:`control_value`; the settings check the rest)."""
    return None if spec.optional and shown is not None and float(shown) == -1 else shown


def new_job(work_dir: str, face: str, audio: str, settings: InferenceSettings, shown: dict[str, Any]) -> InferenceSettings:
    """The server's settings with a request's control values, its files, and ``work_dir`` for its result and
    working files (ConfigError for a value out of range)."""
    values = {spec.name: setting_value(spec, shown[spec.name]) for spec in CONTROLS if spec.name in shown}
    output = os.path.join(work_dir, Path(face).stem + RESULT_SUFFIX)
    return settings.replace(video_path=face, audio_path=audio, video_out_path=output, temp_dir=work_dir, **values)


def make_lipsync(service: Lipsyncer, workspace: Workspace, max_seconds: float) -> Callable:
    """The page's one event, ``/lipsync``: the files, then one keyword per control (the settings' names)."""
    import gradio as gr  # after main() pointed GRADIO_TEMP_DIR at the workspace

    def lipsync(video, photo, audio, request: gr.Request, progress=gr.Progress(), **shown):
        work_dir = None
        try:
            face, speech = check_inputs(video, photo, audio, max_seconds)
            if service.problem:
                raise LatentSyncError("The models are not loaded; the message at the top of the page says why.")
            work_dir = workspace.new_job_dir(request.session_hash or "api")
            job = new_job(work_dir, face, speech, service.settings, shown)
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
                f"{report.frames_without_face} without a face (copied unchanged). "
                f"Seed {report.seed}, sampler {job.scheduler}.")
        logger.info("%s -> %s", done, report.output_path)
        return report.output_path, done

    return lipsync


# --------------------------------------------------------------------------- the page


def make_control(spec: SettingSpec, value: Any):
    """The control of a per-request setting, showing ``value`` (the config's default)."""
    import gradio as gr

    value = control_value(spec, value)
    if spec.choices:
        return gr.Radio(list(spec.choices), value=value, label=spec.label)
    if spec.kind is bool:
        return gr.Checkbox(value=value, label=spec.label)
    if spec.form is not None:
        low, high, step = spec.form
        return gr.Slider(min(low, value), max(high, value), value=value, step=step, label=spec.label)
    return gr.Number(value=value, precision=0 if spec.kind is int else None, label=spec.label)


def build_demo(service: Lipsyncer, workspace: Workspace, args: argparse.Namespace, live: LiveStreams | None = None):
    """The Blocks page: the Lip-sync tab, whose one event, ``/lipsync``, is also the API (parameters: the files,
    then the controls in the settings' order, named as the settings), and the Live tab (``live``, if given:
    stream_app.py)."""
    import gradio as gr  # after main() pointed GRADIO_TEMP_DIR at the workspace

    def end_session(request: gr.Request) -> None:
        workspace.remove_session(request.session_hash)
        if live is not None:
            live.close(request.session_hash)

    with gr.Blocks(title="LatentSync", analytics_enabled=False, delete_cache=CACHE_CLEANUP) as demo:
        gr.Markdown("# LatentSync lip-sync\nUpload a video (or a photo) of a face and the speech it should say"
                    + (", or stream it live." if live is not None else "."))
        if service.problem:
            gr.Markdown(f"## Not ready\n{service.problem}", elem_id="problem")
        with gr.Tabs():
            with gr.Tab("Lip-sync", id="lipsync"):
                with gr.Row():
                    with gr.Column():
                        video, photo = face_inputs(gr)
                        audio = gr.Audio(label="Speech", type="filepath", sources=["upload", "microphone"],
                                         elem_id="audio")
                        with gr.Accordion("Advanced options", open=False):
                            controls = {spec.name: make_control(spec, getattr(service.settings, spec.name))
                                        for spec in CONTROLS}
                        button = gr.Button("Generate", variant="primary", elem_id="generate")
                    with gr.Column():
                        result = gr.Video(label="Lip-synced video", interactive=False, buttons=["download"],
                                          elem_id="result")
                        summary = gr.Markdown(elem_id="summary")
                examples = [[os.fspath(v), os.fspath(a)] for v, a in EXAMPLES if v.is_file() and a.is_file()]
                if examples:
                    gr.Examples(examples, inputs=[video, audio], label="Example")
            if live is not None:
                add_live_tab(live, service.problem, readable)
        gr.Markdown(f"<small>{service.summary}</small>", elem_id="footer")
        button.click(
            make_lipsync(service, workspace, args.max_seconds),
            inputs=[video, photo, audio],
            inputs_kwargs=controls,
            outputs=[result, summary],
            api_name="lipsync",
            concurrency_limit=service.slots,
            concurrency_id="pipelines",
        )
        demo.unload(end_session)  # the tab closed: its results go, its live session closes
    demo.queue(max_size=args.max_queue, default_concurrency_limit=service.slots)
    return demo


# --------------------------------------------------------------------------- main


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt  # Gradio's serving loop closes the server on it; main() then cleans up


def main(argv: list[str] | None = None) -> int:
    try:
        args, settings = parse_settings(build_parser(), argv)
        auth = parse_auth(args.auth)
        if settings.temp_dir is not None:
            check_writable_folder(settings.temp_dir, "--temp_dir")
    except LatentSyncError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    configure_logging(args.verbose)
    args.settings = settings  # what --config and the flags make, for serve()
    with made_folder(settings.temp_dir):  # created if missing, like the CLI's; removed at exit if it was
        return serve(args, auth)


def serve(args: argparse.Namespace, auth: tuple[str, str] | None) -> int:
    """Load the models (``args.settings``), serve the page until Ctrl+C or SIGTERM, then remove the app's
    temporary folder."""
    settings = args.settings
    start_dir = os.getcwd()
    workspace = Workspace(settings.temp_dir)
    os.environ["GRADIO_TEMP_DIR"] = workspace.gradio_cache
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    signal.signal(signal.SIGTERM, _stop)
    live = None
    try:
        service = Lipsyncer(args, settings)
        if service.problem:
            logger.warning("%s", service.problem)
        if args.live_sessions > 0:
            options = StreamOptions(avatar_cache_dir=os.path.join(workspace.root, "avatars"))
            live = LiveStreams(service.shared_pipeline, settings, options, args.live_sessions)
        demo = build_demo(service, workspace, args, live)
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
        if live is not None:
            live.close_all()
        os.chdir(start_dir)
        workspace.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
