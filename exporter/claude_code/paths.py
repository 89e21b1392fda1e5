"""Where a transcript may be read from: only below configured roots, never through a symlink or
`..` out of them.

A hook names its transcript itself (`transcript_path`), so a caller with an ingest token could
name any file the exporter can read; the roots confine that to Claude Code's own directories.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path


class PathRefusedError(ValueError):
    """A path outside the roots (or not a regular transcript file): it is not read."""


class TranscriptRoots:
    """The directories transcripts are read from, as their real paths; none: reading is off."""

    def __init__(self, roots: Sequence[Path]) -> None:
        self.roots = tuple(Path(os.path.realpath(root)) for root in roots)

    @property
    def enabled(self) -> bool:
        return bool(self.roots)

    def resolve(self, path: str | Path) -> Path:
        """The real path of `path`, when it lies below a root; else PathRefusedError."""
        given = Path(path).expanduser()
        if not given.is_absolute():
            raise PathRefusedError(f"{str(path)[:200]}: not an absolute path")
        if ".." in given.parts:
            raise PathRefusedError(f"{str(path)[:200]}: a path with .. is not followed")
        real = Path(os.path.realpath(given))
        if not any(real.is_relative_to(root) for root in self.roots):
            raise PathRefusedError(f"{str(path)[:200]}: outside the transcript roots")
        return real

    def open(self, path: str | Path) -> int:
        """A read-only descriptor of the transcript at `path` (a regular file below a root).
        O_NOFOLLOW: a symlink put in place after `resolve` is not followed either."""
        real = self.resolve(path)
        try:
            descriptor = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as error:
            raise PathRefusedError(f"{real}: {error.strerror}") from None
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            os.close(descriptor)
            raise PathRefusedError(f"{real}: not a regular file")
        return descriptor

    def transcripts(self, directory: Path) -> Iterator[Path]:
        """Every `*.jsonl` below `directory`, in name order, symlinked folders not entered;
        read each through `open`, which refuses one whose real path leaves the roots."""
        for folder, subfolders, files in os.walk(directory):
            subfolders.sort()
            for name in sorted(files):
                if name.endswith(".jsonl"):
                    yield Path(folder) / name
