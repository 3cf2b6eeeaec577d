"""Keep the resident memory of long streaming runs flat in their length (glibc's malloc).

glibc gives threads that allocate at the same time malloc arenas of their own, up to eight per
core, and an arena keeps the pages its thread freed. With the decoders, warps, face detection and
the encoder in threads of their own, a long run's resident size grew with its length (a 120 s
video peaked 13-20% above a 10 s one, against 4-5% with the threads sharing two arenas). Two
arenas are plenty for a handful of threads that move large buffers; the setting is the
process's, and only arenas made after it are limited. Elsewhere than glibc this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

_M_ARENA_MAX = -8  # mallopt parameter number, from glibc's malloc.h


@functools.cache
def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` (once per process); False where that is not possible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and other C libraries
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))
