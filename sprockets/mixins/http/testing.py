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

The ``instant_retries`` and ``fake_upstream`` pytest fixtures come with the
package's pytest plugin, ``sprockets.mixins.http_pytest_plugin``, which the
``pytest11`` entry point registers: they need no ``conftest.py``.  pytest
itself is optional.

.. versionadded:: 3.0

"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import re
import socket
import struct
import threading
import types
import typing
import urllib.parse

from tornado import httpserver, httputil, iostream, netutil, routing, web

from sprockets.mixins.http import HTTPClientMixin, _checks, _content, _retry

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


class _Switch:
    """What every active :func:`instant_retries` block shares: the delay
    lists of the blocks, in the order they were entered, and the hooks the
    first of them replaced, put back when the last one exits (in whatever
    order the blocks exit)."""

    _HOOKS = ('_http_req_sleep', '_http_req_retry_budget')

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: typing.List[typing.List[float]] = []
        self._saved: typing.Dict[str, typing.Any] = {}

    def enter(self, delays: typing.List[float]) -> None:
        with self._lock:
            if not self._active:
                self._saved = {name: HTTPClientMixin.__dict__[name]
                               for name in self._HOOKS}
                HTTPClientMixin._http_req_sleep = _instant_sleep  # type: ignore[method-assign]
                HTTPClientMixin._http_req_retry_budget = _isolated_budget  # type: ignore[method-assign]
            self._active.append(delays)

    def exit(self, delays: typing.List[float]) -> None:
        with self._lock:
            self._active = [active for active in self._active
                            if active is not delays]
            if not self._active:
                for name, hook in self._saved.items():
                    setattr(HTTPClientMixin, name, hook)
                self._saved = {}

    def record(self, seconds: float) -> None:
        with self._lock:
            active = list(self._active)
        for delays in active:
            delays.append(seconds)

    def replaced(self, name: str) -> typing.Any:
        """The hook `name` that was installed before the first block."""
        with self._lock:
            return self._saved.get(name, _REAL_HOOKS[name])


_REAL_HOOKS = {name: HTTPClientMixin.__dict__[name] for name in _Switch._HOOKS}
_SWITCH = _Switch()


async def _instant_sleep(self: HTTPClientMixin, seconds: float) -> None:
    """The sleep while instant retries are on: record, do not wait."""
    _SWITCH.record(seconds)


def _isolated_budget(self: HTTPClientMixin, policy: _retry.RetryPolicy
                     ) -> typing.Optional[_retry.RetryBudget]:
    """The budget hook while instant retries are on: a call whose policy
    draws from the process-wide budget draws from a fresh one instead."""
    budget: typing.Optional[_retry.RetryBudget] = _SWITCH.replaced(
        '_http_req_retry_budget')(self, policy)
    if budget is _retry.DEFAULT_BUDGET:
        return _retry.RetryBudget(
            ttl=budget.ttl, min_retries_per_sec=budget.min_retries_per_sec,
            percent_can_retry=budget.percent_can_retry)
    return budget


@contextlib.contextmanager
def instant_retries() -> typing.Iterator[typing.List[float]]:
    """Make retry sleeps instant while recording the delays asked for, and
    give every call a retry budget of its own.

    For the duration of the block, for every mixin user and
    :class:`~sprockets.mixins.http.Client`:

    - :meth:`~sprockets.mixins.http.HTTPClientMixin._http_req_sleep`
      returns at once; the list the block yields receives the delay of
      every retry, in seconds, in order;
    - :meth:`~sprockets.mixins.http.HTTPClientMixin._http_req_retry_budget`
      gives each call whose policy uses the process-wide
      :data:`~sprockets.mixins.http.DEFAULT_BUDGET` (the default, or
      ``budget=DEFAULT_BUDGET``) a fresh
      :class:`~sprockets.mixins.http.RetryBudget` with the same
      parameters, so a test never finds the budget drained by the tests
      before it, and nothing is deposited into or drawn from
      :data:`~sprockets.mixins.http.DEFAULT_BUDGET`.  A policy given a
      :class:`~sprockets.mixins.http.RetryBudget` of its own keeps it
      (test the budget with one), and ``budget=None`` still means none.

    Classes that override either hook themselves are left alone.

    Blocks may be nested or overlap, and exit in any order: while any
    block is active, sleeps are instant and every delay is appended to
    the list of every active block; the real hooks are put back when the
    last active block exits.

    .. code-block:: python

       with testing.instant_retries() as delays:
           response = await handler.http_fetch(url)
       assert len(delays) == 2

    .. versionadded:: 3.0

    """
    delays: typing.List[float] = []
    _SWITCH.enter(delays)
    try:
        yield delays
    finally:
        _SWITCH.exit(delays)


