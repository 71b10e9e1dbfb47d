"""An ``AsyncHTTPClient`` over aiohttp: keep-alive pooling, Happy Eyeballs
and proxies, for any tornado code.

Select it as tornado's other clients are selected::

    from tornado import httpclient

    httpclient.AsyncHTTPClient.configure(
        'sprockets.mixins.http.aiohttp_client.AiohttpAsyncHTTPClient',
        max_clients=50)

It needs the ``aiohttp`` extra (``pip install
'sprockets.mixins.http[aiohttp]'``).  Every tornado ``HTTPRequest``
option is honoured as tornado's ``simple_httpclient`` honours
it, and where tornado's two clients differ the choice is written down in
:class:`AiohttpAsyncHTTPClient`'s documentation; the package's own engine
(:class:`~sprockets.mixins.http.HTTPClientMixin`,
:class:`~sprockets.mixins.http.Client`) sends with it like with any other.

.. versionadded:: 3.0

"""
from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import contextvars
import functools
import inspect
import io
import secrets
import socket
import ssl
import time
import types
import typing
import urllib.parse

import aiohttp
import aiohttp.abc
import yarl
from tornado import httpclient, httputil, netutil, simple_httpclient
from tornado import version as tornado_version
from tornado.escape import utf8
from tornado.util import GzipDecompressor

from sprockets.mixins.http import _redirects, _tls

__all__ = [
    'DEFAULT_KEEPALIVE_TIMEOUT',
    'DEFAULT_MAX_BODY_SIZE',
    'DEFAULT_MAX_HEADER_SIZE',
    'AiohttpAsyncHTTPClient',
    'NoResponseError',
]

#: Seconds an idle pooled connection may wait to be used again: below the
#: 5 s keep-alive of common servers (nginx's default is longer, Node's and
#: uvicorn's are 5 s, gunicorn's 2 s is the one it does not cover), so
#: that a request is seldom sent on a connection the server is closing.
DEFAULT_KEEPALIVE_TIMEOUT = 3.0

#: The largest response body, in bytes, once decompressed (tornado's
#: default ``max_body_size``).
DEFAULT_MAX_BODY_SIZE = 100 * 1024 * 1024

#: The largest response head (status line and header lines), in bytes
#: (tornado's default ``max_header_size``).
DEFAULT_MAX_HEADER_SIZE = 64 * 1024

#: Seconds before the next address of a host is tried while the one
#: before is still connecting (RFC 8305's recommended 250 ms).
HAPPY_EYEBALLS_DELAY = 0.25


# what simple_httpclient sends without allow_nonstandard_methods
_SUPPORTED_METHODS = frozenset({
    'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'})
# RFC 9110 section 9.2.2
_IDEMPOTENT = frozenset({'GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'})
_BODY_EXPECTED = frozenset({'POST', 'PATCH', 'PUT'})
# aiohttp adds these on its own unless told not to (User-Agent too, which
# this client always sends); tornado's clients add none of them
_SKIP_AUTO_HEADERS = ('Accept', 'Accept-Encoding', 'Content-Type')
_USER_AGENT = f'Tornado/{tornado_version}'
# header fields aiohttp itself reads: never a placeholder
_STRUCTURAL = frozenset({'host', 'content-length', 'transfer-encoding',
                         'connection', 'expect', 'content-type'})
_READ_SIZE = 64 * 1024
# whether this aiohttp bounds the count of header fields (its default, 128,
# is far below the 64 KiB a tornado head may hold)
_COUNTS_HEADERS = 'max_headers' in inspect.signature(
    aiohttp.ClientSession).parameters

#: The fetch whose request aiohttp is sending in the current task: tells
#: the connector's wrapper whose connection it just made.
_CURRENT: contextvars.ContextVar[typing.Optional[_Fetch]] = (
    contextvars.ContextVar('sprockets_mixins_http_aiohttp_fetch',
                           default=None))

# the closing of connectors nobody waits for, kept until done
_CLOSING: typing.Set[asyncio.Future[typing.Any]] = set()

Callback = typing.Callable[[httpclient.HTTPResponse], None]
SSLConfig = typing.Union[ssl.SSLContext, bool]
#: A request's attributes, read once (:meth:`AiohttpAsyncHTTPClient._settings`)
Settings = types.SimpleNamespace
# every attribute of an HTTPRequest, None
_BLANK: typing.Dict[str, typing.Any] = dict.fromkeys(
    name for name in inspect.signature(httpclient.HTTPRequest).parameters
    if name != 'use_gzip')
# (IPv4 only, a connection of its own, the source address)
SessionKey = typing.Tuple[bool, bool, typing.Optional[str]]


class NoResponseError(httpclient.HTTPClientError):
    """No response arrived: tornado's ``HTTPClientError`` of code 599,
    whose ``__cause__`` is what aiohttp (or the body's decoding) raised.

    Timeouts are tornado's own
    ``tornado.simple_httpclient.HTTPTimeoutError`` instead, with
    ``simple_httpclient``'s messages.

    .. versionadded:: 3.0

    """

    def __init__(self, message: str,
                 cause: typing.Optional[BaseException] = None) -> None:
        super().__init__(599, message)
        self.__cause__ = cause


