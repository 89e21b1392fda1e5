"""A parse worker: `python -m exporter.api.parse_worker`, started by the server's BodyParser.

It reads framed requests (body, content type, limits, time of receipt) on stdin and answers
each, in order, on stdout with the parsed events or the error that refuses them. It exits when
stdin closes. Ctrl-C reaches the whole process group: the server decides when its workers stop.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import signal
import sys
from typing import BinaryIO, Final

from exporter.parsing import FRAME_HEADER, frame, parse_detached

# Linux's default upper limit for an unprivileged process (/proc/sys/fs/pipe-max-size).
PIPE_BYTES: Final = 1024 * 1024


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    while True:
        header = requests.read(FRAME_HEADER.size)
        if len(header) < FRAME_HEADER.size:
            return
        body, content_type, limits, received = pickle.loads(
            requests.read(FRAME_HEADER.unpack(header)[0]))
        answers.write(frame(parse_detached(body, content_type, limits, received)))
        answers.flush()


def _widen(fd: int) -> None:
    """A pipe holds 64 KiB; a batch's answer is a few hundred. Each time the pipe fills, the
    worker waits for the server's event loop, which waits for the GIL: widened, one write
    carries a whole answer (Linux; elsewhere, or above the system's limit, it stays as is)."""
    with contextlib.suppress(AttributeError, OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for fd in (sys.stdin.fileno(), sys.stdout.fileno()):
        _widen(fd)
    # The answers get stdout's pipe to themselves; anything printed goes to stderr instead.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, answers)


if __name__ == "__main__":
    main()