if typing.TYPE_CHECKING:  # pragma: no cover
    import unittest

    _TestCase = unittest.TestCase
else:
    _TestCase = object


class InstantRetriesMixin(_TestCase):
    """A ``unittest.TestCase`` mixin: :func:`instant_retries` for
    every test, with the delays in :attr:`retry_delays`.

    Put it before or after the test case class; either way instant
    retries start before any ``setUp`` of the test case runs and end
    after its cleanups:

    .. code-block:: python

       class MyTest(testing.InstantRetriesMixin,
                    tornado.testing.AsyncHTTPTestCase):
           ...

    ``unittest.TestCase`` does not call ``super().setUp()``, so a
    mixin after it would never be reached: every subclass's ``setUp`` is
    wrapped, when the class is created, to start instant retries first
    (once per test, however many wrapped ``setUp`` run).

    .. versionadded:: 3.0

    """

    #: The delay of every retry of the running test, in seconds, in order.
    retry_delays: typing.List[float]

    def __init_subclass__(cls, **kwargs: typing.Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get('setUp')

        def setUp(self: InstantRetriesMixin) -> None:
            self._start_instant_retries()
            if own is not None:
                own(self)
            else:
                super(cls, self).setUp()

        if own is not None:
            functools.update_wrapper(setUp, own)
        else:
            setUp.__qualname__ = f'{cls.__qualname__}.setUp'
        cls.setUp = setUp  # type: ignore[method-assign]

    def setUp(self) -> None:
        """Start :func:`instant_retries` for the test; it ends in a
        cleanup."""
        self._start_instant_retries()
        parent = getattr(super(), 'setUp', None)
        if parent is not None:
            parent()

    def _start_instant_retries(self) -> None:
        if self.__dict__.get('_instant_retries') is not None:
            return  # started by another wrapped setUp of this test
        block = instant_retries()
        self.retry_delays = block.__enter__()
        self._instant_retries: typing.Optional[
            typing.ContextManager[typing.List[float]]] = block
        self.addCleanup(self._stop_instant_retries)

    def _stop_instant_retries(self) -> None:
        block, self._instant_retries = self._instant_retries, None
        if block is not None:
            block.__exit__(None, None, None)


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
            :data:`None`; ``application/msgpack`` for msgpack), JSON in
            the ``charset`` the content type names, as the mixin encodes a
            request body (UTF-8 when it names none; outside the Unicode
            charsets, non-ASCII characters are ``\\u`` escapes);
            :class:`str` is encoded in that ``charset``, UTF-8 when it
            names none (``text/plain`` when
            `content_type` is :data:`None`); :class:`bytes` are sent as
            they are (``application/octet-stream``); :data:`None` sends no
            body.  A HEAD request gets the Content-Length of the body,
            without the body, as a real server answers HEAD.
        :param content_type: the Content-Type of `body`; when it is
            :data:`None`, a Content-Type in `headers` is used to encode
            `body`
        :param headers: response headers, a mapping or ``(name, value)``
            pairs (use pairs to repeat a header), checked as the mixin
            checks request headers.  A ``Content-Length`` is computed;
            one given must be the encoded body's length, except that a
            HEAD or 304 reply without a body may name any length (that of
            the representation)
        :param delay: seconds to wait before answering; the server waits,
            so a client's request timeout shorter than this times out
        :param times: how many requests get this reply
        :returns: the upstream, so that calls can be chained
        :raises ValueError: for an invalid method, status, path, delay or
            `times`, a body with 204 or 304, a ``Content-Length`` that
            contradicts the body, a ``charset`` Python does not know (or
            that cannot encode a :class:`str` body), or a header name or
            value that cannot be sent (CR, LF, NUL …); the message names
            the header, never its value
        :raises TypeError: for a body that cannot be encoded, or a header
            name or value that is not a :class:`str`
        :raises RuntimeError: when the upstream cannot answer requests
            sent from here: it was started in an event loop that is
            closed, or in another one that is not running while this one
            is (start the upstream in the event loop that sends to it)

        """
        self._check_loop()
        is_head = isinstance(method, str) and method.upper() == 'HEAD'
        return self._queue(method, path, _scripted(
            status, body, content_type, headers, delay, head=is_head), times)

    def disconnect(self, method: str, path: str, *, delay: float = 0.0,
                   times: int = 1) -> FakeUpstream:
        """Queue a connection reset: the request is read, then the
        connection is reset without an answer.

        :param method: the request method to answer
        :param path: the request path to answer, starting with ``/``
        :param delay: seconds to wait before resetting
        :param times: how many requests get this answer
        :returns: the upstream, so that calls can be chained
        :raises RuntimeError: as :meth:`reply` raises

        """
        self._check_loop()
        return self._queue(method, path, _Reply(
            599, delay=_check_delay(delay), disconnect=True), times)

    def set_default(self, status: int = 404, body: typing.Any = None, *,
                    content_type: typing.Optional[str] = None,
                    headers: HeadersArg = None,
                    delay: float = 0.0) -> FakeUpstream:
        """Set the reply for requests that find nothing queued.

        Arguments as for :meth:`reply`; the queued replies are left
        alone (one queued for a method named ``DEFAULT`` as well).  Until
        this is called, such a request gets a 404 whose JSON body's
        ``message`` names the method and path.

        :returns: the upstream, so that calls can be chained
        :raises ValueError: as :meth:`reply` raises
        :raises TypeError: as :meth:`reply` raises
        :raises RuntimeError: as :meth:`reply` raises

        """
        self._check_loop()
        self._default = _scripted(status, body, content_type, headers, delay)
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
            upstream is reached through the application's own URL), or
            cannot answer requests sent from here, as for :meth:`reply`

        """
        if self._url is None:
            raise RuntimeError(f'{self!r}: use it in "async with" (or '
                               'await start()) before asking for a URL')
        self._check_loop()
        return self._url + ('/' + path.lstrip('/') if path else '')

    async def start(self) -> FakeUpstream:
        """Listen on an ephemeral ``127.0.0.1`` port, served by the
        running event loop: use the upstream in that loop (or, from
        another thread, while that loop runs).

        :raises RuntimeError: when it is running already

        """
        self._check_loop()
        if self._server is not None:
            raise RuntimeError(f'{self!r} is running already')
        self._loop = asyncio.get_running_loop()
        self._server, self._url = _listen(web.Application(
            self.handlers(), log_function=_no_log))
        return self

    async def stop(self) -> None:
        """Stop listening, end delayed replies and close every
        connection.

        :raises RuntimeError: when awaited in another event loop than
            the upstream's, which must stop it (from another thread,
            with ``asyncio.run_coroutine_threadsafe()``); when that loop
            is closed, the port and the connections are closed first

        """
        loop = self._loop
        if (self._server is not None and loop is not None
                and loop is not asyncio.get_running_loop()):
            if loop.is_closed():
                message = self._closed_loop_message()
                self._stop_now()  # its sockets can still be closed
                raise RuntimeError(message)
            idle = '' if loop.is_running() else ', which is not running'
            raise RuntimeError(
                f'{self!r} was started in another event loop{idle}: await '
                'stop() in that loop (from another thread, with '
                'asyncio.run_coroutine_threadsafe)')
        server, self._server, self._url = self._server, None, None
        for waiter in list(self._waiters):
            _resolve(waiter, True)
        if server is not None:
            server.stop()
            await server.close_all_connections()

    def _check_loop(self) -> None:
        """Raise :exc:`RuntimeError` when the running upstream cannot
        answer requests sent from here: its event loop is closed, or it is
        idle while another loop runs in this thread (a request would wait
        for its timeout).  A loop running in another thread serves."""
        loop = self._loop
        if self._server is None or loop is None:
            return
        try:
            running: typing.Optional[asyncio.AbstractEventLoop] = (
                asyncio.get_running_loop())
        except RuntimeError:
            running = None
        if running is loop:
            return
        if loop.is_closed():
            raise RuntimeError(self._closed_loop_message())
        if running is not None and not loop.is_running():
            raise RuntimeError(
                f'{self!r} was started in another event loop, which is not '
                'running: a request sent from this loop would wait for its '
                'timeout.  Start the upstream in the event loop that sends '
                'its requests')

    def _closed_loop_message(self) -> str:
        return (f'{self!r} was started in an event loop that is closed, so '
                'it can answer nothing: start it in the event loop that '
                'sends its requests (with pytest, "async with '
                'fake_upstream:" inside the test)')

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


