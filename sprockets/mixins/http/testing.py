"""Helpers for testing code that uses :mod:`sprockets.mixins.http`.

.. versionadded:: 3.0

"""
from __future__ import annotations

import contextlib
import typing

from sprockets.mixins.http import HTTPClientMixin

__all__ = ['instant_retries']


@contextlib.contextmanager
def instant_retries() -> typing.Iterator[typing.List[float]]:
    """Make retry sleeps instant while recording the delays asked for.

    Replaces :meth:`HTTPClientMixin._http_req_sleep` for the duration of
    the block; classes that override it themselves are left alone.

    .. code-block:: python

       with testing.instant_retries() as delays:
           response = await handler.http_fetch(url)
       assert len(delays) == 2

    """
    delays: typing.List[float] = []

    async def sleep(self: HTTPClientMixin, seconds: float) -> None:
        delays.append(seconds)

    original = HTTPClientMixin.__dict__['_http_req_sleep']
    HTTPClientMixin._http_req_sleep = sleep  # type: ignore[method-assign]
    try:
        yield delays
    finally:
        HTTPClientMixin._http_req_sleep = original  # type: ignore[method-assign]
