"""Helpers for testing code that uses :mod:`sprockets.mixins.http`.

- :class:`FakeUpstream`: a scripted upstream server that answers with the
  replies you queue and records every request, on an ephemeral loopback
  port or mounted into your own application;
- :func:`instant_retries`, :class:`InstantRetriesMixin` and the
  ``instant_retries`` pytest fixture: retry sleeps return at once and the
  delays asked for are recorded;
- :func:`serve`: run a :class:`tornado.web.Application` on an ephemeral
  loopback port, for tests that do not use
  :class:`tornado.testing.AsyncHTTPTestCase`.

The module is also a pytest plugin, registered through the ``pytest11``
entry point: the ``instant_retries`` and ``fake_upstream`` fixtures need no
``conftest.py``.  pytest itself is optional.

.. versionadded:: 3.0

"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import socket
import struct
import types
import typing
import urllib.parse

from tornado import httpserver, httputil, iostream, netutil, routing, web

from sprockets.mixins.http import HTTPClientMixin, _content

try:
    import pytest
except ImportError:  # pragma: no cover - pytest is optional
    pytest = None  # type: ignore[assignment]

__all__ = [
    'FakeUpstream',
    'InstantRetriesMixin',
    'RecordedRequest',
    'instant_retries',
    'serve',
]

HeadersArg = typing.Union[typing.Mapping[str, str],
                          typing.Iterable[typing.Tuple[str, str]], None]

_NO_BODY_STATUSES = frozenset({204, 304})

# an HTTP method is a token (RFC 9110, section 9.1)
_METHOD = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

# what a request line cannot carry as it is: controls and space
_UNSENDABLE = re.compile(r'[\x00-\x20\x7f]')


@contextlib.contextmanager
def instant_retries() -> typing.Iterator[typing.List[float]]:
    """Make retry sleeps instant while recording the delays asked for.

    Replaces
    :meth:`~sprockets.mixins.http.HTTPClientMixin._http_req_sleep` for
    the duration of the block, for every mixin user and
    :class:`~sprockets.mixins.http.Client`; classes that override it
    themselves are left alone.  The
    list it yields holds the delay of every retry, in seconds, in order.

    .. code-block:: python

       with testing.instant_retries() as delays:
           response = await handler.http_fetch(url)
       assert len(delays) == 2

    .. versionadded:: 3.0

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


if typing.TYPE_CHECKING:  # pragma: no cover
    import unittest

    _TestCase = unittest.TestCase
else:
    _TestCase = object


class InstantRetriesMixin(_TestCase):
    """A ``unittest.TestCase`` mixin: :func:`instant_retries` for
    every test, with the delays in :attr:`retry_delays`.

    Put it before the test case class:

    .. code-block:: python

       class MyTest(testing.InstantRetriesMixin,
                    tornado.testing.AsyncHTTPTestCase):
           ...

    .. versionadded:: 3.0

    """

    #: The delay of every retry of the running test, in seconds, in order.
    retry_delays: typing.List[float]

    def setUp(self) -> None:
        """Start :func:`instant_retries` for the test; it ends in a
        cleanup."""
        context = instant_retries()
        self.retry_delays = context.__enter__()
        self.addCleanup(context.__exit__, None, None, None)
        super().setUp()


@dataclasses.dataclass
class RecordedRequest:
    """One request that reached a :class:`FakeUpstream`.

    .. versionadded:: 3.0

    """
    #: The request method, upper case.
    method: str
    #: The path as sent, without the query string and without the mount
    #: prefix (see :meth:`FakeUpstream.handlers`).
    path: str
    #: The query arguments, each name with the list of its values.
    query: typing.Dict[str, typing.List[str]]
    #: The request headers.
    headers: httputil.HTTPHeaders
    #: The request body as received.
    raw_body: bytes
    #: The body decoded by its Content-Type: JSON and msgpack are decoded,
    #: anything else (or a body that does not decode) is :attr:`raw_body`;
    #: :data:`None` for an empty JSON or msgpack body.
    body: typing.Any

    def __repr__(self) -> str:
        return f'<RecordedRequest {self.method} {self.path}>'