def _scripted(status: int, body: typing.Any,
              content_type: typing.Optional[str], headers: HeadersArg,
              delay: float, *, head: bool = False) -> _Reply:
    """Check the arguments of a reply and return it; `head` when it
    answers HEAD only."""
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
    else:
        content_type = _checks.header_value('Content-Type', content_type,
                                            what='reply header')
    encoded, body_type = _encode(body, content_type)
    _check_content_length(pairs, encoded, any_length=body is None and (
        head or status == 304))
    if body_type and not any(name.lower() == 'content-type'
                             for name, _ in pairs):
        pairs = (('Content-Type', body_type), *pairs)
    return _Reply(status, encoded, pairs, _check_delay(delay))


def _encode(body: typing.Any, content_type: typing.Optional[str]
            ) -> typing.Tuple[bytes, typing.Optional[str]]:
    """Return the encoded body and its Content-Type: text (a :class:`str`
    body, JSON) in the charset the Content-Type names, as the mixin encodes
    a request body."""
    if body is None:
        return b'', content_type
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body), content_type or 'application/octet-stream'
    if isinstance(body, str):
        content_type = content_type or 'text/plain'
        return _encode_text(body, content_type), content_type
    content_type = content_type or 'application/json'
    encoded = _content.serialize(body, content_type)
    if isinstance(encoded, str):  # JSON text
        encoded = _encode_text(encoded, content_type)
    return encoded, content_type