class AiohttpAsyncHTTPClient(httpclient.AsyncHTTPClient):
    """A tornado ``AsyncHTTPClient`` that sends with aiohttp.

    One pool of keep-alive connections per instance (tornado keeps one
    instance per IOLoop), made on the first fetch, inside the running
    loop, and closed by :meth:`close`, or when the loop shuts down
    (``asyncio.run()``): nothing is left open from one loop to the next.
    A connection idle for `keepalive_timeout` is closed, not reused.  The
    addresses of a host are raced as RFC 8305 says, 250 ms apart.

    :param max_clients: the most requests in flight at once; the others
        wait in a queue, as in ``simple_httpclient``: a request that had
        to wait is answered ``HTTPTimeoutError("Timeout in request
        queue")`` once the shorter of its ``connect_timeout`` and
        ``request_timeout`` passed, and both timeouts count from when it
        left the queue (``request_time`` leaves the queue out,
        ``time_info['queue']`` has it)
    :param defaults: default ``HTTPRequest`` attributes, as for every
        ``AsyncHTTPClient``
    :param resolver: a tornado ``netutil.Resolver`` to resolve host names
        with, as for ``simple_httpclient``; :data:`None` is aiohttp's own
        (the system's, in a thread)
    :param hostname_mapping: host names to resolve to the addresses
        given, as for ``simple_httpclient``
    :param max_body_size: the largest body, once decompressed, streamed
        or not; a larger one fails the request (599); defaults to
        :data:`DEFAULT_MAX_BODY_SIZE`
    :param max_header_size: the largest response head; a larger one fails
        the request (599); defaults to :data:`DEFAULT_MAX_HEADER_SIZE`
    :param keepalive_timeout: seconds an idle connection stays in the
        pool; :data:`None` keeps it as long as the server does; defaults
        to :data:`DEFAULT_KEEPALIVE_TIMEOUT`

    ``connect_timeout`` bounds the time to a connection (resolving the
    name, connecting, the TLS handshake, a proxy's tunnel), from when the
    request left the queue, ``request_timeout`` the whole request; the
    shorter of the two bounds the connection, as in
    ``simple_httpclient``, and ``0`` means no limit for either.

    Where tornado's two clients differ, this one does as follows:

    - errors: a response of any status is a response (tornado's
      ``fetch`` raises ``HTTPClientError`` for it unless
      ``raise_error=False``); no response is a 599: tornado's
      ``HTTPTimeoutError`` with ``simple_httpclient``'s messages
      (``Timeout while connecting``, ``Timeout during request``,
      ``Timeout in request queue``), or a :class:`NoResponseError`
      whose ``__cause__`` is aiohttp's exception (aiohttp's and asyncio's
      exceptions never reach the caller); what cannot be sent (the body
      rules, an unknown method or ``auth_mode``, a header value with CR,
      LF or a character outside Latin-1, an unreadable certificate)
      raises from ``fetch`` itself, as in both tornado clients;
    - redirects are counted as ``simple_httpclient`` counts them:
      ``max_redirects`` redirects are followed, and the one after them is
      returned (``curl_httpclient`` fails with a 599); each hop is a
      request of its own, with its own timeouts; 301, 302 and 303 turn a
      POST into a GET, 307 and 308 keep it; a redirect without
      ``Location`` is the response; credentials (``Authorization``,
      ``Cookie``, ``Proxy-Authorization``, basic auth, any header named
      like a key, token, secret or session) never cross to another
      origin; an unusable ``Location`` raises ``ValueError``;
    - ``decompress_response`` (and its alias ``use_gzip``) sends
      ``Accept-Encoding: gzip`` unless the request names its own, and
      undoes gzip only, as ``simple_httpclient`` (the header moves to
      ``X-Consumed-Content-Encoding``); ``False`` sends no
      ``Accept-Encoding`` and keeps the bytes and their
      ``Content-Encoding`` as they arrived;
    - header values are sent as their Latin-1 bytes, as both tornado
      clients send them (``bytes`` are taken as Latin-1; aiohttp alone
      would encode a value outside ASCII as UTF-8); response headers are
      decoded as Latin-1 into tornado ``HTTPHeaders``, repeated fields
      apart, a folded line unfolded;
    - ``header_callback`` gets the lines of the final response only, the
      status line first and an empty line last, before the first chunk
      of its body; a coroutine ``streaming_callback`` is awaited before
      more is read, as ``simple_httpclient`` does (it is never cancelled
      by the client);
    - ``ssl_options`` (an ``SSLContext`` or a dict), ``validate_cert``,
      ``ca_certs``, ``client_cert`` and ``client_key`` as
      ``simple_httpclient``, with one SSL context per distinct
      configuration, made once; aiohttp pools connections by context, so
      a connection made with a client certificate never serves a request
      without it;
    - proxies (``proxy_host``, ``proxy_port``, basic ``proxy_username`` /
      ``proxy_password``; a CONNECT tunnel for https) as
      ``curl_httpclient``; a connection made with proxy credentials never
      serves a request without them;
    - the user name and password of a URL are percent-decoded (as
      libcurl does) and win over ``auth_username``; basic auth is
      NFC-normalised UTF-8, as in tornado;
    - nothing is ever sent twice by the client: aiohttp's own resend of
      an idempotent request on a pooled connection that died is off (a
      caller that retries, as this package's engine, retries it where it
      can be seen), and a request that may not be repeated (a method
      that is not idempotent, without an ``Idempotency-Key`` header) goes
      on a connection of its own, which is never a stale pooled one;
    - ``body_producer`` is streamed (chunked, unless the request has a
      ``Content-Length``), ``expect_100_continue`` waits for the 100
      before the body; ``prepare_curl_callback`` is never called.

    .. versionadded:: 3.0

    """

    def initialize(  # type: ignore[override]
            self, max_clients: int = 10,
            defaults: typing.Optional[typing.Dict[str, typing.Any]] = None,
            resolver: typing.Optional[netutil.Resolver] = None,
            hostname_mapping: typing.Optional[typing.Dict[str, str]] = None,
            max_body_size: int = DEFAULT_MAX_BODY_SIZE,
            max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
            keepalive_timeout: typing.Optional[float] = (
                DEFAULT_KEEPALIVE_TIMEOUT),
    ) -> None:
        super().initialize(defaults=defaults)
        self._max_clients = max_clients
        self.max_body_size = max_body_size
        self.max_header_size = max_header_size
        self.keepalive_timeout = keepalive_timeout
        #: the fetches waiting for a free slot, oldest first
        self.queue: typing.Deque[_Fetch] = collections.deque()
        #: the fetches in flight
        self.active: typing.Set[_Fetch] = set()
        # every fetch not answered yet, by the request it was given
        self._fetches: typing.Dict[httpclient.HTTPRequest, _Fetch] = {}
        self._sessions: typing.Dict[SessionKey, aiohttp.ClientSession] = {}
        # the contexts of ssl_options dicts, by their items
        self._contexts: typing.Dict[typing.Hashable, ssl.SSLContext] = {}
        self._loop: asyncio.AbstractEventLoop = (
            self.io_loop.asyncio_loop)  # type: ignore[attr-defined]
        self._watch: typing.Optional[typing.AsyncGenerator[None, None]] = None
        self._own_resolver: typing.Optional[netutil.Resolver] = None
        if hostname_mapping is not None:
            if resolver is None:
                resolver = self._own_resolver = netutil.Resolver()
            resolver = netutil.OverrideResolver(resolver=resolver,
                                                mapping=hostname_mapping)
        self._resolver = (None if resolver is None
                          else _TornadoResolver(resolver))

    @property
    def max_clients(self) -> int:
        """The most requests in flight at once; raising it lets queued
        requests go at once."""
        return self._max_clients

    @max_clients.setter
    def max_clients(self, value: int) -> None:
        self._max_clients = value
        self._process_queue()

    def close(self) -> None:
        """Close the client: requests still queued or in flight are
        answered 599 (``Cancelled``), and every pooled connection is
        closed (before this returns when the loop is not running)."""
        if self._closed:
            return
        super().close()
        for fetch in list(self._fetches.values()):
            self._abort(fetch, 'Cancelled: the client was closed')
        sessions, self._sessions = list(self._sessions.values()), {}
        watch, self._watch = self._watch, None
        if watch is not None:
            _finish(watch.aclose())  # nothing is left for it to close
        if self._own_resolver is not None:
            self._own_resolver.close()
        if not sessions:
            return
        loop = self._loop
        if (loop.is_running() or loop.is_closed()
                or asyncio._get_running_loop() is not None):
            # every connection is closed now; the loop (if it runs
            # again) finishes what that started
            for session in sessions:
                _close_now(session, loop)
        else:
            loop.run_until_complete(_close_sessions(sessions))

    def abort_fetch(self, request: httpclient.HTTPRequest) -> bool:
        """End the fetch of `request`, the ``HTTPRequest`` given to
        ``fetch``: one still queued is never sent, one in flight has
        its connection closed at once; its future gets a 599
        (``Cancelled``).  Returns whether it was still unanswered.

        .. versionadded:: 3.0

        """
        fetch = self._fetches.get(request)
        if fetch is None:
            return False
        self._abort(fetch, 'Cancelled')
        return True

    def fetch_impl(self, request: httpclient.HTTPRequest,
                   callback: Callback) -> None:
        fetch = _Fetch(self, request, callback)
        self._fetches[fetch.original] = fetch
        if len(self.active) >= self._max_clients:
            timeout = _shorter(request.connect_timeout,
                               request.request_timeout)
            if timeout:
                fetch.timer = self._loop.call_at(
                    fetch.queued_at + timeout, self._queue_timeout, fetch)
            self.queue.append(fetch)
        else:
            self._start(fetch)

    def _process_queue(self) -> None:
        while self.queue and len(self.active) < self._max_clients:
            fetch = self.queue.popleft()
            if fetch.timer is not None:
                fetch.timer.cancel()
                fetch.timer = None
            self._start(fetch)

    def _start(self, fetch: _Fetch) -> None:
        self.active.add(fetch)
        fetch.task = self._loop.create_task(self._run(fetch))

    def _queue_timeout(self, fetch: _Fetch) -> None:
        fetch.timer = None
        self.queue.remove(fetch)
        loop = self._loop
        self._answer(fetch, httpclient.HTTPResponse(
            fetch.request, 599,
            error=simple_httpclient.HTTPTimeoutError(
                'Timeout in request queue'),
            request_time=loop.time() - fetch.queued_at))

    def _abort(self, fetch: _Fetch, message: str) -> None:
        if fetch.task is not None:
            if fetch.stopped is None:
                fetch.stopped = httpclient.HTTPClientError(599, message)
                fetch.task.cancel()
            return
        # still queued: never sent
        if fetch.timer is not None:
            fetch.timer.cancel()
            fetch.timer = None
        self.queue.remove(fetch)
        self._answer(fetch, httpclient.HTTPResponse(
            fetch.request, 599, error=httpclient.HTTPClientError(
                599, f'{message} in request queue')))

    def _answer(self, fetch: _Fetch, response: httpclient.HTTPResponse
                ) -> None:
        if self._fetches.get(fetch.original) is fetch:
            del self._fetches[fetch.original]
        fetch.callback(response)

    async def _run(self, fetch: _Fetch) -> None:
        """Send the request of `fetch`, following its redirects (each hop a
        request of its own), and answer it: with a response, or a 599
        (never raised)."""
        _CURRENT.set(fetch)
        loop = self._loop
        try:
            request = self._settings(fetch.original)
            redirects_left = request.max_redirects or 0
            while True:
                session, options = self._prepare(fetch, request)
                try:
                    response = await session.request(
                        request.method, options.pop('url'), **options)
                finally:
                    if fetch.rewriting is not None:
                        fetch.rewriting.restore()
                        fetch.rewriting = None
                try:
                    fetch.answered_at = loop.time()
                    code = response.status
                    headers = self._headers(response)
                    if (redirects_left > 0 and request.follow_redirects
                            and code in _redirects.REDIRECTS
                            and 'Location' in headers):
                        # its body is not the answer; its connection goes
                        # back to the pool, for the next hop
                        await self._read(response, None, False)
                        response.release()
                        redirects_left -= 1
                        request = self._settings(_next_hop(
                            request.request, code, headers))
                        continue
                    if request.header_callback is not None:
                        _header_lines(request.header_callback, response,
                                      code)
                    stream = request.streaming_callback
                    decompress = _decompresses(request, headers)
                    length = response.content_length
                    if (stream is None and not decompress
                            and length is not None
                            and length <= self.max_body_size):
                        body = await response.read()  # the common case
                    else:
                        body = await self._read(response, stream,
                                                decompress)
                except BaseException:
                    response.close()
                    raise
                response.release()
                answer = fetch.answer(request, code, _reason(response),
                                      headers, body, loop)
                break
        except asyncio.CancelledError:
            answer = fetch.failed(fetch.stopped or (
                httpclient.HTTPClientError(599, 'Cancelled')))
        except Exception as error:  # answered, never raised
            answer = fetch.failed(_no_response(error))
        finally:
            if fetch.timer is not None:
                fetch.timer.cancel()
                fetch.timer = None
            self.active.discard(fetch)
        self._process_queue()
        self._answer(fetch, answer)

    def _settings(self, request: httpclient.HTTPRequest) -> Settings:
        """Every attribute of `request`, its client's default where it is
        :data:`None` (what tornado's ``_RequestProxy`` answers, read
        once: a request reads some thirty of them)."""
        if type(request) is httpclient.HTTPRequest:
            # every attribute is in its __dict__, the defaults a few
            attributes = vars(request).copy()
            for name, value in self.defaults.items():
                if attributes.get(name) is None:
                    attributes[name] = value
        else:  # a subclass may compute an attribute: ask for each one
            proxy = httpclient._RequestProxy(request, self.defaults)
            attributes = {name: getattr(proxy, name) for name in _BLANK}
        attributes['headers'] = request.headers
        attributes['body'] = request.body
        attributes['request'] = request
        return types.SimpleNamespace(**attributes)

    def _prepare(self, fetch: _Fetch, request: Settings
                 ) -> typing.Tuple[aiohttp.ClientSession,
                                   typing.Dict[str, typing.Any]]:
        """The session and aiohttp's arguments for one request of `fetch`,
        whose timers start now."""
        options = self._options(request)
        session = self._session((request.allow_ipv6 is False,
                                 _fresh(request),
                                 _source_ip(request.network_interface)))
        fetch.arm(self._loop, request.connect_timeout,
                  request.request_timeout)
        fetch.latin1 = options.pop('latin1', None)
        return session, options

    def _headers(self, response: aiohttp.ClientResponse
                 ) -> httputil.HTTPHeaders:
        """The response's header fields, decoded as Latin-1 (tornado's
        way), repeated ones apart, within ``max_header_size`` in all."""
        headers = httputil.HTTPHeaders()
        size = len(response.reason or '') + 15  # 'HTTP/1.1 200 \r\n'
        for raw_name, raw_value in response.raw_headers:
            size += len(raw_name) + len(raw_value) + 4
            name = raw_name.decode('latin-1')
            value = raw_value.decode('latin-1')
            if name in headers:
                headers.add(name, value)
            else:  # aiohttp's parser checked the field already
                headers[name] = value
        if size > self.max_header_size:
            raise NoResponseError(
                f'the response head is larger than max_header_size '
                f'({self.max_header_size} bytes)')
        return headers

    def _options(self, request: Settings) -> typing.Dict[str, typing.Any]:
        """aiohttp's arguments for `request`.

        :raises ValueError: for what tornado's clients refuse
        :raises KeyError: for an unknown method

        """
        method = request.method
        nonstandard = request.allow_nonstandard_methods
        if method not in _SUPPORTED_METHODS and not nonstandard:
            raise KeyError(f'unknown method {method}')
        body = request.body
        producer = request.body_producer
        present = body is not None or producer is not None
        if not nonstandard:
            expected = method in _BODY_EXPECTED
            if expected != present:
                raise ValueError(
                    f'Body must {"not " if expected else ""}be None for '
                    f'method {method} (unless allow_nonstandard_methods is '
                    'true)')
        url = _url(request.url)
        head = _Head(request.headers)
        username, password = request.auth_username, request.auth_password
        if url.raw_user is not None or url.raw_password is not None:
            # the URL's own credentials win, and go in the header only
            username, password = url.user or '', url.password
            url = url.with_user(None)
        if username is not None:
            if request.auth_mode not in (None, 'basic'):
                raise ValueError(f'unsupported auth_mode {request.auth_mode}')
            head.set('Authorization', _basic(username, password or ''))
        if request.user_agent:
            head.set('User-Agent', request.user_agent)
        elif 'user-agent' not in head.names:
            head.add('User-Agent', _USER_AGENT)
        if (request.decompress_response
                and 'accept-encoding' not in head.names):
            head.add('Accept-Encoding', 'gzip')
        if method == 'POST' and 'content-type' not in head.names:
            head.add('Content-Type', 'application/x-www-form-urlencoded')
        https = url.scheme == 'https'
        options: typing.Dict[str, typing.Any] = {
            'url': url, 'allow_redirects': False}
        if request.proxy_host and request.proxy_port:
            options.update(_proxy(request, head, https))
        options['headers'] = head.pairs
        # what aiohttp would add of its own (asking for a skip costs, so
        # only when there is one)
        names = head.names
        skip = [name for name in _SKIP_AUTO_HEADERS
                if name.lower() not in names]
        if skip and 'Content-Type' in skip and not (
                present or method in _BODY_EXPECTED):
            skip.remove('Content-Type')
        if skip:
            options['skip_auto_headers'] = skip
        if head.latin1:
            options['latin1'] = head.latin1
        if producer is not None:
            options['data'] = _produced(producer)
        elif body is not None:
            options['data'] = body
        if request.expect_100_continue:
            options['expect100'] = True
        if https:
            options['ssl'] = self._ssl(request)
        return options

    def _ssl(self, request: Settings) -> SSLConfig:
        """The SSL context of `request`'s configuration, made once: the
        caller's own ``SSLContext``; one per distinct ``ssl_options``
        dict; aiohttp's verifying default; else the one
        :func:`._tls.ssl_options` keeps per configuration (its files'
        contents included), as ``simple_httpclient`` would make it."""
        given = request.ssl_options
        if isinstance(given, ssl.SSLContext):
            return given
        if isinstance(given, dict):
            key = tuple(sorted((name, repr(value))
                               for name, value in given.items()))
            context = self._contexts.get(key)
            if context is None:
                context = self._contexts[key] = (
                    netutil.ssl_options_to_context(given, server_side=False))
            return context
        if (request.validate_cert and request.ca_certs is None
                and request.client_cert is None
                and request.client_key is None):
            return True  # aiohttp's verifying default context
        shared = _tls.ssl_options(request.url, vars(request), self.defaults)
        # None: a file that cannot be read, whose error the caller gets
        return shared if shared is not None else _context(request)

    def _session(self, key: SessionKey) -> aiohttp.ClientSession:
        session = self._sessions.get(key)
        if session is None:
            session = self._sessions[key] = self._open(*key)
        return session

    def _open(self, ipv4_only: bool, fresh: bool,
              source_ip: typing.Optional[str]) -> aiohttp.ClientSession:
        """A session of its own connector for each kind of connection: the
        addresses a request may use, whether it goes on a connection of
        its own, and its source address."""
        if self._watch is None:
            self._watch = _watch_shutdown(self)
            # its first step: the running loop's first-iteration hook
            # registers it, so that the loop's shutdown closes it
            _finish(self._watch.asend(None))
        connector = _Connector(
            limit=0, limit_per_host=0, force_close=fresh,
            keepalive_timeout=None if fresh else self.keepalive_timeout,
            family=socket.AF_INET if ipv4_only else socket.AF_UNSPEC,
            local_addr=None if source_ip is None else (source_ip, 0),
            resolver=self._resolver,
            happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY)
        limits: typing.Dict[str, typing.Any] = (
            {'max_headers': self.max_header_size // 4} if _COUNTS_HEADERS
            else {})
        session = aiohttp.ClientSession(
            connector=connector, connector_owner=True,
            cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
            trust_env=False, raise_for_status=False,
            timeout=aiohttp.ClientTimeout(total=None),
            # tornado bounds the whole head: so does _headers, after aiohttp
            # bounded each line (and the count of fields) by the same size
            max_line_size=self.max_header_size,
            max_field_size=self.max_header_size,
            **limits)
        # aiohttp (3.9 and newer) sends an idempotent request a second time
        # when a pooled connection dies under it, unseen by the caller:
        # never here (its switch is there since 3.11, the extra's floor; a
        # test says it holds)
        if hasattr(session, '_retry_connection'):
            session._retry_connection = False
        return session

    async def _read(self, response: aiohttp.ClientResponse,
                    stream: typing.Optional[typing.Callable[[bytes],
                                                            typing.Any]],
                    decompress: bool) -> bytes:
        """The body of `response` (empty when `stream` received it),
        gunzipped when `decompress`."""
        content = response.content
        limit = self.max_body_size
        length = response.content_length
        if length is not None and length > limit and not decompress:
            raise NoResponseError(
                f'body exceeded max_body_size of {limit} bytes')
        chunks: typing.List[bytes] = []
        size = 0
        decompressor = GzipDecompressor() if decompress else None
        while True:
            data = await content.readany()
            if not data:
                break
            if decompressor is not None:
                data = _gunzip(decompressor, data)
                if not data:
                    continue
            size += len(data)
            if size > limit:
                raise NoResponseError(
                    f'body exceeded max_body_size of {limit} bytes')
            if stream is None:
                chunks.append(data)
                continue
            delivered = stream(data)
            if inspect.isawaitable(delivered):
                await _unless_cancelled(delivered)
        if decompressor is not None:
            try:
                decompressor.flush()
            except Exception as error:
                raise NoResponseError(f'invalid gzip data: {error}',
                                      error) from error
        return b''.join(chunks)


class _Fetch:
    """One fetch: its request, its callback, its task and timers."""

    # what a fetch has not done yet: class attributes, so that a fetch
    # sets only what it does
    started_at: typing.Optional[float] = None
    hop_started = hop_wall = 0.0
    connected_at: typing.Optional[float] = None
    answered_at: typing.Optional[float] = None
    connect_deadline: typing.Optional[float] = None
    request_deadline: typing.Optional[float] = None
    task: typing.Optional[asyncio.Task[None]] = None
    timer: typing.Optional[asyncio.TimerHandle] = None
    #: why the task was cancelled: a timeout, or an abort
    stopped: typing.Optional[BaseException] = None
    #: the header values of this hop to write as Latin-1
    latin1: typing.Optional[typing.List[typing.Tuple[bytes, bytes]]] = None
    rewriting: typing.Optional[_Latin1Writes] = None

    def __init__(self, client: AiohttpAsyncHTTPClient,
                 request: httpclient.HTTPRequest, callback: Callback
                 ) -> None:
        self.client = client
        self.request = request
        #: the request the caller gave (tornado's fetch wraps it)
        self.original: httpclient.HTTPRequest = getattr(
            request, 'request', request)
        self.callback = callback
        self.queued_at: float = client._loop.time()

    def arm(self, loop: asyncio.AbstractEventLoop,
            connect_timeout: typing.Optional[float],
            request_timeout: typing.Optional[float]) -> None:
        """Start the timers of one request (each hop of a redirect is a
        request of its own, as in simple_httpclient): the connection
        within the shorter timeout, the whole request within
        `request_timeout` (``0`` or :data:`None`: no limit)."""
        now = loop.time()
        if self.started_at is None:
            self.started_at = now
        else:  # the next hop of a redirect
            self.connected_at = self.answered_at = None
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
        self.hop_started, self.hop_wall = now, time.time()
        connect = _shorter(connect_timeout, request_timeout)
        first = self.connect_deadline = now + connect if connect else None
        if request_timeout:
            self.request_deadline = now + request_timeout
            first = first or self.request_deadline
        else:
            self.request_deadline = None
        if first is not None:
            self.timer = loop.call_at(first, self._on_timer, loop)

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self.timer = None
        if self.stopped is not None or self.task is None:
            return
        if self.connected_at is None and self.connect_deadline is not None:
            self._expire('Timeout while connecting')
        elif self.request_deadline is not None:
            if loop.time() >= self.request_deadline:
                self._expire('Timeout during request')
            else:
                self.timer = loop.call_at(self.request_deadline,
                                          self._on_timer, loop)

    def _expire(self, message: str) -> None:
        assert self.task is not None
        self.stopped = simple_httpclient.HTTPTimeoutError(message)
        self.task.cancel()

    def time_info(self, now: float) -> typing.Dict[str, float]:
        """What the last request's time went to, in seconds, as far as
        aiohttp tells: in the queue, until connected (0 for a pooled
        connection), until the response's head, in all."""
        started = self.hop_started
        info = {'queue': (self.started_at or now) - self.queued_at,
                'total': now - started}
        if self.connected_at is not None:
            info['connect'] = self.connected_at - started
        if self.answered_at is not None:
            info['starttransfer'] = self.answered_at - started
        return info

    def answer(self, request: Settings, code: int,
               reason: typing.Optional[str], headers: httputil.HTTPHeaders,
               body: bytes, loop: asyncio.AbstractEventLoop
               ) -> httpclient.HTTPResponse:
        now = loop.time()
        return httpclient.HTTPResponse(
            self.request, code, reason=reason, headers=headers,
            buffer=io.BytesIO(body), effective_url=request.url,
            request_time=now - self.hop_started, start_time=self.hop_wall,
            time_info=self.time_info(now))

    def failed(self, error: BaseException) -> httpclient.HTTPResponse:
        now = self.client._loop.time()
        started = self.started_at
        return httpclient.HTTPResponse(
            self.request, 599, error=error,
            request_time=None if started is None else now - self.hop_started,
            start_time=None if started is None else self.hop_wall,
            time_info=self.time_info(now))


class _Connector(aiohttp.TCPConnector):
    """aiohttp's connector, telling the fetch being sent when its
    connection is ready: its connect timeout ends there."""

    async def connect(self, req: aiohttp.ClientRequest,
                      traces: typing.List[typing.Any],
                      timeout: aiohttp.ClientTimeout
                      ) -> aiohttp.connector.Connection:
        connection = await super().connect(req, traces, timeout)
        fetch = _CURRENT.get()
        if fetch is not None:
            fetch.connected_at = self._loop.time()
            protocol = connection.protocol
            if fetch.latin1 and protocol is not None:
                fetch.rewriting = _Latin1Writes(protocol, protocol.transport,
                                                fetch.latin1)
                protocol.transport = typing.cast(asyncio.Transport,
                                                 fetch.rewriting)
        return connection


class _TornadoResolver(aiohttp.abc.AbstractResolver):
    """A tornado Resolver, for aiohttp's connector."""

    def __init__(self, resolver: netutil.Resolver) -> None:
        self._resolver = resolver

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET
                      ) -> typing.List[aiohttp.abc.ResolveResult]:
        addresses = await self._resolver.resolve(host, port, family)
        return [{'hostname': host, 'host': address[0], 'port': address[1],
                 'family': found, 'proto': 0,
                 'flags': socket.AI_NUMERICHOST}
                for found, address in addresses]

    async def close(self) -> None:
        """The client closes the resolver it made, and only that one."""


