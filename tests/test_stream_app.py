"""The Live tab (stream_app.py in gradio_app.py) as visitors use it: gradio_app.py serves tiny random-weight
models; headless Chromium (Debian's ``chromium`` through playwright) speaks into it with a fake microphone
that plays a wav made here with espeak-ng, or plays a file into it. What the page shows is decoded and
compared with the avatar's own pixels; the server's log says when each visitor's session opens and closes.

Screenshots are saved in each test's ``tmp_path``. The in-process tests at the end cover the helpers.
"""

from __future__ import annotations

import base64
import re
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import yaml
from scipy.io import wavfile

import stream_app
from latentsync import paths
from latentsync.errors import MediaError
from latentsync.media.reader import VideoReader
from latentsync.pipelines.frame_plan import pingpong_index
from tests.test_gradio_app import assert_stopped_cleanly, launch
from tests.tiny_models import tiny_models  # noqa: F401  (session fixture)
from tools.synthetic_media import speak, write_talking_video, write_wav

SR = 16000
SIZE = (128, 128)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WAIT_SECONDS = 120

# Every frame the page shows: its index and whether it talks; the pixels of the first few idle frames and of
# the first few wholly generated ones (alpha 1, after the blend in).
WATCH_FRAMES_JS = """
window.__frames = [];
window.__pixels = {idle: [], talking: []};
setInterval(() => {
  const img = document.querySelector('#live-frame');
  if (!img || !img.getAttribute('src')) return;
  const index = Number(img.dataset.index), talking = img.dataset.synced === 'true';
  const last = window.__frames[window.__frames.length - 1];
  if (last && last[0] === index) return;
  window.__frames.push([index, talking]);
  const kind = !talking ? 'idle' : Number(img.dataset.alpha) === 1 ? 'talking' : null;
  if (kind && window.__pixels[kind].length < 6) window.__pixels[kind].push([index, img.getAttribute('src')]);
}, 5);
"""


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict:
    """An avatar with a closed mouth, the microphone's speech (with pauses, as Chromium loops it) and a file."""
    root = tmp_path_factory.mktemp("live_media")
    speech = speak("Hello there, I am talking to you through the microphone.", root / "raw.wav")
    write_wav(root / "microphone.wav", np.concatenate([speech, np.zeros(SR // 2, np.float32)]))
    write_wav(root / "speech.wav", speech[: 2 * SR])
    drawn = write_talking_video(root / "avatar.mp4", speech[:SR], size=SIZE, mouth_envelope=np.zeros(25),
                                with_audio=False)
    return {"root": root, "avatar": root / "avatar.mp4", "microphone": root / "microphone.wav",
            "speech": root / "speech.wav", "mouth_boxes": drawn["mouth_boxes"],
            "avatar_frames": np.stack(list(VideoReader(root / "avatar.mp4")))}


@pytest.fixture(scope="module")
def server(tiny_models, tmp_path_factory):  # noqa: F811
    """The app with one denoising step (the live tab takes the server's settings: --config)."""
    root = tmp_path_factory.mktemp("live_app")
    config = yaml.safe_load(paths.INFERENCE_CONFIG.read_text())
    config.update(inference_steps=1, seed=3)
    (root / "inference.yaml").write_text(yaml.safe_dump(config))
    app = launch(root, tiny_models, "--config", str(root / "inference.yaml"), "--live_sessions", "2")
    yield app
    assert_stopped_cleanly(app)
    assert "live session closed (0 open)" in app.log_text()


@pytest.fixture(scope="module")
def browser(media):
    if CHROMIUM is None:
        pytest.fail("the browser tests need Debian's chromium: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: CI containers run as root. The fake microphone plays microphone.wav in a loop.
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={media['microphone']}"])
        yield chromium
        chromium.close()


def open_live_tab(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 1100}, permissions=["microphone"])
    page = context.new_page()
    page.add_init_script(WATCH_FRAMES_JS)
    page.goto(server.url)
    page.get_by_role("tab", name="Live").click()
    page.locator("#live_start").wait_for()
    return page


def start(page, avatar: Path) -> None:
    page.locator("#live_video input[type=file]").set_input_files(str(avatar))
    page.locator("#live_video video").wait_for()
    page.click("#live_start")
    page.wait_for_function("window.__frames.length > 0", timeout=WAIT_SECONDS * 1000)


def wait_for_talking(page, count: int = 10) -> list:
    page.wait_for_function(f"window.__frames.filter(f => f[1]).length >= {count}", timeout=WAIT_SECONDS * 1000)
    return page.evaluate("window.__frames")


def wait_for_log(server, text: str, times: int = 1) -> None:
    """Until the app's log holds ``text`` ``times`` times."""
    deadline = time.monotonic() + WAIT_SECONDS
    while server.log_text().count(text) < times:
        assert time.monotonic() < deadline, f"{text!r} not {times} times in the log:\n{server.log_text()[-3000:]}"
        time.sleep(0.2)


def shown_image(src: str) -> np.ndarray:
    data = base64.b64decode(src.split(",", 1)[1])
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def mouth_difference(media, index: int, src: str) -> float:
    """Mean difference around the mouth between what the page shows and the avatar frame it stands on."""
    source = pingpong_index(index, len(media["avatar_frames"]))
    x0, y0, x1, y1 = np.round(media["mouth_boxes"][source]).astype(int) + [-6, -6, 6, 6]
    shown = shown_image(src).astype(int)
    return float(np.abs(shown[y0:y1, x0:x1] - media["avatar_frames"][source, y0:y1, x0:x1]).mean())


def lip_synced(status: str) -> int:
    return int(re.search(r"(\d+) lip-synced", status).group(1))


# --------------------------------------------------------------------------- the browser


def test_speaking_into_the_microphone_makes_the_avatar_talk_and_closing_frees_the_session(server, browser, media,
                                                                                         tmp_path):
    page = open_live_tab(browser, server)
    start(page, media["avatar"])
    wait_for_log(server, "live session opened (1 open)")
    page.wait_for_function("window.__frames.length >= 10", timeout=WAIT_SECONDS * 1000)
    page.locator("#live_microphone").get_by_role("button", name="Record").click()
    frames = wait_for_talking(page)
    page.wait_for_function("window.__pixels.talking.length >= 3", timeout=WAIT_SECONDS * 1000)
    page.wait_for_function("/[1-9]\\d* lip-synced/.test(document.querySelector('#live_status').innerText)",
                           timeout=WAIT_SECONDS * 1000)
    page.screenshot(path=str(tmp_path / "talking.png"), full_page=True)

    indices = [index for index, _ in frames]
    assert indices == sorted(set(indices)), indices[:20]  # in order (a page that falls behind may skip some)
    assert not frames[0][1], "the avatar talked before anyone spoke"
    pixels = page.evaluate("window.__pixels")
    idle = [mouth_difference(media, index, src) for index, src in pixels["idle"]]
    talking = [mouth_difference(media, index, src) for index, src in pixels["talking"]]
    assert max(idle) < 8, idle  # the avatar's own pixels, through JPEG
    assert min(talking) > 4 * max(idle), (talking, idle)  # a generated mouth
    assert lip_synced(page.locator("#live_status").inner_text()) > 0

    page.context.close()  # the tab closes: its session goes, with what it streamed
    wait_for_log(server, "live session closed (0 open)")
    closed = re.search(r"live session closed \(0 open\): (\d+) frames, (\d+) lip-synced", server.log_text())
    assert int(closed.group(1)) >= len(frames) and int(closed.group(2)) > 0


def test_two_visitors_each_get_their_own_session_one_playing_a_file(server, browser, media, tmp_path):
    """One visitor speaks, the other plays a file into the stream: both avatars talk; Stop and closing the tab
    each close their own session only."""
    speaking, playing = open_live_tab(browser, server), open_live_tab(browser, server)
    closed_before = server.log_text().count("live session closed (0 open)")
    start(speaking, media["avatar"])
    start(playing, media["avatar"])
    wait_for_log(server, "live session opened (2 open)")
    speaking.locator("#live_microphone").get_by_role("button", name="Record").click()
    playing.locator("#live_file input[type=file]").set_input_files(str(media["speech"]))
    playing.locator("#live_file button[aria-label='Clear']").wait_for()
    playing.click("#live_play")
    played = playing.locator("#live_played")  # its own line: the status line is the meter's
    played.get_by_text("Playing speech.wav into the stream.").wait_for(timeout=WAIT_SECONDS * 1000)
    for name, page in (("speaking", speaking), ("playing", playing)):
        wait_for_talking(page, 5)
        page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)

    playing.click("#live_stop")
    wait_for_log(server, "live session closed (1 open)")
    playing.wait_for_function("!document.querySelector('#live_played').innerText.includes('Playing')",
                              timeout=WAIT_SECONDS * 1000)  # Stop says the file no longer plays
    frames_after_stop = playing.evaluate("window.__frames.length")
    seen = speaking.evaluate("window.__frames.length")
    speaking.wait_for_function(f"window.__frames.length > {seen + 10}", timeout=WAIT_SECONDS * 1000)
    assert playing.evaluate("window.__frames.length") == frames_after_stop, "the stopped stream went on"
    speaking.context.close()
    playing.context.close()
    wait_for_log(server, "live session closed (0 open)", closed_before + 1)


# --------------------------------------------------------------------------- in process


def test_pick_avatar_refuses_what_is_not_one_face_file(tmp_path):
    assert stream_app.pick_avatar("a.mp4", None) == "a.mp4"
    assert stream_app.pick_avatar(None, "b.png") == "b.png"
    for video, photo, message in ((None, None, "Upload a video or a photo"), ("a.mp4", "b.png", "clear one"),
                                  ("notes.txt", None, "'notes.txt' is not a video or a photo")):
        with pytest.raises(MediaError, match=message):
            stream_app.pick_avatar(video, photo)


def test_frame_value_is_a_jpeg_of_the_frame_shrunk_for_the_page():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (96, 128, 3), np.uint8)
    small = cv2.GaussianBlur(small, (0, 0), 3)
    value = stream_app.frame_value(SimpleNamespace(image=small, index=7, synced=True, alpha=0.75))
    assert (value["index"], value["synced"], value["alpha"]) == (7, True, 0.75)
    assert value["src"].startswith("data:image/jpeg;base64,")
    assert np.abs(shown_image(value["src"]).astype(int) - small).mean() < 3
    large = np.zeros((1080, 1920, 3), np.uint8)
    assert shown_image(stream_app.frame_value(SimpleNamespace(image=large, index=0, synced=False, alpha=0.0))["src"]).shape == (
        405, 720, 3)


def test_a_microphone_chunk_is_read_then_removed(tmp_path):
    folder = tmp_path / "0123abcd"
    folder.mkdir()
    chunk = folder / "audio.wav"
    samples = (np.sin(np.arange(4800) / 9) * 8000).astype(np.int16)
    wavfile.write(chunk, 48000, samples)
    rate, read = stream_app.read_chunk(str(chunk))
    assert rate == 48000 and np.array_equal(read, samples)
    assert not folder.exists()
    assert stream_app.read_chunk(str(chunk)) is None
