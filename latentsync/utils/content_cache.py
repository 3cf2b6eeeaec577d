"""Keys of the on-disk caches (Whisper features, mel spectrograms): file contents plus the settings.

A cache entry is found again by what went into it, never by a path or a timestamp, so a moved
or touched file reuses it and a file rewritten in place (same name, other bytes) does not.
"""

from __future__ import annotations

import hashlib
import os

_HASH_BLOCK = 1 << 20  # bytes read per update: whole files never sit in memory


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_key(*parts: object) -> str:
    """Hex SHA-256 of the parts joined by ``|`` (content digests, cache version, settings)."""
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()