async def _watch_shutdown(client: AiohttpAsyncHTTPClient
                          ) -> typing.AsyncGenerator[None, None]:
    """Close `client`'s connections when its event loop shuts down
    (``asyncio.run()`` closes the async generators still open, with the
    loop still running): nothing is left open across loops."""
    try:
        yield
    finally:
        sessions, client._sessions = list(client._sessions.values()), {}
        await _close_sessions(sessions)


def _finish(step: typing.Awaitable[typing.Any]) -> None:
    """Run `step` (an async generator's step) to its end, or to its first
    suspension, without a loop: the steps here never wait."""
    iterator = step.__await__()
    with contextlib.suppress(StopIteration):
        next(iterator)


async def _close_sessions(sessions: typing.List[aiohttp.ClientSession]
                          ) -> None:
    for session in sessions:
        await session.close()


def _close_now(session: aiohttp.ClientSession,
               loop: asyncio.AbstractEventLoop) -> None:
    """Close `session`'s connections without waiting for them."""
    connector = session.connector
    session.detach()
    if connector is None:
        return
    closing = connector.close()
    if loop.is_closed():
        _finish(closing)  # nothing to wait for
    else:
        future = asyncio.ensure_future(closing, loop=loop)
        _CLOSING.add(future)
        future.add_done_callback(_CLOSING.discard)


