"""The scripted upstream server: :class:`FakeUpstream` queues replies per
method and path, records every request, and asserts on what it received;
it listens on an ephemeral loopback port or is mounted into an
application, and refuses an event loop that cannot serve it.

"""
from __future__ import annotations

import asyncio
import re
import types
import typing

from tornado import routing, web

from sprockets.mixins.http.testing import _handler, _requests, _serve
from sprockets.mixins.http.testing._replies import (
    RESET_STATUS,
    HeadersArg,
    Reply,
)
from sprockets.mixins.http.testing._requests import RecordedRequest


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
                                  typing.List[Reply]] = {}
        self._default: typing.Optional[Reply] = None
        self._server: typing.Optional[_serve.TrackingServer] = None
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
        return self._queue(method, path, Reply.build(
            status, body, content_type=content_type, headers=headers,
            delay=delay, head=is_head), times)

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
        return self._queue(method, path, Reply.build(
            RESET_STATUS, delay=delay, disconnect=True), times)

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
        self._default = Reply.build(status, body, content_type=content_type,
                                    headers=headers, delay=delay)
        return self

    def clear(self) -> None:
        """Forget the recorded requests, the queued replies and the
        default reply."""
        self.requests.clear()
        self._queues.clear()
        self._default = None

    def _queue(self, method: str, path: str, reply: Reply,
               times: int) -> FakeUpstream:
        if not isinstance(method, str) or not _requests.METHOD.match(method):
            raise ValueError(f'method must be an HTTP method token, got '
                             f'{method!r}')
        if not isinstance(path, str) or not path.startswith('/'):
            raise ValueError(f'path must start with /, got {path!r}')
        if '?' in path:
            raise ValueError(f'path must not have a query, got {path!r}')
        if _requests.UNSENDABLE.search(path):
            raise ValueError(f'path cannot have spaces or control '
                             f'characters (percent-encode them), got '
                             f'{path!r}')
        if (isinstance(times, bool) or not isinstance(times, int)
                or times < 1):
            raise ValueError(f'times must be an int >= 1, got {times!r}')
        key = (method.upper(),
               _requests.quote_non_ascii(path.encode('utf-8')))
        self._queues.setdefault(key, []).extend([reply] * times)
        return self

    def _next_reply(self, method: str, path: str) -> Reply:
        """Take the reply to `method` `path`: the next queued, else the
        default."""
        queue = self._queues.get((method, path))
        if queue:
            return queue.pop(0)
        if self._default is not None:
            return self._default
        return Reply.not_found(method, path)

    # -- assertions ----------------------------------------------------------

    def requests_for(self, method: typing.Optional[str] = None,
                     path: typing.Optional[str] = None
                     ) -> typing.List[RecordedRequest]:
        """Return the recorded requests with `method` and `path`, in order;
        :data:`None` matches any."""
        if path is not None:
            path = _requests.quote_non_ascii(path.encode('utf-8'))
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
        return [routing.URLSpec(pattern, _handler.UpstreamHandler,
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
        self._server, self._url = _serve.listen(web.Application(
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
            _handler.resolve(waiter, True)
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


def _no_log(handler: web.RequestHandler) -> None:
    """The fake upstream's requests stay out of the test's logs."""
