"""The golden evaluation-model data of the tests (the weight procedure itself lives in ``tools/eval_models.py``)."""

from __future__ import annotations

from tests.conftest import load_golden


def eval_golden() -> dict:
    return load_golden("eval_models.pt")
