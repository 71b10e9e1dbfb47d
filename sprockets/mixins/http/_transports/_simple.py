"""tornado's ``simple_httpclient``: its timeout messages, the queued
request of an attempt to take back and the stream of an attempt to close
when its caller is cancelled."""
from __future__ import annotations

import contextlib
import contextvars
import typing
import weakref

from tornado import httpclient, iostream

from sprockets.mixins.http import _transports

__all__ = ['SimpleTransport']

#: The attempt whose connection is being created: set only while
#: simple_httpclient builds the connection of a request (its task is
#: created then, and inherits it), never in a caller's context.
_CURRENT: contextvars.ContextVar[typing.Optional[_transports.Inflight]] = (
    contextvars.ContextVar('sprockets_mixins_http_inflight', default=None))

#: The attempt each request in flight belongs to, by the request object
#: the attempt built (tornado wraps it in a ``_RequestProxy``).
_ATTEMPTS: weakref.WeakKeyDictionary[
    httpclient.HTTPRequest, _transports.Inflight,
] = weakref.WeakKeyDictionary()


class SimpleTransport(_transports.Transport):
    """``tornado.simple_httpclient.SimpleAsyncHTTPClient``.

    Its failures are ``HTTPClientError(599)`` (tornado's
    ``HTTPTimeoutError``) whose message says where the timeout struck: in
    the queue or while connecting (nothing was sent), or during the
    request.  Each attempt is known by its ``HTTPRequest``: a cancelled
    attempt still in the client's queue is taken out of it, and the
    stream of one that left the queue is closed.  The stream is captured
    by wrapping the client's connection class and ``tcp_client`` once: the
    connection of a request is created with its attempt in a context
    variable, which the connection's task inherits, whichever task
    dequeued it.  ``max_clients`` is set on the shared instance, as 2.x
    did.

    """

    class_names = ('tornado.simple_httpclient.SimpleAsyncHTTPClient',)

    def classify(self, error: BaseException
                 ) -> typing.Optional[_transports.Failure]:
        if not (isinstance(error, httpclient.HTTPClientError)
                and error.code == 599):
            return None
        message = str(error.message or '')
        if 'Timeout' not in message:
            return None
        if 'connecting' in message or 'queue' in message:
            return _transports.Failure.CONNECT
        return _transports.Failure.TIMEOUT

    def track(self, client: httpclient.AsyncHTTPClient,
              request: httpclient.HTTPRequest,
              inflight: _transports.Inflight) -> typing.Any:
        tcp_client = getattr(client, 'tcp_client', None)
        if tcp_client is not None and not isinstance(tcp_client,
                                                     _TrackingTCPClient):
            client.tcp_client = _TrackingTCPClient(  # type: ignore[attr-defined]
                tcp_client)
        connection_class = getattr(client, '_connection_class', None)
        if connection_class is not None and not isinstance(
                connection_class, _TrackingConnectionClass):
            client._connection_class = (  # type: ignore[attr-defined]
                _TrackingConnectionClass(connection_class))
        _ATTEMPTS[request] = inflight
        inflight.on_abort(lambda: _dequeue(client, request))
        return None


def _original(request: typing.Any) -> typing.Any:
    """The request an attempt built, under tornado's ``_RequestProxy``."""
    return getattr(request, 'request', request)


def _dequeue(client: typing.Any, request: httpclient.HTTPRequest) -> None:
    """Take `request` out of `client`'s queue, if it still waits there,
    and answer its future (a 599 nobody reads), so it is never sent."""
    waiting = getattr(client, 'waiting', None)
    queue = getattr(client, 'queue', None)
    if not isinstance(waiting, dict) or queue is None:
        return
    for key, (queued, callback, timeout_handle) in list(waiting.items()):
        if _original(queued) is not request:
            continue
        if timeout_handle is not None:
            client.io_loop.remove_timeout(timeout_handle)
        del waiting[key]
        # _process_queue skips a key no longer waiting, should it stay
        with contextlib.suppress(ValueError):
            queue.remove((key, queued, callback))
        client.io_loop.add_callback(callback, httpclient.HTTPResponse(
            queued, 599, error=httpclient.HTTPClientError(
                599, 'Cancelled in request queue')))
        return


class _TrackingConnectionClass:
    """Stands for simple_httpclient's ``_connection_class`` method: the
    connection of a request is created with the request's attempt as the
    current one, and with no attempt for a request no attempt sent."""

    def __init__(self, inner: typing.Callable[[], type]) -> None:
        self._inner = inner

    def __call__(self) -> typing.Callable[..., typing.Any]:
        connection_class = self._inner()

        def create(client: typing.Any, request: typing.Any,
                   *args: typing.Any, **kwargs: typing.Any) -> typing.Any:
            token = _CURRENT.set(_ATTEMPTS.get(_original(request)))
            try:
                return connection_class(client, request, *args, **kwargs)
            finally:
                _CURRENT.reset(token)

        return create


class _TrackingTCPClient:
    """Wraps simple_httpclient's TCPClient to tell the attempt whose
    connection is connecting which stream it connected."""

    def __init__(self, inner: typing.Any) -> None:
        self._inner = inner

    async def connect(self, *args: typing.Any,
                      **kwargs: typing.Any) -> iostream.IOStream:
        stream: iostream.IOStream = await self._inner.connect(
            *args, **kwargs)
        inflight = _CURRENT.get()
        if inflight is not None:
            inflight.on_abort(stream.close)
        return stream

    def __getattr__(self, name: str) -> typing.Any:
        return getattr(self._inner, name)
