"""Progress reporting of a lip-sync run: one hook, fed by the pipeline, read by tqdm bars or a GUI.

A hook is any callable ``hook(stage, done, total)``. The pipeline calls it with ``done == 0`` when
a stage starts and with ``done == total`` when it ends, in this order of stages:

* ``"audio"``: Whisper features of the audio (0/1, 1/1);
* ``"faces"``: face detection and tracking, counted in input frames;
* ``"denoise"``: clips of ``num_frames`` output frames aligned, denoised, restored and encoded;
* ``"write"``: muxing the audio into the output file (0/1, 1/1).

With the stages overlapped (the default) face detection runs ahead in a thread of its own, so
``"faces"`` may still be going when ``"denoise"`` starts: its progress is then reported at each
clip, and it ends before ``"write"``. Hooks are only ever called from the thread that called the
pipeline.
"""

from __future__ import annotations

from typing import Callable

from tqdm.auto import tqdm

ProgressHook = Callable[[str, int, int], None]
STAGES = ("audio", "faces", "denoise", "write")

_LABELS = {
    "audio": ("audio features", "step"),
    "faces": ("detecting faces", "frame"),
    "denoise": ("lip-syncing", "clip"),
    "write": ("writing", "file"),
}


def no_progress(stage: str, done: int, total: int) -> None:
    """A hook that reports nothing."""


class TqdmProgress:
    """A progress hook drawing one tqdm bar per stage (``tqdm_options`` go to every bar, e.g. ``disable``)."""

    def __init__(self, **tqdm_options) -> None:
        self.options = tqdm_options
        self._bars: dict[str, tqdm] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        bar = self._bars.get(stage)
        if bar is None:
            desc, unit = _LABELS.get(stage, (stage, "it"))
            bar = self._bars[stage] = tqdm(total=total, desc=desc, unit=unit, **self.options)
        bar.total = total
        bar.update(done - bar.n)
        if done >= total:
            self._bars.pop(stage).close()

    def close(self) -> None:
        """Close the bars of stages that did not finish (a failed or interrupted run)."""
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
