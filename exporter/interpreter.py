"""How the serving process sets CPython up once start-up has loaded the fleet.

Two settings, each for the work the server does while ingest runs at full speed:

- Garbage collection: what start-up loaded (the fleet, the counters) is frozen out of it, or
  every full collection would walk it again; and young collections come every 50,000 objects,
  not 700, since a batch of 500 events allocates tens of thousands that reference counting
  frees before any collection.
- The GIL's switch interval: a thread waiting for the GIL gets it after this long at most
  (CPython's default is 5 ms). A scrape hops from the event loop to a worker thread and back,
  and each hop waits for the GIL while the applier, the retention thread and the event loop
  compute. In twelve rounds of ingest at full speed (the pruning phase of bench.operations on
  a 300,000-event ledger), the worst scrape of a round was 53 to 151 ms with 5 ms (four rounds
  over 100) and 45 to 79 ms with 1 ms; `python -m bench.ab` measured ingest with 1 ms at 1.021
  times its events/s with 5 ms, median of 10 slices (docs/benchmarks.md).
"""

from __future__ import annotations

import gc
import sys
from typing import Final

# Objects allocated between young collections (CPython's default: 700).
GC_YOUNG_THRESHOLD: Final = 50_000


def settle(switch_interval_ms: float) -> None:
    """Freeze what is alive now out of garbage collection, collect the young less often, and
    hand the GIL over after `switch_interval_ms`."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, oldest)
    sys.setswitchinterval(switch_interval_ms / 1000)
