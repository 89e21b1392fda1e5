"""Polling with a deadline: the one way the test support waits for something to happen."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T | None],
    timeout: float,
    *,
    interval: float = 0.05,
    describe: str | Callable[[], str] = "a condition",
) -> T:
    """Call `condition` until it returns a truthy value, and return that value.

    Raises TimeoutError after `timeout` seconds. `describe` may be a callable so that the message
    can show the last state seen (the last query result, the last HTTP answer).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = describe() if callable(describe) else describe
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