async def _unless_cancelled(delivered: typing.Awaitable[typing.Any]
                            ) -> None:
    """Wait for what a ``streaming_callback`` returned, as tornado does,
    without cancelling it when the fetch is cancelled (tornado never
    does): it is the caller's, and it goes on, its outcome retrieved."""
    future = asyncio.ensure_future(delivered)
    try:
        await asyncio.shield(future)
    except asyncio.CancelledError:
        if not future.done():
            future.add_done_callback(_retrieve)
        raise


def _retrieve(future: asyncio.Future[typing.Any]) -> None:
    if not future.cancelled():
        future.exception()


def _shorter(first: typing.Optional[float],
             second: typing.Optional[float]) -> float:
    """The shorter of two timeouts, ``0`` (no limit) ignored."""
    if first and second:
        return min(first, second)
    return first or second or 0.0


def _next_hop(request: httpclient.HTTPRequest, code: int,
              headers: httputil.HTTPHeaders) -> httpclient.HTTPRequest:
    """The request a redirect leads to (see :func:`._redirects.next_hop`):
    credentials in a ``Location`` to another origin are dropped too, as
    simple_httpclient drops them.

    :raises ValueError: for a ``Location`` that cannot be followed

    """
    following, _ = _redirects.next_hop(
        request, request.headers,
        httpclient.HTTPResponse(request, code, headers=headers))
    parts = urllib.parse.urlsplit(following.url)
    if ('@' in parts.netloc
            and _origin(following.url) != _origin(request.url)):
        following.url = urllib.parse.urlunsplit(parts._replace(
            netloc=parts.netloc.rpartition('@')[2]))
    return following


