"""Routes are small ``async def`` functions registered by name: ``@route("inbound")``.

The name is what the dialplan asks for (``AGI(agi://127.0.0.1:4573/inbound)`` or
``AGI(astertrack-agi-script,inbound)``).  Registering a name twice is a programming error
and fails at import; asking for an unknown name is the dialplan's error and gets the
failure policy (see ``agi.app``).  The route modules live in ``agi.routes``; importing that
package registers them all (the app does, so this module never imports its routes back).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

RouteFunc = Callable[..., Awaitable[Any]]
ROUTES: dict[str, RouteFunc] = {}


class DuplicateRouteError(RuntimeError):
    """Two functions claim the same route name."""


class UnknownRouteError(LookupError):
    """The dialplan asked for a route nobody registered."""


def route(name: str) -> Callable[[RouteFunc], RouteFunc]:
    def register(func: RouteFunc) -> RouteFunc:
        if name in ROUTES and ROUTES[name] is not func:
            raise DuplicateRouteError(f"AGI route {name!r} is already registered by {ROUTES[name].__qualname__}")
        ROUTES[name] = func
        return func

    return register


def lookup(name: str) -> RouteFunc:
    try:
        return ROUTES[name]
    except KeyError:
        raise UnknownRouteError(f"unknown AGI route {name!r} (known: {', '.join(sorted(ROUTES)) or 'none'})") from None

