"""What the engine knows about each ``AsyncHTTPClient`` implementation,
one module per implementation, found through one registry.

A :class:`Transport` answers the questions that differ between tornado's
clients: what kind of failure an exception is (was the request sent? is
it worth retrying?), how a cancelled attempt's connection is closed, and
how an instance of a given ``max_clients`` is kept per IOLoop.  To add an
implementation, write ``_transports/_x.py`` with a :class:`Transport`
subclass and :func:`register` it below; nothing else changes.

:func:`fetch` sends one request through any of them, closing the
attempt's connection when the caller is cancelled.

"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import ssl
import typing
import weakref

from tornado import httpclient, httputil, ioloop, iostream

from sprockets.mixins.http import _retry

__all__ = [
    'Inflight',
    'Transport',
    'async_http_client',
    'classify',
    'fetch',
    'for_client',
    'max_clients_from_environment',
    'register',
]

Failure = _retry.Failure


class Inflight:
    """What the request in flight of one attempt opened, so that a
    cancelled caller can close it: each transport records what it can
    close (a queued request, a stream, a curl handle) as an abort
    callback, which :func:`fetch` forgets once the request is answered;
    and the sends a transport made of the request by itself."""

    __slots__ = ('aborts', 'cancelled', 'refused', 'resends',
                 'resends_left', 'user_prepare')

    def __init__(self, user_prepare: typing.Optional[
            typing.Callable[[typing.Any], None]] = None,
                 resends_left: int = 0) -> None:
        self.cancelled = False
        self.aborts: typing.List[typing.Callable[[], None]] = []
        #: why the transport sent the request again by itself, once per
        #: resend, in order (see :meth:`resent`)
        self.resends: typing.List[BaseException] = []
        #: how many more sends the transport may make by itself: the
        #: attempts ``max_http_attempts`` leaves after this one
        self.resends_left = resends_left
        #: the failure of the last send, when a resend was refused
        self.refused: typing.Optional[BaseException] = None
        #: the caller's own ``prepare_curl_callback``, called too
        self.user_prepare = user_prepare

    def on_abort(self, close: typing.Callable[[], None]) -> None:
        """Call `close` when the attempt is cancelled (at once when it is
        cancelled already)."""
        if self.cancelled:
            close()
        else:
            self.aborts.append(close)

    def may_resend(self) -> bool:
        """Whether the transport may send the request again by itself
        (libcurl does, when a reused kept-alive connection closes before
        any of the response arrived).  The engine makes each such send an
        attempt of its own in ``records`` (nothing is sent twice without a
        record of it), so it may only while ``max_http_attempts`` leaves
        attempts: otherwise the transport must end the attempt with the
        failure of the send before, through :meth:`refuse`."""
        return len(self.resends) < self.resends_left

    def resent(self, error: BaseException) -> None:
        """Record that the transport sent the request again by itself, at
        once, because its previous send met `error`."""
        self.resends.append(error)

    def refuse(self, error: BaseException) -> None:
        """Record that the transport did not send the request again (see
        :meth:`may_resend`): the attempt failed with `error`."""
        self.refused = error

    def abort(self) -> None:
        """Close every connection this attempt opened: each callback is
        called, whatever the ones before it raised (a plain stream that
        became a TLS one refuses to close, the TLS one must still be)."""
        self.cancelled = True
        aborts, self.aborts = self.aborts, []
        for close in aborts:
            with contextlib.suppress(Exception):
                close()

    def forget(self) -> None:
        """Forget the abort callbacks of the request just answered: what
        it opened is closed or back in the client's pool, and the
        callbacks refer to the request, its client and its stream, which
        must not live on with the attempt (a transport may key the
        attempt by its request, weakly: the callbacks would keep the key
        alive for ever)."""
        self.aborts.clear()


class Transport:
    """The knowledge of one ``AsyncHTTPClient`` implementation.

    The base class is what holds for any implementation: the
    classification of the standard library's and tornado's own
    exceptions, and ``max_clients`` set on the shared instance.

    """

    #: the implementations' class names (``module.Class``) it serves
    class_names: typing.Tuple[str, ...] = ()

    def classify(self, error: BaseException) -> typing.Optional[Failure]:
        """Say what kind of failure `error` is, or :data:`None` when this
        transport does not know it (the generic rules then decide)."""
        return None

    def request_options(self, inflight: Inflight,
                        may_resend: bool = True) -> typing.Dict[
            str, typing.Any]:
        """Options to add to each attempt's ``HTTPRequest``, to find its
        connection when it is cancelled.

        :param may_resend: whether the request may be sent twice (an
            idempotent one, or the policy retries any): when it is
            :data:`False`, the transport must never resend it on its
            own, behind the engine's back

        """
        return {}

    def track(self, client: httpclient.AsyncHTTPClient,
              request: httpclient.HTTPRequest,
              inflight: Inflight) -> typing.Any:
        """Prepare `client` for `request`, the request of the attempt
        `inflight` about to be sent: returns a token that :meth:`untrack`
        receives once the fetch started."""
        return None

    def untrack(self, token: typing.Any) -> None:
        """Undo what :meth:`track` did for the current context."""

    def sized(self, shared: httpclient.AsyncHTTPClient,
              max_clients: int) -> httpclient.AsyncHTTPClient:
        """Return an instance of ``max_clients`` for `shared`'s loop: the
        shared instance itself, resized, as 2.x did with
        simple_httpclient."""
        if getattr(shared, 'max_clients', max_clients) != max_clients:
            shared.max_clients = max_clients  # type: ignore[attr-defined]
        return shared


_REGISTRY: typing.Dict[str, Transport] = {}
# the registered transports, in the order they are asked to classify
_ORDER: typing.List[Transport] = []
_GENERIC = Transport()


def register(transport: Transport) -> Transport:
    """Register `transport` for its :attr:`~Transport.class_names`."""
    for name in transport.class_names:
        _REGISTRY[name] = transport
    _BY_CLASS.clear()
    if transport not in _ORDER:
        _ORDER.append(transport)
    return transport


def for_client(client: typing.Any) -> Transport:
    """The transport of `client`'s class (or of a class it derives from),
    the generic one for an implementation nobody registered."""
    kind = type(client)
    transport = _BY_CLASS.get(kind)
    if transport is None:
        transport = _GENERIC
        for cls in kind.__mro__:
            known = _REGISTRY.get(f'{cls.__module__}.{cls.__qualname__}')
            if known is not None:
                transport = known
                break
        _BY_CLASS[kind] = transport
    return transport


# for_client's answers, by class (cleared when a transport registers)
_BY_CLASS: weakref.WeakKeyDictionary[type, Transport] = (
    weakref.WeakKeyDictionary())


def classify(error: BaseException) -> Failure:
    """Say what kind of transport failure `error` is.

    ``Failure.CONNECT`` means the request was provably not sent; see
    :class:`~sprockets.mixins.http._retry.Failure` for the others.  Each
    registered transport is asked first (an error names its own client),
    then the rules that hold for every client.

    """
    for transport in _ORDER:
        failure = transport.classify(error)
        if failure is not None:
            return failure
    return _generic_failure(error)


def _generic_failure(error: BaseException) -> Failure:
    if isinstance(error, ssl.SSLCertVerificationError):
        return Failure.FATAL
    if isinstance(error, ConnectionRefusedError):
        return Failure.CONNECT
    if isinstance(error, httpclient.HTTPClientError):
        # a 599 is tornado's "no response"; another code is not a failure
        # of the transport
        return Failure.CONNECTION if error.code == 599 else Failure.FATAL
    if isinstance(error, TimeoutError):
        return Failure.TIMEOUT
    if isinstance(error, (FileNotFoundError, IsADirectoryError,
                          NotADirectoryError, PermissionError)):
        # a ca_certs or client_cert file that cannot be read: the same
        # next time
        return Failure.FATAL
    if isinstance(error, OSError):
        # socket.gaierror: name resolution failed, nothing was sent
        if type(error).__name__ == 'gaierror':
            return Failure.CONNECT
        return Failure.CONNECTION
    if isinstance(error, (iostream.StreamClosedError,
                          iostream.UnsatisfiableReadError,
                          httputil.HTTPInputError)):
        return Failure.CONNECTION
    return Failure.FATAL


def max_clients_from_environment() -> typing.Optional[int]:
    """Return ``HTTP_MAX_CLIENTS`` as an int, or :data:`None`; read on
    every call (it may change), parsed once per value."""
    raw = os.environ.get('HTTP_MAX_CLIENTS')
    if raw == _PARSED[0]:
        return typing.cast(typing.Optional[int], _PARSED[1])
    count = _max_clients(raw)
    _PARSED[:] = [raw, count]  # only once the value is valid
    return count


# the last HTTP_MAX_CLIENTS value seen, and what it means
_PARSED: typing.List[typing.Any] = [None, None]


def _max_clients(raw: typing.Optional[str]) -> typing.Optional[int]:
    value = (raw or '').strip()
    if not value:
        return None
    try:
        count = int(value)
    except ValueError:
        raise ValueError('HTTP_MAX_CLIENTS must be a whole number, got '
                         f'{value!r}') from None
    if count < 1:
        raise ValueError(f'HTTP_MAX_CLIENTS must be at least 1, got {count}')
    return count


def async_http_client() -> httpclient.AsyncHTTPClient:
    """Return the AsyncHTTPClient to send with: the shared instance of the
    current IOLoop, of the size ``HTTP_MAX_CLIENTS`` asks for (see
    :meth:`Transport.sized`)."""
    max_clients = max_clients_from_environment()
    shared = httpclient.AsyncHTTPClient()
    if shared.io_loop not in _SHARED:
        _SHARED[shared.io_loop] = shared
        close_clients_of_closed_loops(_SHARED)
    if max_clients is None:
        return shared
    return for_client(shared).sized(shared, max_clients)


# the shared instances the package sent with, per IOLoop: each refers to
# its IOLoop, so the weak keys never go by themselves
_SHARED: weakref.WeakKeyDictionary[
    ioloop.IOLoop, httpclient.AsyncHTTPClient] = weakref.WeakKeyDictionary()


def close_clients_of_closed_loops(clients: typing.MutableMapping[
        ioloop.IOLoop, typing.Any]) -> None:
    """Close and forget the clients (or dicts of them) kept for IOLoops
    that were closed (``asyncio.run()`` closes its loop): a curl client
    keeps its connections and libcurl's descriptors open until closed."""
    for loop in [known for known in clients if is_closed(known)]:
        kept = clients.pop(loop)
        for client in (kept.values() if isinstance(kept, dict) else [kept]):
            # a client half torn down with its loop may refuse: it is gone
            with contextlib.suppress(Exception):
                client.close()


