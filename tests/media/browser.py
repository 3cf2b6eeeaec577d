"""Decoding video the way a web page shows it: headless Chromium (Debian's ``chromium``, driven by
playwright) seeks a ``<video>`` element and draws the frame on screen into a canvas."""

from __future__ import annotations

import base64
import os
import shutil
import tempfile

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

FRAME_TIMEOUT_MS = 60_000  # a frame not shown by then is a failure, never a hung test run

# Started without awaiting it: its result (or error) lands in window.__frame, which Python waits for with a
# timeout (page.evaluate itself would wait forever for a promise that never settles).
_DRAW_FRAME_JS = """([src, t]) => {
  window.__frame = undefined;
  (async () => {
    const v = document.createElement('video');
    v.muted = true; v.preload = 'auto'; v.src = src;
    document.body.appendChild(v);  // on the page: Chromium presents (and reports) frames of shown videos
    await new Promise((ok, bad) => {
      v.onloadeddata = ok; v.onerror = () => bad(new Error(v.error ? v.error.message : 'cannot load'));
    });
    const shown = new Promise(ok => {
      v.requestVideoFrameCallback(() => ok());
      v.addEventListener('seeked', () => setTimeout(ok, 100), {once: true});  // if no new frame is presented
    });
    v.currentTime = t;
    await shown;
    const c = document.createElement('canvas'); c.width = v.videoWidth; c.height = v.videoHeight;
    const g = c.getContext('2d', {willReadFrequently: true});
    g.drawImage(v, 0, 0);
    v.remove();
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let s = '';
    for (let i = 0; i < d.length; i += 0x8000) s += String.fromCharCode.apply(null, d.subarray(i, i + 0x8000));
    return [c.width, c.height, btoa(s)];
  })().then(r => { window.__frame = r; }, e => { window.__frame = {error: String(e)}; });
}"""


def chromium_frames(paths: list, seconds: float = 0.0) -> list[np.ndarray]:
    """The RGB uint8 (H, W, 3) frame each video shows at ``seconds`` in Chromium's <video> element."""
    if CHROMIUM is None:
        pytest.fail("the browser colour check needs Debian's chromium: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    frames = []
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        page_path = os.path.join(folder, "page.html")
        with open(page_path, "w") as f:
            f.write("<!doctype html><title>frames</title>")
        # --no-sandbox: CI containers run as root; file access lets the page load local videos.
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--allow-file-access-from-files"])
        try:
            page = browser.new_page()
            page.goto("file://" + page_path)
            for path in paths:
                page.evaluate(_DRAW_FRAME_JS, ["file://" + os.path.abspath(path), seconds])
                page.wait_for_function("window.__frame !== undefined", timeout=FRAME_TIMEOUT_MS)
                result = page.evaluate("window.__frame")
                if isinstance(result, dict):
                    pytest.fail(f"Chromium could not show {path}: {result['error']}")
                width, height, data = result
                rgba = np.frombuffer(base64.b64decode(data), np.uint8).reshape(height, width, 4)
                frames.append(np.ascontiguousarray(rgba[..., :3]))
        finally:
            browser.close()
    return frames
