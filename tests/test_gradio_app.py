"""gradio_app.py as people and programs use it: the app runs in its own process group, serving tiny
random-weight models on a free port; headless Chromium (Debian's ``chromium``, driven by playwright
with ``executable_path``: nothing is downloaded) and ``gradio_client`` talk to it over HTTP.

Screenshots of every browser test are saved in its ``tmp_path``. The in-process tests at the end
cover the request checks and the progress hook without a server.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import gradio_app
from latentsync.errors import ConfigError, MediaError
from latentsync.media.reader import VideoReader
from tests.conftest import REPO_ROOT
from tests.processes import start_group, stop_group
from tests.scripts.test_inference import assert_valid_output, describe
from tests.tiny_models import TinyModels, tiny_models  # noqa: F401  (session fixture)
from tools.synthetic_media import speak, write_talking_video, write_wav

SR = 16000
VIDEO_SIZE = (144, 128)  # width, height: not square, so a swapped output would show
AUDIO_SECONDS = 1.2  # the output's length (the video lasts 1.6 s)
MAX_SECONDS = 3  # the shared server's --max_seconds
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
RESULT_TIMEOUT_MS = 180_000
# An input's own clear button (after an error the status tracker adds another "Clear").
CLEAR_VIDEO = "#video [data-testid='video'] button[aria-label='Clear']"
CLEAR_AUDIO = "#audio button[aria-label='Clear']"

# Collect what the page shows while it runs: stage labels fed by the pipeline's progress hook,
# and Gradio's "queue: k/n" line shown to a waiting user.
WATCH_PAGE_JS = """
window.__stages = new Set();
window.__queued = false;
setInterval(() => {
  const text = document.body ? document.body.innerText : "";
  for (const m of text.matchAll(/Step (\\d)\\/4/g)) window.__stages.add(m[1]);
  if (/queue: \\d+\\/\\d+/i.test(text)) window.__queued = true;
}, 50);
"""


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("gradio_media")
    speech = speak("Hello there, I am talking to you.", root / "raw.wav")
    speech = np.pad(speech, (0, max(0, 4 * SR - len(speech))))
    write_wav(root / "speech.wav", speech[: int(AUDIO_SECONDS * SR)])
    write_wav(root / "too_long.wav", np.tile(speech, 2)[: int((MAX_SECONDS + 0.5) * SR)])
    write_talking_video(root / "face.mp4", speech[: int(1.6 * SR)], size=VIDEO_SIZE, with_audio=False)
    write_talking_video(root / "no_face.mp4", speech[: SR // 2], size=VIDEO_SIZE, blank_frames=range(13),
                        with_audio=False)
    first_frame = next(iter(VideoReader(root / "face.mp4")))
    cv2.imwrite(str(root / "photo.png"), cv2.cvtColor(first_frame, cv2.COLOR_RGB2BGR))
    (root / "fake.mp4").write_text("this is a text file, not a video\n")
    (root / "notes.txt").write_text("not a video either\n")
    return {name: root / name for name in
            ("speech.wav", "too_long.wav", "face.mp4", "no_face.mp4", "photo.png", "fake.mp4", "notes.txt")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    temp: Path  # the app's --temp_dir: it makes its folder inside and removes it at exit
    cwd: Path  # an empty folder the app runs in: it must stay empty
    log: Path
    log_file: object  # the open log, closed by stop()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int | None:
        code = stop_group(self.proc)
        self.log_file.close()
        return code


def launch(root: Path, models, *extra: str) -> Server:
    """Start gradio_app.py on a free port in its own process group; return once it answers."""
    temp, cwd = root / "temp", root / "cwd"
    temp.mkdir()
    cwd.mkdir()
    port = free_port()
    cmd = [
        sys.executable, str(REPO_ROOT / "gradio_app.py"),
        *models.flags(),
        "--device", "cpu",
        "--face_detector", "mediapipe",
        "--port", str(port),
        "--temp_dir", str(temp),
        "--max_seconds", str(MAX_SECONDS),
        *extra,
    ]
    log = root / "app.log"
    log_file = open(log, "w")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    proc = start_group(cmd, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}/", proc, temp, cwd, log, log_file)
    deadline = time.monotonic() + 300
    while True:
        if proc.poll() is not None:
            server.stop()
            pytest.fail(f"gradio_app.py exited with {proc.returncode}:\n{server.log_text()[-3000:]}")
        try:
            with urllib.request.urlopen(server.url, timeout=5) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"gradio_app.py did not answer within 300 s:\n{server.log_text()[-3000:]}")
        time.sleep(0.5)


def assert_stopped_cleanly(server: Server) -> None:
    code = server.stop()
    log = server.log_text()
    assert code == 0, log[-3000:]
    assert list(server.temp.iterdir()) == [], "the app left its temporary folder behind"
    assert list(server.cwd.iterdir()) == [], "the app wrote into its working folder"
    assert "request failed" not in log, "a request hit a bug (logged with its traceback)"


@pytest.fixture(scope="module")
def server(tiny_models, tmp_path_factory):  # noqa: F811
    app = launch(tmp_path_factory.mktemp("gradio_app"), tiny_models)
    yield app
    assert_stopped_cleanly(app)


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.fail("the browser tests need Debian's chromium: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: CI containers run as root, where Chromium's sandbox cannot start. The fake
        # media device is a microphone that plays a tone, granted without asking.
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
        yield chromium
        chromium.close()


# --------------------------------------------------------------------------- page helpers


def open_page(browser, server: Server, login: tuple[str, str] | None = None):
    context = browser.new_context(viewport={"width": 1280, "height": 1100}, accept_downloads=True,
                                  permissions=["microphone"])
    page = context.new_page()
    page.add_init_script(WATCH_PAGE_JS)
    page.goto(server.url)
    if login:
        page.get_by_label("username").fill(login[0])
        page.get_by_label("password").fill(login[1])
        page.get_by_role("button", name="Login").click()
    page.wait_for_selector("#generate")
    return page


def upload(page, video: Path, audio: Path) -> None:
    """Put files into the video and audio inputs and wait until both uploads are done."""
    page.locator("#video input[type=file]").set_input_files(str(video))
    page.locator("#audio input[type=file]").set_input_files(str(audio))
    page.locator(CLEAR_VIDEO).wait_for()
    page.locator(CLEAR_AUDIO).wait_for()


def download_result(page, folder: Path) -> Path:
    """Wait for the result, press its download button, save the file in ``folder``."""
    page.locator("#result video").wait_for(timeout=RESULT_TIMEOUT_MS)
    folder.mkdir()
    with page.expect_download() as info:
        page.locator("#result").get_by_label("Download").first.click()
    path = folder / info.value.suggested_filename
    info.value.save_as(path)
    return path


def screenshot(page, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000


# --------------------------------------------------------------------------- the browser


def test_browser_upload_generate_download(server, browser, media, tmp_path):
    page = open_page(browser, server)
    assert "LatentSync" in page.title()
    footer = page.locator("#footer").inner_text()
    assert "device cpu" in footer and "unet.pt" in footer and "gradio 6." in footer
    page.get_by_text("demo_audio.wav").wait_for()  # the example from assets/
    upload(page, media["face.mp4"], media["speech.wav"])
    screenshot(page, tmp_path / "1_uploaded.png")
    page.click("#generate")
    result = download_result(page, tmp_path / "downloads")
    screenshot(page, tmp_path / "2_result.png")

    assert result.name == "face_lipsynced.mp4"
    assert_valid_output(result, AUDIO_SECONDS, size=VIDEO_SIZE)
    assert "30 frames, 30 lip-synced" in page.locator("#summary").inner_text()
    # Progress reached the page through the pipeline's hook (face detection runs ahead of the
    # lip-syncing in a thread, so its own label may be too brief to see on a 1.2 s video).
    stages = page.evaluate("[...window.__stages].sort()")
    assert "3" in stages, stages

    # The session's folder holds the result until the tab closes, then it goes.
    (sessions,) = server.temp.glob("*/sessions")
    assert [p.name for p in sessions.glob("*/job-*/*")] == ["face_lipsynced.mp4"]
    page.context.close()
    deadline = time.monotonic() + 90
    while list(sessions.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert list(sessions.iterdir()) == [], "the closed session's folder was not removed"


def test_browser_bad_file_shows_error_then_valid_request_succeeds(server, browser, media, tmp_path):
    page = open_page(browser, server)
    upload(page, media["fake.mp4"], media["speech.wav"])
    page.click("#generate")
    error = page.get_by_text("'fake.mp4' cannot be read as a video or a photo")
    error.wait_for(timeout=60_000)
    screenshot(page, tmp_path / "1_error.png")
    assert "Traceback" not in page.inner_text("body")

    # Same page, same server: replace the video and try again. The browser cannot play the fake
    # file either, so the video input may show its own error overlay over the clear button, at a
    # moment that varies; the click goes to the button itself.
    page.locator(CLEAR_VIDEO).dispatch_event("click")
    page.locator("#video input[type=file]").set_input_files(str(media["face.mp4"]))
    page.locator("#video video").wait_for()
    page.click("#generate")
    result = download_result(page, tmp_path / "downloads")
    screenshot(page, tmp_path / "2_result.png")
    assert_valid_output(result, AUDIO_SECONDS, size=VIDEO_SIZE)
    page.context.close()


def test_browser_microphone_recording(server, browser, media, tmp_path):
    page = open_page(browser, server)
    page.locator("#video input[type=file]").set_input_files(str(media["face.mp4"]))
    audio = page.locator("#audio")
    audio.get_by_label("Record audio").click()
    audio.get_by_role("button", name="Record", exact=True).click()
    time.sleep(2)
    audio.get_by_role("button", name="Stop", exact=True).first.click()
    page.locator(CLEAR_AUDIO).wait_for()
    page.locator(CLEAR_VIDEO).wait_for()
    screenshot(page, tmp_path / "1_recorded.png")
    page.click("#generate")
    result = download_result(page, tmp_path / "downloads")
    screenshot(page, tmp_path / "2_result.png")
    info = describe(result)
    assert (info["width"], info["height"]) == VIDEO_SIZE
    assert 1.0 < info["audio_seconds"] < 10, info  # about the 2 s recorded
    assert abs(info["frames"] / 25 - info["audio_seconds"]) <= 1 / 25
    assert f"{info['frames']} frames, {info['frames']} lip-synced" in page.locator("#summary").inner_text()
    page.context.close()


def test_browser_two_requests_at_once_both_complete(server, browser, media, tmp_path):
    pages = [open_page(browser, server) for _ in range(2)]
    for page in pages:
        upload(page, media["face.mp4"], media["speech.wav"])
    for page in pages:
        page.click("#generate")
    results = [download_result(page, tmp_path / f"downloads{i}") for i, page in enumerate(pages)]
    for i, page in enumerate(pages):
        screenshot(page, tmp_path / f"result{i}.png")
    for result in results:
        assert_valid_output(result, AUDIO_SECONDS, size=VIDEO_SIZE)
    # One job at a time (the default): the later request waited and its page said so.
    assert any(page.evaluate("window.__queued") for page in pages)
    for page in pages:
        page.context.close()


# --------------------------------------------------------------------------- the API


def test_gradio_client_gets_a_video_and_readable_errors(server, media, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(server.url, verbose=False, download_files=str(tmp_path))

    def lipsync(video: Path | None, audio: Path, seed: int = 7, photo: Path | None = None, steps: int = 1,
                sampler: str = "ddim"):
        files = [handle_file(str(path)) if path else None for path in (video, photo, audio)]
        return client.predict(*files, steps, 1.5, seed, True, 3, -1, "overlap", sampler, api_name="/lipsync")

    video, summary = lipsync(media["face.mp4"], media["speech.wav"])
    assert Path(video).is_relative_to(tmp_path)
    assert_valid_output(Path(video), AUDIO_SECONDS, size=VIDEO_SIZE)
    assert "30 frames, 30 lip-synced, 0 without a face" in summary and "Seed 7" in summary

    # The sampler is the job's: DPM-Solver++ (second order from its second step) vs DDIM, same seed.
    samplers = {name: lipsync(media["face.mp4"], media["speech.wav"], steps=2, sampler=name) for name in ("ddim", "dpm++")}
    assert all("sampler " + name in summary for name, (_, summary) in samplers.items())
    frames = {name: np.stack(list(VideoReader(video))) for name, (video, _) in samplers.items()}
    assert np.abs(frames["ddim"].astype(int) - frames["dpm++"]).max() > 3
    with pytest.raises(AppError):
        lipsync(media["face.mp4"], media["speech.wav"], sampler="euler")  # not one of the choices

    # A photo instead of a video: a still face for as long as the audio.
    video, summary = lipsync(None, media["speech.wav"], photo=media["photo.png"])
    assert_valid_output(Path(video), AUDIO_SECONDS, size=VIDEO_SIZE)

    with pytest.raises(AppError, match="less than minimum value 1"):  # Gradio checks the sliders' ranges
        lipsync(media["face.mp4"], media["speech.wav"], steps=0)
    refused = {
        "notes.txt": (media["notes.txt"], media["speech.wav"], "'notes.txt' is not a video or a photo"),
        "too long": (media["face.mp4"], media["too_long.wav"], f"at most {MAX_SECONDS} s"),
        "no face": (media["no_face.mp4"], media["speech.wav"],
                    "no face found in any of the 13 frames of 'no_face.mp4'"),
        "audio unreadable": (media["face.mp4"], media["fake.mp4"], "'fake.mp4' cannot be read as audio"),
    }
    for name, (video, audio, message) in refused.items():
        with pytest.raises(AppError) as caught:
            lipsync(video, audio)
        assert message in str(caught.value), name
        assert str(server.temp) not in str(caught.value), "a server path leaked into the message"


# --------------------------------------------------------------------------- without checkpoints


def test_missing_checkpoints_page_explains_behind_auth_and_app_exits_cleanly(browser, media, tmp_path):
    absent = tmp_path / "absent"
    models = TinyModels(REPO_ROOT / "configs" / "unet" / "stage2_512.yaml", absent / "latentsync_unet.pt",
                        absent / "tiny.pt", absent / "vae")
    app = launch(tmp_path, models, "--auth", "ann:pa:ss")
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(app.url + "gradio_api/info", timeout=30)
        assert refused.value.code == 401

        page = open_page(browser, app, login=("ann", "pa:ss"))
        problem = page.locator("#problem").inner_text()
        assert "model files are missing" in problem
        for needle in ("UNet checkpoint", "Whisper checkpoint", "VAE folder", "setup_env.sh", "hf download",
                       "ByteDance/LatentSync-1.6", "stabilityai/sd-vae-ft-mse"):
            assert needle in problem, needle
        upload(page, media["face.mp4"], media["speech.wav"])
        page.click("#generate")
        page.get_by_text("The models are not loaded").wait_for(timeout=60_000)
        screenshot(page, tmp_path / "missing_checkpoints.png")
        page.context.close()
    finally:
        assert_stopped_cleanly(app)


# --------------------------------------------------------------------------- the command line


def test_help_lists_share_and_server_options(capsys):
    with pytest.raises(SystemExit) as exited:
        gradio_app.main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--share", "--host", "--port", "--auth", "--concurrency", "--max_seconds",
                 "--unet_config_path", "--inference_ckpt_path", "--whisper_path", "--vae_path"):
        assert flag in out, flag


def test_bad_auth_is_one_error_line(capsys, tmp_path):
    assert gradio_app.main(["--auth", "nopassword", "--temp_dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: --auth must look like USER:PASS"]
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- in process


def test_parse_auth():
    assert gradio_app.parse_auth("me:pa:ss") == ("me", "pa:ss")
    assert gradio_app.parse_auth(None) is None


def test_check_inputs_refuses_before_model_work(media, tmp_path):
    check = gradio_app.check_inputs
    face, speech = str(media["face.mp4"]), str(media["speech.wav"])
    assert check(face, None, speech, 10) == (face, speech)
    cases = {
        "no face file": ((None, None, speech, 10), "Upload a video or a photo"),
        "no audio": ((face, None, None, 10), "Upload or record"),
        "both": ((face, face, speech, 10), "clear one"),
        "text file": ((str(media["notes.txt"]), None, speech, 10), "'notes.txt' is not a video or a photo"),
        "audio type": ((face, None, str(media["notes.txt"]), 10), "'notes.txt' is not an audio file"),
        "not a video": ((str(media["fake.mp4"]), None, speech, 10), "'fake.mp4' cannot be read as a video"),
        "video too long": ((face, None, speech, 1.5), "The video lasts 1.6 s; this server takes at most 1.5 s"),
        "audio too long": ((face, None, str(media["too_long.wav"]), 3.4), "The audio lasts 3.5 s"),
    }
    for name, (args, message) in cases.items():
        with pytest.raises(MediaError) as caught:
            check(*args)
        assert message in str(caught.value), name


def test_job_devices():
    cpu = torch.device("cpu")
    assert gradio_app.job_devices("cpu", None) == [cpu]
    assert gradio_app.job_devices("cpu", 2) == [cpu, cpu]
    with pytest.raises(ConfigError, match="--concurrency"):
        gradio_app.job_devices("cpu", 0)


def test_progress_hook_reports_each_stage():
    calls = []
    hook = gradio_app.progress_hook(lambda value, desc, unit: calls.append((value, desc, unit)))
    hook("audio", 0, 1)
    hook("denoise", 1, 2)
    hook("write", 1, 1)
    assert calls == [
        ((0, 1), "Step 1/4: audio features", "steps"),
        ((1, 2), "Step 3/4: lip-syncing, 1/2 clips done", "clips"),
        ((1, 1), "Step 4/4: writing the video", "files"),
    ]


def test_progress_hook_keeps_the_lipsync_bar_while_detection_runs_ahead():
    calls = []
    hook = gradio_app.progress_hook(lambda value, desc, unit: calls.append((value, desc, unit)))
    hook("faces", 0, 100)
    hook("denoise", 0, 5)
    hook("faces", 64, 100)
    hook("denoise", 1, 5)
    hook("faces", 100, 100)
    hook("denoise", 2, 5)
    assert calls == [
        ((0, 100), "Step 2/4: finding the face", "frames"),
        ((0, 5), "Step 3/4: lip-syncing, 0/5 clips done", "clips"),
        ((0, 5), "Step 3/4: lip-syncing, 0/5 clips done; face search 64/100 frames", "clips"),
        ((1, 5), "Step 3/4: lip-syncing, 1/5 clips done; face search 64/100 frames", "clips"),
        ((1, 5), "Step 3/4: lip-syncing, 1/5 clips done", "clips"),
        ((2, 5), "Step 3/4: lip-syncing, 2/5 clips done", "clips"),
    ]