def _encode_text(text: str, content_type: str) -> bytes:
    encoded = _content.encode_body(text, content_type)
    assert encoded is not None  # a str is always encoded
    return encoded


# RFC 9110 section 8.6: Content-Length = 1*DIGIT
_DIGITS = re.compile(r'[0-9]+')


def _check_content_length(pairs: typing.Iterable[typing.Tuple[str, str]],
                          body: bytes, *, any_length: bool) -> None:
    """Refuse a Content-Length that is not a length, or, unless
    `any_length`, not the length of `body`."""
    for name, value in pairs:
        if name.lower() != 'content-length':
            continue
        length = value.strip(' \t')
        if not _DIGITS.fullmatch(length):
            raise ValueError(f'Content-Length must be a number of bytes, '
                             f'got {value!r}')
        if not any_length and int(length) != len(body):
            raise ValueError(
                f'Content-Length {length} contradicts the body, which is '
                f'{len(body)} bytes: leave the header out (it is computed), '
                'or use serve() with a handler of your own to send a '
                'wrong one')


def _header_pairs(headers: HeadersArg
                  ) -> typing.Tuple[typing.Tuple[str, str], ...]:
    """Return the reply headers as checked ``(name, value)`` pairs."""
    if headers is None:
        return ()
    if isinstance(headers, typing.Mapping):
        return tuple(_checks.header_pairs(headers, what='reply header',
                                          argument='headers'))
    if isinstance(headers, (str, bytes)) or not isinstance(
            headers, typing.Iterable):
        raise TypeError('headers must be a mapping or (name, value) pairs, '
                        f'got {type(headers).__name__}')
    pairs = []
    for item in headers:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError('headers must be a mapping or (name, value) '
                            'pairs, got an item that is not a pair')
        name, value = item
        name = _checks.header_name(name, what='reply header')
        pairs.append((name, _checks.header_value(name, value,
                                                 what='reply header')))
    return tuple(pairs)


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
    # The fixtures live in sprockets.mixins.http_pytest_plugin, the module
    # the pytest11 entry point names: it imports nothing of this package
    # until a fixture runs, so pytest-cov measures the package's import.
    # They are imported here too, so that ``-p sprockets.mixins.http.testing``
    # and ``pytest_plugins = ['sprockets.mixins.http.testing']`` still work.
    from sprockets.mixins.http_pytest_plugin import (  # noqa: F401
        _fake_upstream_fixture,
        _instant_retries_fixture,
    )