class PerLoop:
    """Instances of an implementation made for a ``max_clients``, kept per
    IOLoop, for implementations that cannot be resized."""

    def __init__(self) -> None:
        self.clients: weakref.WeakKeyDictionary[
            ioloop.IOLoop,
            typing.Dict[typing.Tuple[type, int], httpclient.AsyncHTTPClient],
        ] = weakref.WeakKeyDictionary()

    def get(self, max_clients: int) -> httpclient.AsyncHTTPClient:
        loop = ioloop.IOLoop.current()
        if loop not in self.clients:
            # each client refers to its IOLoop, so the weak keys never go
            close_clients_of_closed_loops(self.clients)
        clients = self.clients.setdefault(loop, {})
        key = (httpclient.AsyncHTTPClient.configured_class(), max_clients)
        client = clients.get(key)
        if client is None:
            client = clients[key] = httpclient.AsyncHTTPClient(
                force_instance=True, max_clients=max_clients)
        return client


def is_closed(loop: ioloop.IOLoop) -> bool:
    """Whether the asyncio loop under `loop` is closed."""
    asyncio_loop = getattr(loop, 'asyncio_loop', None)  # AsyncIOLoop's
    return asyncio_loop is not None and bool(asyncio_loop.is_closed())


async def fetch(client: httpclient.AsyncHTTPClient,
                request: httpclient.HTTPRequest,
                inflight: Inflight) -> httpclient.HTTPResponse:
    """``client.fetch(request, raise_error=False)``, closing the attempt's
    connection when the caller is cancelled.

    Tornado's ``AsyncHTTPClient`` cannot abort a request: cancelling the
    future it returns leaves the connection open until the request
    timeout (and curl_httpclient logs "Exception after Future was
    cancelled").  So the caller awaits a relay of tornado's future (what
    ``asyncio.shield`` does, with one future and one callback) and, when
    the caller is cancelled, what the attempt opened is closed through its
    transport.
    ``fetch`` is looked up on the client when it runs (2.x test suites
    patch ``AsyncHTTPClient.fetch``).

    """
    transport = for_client(client)
    token = transport.track(client, request, inflight)
    try:
        try:
            # ensure_future: a test may have patched fetch with a coroutine
            future = asyncio.ensure_future(
                client.fetch(request, raise_error=False))
        finally:
            transport.untrack(token)
        # the caller awaits a relay of tornado's future, never the future
        # itself: cancelling the caller must not cancel tornado's future
        relay: asyncio.Future[httpclient.HTTPResponse] = (
            future.get_loop().create_future())
        future.add_done_callback(functools.partial(_relay, relay))
        try:
            return await relay
        except asyncio.CancelledError:
            inflight.abort()
            raise
    finally:
        # answered, failed or aborted: nothing of this request is left to
        # close (a redirect's next hop records its own)
        inflight.forget()


def _relay(relay: asyncio.Future[typing.Any],
           future: asyncio.Future[typing.Any]) -> None:
    """Pass tornado's `future`'s outcome to the `relay` the caller awaits;
    once the caller is gone (the relay cancelled), retrieve the outcome
    nobody awaits any more, so asyncio does not log it as never
    retrieved."""
    if future.cancelled():
        relay.cancel()
    elif relay.done():
        future.exception()
    elif future.exception() is not None:
        relay.set_exception(typing.cast(BaseException, future.exception()))
    else:
        relay.set_result(future.result())


# tornado's two implementations and the package's own; imported last,
# as they subclass Transport (adding one is one more line here)
from sprockets.mixins.http._transports import (  # noqa: E402
    _aiohttp,
    _curl,
    _simple,
)

register(_curl.CurlTransport())  # first: a CurlError is an HTTPClientError
register(_aiohttp.AiohttpTransport())  # its 599s carry aiohttp's cause
register(_simple.SimpleTransport())