def _fresh(request: Settings) -> bool:
    """Whether `request` goes on a connection of its own: what the
    package's transport says (``prepare_curl_callback`` carries it, as
    for curl), else whether it may not be repeated."""
    said = getattr(request.prepare_curl_callback, 'fresh_connection', None)
    if said is not None:
        return bool(said)
    return (request.method not in _IDEMPOTENT
            and 'Idempotency-Key' not in request.headers)


def _source_ip(interface: typing.Optional[str]) -> typing.Optional[str]:
    if not interface:
        return None
    if not netutil.is_valid_ip(interface):
        raise ValueError('Unrecognized IPv4 or IPv6 address for '
                         f'network_interface, got {interface!r}')
    return interface


@functools.lru_cache(maxsize=512)
def _url(url: str) -> yarl.URL:
    """`url` as aiohttp sends it: as it is, not re-quoted (a service
    calls the same URLs over and over: parsed once)."""
    try:
        parsed = yarl.URL(url, encoded=True)
    except (TypeError, ValueError) as error:
        raise ValueError(f'Invalid URL {url!r}: {error}') from None
    if parsed.scheme not in ('http', 'https'):
        raise ValueError(f'Unsupported url scheme: {url}')
    if not parsed.raw_host:
        raise ValueError(f'Invalid URL {url!r}: no host')
    return parsed


