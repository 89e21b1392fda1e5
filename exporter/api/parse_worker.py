"""A parse worker: `python -m exporter.api.parse_worker`, started by the server's BodyParser.

It reads framed requests (body, content type, event limit, time of receipt) on stdin and answers
each, in order, on stdout with the parsed events or the error that refuses them. It exits when
stdin closes. Ctrl-C reaches the whole process group: the server decides when its workers stop.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
from typing import BinaryIO

from exporter.api.ingest import FRAME_HEADER, frame, parse_detached


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    while True:
        header = requests.read(FRAME_HEADER.size)
        if len(header) < FRAME_HEADER.size:
            return
        body, content_type, max_events, received = pickle.loads(
            requests.read(FRAME_HEADER.unpack(header)[0]))
        answers.write(frame(parse_detached(body, content_type, max_events, received)))
        answers.flush()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The answers get stdout's pipe to themselves; anything printed goes to stderr instead.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, answers)


if __name__ == "__main__":
    main()