@dataclasses.dataclass(frozen=True)
class _Reply:
    """A scripted answer; ``disconnect`` answers with a connection reset."""
    status: int
    body: bytes = b''
    headers: typing.Tuple[typing.Tuple[str, str], ...] = ()
    delay: float = 0.0
    disconnect: bool = False

    def __str__(self) -> str:
        answer = 'connection reset' if self.disconnect else str(self.status)
        delay = f' after {self.delay} s' if self.delay else ''
        return answer + delay


class FakeUpstream:
    """A scripted upstream HTTP server for tests.

    Queue replies per method and path with :meth:`reply` and
    :meth:`disconnect`; each request takes the next reply queued for its
    method and path, or the default reply (see :meth:`set_default`) when
    there is none.  Every request is recorded in :attr:`requests`.

    Run it on an ephemeral ``127.0.0.1`` port as an async context manager:

    .. code-block:: python

       async with testing.FakeUpstream() as upstream:
           upstream.reply('GET', '/users/1', 503)
           upstream.reply('GET', '/users/1', 200, {'name': 'Alice'})
           response = await client.http_fetch(upstream.url('/users/1'))

    or mount it into the application of an
    :class:`~tornado.testing.AsyncHTTPTestCase` with :meth:`handlers`.

    Paths are matched exactly as sent (percent-encoding included), without
    the query string, except that non-ASCII characters are percent-encoded
    as UTF-8 on both sides: a reply queued for ``/café`` answers
    ``/caf%C3%A9``, and a request sent with raw UTF-8 is recorded
    percent-encoded.  Methods are matched without regard to case; any
    method token is answered, ``PROPFIND`` as well as ``GET``.

    .. versionadded:: 3.0

    """

    def __init__(self) -> None:
        #: Every request received, in order.
        self.requests: typing.List[RecordedRequest] = []
        self._queues: typing.Dict[typing.Tuple[str, str],
                                  typing.List[_Reply]] = {}
        self._default: typing.Optional[_Reply] = None
        self._server: typing.Optional[_TrackingServer] = None
        self._loop: typing.Optional[asyncio.AbstractEventLoop] = None
        self._url: typing.Optional[str] = None
        self._waiters: typing.Set[asyncio.Future[bool]] = set()

    def __repr__(self) -> str:
        where = self._url or 'not running'
        return f'<FakeUpstream {where}>'

    # -- scripting -----------------------------------------------------------

    def reply(self, method: str, path: str, status: int = 200,
              body: typing.Any = None, *,
              content_type: typing.Optional[str] = None,
              headers: HeadersArg = None, delay: float = 0.0,
              times: int = 1) -> FakeUpstream:
        """Queue a reply to `method` `path`.

        :param method: the request method to answer, any method token
        :param path: the request path to answer, starting with ``/``;
            non-ASCII characters are percent-encoded as UTF-8
        :param status: the response status, from 200 to 599 (a 1xx is not
            a final answer)
        :param body: the response body.  :class:`dict`, :class:`list` and
            :class:`tuple` are encoded by `content_type` (JSON when it is
            :data:`None`; ``application/msgpack`` for msgpack);
            :class:`str` is sent as UTF-8 (``text/plain`` when
            `content_type` is :data:`None`); :class:`bytes` as they are
            (``application/octet-stream``); :data:`None` sends no body.
            A HEAD request gets the Content-Length of the body, without
            the body, as a real server answers HEAD.
        :param content_type: the Content-Type of `body`; when it is
            :data:`None`, a Content-Type in `headers` is used to encode
            `body`
        :param headers: response headers, a mapping or ``(name, value)``
            pairs (use pairs to repeat a header)
        :param delay: seconds to wait before answering; the server waits,
            so a client's request timeout shorter than this times out
        :param times: how many requests get this reply
        :returns: the upstream, so that calls can be chained
        :raises ValueError: for an invalid method, status, path, delay or
            `times`, or a body with 204 or 304
        :raises TypeError: for a body that cannot be encoded

        """
        if isinstance(status, int) and not isinstance(status, bool) and (
                100 <= status < 200):
            raise ValueError(
                f'status {status} is informational: a 1xx cannot be the '
                'final answer to a request; use a status from 200 to 599')
        if (isinstance(status, bool) or not isinstance(status, int)
                or not 200 <= status <= 599):
            raise ValueError(
                f'status must be an int from 200 to 599, got {status!r}')
        if body is not None and status in _NO_BODY_STATUSES:
            raise ValueError(f'a {status} response cannot have a body')
        pairs = _header_pairs(headers)
        if content_type is None:
            content_type = next((value for name, value in pairs
                                 if name.lower() == 'content-type'), None)
        encoded, body_type = _encode(body, content_type)
        if body_type and not any(name.lower() == 'content-type'
                                 for name, _ in pairs):
            pairs = (('Content-Type', body_type), *pairs)
        return self._queue(method, path, _Reply(
            status, encoded, pairs, _check_delay(delay)), times)

    def disconnect(self, method: str, path: str, *, delay: float = 0.0,
                   times: int = 1) -> FakeUpstream:
        """Queue a connection reset: the request is read, then the
        connection is reset without an answer.

        :param method: the request method to answer
        :param path: the request path to answer, starting with ``/``
        :param delay: seconds to wait before resetting
        :param times: how many requests get this answer
        :returns: the upstream, so that calls can be chained

        """
        return self._queue(method, path, _Reply(
            599, delay=_check_delay(delay), disconnect=True), times)

    def set_default(self, status: int = 404, body: typing.Any = None, *,
                    content_type: typing.Optional[str] = None,
                    headers: HeadersArg = None,
                    delay: float = 0.0) -> FakeUpstream:
        """Set the reply for requests that find nothing queued.

        Arguments as for :meth:`reply`.  Until this is called, such a
        request gets a 404 whose JSON body's ``message`` names the method
        and path.

        :returns: the upstream, so that calls can be chained

        """
        self.reply('DEFAULT', '/', status, body, content_type=content_type,
                   headers=headers, delay=delay)
        self._default = self._queues.pop(('DEFAULT', '/'))[0]
        return self

    def clear(self) -> None:
        """Forget the recorded requests, the queued replies and the
        default reply."""
        self.requests.clear()
        self._queues.clear()
        self._default = None

    def _queue(self, method: str, path: str, reply: _Reply,
               times: int) -> FakeUpstream:
        if not isinstance(method, str) or not _METHOD.match(method):
            raise ValueError(f'method must be an HTTP method token, got '
                             f'{method!r}')
        if not isinstance(path, str) or not path.startswith('/'):
            raise ValueError(f'path must start with /, got {path!r}')
        if '?' in path:
            raise ValueError(f'path must not have a query, got {path!r}')
        if _UNSENDABLE.search(path):
            raise ValueError(f'path cannot have spaces or control '
                             f'characters (percent-encode them), got '
                             f'{path!r}')
        if (isinstance(times, bool) or not isinstance(times, int)
                or times < 1):
            raise ValueError(f'times must be an int >= 1, got {times!r}')
        key = (method.upper(), _quote_non_ascii(path.encode('utf-8')))
        self._queues.setdefault(key, []).extend([reply] * times)
        return self

    def _next_reply(self, method: str, path: str) -> _Reply:
        queue = self._queues.get((method, path))
        if queue:
            return queue.pop(0)
        if self._default is not None:
            return self._default
        return _Reply(404, _content.dump_json({
            'message': f'FakeUpstream: no reply queued for {method} {path}'
        }), (('Content-Type', 'application/json'),))

    # -- assertions ----------------------------------------------------------

    def requests_for(self, method: typing.Optional[str] = None,
                     path: typing.Optional[str] = None
                     ) -> typing.List[RecordedRequest]:
        """Return the recorded requests with `method` and `path`, in order;
        :data:`None` matches any."""
        if path is not None:
            path = _quote_non_ascii(path.encode('utf-8'))
        return [request for request in self.requests
                if (method is None or request.method == method.upper())
                and (path is None or request.path == path)]

    def assert_requested(self, method: str, path: str,
                         times: typing.Optional[int] = None
                         ) -> RecordedRequest:
        """Assert that `method` `path` was requested (exactly `times` times
        when given) and return the last such request.

        :raises AssertionError: naming every request that was received

        """
        found = self.requests_for(method, path)
        if not found or (times is not None and len(found) != times):
            expected = 'at least once' if times is None else f'{times} time(s)'
            raise AssertionError(
                f'expected {method.upper()} {path} {expected}, got it '
                f'{len(found)} time(s); received: {self._received()}')
        return found[-1]

    def assert_not_requested(self, method: str, path: str) -> None:
        """Assert that `method` `path` was never requested.

        :raises AssertionError: naming every request that was received

        """
        found = self.requests_for(method, path)
        if found:
            raise AssertionError(
                f'expected no {method.upper()} {path}, got it '
                f'{len(found)} time(s); received: {self._received()}')

    def assert_no_pending_replies(self) -> None:
        """Assert that every queued reply was used.

        :raises AssertionError: naming the replies still queued

        """
        pending = [f'{method} {path}: {reply}'
                   for (method, path), queue in self._queues.items()
                   for reply in queue]
        if pending:
            raise AssertionError('replies never requested: '
                                 + '; '.join(pending))

    def _received(self) -> str:
        return ', '.join(f'{request.method} {request.path}'
                         for request in self.requests) or 'nothing'

    # -- serving -------------------------------------------------------------

    def handlers(self, prefix: str = '') -> typing.List[routing.URLSpec]:
        """Return the URL rules that serve this upstream under `prefix`,
        to add to an application's handlers.

        Queue replies and read :attr:`RecordedRequest.path` without the
        prefix: with ``prefix='/upstream'``, a request to
        ``/upstream/users/1`` takes the replies queued for ``/users/1``.

        :param prefix: the path the upstream is mounted at, without a
            trailing slash; ``''`` serves every path

        """
        prefix = prefix.rstrip('/')
        if prefix and not prefix.startswith('/'):
            raise ValueError(f'prefix must start with /, got {prefix!r}')
        pattern = re.escape(prefix) + '/.*'
        return [routing.URLSpec(pattern, _UpstreamHandler,
                                {'upstream': self, 'prefix': prefix})]

    def url(self, path: str = '') -> str:
        """Return the absolute URL of `path` on the running upstream:
        ``http://127.0.0.1:<port>`` followed by `path`, with a slash added
        in front of it when it has none.  ``''`` gives the URL without a
        trailing slash, ready for ``f'{upstream.url()}/users/1'``.

        :raises RuntimeError: when the upstream is not running (a mounted
            upstream is reached through the application's own URL)

        """
        if self._url is None:
            raise RuntimeError(f'{self!r}: use it in "async with" (or '
                               'await start()) before asking for a URL')
        return self._url + ('/' + path.lstrip('/') if path else '')

    async def start(self) -> FakeUpstream:
        """Listen on an ephemeral ``127.0.0.1`` port.

        :raises RuntimeError: when it is running already

        """
        if self._server is not None:
            raise RuntimeError(f'{self!r} is running already')
        self._loop = asyncio.get_running_loop()
        self._server, self._url = _listen(web.Application(
            self.handlers(), log_function=_no_log))
        return self

    async def stop(self) -> None:
        """Stop listening, end delayed replies and close every
        connection."""
        server, self._server, self._url = self._server, None, None
        for waiter in list(self._waiters):
            _resolve(waiter, True)
        if server is not None:
            server.stop()
            await server.close_all_connections()

    def _stop_now(self) -> None:
        """Stop without an event loop running, as a fixture's teardown
        does: through the upstream's own loop when it is still open, else
        by closing the listening sockets and the connections' sockets."""
        server, loop = self._server, self._loop
        if server is None or loop is None:
            return
        if not loop.is_closed() and not loop.is_running():
            loop.run_until_complete(self.stop())
            return
        self._server = self._url = None
        server.stop()  # closes the listening sockets
        if loop.is_closed():  # nothing runs on it: close the sockets
            server.close_streams_now()

    async def __aenter__(self) -> FakeUpstream:
        return await self.start()

    async def __aexit__(
            self, exc_type: typing.Optional[typing.Type[BaseException]],
            exc: typing.Optional[BaseException],
            traceback: typing.Optional[types.TracebackType]) -> None:
        await self.stop()


