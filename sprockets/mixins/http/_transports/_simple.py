"""tornado's ``simple_httpclient``: its timeout messages, and the stream
of an attempt to close when its caller is cancelled."""
from __future__ import annotations

import contextvars
import typing

from tornado import httpclient, iostream

from sprockets.mixins.http import _transports

__all__ = ['SimpleTransport']

_CURRENT: contextvars.ContextVar[typing.Optional[_transports.Inflight]] = (
    contextvars.ContextVar('sprockets_mixins_http_inflight', default=None))


class SimpleTransport(_transports.Transport):
    """``tornado.simple_httpclient.SimpleAsyncHTTPClient``.

    Its failures are ``HTTPClientError(599)`` (tornado's
    ``HTTPTimeoutError``) whose message says where the timeout struck: in
    the queue or while connecting (nothing was sent), or during the
    request.  The stream an attempt connects is captured by wrapping the
    client's ``tcp_client`` once, with the attempt found through a context
    variable (the connection's task inherits the context of the ``fetch``
    call); ``max_clients`` is set on the shared instance, as 2.x did.

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
              inflight: _transports.Inflight) -> typing.Any:
        tcp_client = getattr(client, 'tcp_client', None)
        if tcp_client is not None and not isinstance(tcp_client,
                                                     _TrackingTCPClient):
            client.tcp_client = _TrackingTCPClient(  # type: ignore[attr-defined]
                tcp_client)
        return _CURRENT.set(inflight)

    def untrack(self, token: typing.Any) -> None:
        _CURRENT.reset(token)


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
            inflight.on_abort(stream.close)
        return stream

    def __getattr__(self, name: str) -> typing.Any:
        return getattr(self._inner, name)
