"""What the routes share: who is calling, and whether the token's role may do this."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from exporter.api.errors import ApiError
from exporter.telemetry import Telemetry
from exporter.tokens import Capability, Token, TokenRegistry

Guard = Callable[[Request], Awaitable[Token]]


def guard(registry: TokenRegistry, telemetry: Telemetry, capability: Capability) -> Guard:
    """A dependency: the caller's token when its role may `capability`; 401 without a known
    token, 403 when its role may not. The token is also left in `request.state.token`."""

    # async: a plain def would run in a thread of the pool for every request, waiting for the
    # GIL twice (there and back) while the applier and the writer hold it.
    async def require(request: Request) -> Token:
        scheme, _, secret = request.headers.get("authorization", "").partition(" ")
        token = registry.authenticate(secret) if scheme.lower() == "bearer" and secret else None
        if token is None:
            telemetry.rejected.labels("unauthorized").inc()
            raise ApiError(401, "unauthorized", "a valid bearer token is required",
                           headers={"WWW-Authenticate": "Bearer"})
        if not token.may(capability):
            telemetry.rejected.labels("unauthorized").inc()
            raise ApiError(403, "forbidden", f"the token {token.name!r} (role {token.role}) "
                           f"may not {capability}")
        request.state.token = token
        return token

    return require