def _origin(url: str) -> typing.Tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.netloc.rpartition('@')[2]


def _text(name: str, given: typing.Any) -> str:
    """A header value as tornado sends it: ``bytes`` decoded as Latin-1,
    anything else as its ``str``.

    :raises ValueError: for CR, LF or NUL, or a character Latin-1 cannot
        encode

    """
    if isinstance(given, (bytes, bytearray)):
        value = bytes(given).decode('latin-1')
    elif isinstance(given, str):
        value = given
    else:
        value = str(given)
    if '\r' in value or '\n' in value or '\x00' in value:
        raise ValueError(f'Illegal characters in header {name!r} (CR, LF '
                         'or NUL) in its value')
    if not value.isascii():
        try:
            value.encode('latin-1')
        except UnicodeEncodeError:
            raise ValueError(f'header {name!r} has a character Latin-1 '
                             'cannot encode in its value') from None
    return value


class _Head:
    """The header fields of one request, as aiohttp sends them: a value
    outside ASCII (which aiohttp would encode as UTF-8) stands as a
    placeholder, written as its Latin-1 bytes by :class:`_Latin1Writes`."""

    __slots__ = ('latin1', 'names', 'pairs')

    def __init__(self, headers: httputil.HTTPHeaders) -> None:
        #: (placeholder, the Latin-1 bytes it stands for)
        self.latin1: typing.List[typing.Tuple[bytes, bytes]] = []
        pairs: typing.List[typing.Tuple[str, str]] = []
        names: typing.Set[str] = set()
        self.pairs, self.names = pairs, names
        for name, value in headers.get_all():
            if not (name.isascii() and name.isprintable()) or ':' in name:
                raise ValueError(f'Illegal characters in header name '
                                 f'{name!r}')
            if type(value) is str and value.isascii() and value.isprintable():
                # the common case: nothing to refuse, nothing to encode
                names.add(name.lower())
                pairs.append((name, value))
            else:
                self.add(name, value)

    def add(self, name: str, value: typing.Any) -> None:
        text = _text(name, value)
        if not text.isascii():
            if name.lower() in _STRUCTURAL:
                raise ValueError(f'header {name!r} must be ASCII')
            placeholder = f'sprockets-latin1-{secrets.token_hex(16)}'
            self.latin1.append((placeholder.encode('ascii'),
                                text.encode('latin-1')))
            text = placeholder
        self.names.add(name.lower())
        self.pairs.append((name, text))

    def set(self, name: str, value: typing.Any) -> None:
        """Set `name` to `value` alone (what the request sets wins over
        what its headers say, as in tornado's clients)."""
        lowered = name.lower()
        if lowered in self.names:
            self.pairs = [pair for pair in self.pairs
                          if pair[0].lower() != lowered]
        self.add(name, value)


