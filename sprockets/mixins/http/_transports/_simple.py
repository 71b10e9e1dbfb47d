"""tornado's ``simple_httpclient``: its timeout messages, the queued
request of an attempt to take back and the stream of an attempt to close
when its caller is cancelled, a connection reset in the middle of a
response reported at once, and the addresses of a host raced as RFC 8305
says (:mod:`._eyeballs`)."""
from __future__ import annotations

import contextlib
import contextvars
import datetime
import socket
import ssl
import typing
import weakref

from tornado import httpclient, iostream, simple_httpclient, tcpclient

from sprockets.mixins.http import _tls, _transports
from sprockets.mixins.http._transports import _eyeballs

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


#: What the message of a timeout names when it struck before any of the
#: request was sent: in the queue, resolving the host, connecting, or in
#: the TLS handshake (libcurl's are classified alike).
_NOT_SENT = ('queue', 'resolving', 'connecting', 'TLS handshake')


class SimpleTransport(_transports.Transport):
    """``tornado.simple_httpclient.SimpleAsyncHTTPClient``.

    Its failures are ``HTTPClientError(599)`` (tornado's
    ``HTTPTimeoutError``) whose message says where the timeout struck: in
    the queue, resolving the host, connecting or in the TLS handshake
    (nothing was sent), or during the request.  Each attempt is known by
    its ``HTTPRequest``: a cancelled attempt still in the client's queue
    is taken out of it, and the stream of one that left the queue is
    closed.  The stream is captured by wrapping the client's connection
    class and ``tcp_client`` once: the connection of a request is created
    with its attempt in a context variable, which the connection's task
    inherits, whichever task dequeued it.  ``max_clients`` is set on the
    shared instance, as 2.x did.

    The same two wrappers mend what simple_httpclient does not do on its
    own, for the attempts of this package only: a connection reset in the
    middle of a response ends the attempt at once (tornado let it run to
    its request timeout, see :class:`_ReportedResets`), and the addresses
    of a host are raced as RFC 8305 says, the retry of a connect timeout
    going to another address (tornado waited the whole connect timeout on
    the first one, every time, see :mod:`._eyeballs`).

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
        if any(phase in message for phase in _NOT_SENT):
            return _transports.Failure.CONNECT
        return _transports.Failure.TIMEOUT

    def track(self, client: httpclient.AsyncHTTPClient,
              request: httpclient.HTTPRequest,
              inflight: _transports.Inflight) -> typing.Any:
        if request.ssl_options is None:
            # one SSLContext per TLS configuration, not one per request:
            # tornado makes a new one, loading the system CA store, for
            # any configuration but the default (about 18 ms of CPU).
            # None leaves the request to tornado: plain http, the default
            # configuration, an ssl_options of the client's defaults, a
            # file that cannot be read.  A caller's ssl_options wins.
            context = _tls.ssl_options(request.url, vars(request),
                                       getattr(client, 'defaults', None))
            if context is not None:
                request.ssl_options = context
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
    current one, and with no attempt for a request no attempt sent; the
    connection of an attempt reports a reset at once
    (:class:`_ReportedResets`)."""

    def __init__(self, inner: typing.Callable[[], type]) -> None:
        self._inner = inner

    def __call__(self) -> typing.Callable[..., typing.Any]:
        connection_class = self._inner()

        def create(client: typing.Any, request: typing.Any,
                   *args: typing.Any, **kwargs: typing.Any) -> typing.Any:
            inflight = _ATTEMPTS.get(_original(request))
            token = _CURRENT.set(inflight)
            try:
                cls = (connection_class if inflight is None
                       else _reporting_resets(connection_class))
                return cls(client, request, *args, **kwargs)
            finally:
                _CURRENT.reset(token)

        return create


