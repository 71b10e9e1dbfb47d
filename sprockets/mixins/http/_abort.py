"""Closing the connection of an attempt whose caller was cancelled.

Tornado's ``AsyncHTTPClient`` has no way to abort a request: cancelling the
future it returns leaves the connection open until the request timeout
(and curl_httpclient then logs "Exception after Future was cancelled").
:func:`fetch` therefore shields tornado's future and, when the caller is
cancelled, closes what the attempt opened:

* with curl_httpclient, the socket of the attempt's curl handle is shut
  down (the handle is captured through ``prepare_curl_callback``); curl
  then sees the connection end and finishes the request itself;
* with simple_httpclient, the :class:`~tornado.iostream.IOStream` the
  attempt connected is closed; it is captured by wrapping the client's
  ``tcp_client`` once, with the attempt found through a context variable
  (the connection's task inherits the context of the ``fetch`` call).

A request still waiting in the client's queue (``max_clients``) when the
caller is cancelled has no connection to close yet; tornado ends it at the
attempt's timeout, as before.  So does a curl attempt with a pycurl older
than 7.45.8 (the last wheels for Python 3.9), which cannot tell which
socket a transfer in progress uses.

"""
from __future__ import annotations

import asyncio
import contextvars
import os
import socket
import typing

from tornado import httpclient, iostream

__all__ = ['Inflight', 'fetch']

_CURRENT: contextvars.ContextVar[typing.Optional[Inflight]] = (
    contextvars.ContextVar('sprockets_mixins_http_inflight', default=None))


class Inflight:
    """What one attempt opened, so that a cancelled caller can close it."""

    __slots__ = ('cancelled', 'handles', 'streams', 'user_prepare')

    def __init__(self, user_prepare: typing.Optional[
            typing.Callable[[typing.Any], None]] = None) -> None:
        self.cancelled = False
        self.handles: typing.List[typing.Any] = []
        self.streams: typing.List[iostream.IOStream] = []
        self.user_prepare = user_prepare

    def prepare_curl(self, curl: typing.Any) -> None:
        """The ``prepare_curl_callback``: remember the curl handle."""
        self.handles.append(curl)
        if self.user_prepare is not None:
            self.user_prepare(curl)

    def opened(self, stream: iostream.IOStream) -> None:
        """simple_httpclient connected `stream` for this attempt."""
        if self.cancelled:
            stream.close()
        else:
            self.streams.append(stream)

    def abort(self) -> None:
        """Close every connection this attempt opened."""
        self.cancelled = True
        for stream in self.streams:
            stream.close()
        for handle in self.handles:
            _shutdown_curl_socket(handle)


def _shutdown_curl_socket(handle: typing.Any) -> None:
    try:
        import pycurl  # only with curl_httpclient
        # pycurl 7.45.8 and newer; LASTSOCKET is -1 while a transfer runs
        fd = handle.getinfo(pycurl.ACTIVESOCKET)
    except Exception:  # a closed handle, an old libcurl
        return
    if fd is None or fd < 0:
        return
    # shut the connection down through a duplicate of curl's descriptor:
    # curl sees it end and cleans up; its own descriptor stays valid
    try:
        with socket.socket(fileno=os.dup(fd)) as duplicate:
            duplicate.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _TrackingTCPClient:
    """Wraps simple_httpclient's TCPClient to tell the current attempt
    which stream it connected."""

    def __init__(self, inner: typing.Any) -> None:
        self._inner = inner

    async def connect(self, *args: typing.Any,
                      **kwargs: typing.Any) -> iostream.IOStream:
        stream: iostream.IOStream = await self._inner.connect(
            *args, **kwargs)
        inflight = _CURRENT.get()
        if inflight is not None:
            inflight.opened(stream)
        return stream

    def __getattr__(self, name: str) -> typing.Any:
        return getattr(self._inner, name)


def _track(client: httpclient.AsyncHTTPClient) -> None:
    tcp_client = getattr(client, 'tcp_client', None)
    if tcp_client is not None and not isinstance(tcp_client,
                                                 _TrackingTCPClient):
        client.tcp_client = _TrackingTCPClient(  # type: ignore[attr-defined]
            tcp_client)


async def fetch(client: httpclient.AsyncHTTPClient,
                request: httpclient.HTTPRequest,
                inflight: Inflight) -> httpclient.HTTPResponse:
    """``client.fetch(request, raise_error=False)``, closing the attempt's
    connection when the caller is cancelled."""
    _track(client)
    token = _CURRENT.set(inflight)
    try:
        # ensure_future: a test may have patched fetch with a coroutine
        future = asyncio.ensure_future(
            client.fetch(request, raise_error=False))
    finally:
        _CURRENT.reset(token)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        inflight.abort()
        future.add_done_callback(_consume)
        raise


def _consume(future: asyncio.Future[typing.Any]) -> None:
    """Retrieve the outcome nobody awaits any more, so asyncio does not
    log it as never retrieved."""
    if not future.cancelled():
        future.exception()