class _Latin1Writes:
    """Stands for a connection's transport while the head of a request is
    written: each placeholder of a value outside ASCII is written as its
    Latin-1 bytes, as tornado sends them; then the transport is put back."""

    def __init__(self, protocol: typing.Any, transport: typing.Any,
                 latin1: typing.List[typing.Tuple[bytes, bytes]]) -> None:
        self._protocol = protocol
        self._transport = transport
        self._latin1 = list(latin1)

    def write(self, data: typing.Any) -> None:
        data = bytes(data)
        for pair in list(self._latin1):
            if pair[0] in data:
                data = data.replace(*pair)
                self._latin1.remove(pair)
        if not self._latin1:
            self.restore()
        self._transport.write(data)

    def writelines(self, chunks: typing.Iterable[typing.Any]) -> None:
        self.write(b''.join(bytes(chunk) for chunk in chunks))

    def restore(self) -> None:
        """Put the connection's own transport back (unless the connection
        was lost meanwhile)."""
        if self._protocol.transport is self:
            self._protocol.transport = self._transport

    def __getattr__(self, name: str) -> typing.Any:
        return getattr(self._transport, name)


def _basic(username: str, password: str) -> str:
    """Basic credentials, NFC-normalised and UTF-8 encoded (tornado's)."""
    credentials = httputil.encode_username_password(username, password)
    return 'Basic ' + base64.b64encode(credentials).decode('ascii')