class _ReportedResets(simple_httpclient._HTTPConnection):
    """simple_httpclient's connection, finishing its request with the
    error at once when the connection is reset before the whole response
    arrived.

    When the stream closes in the middle of a response body,
    ``HTTP1Connection`` tells the connection through
    ``on_connection_close``.  For a stream closed with an error (a reset:
    ``ECONNRESET``, which ``IOStream`` takes for a close and keeps as its
    ``error``), tornado's ``on_connection_close`` raises that error, as it
    did when a stack context turned the raise into ``_handle_exception``;
    stack contexts are gone since tornado 6, so ``HTTP1Connection`` logs it
    as "Uncaught exception" and nothing ever answers the request: the
    attempt only failed at its request timeout (20 s by default), a FIN at
    the same point ending it at once.  Here the error goes to
    ``_handle_exception`` as the raise meant, so the attempt is a 599
    carrying the reset (a ``ConnectionResetError``, as tornado reports a
    reset before the headers) the moment it arrives, and the engine
    retries it as any broken connection.

    """

    def on_connection_close(self) -> None:
        error = getattr(getattr(self, 'stream', None), 'error', None)
        if self.final_callback is not None and error is not None:
            self._handle_exception(type(error), error, error.__traceback__)
            return
        super().on_connection_close()


# the class made of each client's own subclass of the connection class,
# by that subclass: made once, kept as long as the process (each refers
# to its base, so weak keys would not let them go either)
_REPORTING: typing.Dict[type, type] = {}


def _reporting_resets(connection_class: typing.Any) -> typing.Any:
    """`connection_class` reporting resets (:class:`_ReportedResets`); a
    client's subclass of tornado's connection keeps its own methods, and
    anything else is left as it is."""
    base = simple_httpclient._HTTPConnection
    if (not isinstance(connection_class, type)
            or not issubclass(connection_class, base)
            or issubclass(connection_class, _ReportedResets)):
        return connection_class
    if connection_class is base:
        return _ReportedResets
    reporting = _REPORTING.get(connection_class)
    if reporting is None:
        reporting = _REPORTING[connection_class] = type(
            connection_class.__name__, (_ReportedResets, connection_class),
            {'__module__': connection_class.__module__,
             '__qualname__': connection_class.__qualname__})
    return reporting


class _TrackingTCPClient:
    """Wraps simple_httpclient's TCPClient to tell the attempt whose
    connection is connecting which stream it connected.

    An attempt's connection is made by :func:`._eyeballs.connect`, which
    races the addresses of the host as RFC 8305 says, with what each
    address did kept in :attr:`history`: the retry of a connect timeout
    goes to another address.  A request no attempt sent, or a client
    whose ``tcp_client`` is not tornado's own ``TCPClient``, connects as
    tornado does.

    """

    def __init__(self, inner: typing.Any) -> None:
        self._inner = inner
        #: what the connections of this client said of each address
        self.history = _eyeballs.History()

    async def connect(
            self, host: str, port: int,
            af: socket.AddressFamily = socket.AF_UNSPEC,
            ssl_options: typing.Union[typing.Dict[str, typing.Any],
                                      ssl.SSLContext, None] = None,
            max_buffer_size: typing.Optional[int] = None,
            source_ip: typing.Optional[str] = None,
            source_port: typing.Optional[int] = None,
            timeout: typing.Union[float, datetime.timedelta, None] = None,
    ) -> iostream.IOStream:
        inflight = _CURRENT.get()
        if inflight is None or not _races(self._inner):
            stream: iostream.IOStream = await self._inner.connect(
                host, port, af=af, ssl_options=ssl_options,
                max_buffer_size=max_buffer_size, source_ip=source_ip,
                source_port=source_port, timeout=timeout)
        else:
            stream = await _eyeballs.connect(
                self._inner.resolver, self.history, host, port, af=af,
                ssl_options=ssl_options, max_buffer_size=max_buffer_size,
                source_ip=source_ip, source_port=source_port,
                timeout=timeout,
                # a cancelled attempt closes the sockets still connecting
                opened=lambda opened: inflight.on_abort(opened.close))
        if inflight is not None:
            inflight.on_abort(stream.close)
        return stream

    def __getattr__(self, name: str) -> typing.Any:
        return getattr(self._inner, name)


def _races(tcp_client: typing.Any) -> bool:
    """Whether `tcp_client` is tornado's own ``TCPClient`` (the addresses
    of its resolver can be raced in its place), not a subclass that
    connects its own way."""
    return (isinstance(tcp_client, tcpclient.TCPClient)
            and type(tcp_client).connect is tcpclient.TCPClient.connect)
