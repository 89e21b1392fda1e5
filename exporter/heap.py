"""The C heap under the Python one: large blocks given back to the system once freed.

glibc's malloc serves a block of at least its mmap threshold (128 KiB at start) with a mapping
of its own, unmapped when the block is freed. But every time it frees such a block it raises the
threshold to that block's size (up to 32 MiB, mallopt(3)), so the next blocks that large come
from the heap, where freed space between live blocks stays resident. The exporter frees large
blocks all the time: the idempotency keys' tables (tens of MiB, rebuilt at every merge, see
exporter/ledger/dedup.py), query results, JSON documents. Setting the threshold explicitly is
what turns the adjustment off; at 128 KiB, glibc's own starting value, the threshold stays where
glibc starts it. Measured with `python -m bench.operations` (docs/benchmarks.md), RSS after 1M ->
10M events: 283 -> 316 MiB with the moving threshold (+11.8%), 261 -> 290 MiB fixed at 1 MiB
(+11.2%: blocks under 1 MiB still stayed), 251 -> 268 MiB at 128 KiB (+6.8%). What it costs
ingest is each large block's own mapping and zeroed pages: `python -m bench.ab` measured 0.966
of the moving threshold's events/s at 128 KiB and 0.992 at 1 MiB, within that bench's noise.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
from typing import Final

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD: Final = -3  # glibc's <malloc.h>
ENVIRONMENT: Final = "MALLOC_MMAP_THRESHOLD_"  # glibc's own variable, which then decides


def fix_mmap_threshold(kib: int) -> bool:
    """Serve blocks of `kib` KiB and more by mappings for good (0: leave glibc's moving
    threshold). False when that is not done: 0, another C library, or the operator set glibc's
    own variable."""
    if kib == 0 or ENVIRONMENT in os.environ or platform.libc_ver()[0] != "glibc":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    mallopt = ctypes.CDLL(name).mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, kib * 1024) != 1:
        log.warning("glibc refused an mmap threshold of %d KiB", kib)
        return False
    return True