def _proxy(request: Settings, head: _Head, https: bool
           ) -> typing.Dict[str, typing.Any]:
    """aiohttp's proxy arguments for `request`: its credentials go to the
    proxy in the CONNECT of an https URL, in the request itself for an
    http one (aiohttp sends its proxy headers in a CONNECT only); they
    are part of aiohttp's pool key either way, so a connection never
    serves a request of other credentials."""
    proxy = yarl.URL.build(scheme='http', host=request.proxy_host,
                           port=int(request.proxy_port))
    options: typing.Dict[str, typing.Any] = {'proxy': proxy}
    if request.proxy_auth_mode not in (None, 'basic'):
        raise ValueError(
            f'Unsupported proxy_auth_mode {request.proxy_auth_mode}')
    if request.proxy_username:
        credentials = _basic(request.proxy_username,
                             request.proxy_password or '')
        options['proxy_headers'] = {'Proxy-Authorization': credentials}
        if not https:
            head.set('Proxy-Authorization', credentials)
    return options


def _context(request: Settings) -> ssl.SSLContext:
    """The SSL context simple_httpclient makes for `request`."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                         cafile=request.ca_certs)
    if not request.validate_cert:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if request.client_cert is not None:
        context.load_cert_chain(request.client_cert, request.client_key)
    context.options |= ssl.OP_NO_COMPRESSION
    return context


def _decompresses(request: Settings, headers: httputil.HTTPHeaders
                  ) -> bool:
    """Whether the body is gunzipped here, as tornado does: the header
    moves to ``X-Consumed-Content-Encoding``."""
    if not request.decompress_response:
        return False
    encoding = headers.get('Content-Encoding', '')
    if encoding.lower() != 'gzip':
        return False
    headers.add('X-Consumed-Content-Encoding', encoding)
    del headers['Content-Encoding']
    return True


def _gunzip(decompressor: GzipDecompressor, data: bytes) -> bytes:
    out = []
    while data:
        try:
            chunk = decompressor.decompress(data, _READ_SIZE)
        except Exception as error:
            raise NoResponseError(f'invalid gzip data: {error}',
                                  error) from error
        tail = decompressor.unconsumed_tail
        if not chunk and len(tail) >= len(data):
            raise NoResponseError('invalid gzip data: no progress')
        out.append(chunk)
        data = tail
    return b''.join(out)


def _reason(response: aiohttp.ClientResponse) -> typing.Optional[str]:
    """The reason phrase as tornado reads it: Latin-1 (aiohttp decodes it
    as UTF-8, its undecodable bytes as surrogates)."""
    reason = response.reason
    if reason is None or reason.isascii():
        return reason
    return reason.encode('utf-8', 'surrogateescape').decode('latin-1')


def _header_lines(callback: typing.Callable[[str], typing.Any],
                  response: aiohttp.ClientResponse, code: int) -> None:
    """tornado's ``header_callback``: the status line, each header line as
    it arrived, and the empty line, each with its CRLF."""
    version = response.version
    shown = (f'HTTP/{version.major}.{version.minor}' if version is not None
             else 'HTTP/1.1')
    callback(f'{shown} {code} {_reason(response) or ""}\r\n')
    for name, value in response.raw_headers:
        callback(f'{name.decode("latin-1")}: {value.decode("latin-1")}\r\n')
    callback('\r\n')


def _produced(producer: typing.Callable[..., typing.Any]
              ) -> typing.AsyncIterator[bytes]:
    """tornado's ``body_producer`` as the async iterable aiohttp sends
    (chunked, unless the request has a Content-Length)."""
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[typing.Optional[typing.Tuple[
        bytes, asyncio.Future[None]]]] = asyncio.Queue()

    def write(chunk: typing.Union[bytes, str]) -> asyncio.Future[None]:
        written: asyncio.Future[None] = loop.create_future()
        chunks.put_nowait((utf8(chunk), written))
        return written

    async def produce() -> None:
        try:
            produced = producer(write)
            if produced is not None:
                await produced
        finally:
            chunks.put_nowait(None)

    async def iterate() -> typing.AsyncIterator[bytes]:
        running = asyncio.ensure_future(produce())
        try:
            while True:
                item = await chunks.get()
                if item is None:
                    break
                data, written = item
                if data:
                    yield data
                if not written.done():
                    written.set_result(None)
            await running  # the producer's own error
        finally:
            if not running.done():
                running.cancel()

    return iterate()


def _no_response(error: Exception) -> BaseException:
    """What a fetch that got no response answers: an argument's error as
    it is (tornado's fetch raises it), anything else a 599."""
    if isinstance(error, httpclient.HTTPClientError):
        return error
    if isinstance(error, aiohttp.ClientError) or not isinstance(
            error, (ValueError, KeyError, TypeError, NotImplementedError,
                    FileNotFoundError, IsADirectoryError, PermissionError,
                    ssl.SSLError)):
        return NoResponseError(str(error) or type(error).__name__, error)
    return error