class _AnyMethod(typing.Tuple[str, ...]):
    """SUPPORTED_METHODS that holds every method token."""

    def __contains__(self, method: object) -> bool:
        return isinstance(method, str) and bool(_METHOD.match(method))


class _UpstreamHandler(web.RequestHandler):
    """Answers every request, whatever its method, with the upstream's
    next reply: the answer is given in :meth:`prepare`, which finishes the
    request, so that no per-method handler method is needed."""

    SUPPORTED_METHODS = _AnyMethod(('GET', 'HEAD', 'POST', 'DELETE',
                                    'PATCH', 'PUT', 'OPTIONS'))

    def initialize(self, upstream: FakeUpstream, prefix: str) -> None:
        self.upstream = upstream
        self.prefix = prefix
        self.gone = False
        self.waiter: typing.Optional[asyncio.Future[bool]] = None

    async def prepare(self) -> None:
        if await self._answer():
            self.finish()

    async def _answer(self) -> bool:
        """Answer the request; :data:`False` when the connection was
        closed instead."""
        request = self.request
        # tornado decodes the request line as latin-1: back to the bytes
        path = _quote_non_ascii(
            request.path[len(self.prefix):].encode('latin-1'))
        self.upstream.requests.append(_record(request, path))
        reply = self.upstream._next_reply((request.method or 'GET').upper(),
                                          path)
        if (reply.delay and await self._wait(reply.delay)) or self.gone:
            # the client went away, or the upstream stopped, while waiting
            self.detach().close()
            return False
        if reply.disconnect:
            stream = self.detach()
            if stream.socket is not None:  # None: the client left first
                # SO_LINGER with a zero timeout: close() sends a reset
                stream.socket.setsockopt(socket.SOL_SOCKET,
                                         socket.SO_LINGER,
                                         struct.pack('ii', 1, 0))
            stream.close()
            return False
        self.set_status(reply.status)
        self.clear_header('Content-Type')
        for name, value in reply.headers:
            self.add_header(name, value)
        if request.method == 'HEAD':
            # the length a GET would get, without the body
            if reply.body and not any(name.lower() == 'content-length'
                                      for name, _ in reply.headers):
                self.set_header('Content-Length', len(reply.body))
        elif reply.body:
            self.write(reply.body)
        return True

    async def _wait(self, delay: float) -> bool:
        """Wait `delay` seconds; :data:`True` when cut short."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self.waiter = waiter
        handle = loop.call_later(delay, _resolve, waiter, False)
        self.upstream._waiters.add(waiter)
        try:
            return await waiter
        finally:
            handle.cancel()
            self.upstream._waiters.discard(waiter)

    def on_connection_close(self) -> None:
        self.gone = True
        if self.waiter is not None:
            _resolve(self.waiter, True)


def _resolve(waiter: asyncio.Future[bool], value: bool) -> None:
    if not waiter.done():
        waiter.set_result(value)


def _quote_non_ascii(path: bytes) -> str:
    """Percent-encode the bytes of `path` that are not ASCII."""
    return ''.join(chr(byte) if byte < 0x80 else f'%{byte:02X}'
                   for byte in path)


def _record(request: httputil.HTTPServerRequest,
            path: str) -> RecordedRequest:
    raw = request.body or b''
    content_type = request.headers.get('Content-Type')
    try:
        body = _content.deserialize(raw, content_type)
    except (ValueError, LookupError):
        body = raw
    return RecordedRequest(
        method=(request.method or '').upper(), path=path,
        query=urllib.parse.parse_qs(request.query, keep_blank_values=True),
        headers=request.headers.copy(), raw_body=raw, body=body)


def _encode(body: typing.Any, content_type: typing.Optional[str]
            ) -> typing.Tuple[bytes, typing.Optional[str]]:
    """Return the encoded body and its Content-Type."""
    if body is None:
        return b'', content_type
    if isinstance(body, str):
        return body.encode('utf-8'), content_type or 'text/plain'
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body), content_type or 'application/octet-stream'
    content_type = content_type or 'application/json'
    encoded = _content.serialize(body, content_type)
    if isinstance(encoded, str):  # pragma: no cover - serialize gives bytes
        encoded = encoded.encode('utf-8')
    return encoded, content_type


def _header_pairs(headers: HeadersArg
                  ) -> typing.Tuple[typing.Tuple[str, str], ...]:
    if headers is None:
        return ()
    items = (headers.items() if isinstance(headers, typing.Mapping)
             else headers)
    return tuple((str(name), str(value)) for name, value in items)


def _check_delay(delay: float) -> float:
    if (isinstance(delay, bool) or not isinstance(delay, (int, float))
            or not delay >= 0):
        raise ValueError(f'delay must be a number of seconds >= 0, '
                         f'got {delay!r}')
    return float(delay)


def _no_log(handler: web.RequestHandler) -> None:
    """The fake upstream's requests stay out of the test's logs."""


class _TrackingServer(httpserver.HTTPServer):
    """An HTTPServer that can close its connections without a loop."""

    def initialize(self, *args: typing.Any, **kwargs: typing.Any) -> None:
        super().initialize(*args, **kwargs)
        self._streams: typing.Set[iostream.IOStream] = set()

    def handle_stream(self, stream: iostream.IOStream,
                      address: typing.Tuple[typing.Any, ...]) -> None:
        self._streams = {known for known in self._streams
                         if not known.closed()}
        self._streams.add(stream)
        super().handle_stream(stream, address)

    def close_streams_now(self) -> None:
        """Close the sockets of the open connections, for a server whose
        event loop is closed (IOStream.close needs a loop)."""
        streams, self._streams = self._streams, set()
        for stream in streams:
            if not stream.closed() and stream.socket is not None:
                stream.socket.close()


def _listen(app: web.Application
            ) -> typing.Tuple[_TrackingServer, str]:
    sockets = netutil.bind_sockets(0, '127.0.0.1')
    port = sockets[0].getsockname()[1]
    server = _TrackingServer(app)
    server.add_sockets(sockets)
    return server, f'http://127.0.0.1:{port}'


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> typing.AsyncIterator[str]:
    """Serve `app` on an ephemeral ``127.0.0.1`` port for the duration of
    the block, and yield its base URL (``http://127.0.0.1:<port>``, no
    trailing slash).

    .. code-block:: python

       async with testing.serve(make_app()) as url:
           response = await AsyncHTTPClient().fetch(url + '/users/1')

    .. versionadded:: 3.0

    """
    server, url = _listen(app)
    try:
        yield url
    finally:
        server.stop()
        await server.close_all_connections()


if pytest is not None:

    @pytest.fixture(name='instant_retries')
    def _instant_retries_fixture() -> typing.Iterator[typing.List[float]]:
        """Make retry sleeps instant for the test; the value is the list of
        the delays asked for, in seconds, in order."""
        with instant_retries() as delays:
            yield delays

    @pytest.fixture(name='fake_upstream')
    def _fake_upstream_fixture() -> typing.Iterator[FakeUpstream]:
        """A fresh :class:`FakeUpstream`, not started: start it in the
        test's event loop with ``async with fake_upstream:``.  One still
        running when the test ends is stopped: its port and connections
        are closed."""
        upstream = FakeUpstream()
        yield upstream
        upstream._stop_now()
