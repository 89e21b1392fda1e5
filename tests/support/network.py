"""Loopback ports and HTTP readiness."""

from __future__ import annotations

import socket
from collections.abc import Callable

import httpx

from .polling import wait_until

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago.

    The kernel picks it; another process may still take it before our component binds it, which
    is rare enough on a test machine that retrying is not worth the complexity.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def http_client(base_url: str = "", timeout: float = 10.0) -> httpx.Client:
    """An httpx client that ignores proxy variables: every component we talk to is on loopback."""
    return httpx.Client(base_url=base_url, timeout=timeout, trust_env=False)


def wait_http(
    url: str,
    timeout: float = 10.0,
    *,
    status: int = 200,
    check: Callable[[], None] | None = None,
) -> httpx.Response:
    """GET `url` until it answers `status`, and return that response.

    `check` runs before every attempt; a component passes a liveness check there so that a
    process that died while starting fails at once instead of after the whole timeout.
    """
    last = "no answer yet"

    def attempt(client: httpx.Client) -> httpx.Response | None:
        nonlocal last
        if check is not None:
            check()
        try:
            response = client.get(url)
        except httpx.TransportError as error:
            last = f"{type(error).__name__}: {error}"
            return None
        if response.status_code == status:
            return response
        last = f"HTTP {response.status_code}: {response.text[:200]}"
        return None

    with http_client(timeout=2.0) as client:
        return wait_until(
            lambda: attempt(client),
            timeout,
            interval=0.1,
            describe=lambda: f"{url} to answer HTTP {status} (last: {last})",
        )
