"""Turns the store's failures into domain errors, in one place for commands and queries."""

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from server.domain.errors import Unavailable
from server.store.base import StoreUnavailable

P = ParamSpec("P")
T = TypeVar("T")


def store_unavailable_is_unavailable(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except StoreUnavailable as error:
            raise Unavailable("STORE_UNAVAILABLE", "the store is unavailable; try again") from error

    return wrapper
