"""The malloc arena cap that keeps long runs' resident memory flat (benchmarks/RESULTS.md measures it)."""

from __future__ import annotations

import ctypes
import sys

import pytest

from latentsync.utils import memory


@pytest.fixture(autouse=True)
def _fresh_cache():
    memory.limit_malloc_arenas.cache_clear()
    yield
    memory.limit_malloc_arenas.cache_clear()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_the_arena_cap_is_set_through_glibc_mallopt(monkeypatch):
    calls = []
    real_cdll = ctypes.CDLL

    class Recording:
        def __init__(self, name):
            self._libc = real_cdll(name)

        def mallopt(self, parameter, value):
            calls.append((parameter, value))
            return self._libc.mallopt(parameter, value)

    monkeypatch.setattr(ctypes, "CDLL", Recording)
    assert memory.limit_malloc_arenas() is True
    assert memory.limit_malloc_arenas() is True  # once per process
    assert calls == [(-8, 2)]  # M_ARENA_MAX


def test_without_glibc_it_is_a_no_op(monkeypatch):
    def no_libc(name):
        raise OSError("not found")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert memory.limit_malloc_arenas() is False
