"""The aiohttp transport (issue 10): ``AiohttpAsyncHTTPClient`` behaves as
tornado's own clients do for every ``HTTPRequest`` option, against real
loopback servers (tornado's, and raw asyncio ones for the faults), and
its transport classifies, cancels and refuses to resend.

Each integration test runs in an event loop of its own with the client
configured as tornado users configure it, and closes the loop's shared
client at the end, as ``AsyncHTTPTestCase`` does.  The whole module is
skipped when aiohttp is not installed.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import gc
import gzip
import json
import os
import pathlib
import socket
import ssl
import time
import typing
import unicodedata

import pytest

aiohttp = pytest.importorskip('aiohttp')

from tornado import (  # noqa: E402
    httpclient,
    httpserver,
    httputil,
    netutil,
    simple_httpclient,
    testing,
    web,
)

from sprockets.mixins import http  # noqa: E402
from sprockets.mixins.http import _transports, aiohttp_client  # noqa: E402
from sprockets.mixins.http._transports import _aiohttp  # noqa: E402
from tests import support  # noqa: E402
from tests.faults import misbehaving  # noqa: E402
from tests.faults.misbehaving import MisbehavingServer, response  # noqa: E402
from tests.faults.test_addresses import (  # noqa: E402
    Resolving,
    black_hole,
    connects_within,
)

AIOHTTP = 'sprockets.mixins.http.aiohttp_client.AiohttpAsyncHTTPClient'
TLS = pathlib.Path(__file__).resolve().parent / 'tls'
CERT, KEY = str(TLS / 'cert.pem'), str(TLS / 'key.pem')
FDS = pathlib.Path('/proc/self/fd')
Failure = http.Failure

AsyncTest = typing.Callable[..., typing.Awaitable[None]]


def in_a_loop(test: AsyncTest) -> typing.Callable[..., None]:
    """Run an ``async def`` test in an event loop of its own, with the
    aiohttp client configured, bounded in time; the loop's shared client
    is closed at the end."""

    @functools.wraps(test)
    def run(*args: typing.Any, **kwargs: typing.Any) -> None:
        support.run_in_a_loop(AIOHTTP, lambda: test(*args, **kwargs),
                              timeout=30)

    return run


@contextlib.asynccontextmanager
async def own_client(**kwargs: typing.Any
                     ) -> typing.AsyncIterator[typing.Any]:
    """An instance of its own (``force_instance``), closed afterwards."""
    client = httpclient.AsyncHTTPClient(force_instance=True, **kwargs)
    try:
        yield client
    finally:
        client.close()


# -- tornado handlers, one per behaviour --------------------------------------

class EchoHandler(web.RequestHandler):
    """Answers the request it read as JSON: method, target, every header
    line (values as Latin-1 bytes, hex) and the body (hex)."""

    SUPPORTED_METHODS = ('GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE',
                         'OPTIONS', 'FOO')

    def handle(self) -> None:
        self.set_header('Content-Type', 'application/json')
        self.finish(json.dumps({
            'method': self.request.method,
            'uri': self.request.uri,
            'headers': [[name, value.encode('latin-1').hex()]
                        for name, value in self.request.headers.get_all()],
            'body': self.request.body.hex(),
        }))

    get = post = put = patch = delete = options = foo = handle


def echoed(result: httpclient.HTTPResponse) -> typing.Dict[str, typing.Any]:
    """What :class:`EchoHandler` saw: headers as ``{name: [bytes]}``."""
    seen: typing.Dict[str, typing.Any] = json.loads(result.body)
    headers: typing.Dict[str, typing.List[bytes]] = {}
    for name, value in seen['headers']:
        headers.setdefault(name, []).append(bytes.fromhex(value))
    seen['headers'] = headers
    seen['body'] = bytes.fromhex(seen['body'])
    return seen


class StatusHandler(web.RequestHandler):
    def get(self, code: str) -> None:
        self.set_status(int(code), reason=self.get_argument('reason', None))
        self.finish(f'status {code}')


class ChainHandler(web.RequestHandler):
    """``/chain/N`` redirects to ``/chain/N-1`` (with ``?code=``, 302 by
    default) until ``/chain/0``, which echoes."""

    def handle(self, hops: str) -> None:
        left = int(hops)
        if left == 0:
            EchoHandler.handle(self)  # type: ignore[arg-type]
            return
        code = int(self.get_argument('code', '302'))
        self.set_status(code)
        self.set_header('Location', f'/chain/{left - 1}?code={code}')
        self.finish('moved')

    get = post = put = handle


class RedirectHandler(web.RequestHandler):
    """Redirects to ``?to=`` (absolute or not) with ``?code=``."""

    def handle(self) -> None:
        self.set_status(int(self.get_argument('code', '302')))
        self.set_header('Location', self.get_argument('to'))
        self.finish()

    get = post = handle


class NoLocationHandler(web.RequestHandler):
    def get(self) -> None:
        self.set_status(302)
        self.finish('nowhere')


class GzipHandler(web.RequestHandler):
    BODY = b'compressed body ' * 100

    def get(self) -> None:
        self.set_header('Content-Encoding', 'gzip')
        self.set_header('X-Accept-Encoding',
                        self.request.headers.get('Accept-Encoding', '-'))
        self.finish(gzip.compress(self.BODY))


class SlowHandler(web.RequestHandler):
    """Answers after ``?delay=`` seconds; counts the requests in flight."""

    async def get(self) -> None:
        state = self.settings['state']
        state['now'] += 1
        state['most'] = max(state['most'], state['now'])
        try:
            await asyncio.sleep(float(self.get_argument('delay', '0.2')))
            self.finish('slow')
        finally:
            state['now'] -= 1


class LiveHandler(web.RequestHandler):
    """Writes a first chunk, then waits for the client to have received
    it (the test sets ``settings['received']``) before the rest."""

    async def get(self) -> None:
        self.write(b'first,')
        await self.flush()
        await asyncio.wait_for(self.settings['received'].wait(), 5)
        self.finish(b'second')


class CertificateHandler(web.RequestHandler):
    """Says whether the client presented a certificate."""

    def get(self) -> None:
        presented = self.request.get_ssl_certificate()
        self.finish('with' if presented else 'without')


def application(**settings: typing.Any) -> web.Application:
    settings.setdefault('state', {'now': 0, 'most': 0})
    settings.setdefault('received', asyncio.Event())
    return web.Application([
        ('/echo', EchoHandler),
        (r'/status/(\d+)', StatusHandler),
        (r'/chain/(\d+)', ChainHandler),
        ('/redirect', RedirectHandler),
        ('/no-location', NoLocationHandler),
        ('/gzip', GzipHandler),
        ('/slow', SlowHandler),
        ('/live', LiveHandler),
        ('/certificate', CertificateHandler),
    ], **settings)


@contextlib.asynccontextmanager
async def serving(app: typing.Optional[web.Application] = None, *,
                  tls: typing.Optional[ssl.SSLContext] = None
                  ) -> typing.AsyncIterator[str]:
    """A tornado server on 127.0.0.1 in the running loop; its base URL
    (``http://127.0.0.1:port``, no slash)."""
    sock, port = testing.bind_unused_port()
    server = httpserver.HTTPServer(app or application(), ssl_options=tls)
    server.add_sockets([sock])
    try:
        yield f'{"https" if tls else "http"}://127.0.0.1:{port}'
    finally:
        server.stop()
        await server.close_all_connections()


def server_tls(client_certificates: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(CERT, KEY)
    if client_certificates:
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(CERT)
    return context


# -- a raw keep-alive server --------------------------------------------------

class KeepAlive:
    """A raw HTTP/1.1 server on 127.0.0.1 that keeps connections alive:
    records each request (connection number, head lines, body) and
    answers 200 ``ok``, except request number `drop`, which it reads and
    then closes the connection of without a word."""

    def __init__(self, drop: typing.Optional[int] = None) -> None:
        self.drop = drop
        self.requests: typing.List[typing.Tuple[int, typing.List[str],
                                                bytes]] = []
        self.connections = 0
        self.hung_up = asyncio.Event()
        self._server: typing.Optional[asyncio.AbstractServer] = None
        self._writers: typing.List[asyncio.StreamWriter] = []

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, '127.0.0.1',
                                                  0)
        return f'http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/'

    async def __aexit__(self, *exc_info: typing.Any) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self._writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b'\r\n\r\n')
                lines = head.decode('latin-1').split('\r\n')[:-2]
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(':')
                    if name.strip().lower() == 'content-length':
                        length = int(value)
                body = await reader.readexactly(length) if length else b''
                self.requests.append((number, lines, body))
                if len(self.requests) == self.drop:
                    break
                writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            self.hung_up.set()
        finally:
            writer.close()

    def header(self, index: int, name: str) -> typing.Optional[str]:
        for line in self.requests[index][1][1:]:
            key, _, value = line.partition(':')
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


# -- pure: the transport's classification -------------------------------------

PEER = aiohttp.client_reqrep.ConnectionKey(
    '127.0.0.1', 80, False, True, None, None, None)


def no_response(cause: BaseException) -> aiohttp_client.NoResponseError:
    return aiohttp_client.NoResponseError(str(cause), cause)


@pytest.mark.parametrize('error, expected', [
    (no_response(aiohttp.ClientConnectorError(
        PEER, ConnectionRefusedError(111, 'refused'))), Failure.CONNECT),
    (no_response(aiohttp.ClientConnectorDNSError(
        PEER, OSError(-2, 'Name or service not known'))), Failure.CONNECT),
    (no_response(aiohttp.ClientConnectorCertificateError(
        PEER, ssl.SSLCertVerificationError('certificate verify failed'))),
     Failure.FATAL),
    (no_response(aiohttp.ClientConnectorSSLError(
        PEER, ssl.SSLError('wrong version number'))), Failure.CONNECT),
    (no_response(aiohttp.ServerDisconnectedError()), Failure.CONNECTION),
    (no_response(aiohttp.ClientPayloadError('not completed')),
     Failure.CONNECTION),
    (no_response(aiohttp.ClientOSError(104, 'reset')), Failure.CONNECTION),
    (no_response(aiohttp.ConnectionTimeoutError()), Failure.CONNECT),
    (no_response(aiohttp.SocketTimeoutError()), Failure.TIMEOUT),
    (no_response(aiohttp.InvalidURL('http://[')), Failure.FATAL),
    (aiohttp.ServerDisconnectedError(), Failure.CONNECTION),
    (simple_httpclient.HTTPTimeoutError('Timeout while connecting'),
     Failure.CONNECT),
    (simple_httpclient.HTTPTimeoutError('Timeout in request queue'),
     Failure.CONNECT),
    (simple_httpclient.HTTPTimeoutError('Timeout during request'),
     Failure.TIMEOUT),
    (aiohttp_client.NoResponseError(
        'invalid gzip data', __import__('zlib').error('bad')), Failure.FATAL),
])
def test_classify(error: BaseException, expected: Failure) -> None:
    """What each failure of the aiohttp client is: nothing sent, the
    connection broke, a timeout, or the same next time."""
    assert _transports.classify(error) is expected


def test_the_transport_is_registered_for_the_client() -> None:
    """The registry finds the aiohttp transport for the client's class."""
    client = object.__new__(aiohttp_client.AiohttpAsyncHTTPClient)
    assert isinstance(_transports.for_client(client),
                      _aiohttp.AiohttpTransport)


def test_other_errors_are_not_the_transports() -> None:
    """A 599 without aiohttp's cause, or any other error, is left to the
    generic rules."""
    transport = _aiohttp.AiohttpTransport()
    assert transport.classify(httpclient.HTTPClientError(599)) is None
    assert transport.classify(ValueError('x')) is None


@pytest.mark.parametrize('may_resend, fresh', [(True, False),
                                               (False, True)])
def test_a_request_that_may_not_be_resent_asks_for_a_fresh_connection(
        may_resend: bool, fresh: bool) -> None:
    """request_options says, through prepare_curl_callback, whether the
    attempt goes on a connection of its own; the caller's own callback is
    still called."""
    called: typing.List[typing.Any] = []
    options = _aiohttp.AiohttpTransport().request_options(
        _transports.Inflight(called.append), may_resend)
    marker = options['prepare_curl_callback']
    assert marker.fresh_connection is fresh
    marker('curl')
    assert called == ['curl']
    assert repr(marker) == f'<FreshConnection {fresh}>'


# -- selection and lifecycle --------------------------------------------------

@in_a_loop
async def test_selected_like_curl_with_max_clients() -> None:
    """configure(name, max_clients=...) selects it for any tornado code; one
    instance per IOLoop, its session made on the first fetch only."""
    httpclient.AsyncHTTPClient.configure(AIOHTTP, max_clients=7)
    client = httpclient.AsyncHTTPClient()
    assert isinstance(client, aiohttp_client.AiohttpAsyncHTTPClient)
    assert client is httpclient.AsyncHTTPClient()
    assert client.max_clients == 7
    assert client._sessions == {}
    async with serving() as base:
        result = await client.fetch(f'{base}/status/200')
    assert result.code == 200
    assert len(client._sessions) == 1


@in_a_loop
async def test_close_ends_the_pool_and_refuses_fetches() -> None:
    """close() closes the pooled connections (the server sees them end at
    once); a fetch after it raises, as on every tornado client."""
    server = KeepAlive()
    async with server as url:
        client = httpclient.AsyncHTTPClient(force_instance=True)
        assert (await client.fetch(url)).code == 200
        client.close()
        await asyncio.wait_for(server.hung_up.wait(), 2)
        with pytest.raises(RuntimeError, match='closed'):
            await client.fetch(url)


@in_a_loop
async def test_close_answers_what_is_in_flight() -> None:
    """A fetch in flight when the client closes is answered 599."""
    async with serving() as base:
        client = httpclient.AsyncHTTPClient(force_instance=True)
        pending = asyncio.ensure_future(
            client.fetch(f'{base}/slow?delay=5'))
        await asyncio.sleep(0.2)
        client.close()
        with pytest.raises(httpclient.HTTPClientError) as raised:
            await asyncio.wait_for(pending, 2)
    assert raised.value.code == 599


@pytest.mark.skipif(not FDS.is_dir(), reason='needs /proc/self/fd')
def test_nothing_leaks_across_asyncio_run() -> None:
    """Two asyncio.run() calls, each fetching through the shared client and
    never closing it: no descriptor is left open and no ResourceWarning
    is raised (warnings are errors) once the loops are gone."""
    httpclient.AsyncHTTPClient.configure(AIOHTTP)

    async def once() -> None:
        async with serving() as base:
            result = await httpclient.AsyncHTTPClient().fetch(
                f'{base}/status/200')
            assert result.code == 200

    try:
        asyncio.run(once())  # warm: imports, the resolver's threads
        gc.collect()
        before = len(os.listdir(FDS))
        asyncio.run(once())
        asyncio.run(once())
        gc.collect()
        assert len(os.listdir(FDS)) <= before
    finally:
        httpclient.AsyncHTTPClient.configure(None)


# -- errors -------------------------------------------------------------------

@in_a_loop
async def test_an_error_status_is_tornados_http_client_error() -> None:
    """A 404 raises tornado's HTTPClientError with the response, and
    raise_error=False returns it."""
    client = httpclient.AsyncHTTPClient()
    async with serving() as base:
        with pytest.raises(httpclient.HTTPClientError) as raised:
            await client.fetch(f'{base}/status/404')
        result = await client.fetch(f'{base}/status/503', raise_error=False)
    assert raised.value.code == 404
    assert raised.value.response is not None
    assert raised.value.response.body == b'status 404'
    assert (result.code, result.body) == (503, b'status 503')


@in_a_loop
async def test_no_response_is_a_599_carrying_aiohttps_exception() -> None:
    """A refused connection is a 599 NoResponseError (even with
    raise_error=False, as in tornado), aiohttp's exception its cause, and
    a connect failure for the engine."""
    with pytest.raises(aiohttp_client.NoResponseError) as raised:
        await httpclient.AsyncHTTPClient().fetch(misbehaving.refused_url(),
                                                 raise_error=False)
    error = raised.value
    assert error.code == 599
    assert isinstance(error, httpclient.HTTPClientError)
    assert isinstance(error.__cause__, aiohttp.ClientConnectorError)
    assert _transports.classify(error) is Failure.CONNECT


FAULTS = [
    pytest.param('reset', id='reset'),
    pytest.param('close', id='closed-before-a-response'),
    pytest.param(misbehaving.respond(b'FOO\r\n\r\n'), id='garbage'),
    pytest.param(misbehaving.respond(response(length=100)),
                 id='truncated-body'),
    pytest.param(misbehaving.respond(
        response(length=-1, headers=['Transfer-Encoding: chunked'])
        + b'zz\r\n'), id='bad-chunk'),
]


@pytest.mark.parametrize('script', FAULTS)
@in_a_loop
async def test_aiohttp_and_asyncio_exceptions_never_leak(
        script: typing.Any) -> None:
    """Whatever the server does at the byte level, the fetch raises a 599
    HTTPClientError, never one of aiohttp's or asyncio's exceptions."""
    async with MisbehavingServer(script) as url:
        with pytest.raises(Exception) as raised:
            await httpclient.AsyncHTTPClient().fetch(url, request_timeout=2)
    assert isinstance(raised.value, httpclient.HTTPClientError), (
        repr(raised.value))
    assert raised.value.code == 599
    assert _transports.classify(raised.value) is Failure.CONNECTION


@in_a_loop
async def test_a_connect_timeout_is_tornados_timeout_while_connecting(
        ) -> None:
    """A black-holed address: HTTPTimeoutError("Timeout while connecting")
    after connect_timeout, a connect failure (nothing was sent)."""
    with socket.socket() as probe:
        probe.bind(('127.0.0.2', 0))
        port = probe.getsockname()[1]
    try:
        holes = black_hole('127.0.0.2', port)
    except OSError as error:
        pytest.skip(f'no black hole here: {error}')
    try:
        if connects_within('127.0.0.2', port, 0.3):
            pytest.skip('a connect to a full accept queue does not hang')
        started = time.monotonic()
        with pytest.raises(simple_httpclient.HTTPTimeoutError) as raised:
            await httpclient.AsyncHTTPClient().fetch(
                f'http://127.0.0.2:{port}/', connect_timeout=0.3,
                request_timeout=5)
        elapsed = time.monotonic() - started
    finally:
        for sock in holes:
            sock.close()
    assert str(raised.value) == 'Timeout while connecting'
    assert 0.25 < elapsed < 1.5
    assert _transports.classify(raised.value) is Failure.CONNECT


@in_a_loop
async def test_a_request_timeout_is_tornados_timeout_during_request(
        ) -> None:
    """A server that never answers: HTTPTimeoutError("Timeout during
    request") after request_timeout, a timeout for the engine."""
    async with MisbehavingServer('silence') as url:
        started = time.monotonic()
        with pytest.raises(simple_httpclient.HTTPTimeoutError) as raised:
            await httpclient.AsyncHTTPClient().fetch(url, request_timeout=0.3)
        elapsed = time.monotonic() - started
    assert str(raised.value) == 'Timeout during request'
    assert 0.25 < elapsed < 1.5
    assert _transports.classify(raised.value) is Failure.TIMEOUT


@in_a_loop
async def test_zero_timeouts_mean_no_limit() -> None:
    """connect_timeout=0 and request_timeout=0 are tornado's "no limit"
    (aiohttp's total=0 would fire at once)."""
    async with serving() as base:
        result = await httpclient.AsyncHTTPClient().fetch(
            f'{base}/slow?delay=0.3', connect_timeout=0, request_timeout=0)
    assert result.body == b'slow'


@in_a_loop
async def test_a_request_waiting_too_long_in_the_queue_times_out() -> None:
    """max_clients=1 and a slow request in flight: the next one waits, and
    is answered HTTPTimeoutError("Timeout in request queue") once the
    shorter of its timeouts passed, never sent."""
    app = application()
    async with serving(app) as base, own_client(max_clients=1) as client:
        first = asyncio.ensure_future(client.fetch(f'{base}/slow?delay=1'))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(simple_httpclient.HTTPTimeoutError) as raised:
            await client.fetch(f'{base}/slow?delay=0', request_timeout=0.3,
                               connect_timeout=5)
        elapsed = time.monotonic() - started
        assert (await first).code == 200
    assert str(raised.value) == 'Timeout in request queue'
    assert 0.25 < elapsed < 0.9
    assert app.settings['state']['most'] == 1
    assert _transports.classify(raised.value) is Failure.CONNECT


@in_a_loop
async def test_the_timeouts_count_from_the_end_of_the_queue() -> None:
    """As in simple_httpclient: a request that waited 0.3 s in the queue
    still has its whole request_timeout once sent, and request_time
    leaves the queue out (time_info['queue'] has it)."""
    async with serving() as base, own_client(max_clients=1) as client:
        first = asyncio.ensure_future(client.fetch(f'{base}/slow?delay=0.3'))
        await asyncio.sleep(0.05)
        second = await client.fetch(f'{base}/slow?delay=0.3',
                                    request_timeout=0.5)
        await first
    assert second.code == 200
    assert second.request_time is not None and second.request_time < 0.45
    assert second.time_info['queue'] > 0.15


@in_a_loop
async def test_max_clients_bounds_the_requests_in_flight() -> None:
    """Six fetches on a client of max_clients=2: two at most reach the
    server at once, and all six are answered."""
    app = application()
    async with serving(app) as base, own_client(max_clients=2) as client:
        results = await asyncio.gather(*[
            client.fetch(f'{base}/slow?delay=0.1') for _ in range(6)])
    assert [result.code for result in results] == [200] * 6
    assert app.settings['state']['most'] == 2


@in_a_loop
async def test_raising_max_clients_lets_the_queue_go() -> None:
    """Setting max_clients (as HTTP_MAX_CLIENTS does on the shared
    instance) sends the queued requests at once."""
    app = application()
    async with serving(app) as base, own_client(max_clients=1) as client:
        fetches = [asyncio.ensure_future(client.fetch(
            f'{base}/slow?delay=0.3')) for _ in range(3)]
        await asyncio.sleep(0.05)
        assert len(client.queue) == 2
        client.max_clients = 3
        assert len(client.queue) == 0
        await asyncio.gather(*fetches)
    assert app.settings['state']['most'] == 3


# -- bodies and methods -------------------------------------------------------

@pytest.mark.parametrize('method, body', [
    ('POST', None), ('PUT', None), ('PATCH', None),
    ('GET', b'x'), ('DELETE', b'x'), ('HEAD', b'x'), ('OPTIONS', b'x')])
@in_a_loop
async def test_tornados_body_rules(method: str,
                                   body: typing.Optional[bytes]) -> None:
    """A body for POST/PUT/PATCH is required and forbidden for the others,
    with tornado's message, before anything is sent."""
    server = KeepAlive()
    async with server as url:
        with pytest.raises(ValueError, match=f'for method {method}'):
            await httpclient.AsyncHTTPClient().fetch(url, method=method,
                                                     body=body)
    assert server.connections == 0


@in_a_loop
async def test_nonstandard_methods_and_bodies_when_allowed() -> None:
    """allow_nonstandard_methods: a GET with a body and a method of its
    own are sent; without it the method is a KeyError."""
    client = httpclient.AsyncHTTPClient()
    async with serving() as base:
        with pytest.raises(KeyError, match='FOO'):
            await client.fetch(f'{base}/echo', method='FOO')
        got = echoed(await client.fetch(f'{base}/echo', body=b'payload',
                                        allow_nonstandard_methods=True))
        foo = echoed(await client.fetch(f'{base}/echo', method='FOO',
                                        allow_nonstandard_methods=True))
    assert (got['method'], got['body']) == ('GET', b'payload')
    assert foo['method'] == 'FOO'


@in_a_loop
async def test_a_post_without_content_type_is_form_urlencoded() -> None:
    """As both tornado clients: a POST without Content-Type is sent as
    application/x-www-form-urlencoded; a PUT gets none (aiohttp's
    application/octet-stream is never added), one given is kept."""
    client = httpclient.AsyncHTTPClient()
    async with serving() as base:
        post = echoed(await client.fetch(f'{base}/echo', method='POST',
                                         body=b'a=1'))
        put = echoed(await client.fetch(f'{base}/echo', method='PUT',
                                        body=b'x'))
        own = echoed(await client.fetch(
            f'{base}/echo', method='POST', body=b'{}',
            headers={'Content-Type': 'application/json'}))
    assert post['headers']['Content-Type'] == [
        b'application/x-www-form-urlencoded']
    assert post['body'] == b'a=1'
    assert 'Content-Type' not in put['headers']
    assert own['headers']['Content-Type'] == [b'application/json']


@pytest.mark.parametrize('length', [None, 11])
@in_a_loop
async def test_a_body_producer_is_streamed(
        length: typing.Optional[int]) -> None:
    """body_producer's writes are sent as they come (chunked without a
    Content-Length, as tornado does), each write's future resolved."""
    written: typing.List[bool] = []

    async def producer(write: typing.Callable[[typing.Any], typing.Any]
                       ) -> None:
        await write(b'hello ')
        await asyncio.sleep(0.01)
        future = write('world')
        await future
        written.append(future.done())

    headers = {} if length is None else {'Content-Length': str(length)}
    async with serving() as base:
        got = echoed(await httpclient.AsyncHTTPClient().fetch(
            f'{base}/echo', method='POST', body_producer=producer,
            headers=headers))
    assert got['body'] == b'hello world'
    assert written == [True]
    if length is None:
        assert got['headers']['Transfer-Encoding'] == [b'chunked']


@in_a_loop
async def test_a_failing_body_producer_fails_the_fetch() -> None:
    """A producer that raises: the fetch fails (a 599), nothing hangs."""

    async def producer(write: typing.Callable[[bytes], typing.Any]) -> None:
        await write(b'part')
        raise RuntimeError('the producer broke')

    async with serving() as base:
        with pytest.raises(httpclient.HTTPClientError) as raised:
            await httpclient.AsyncHTTPClient().fetch(
                f'{base}/echo', method='POST', body_producer=producer,
                request_timeout=2)
    assert raised.value.code == 599


@in_a_loop
async def test_expect_100_continue() -> None:
    """expect_100_continue sends Expect: 100-continue and the body only
    after the server's 100 Continue."""
    seen: typing.Dict[str, typing.Any] = {}

    async def serve(reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b'\r\n\r\n')
        seen['expect'] = b'expect: 100-continue' in head.lower()
        seen['early'] = await _read_within(reader, 0.2)
        writer.write(b'HTTP/1.1 100 Continue\r\n\r\n')
        await writer.drain()
        seen['body'] = await reader.readexactly(4)
        writer.write(response(body=b'done'))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, '127.0.0.1', 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await httpclient.AsyncHTTPClient().fetch(
            f'http://127.0.0.1:{port}/', method='POST', body=b'data',
            expect_100_continue=True, request_timeout=3)
    finally:
        server.close()
        await server.wait_closed()
    assert result.body == b'done'
    assert seen == {'expect': True, 'early': b'', 'body': b'data'}


async def _read_within(reader: asyncio.StreamReader, seconds: float
                       ) -> bytes:
    try:
        return await asyncio.wait_for(reader.read(1), seconds)
    except asyncio.TimeoutError:
        return b''


@pytest.mark.parametrize('status, method', [
    ('204 No Content', 'GET'), ('304 Not Modified', 'GET'),
    ('200 OK', 'HEAD')])
@in_a_loop
async def test_no_body_is_awaited_where_none_can_come(
        status: str, method: str) -> None:
    """HEAD, 204 and 304 never wait for a body, even when the server
    announces a Content-Length and keeps the connection open."""
    script = misbehaving.respond(response(status, length=10), then='hold')
    async with MisbehavingServer(script) as url:
        started = time.monotonic()
        result = await httpclient.AsyncHTTPClient().fetch(
            url, method=method, raise_error=False, request_timeout=3)
        elapsed = time.monotonic() - started
    assert (result.code, result.body) == (int(status[:3]), b'')
    assert elapsed < 1


# -- headers ------------------------------------------------------------------

@in_a_loop
async def test_header_values_are_sent_as_latin_1() -> None:
    """str and bytes values go out as their Latin-1 bytes (aiohttp alone
    would send UTF-8), repeated fields apart, over a reused connection
    too; ASCII values as they are."""
    headers = httputil.HTTPHeaders()
    headers.add('X-Name', 'café')
    headers.add('X-Name', 'naïve')
    headers.add('X-Plain', 'plain')
    client = httpclient.AsyncHTTPClient()
    async with serving() as base:
        first = echoed(await client.fetch(f'{base}/echo', headers=headers))
        again = echoed(await client.fetch(f'{base}/echo', headers=headers))
        given = echoed(await client.fetch(f'{base}/echo', headers={
            'X-Bytes': b'na\xefve', 'X-Ascii': b'abc'}))
    for got in (first, again):
        assert got['headers']['X-Name'] == [b'caf\xe9', b'na\xefve']
        assert got['headers']['X-Plain'] == [b'plain']
    assert given['headers']['X-Bytes'] == [b'na\xefve']
    assert given['headers']['X-Ascii'] == [b'abc']


@in_a_loop
async def test_header_values_are_sent_as_latin_1_over_https() -> None:
    """The same over TLS."""
    async with serving(tls=server_tls()) as base:
        got = echoed(await httpclient.AsyncHTTPClient().fetch(
            f'{base}/echo', headers={'X-Name': 'Malmö'}, validate_cert=False))
    assert got['headers']['X-Name'] == [b'Malm\xf6']


@pytest.mark.parametrize('value', [
    'a\r\nX-Injected: 1', 'a\nb', b'a\rb', 'a\x00b', '€'])
@in_a_loop
async def test_header_values_that_cannot_be_sent_are_a_value_error(
        value: typing.Any) -> None:
    """CR, LF, NUL, or a character Latin-1 cannot encode: ValueError
    naming the header, before anything is sent."""
    server = KeepAlive()
    async with server as url:
        with pytest.raises(ValueError, match='X-Bad'):
            await httpclient.AsyncHTTPClient().fetch(
                url, headers={'X-Bad': value})
    assert server.connections == 0


@in_a_loop
async def test_response_headers_are_latin_1_with_repeated_fields() -> None:
    """Response headers are decoded as Latin-1 into tornado HTTPHeaders,
    repeated fields kept apart; a folded line is unfolded."""
    script = misbehaving.respond(
        b'HTTP/1.1 200 Fine Thanks\r\nX-Name: caf\xe9\r\n'
        b'Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Folded: one\r\n two\r\n'
        b'Content-Length: 2\r\n\r\nok')
    async with MisbehavingServer(script) as url:
        result = await httpclient.AsyncHTTPClient().fetch(url)
    assert isinstance(result.headers, httputil.HTTPHeaders)
    assert result.headers['X-Name'] == 'café'
    assert result.headers.get_list('Set-Cookie') == ['a=1', 'b=2']
    assert result.headers['X-Folded'] == 'one two'
    assert result.reason == 'Fine Thanks'


@in_a_loop
async def test_a_head_larger_than_max_header_size_is_a_599() -> None:
    """As simple_httpclient: a head past max_header_size (64 KiB) fails
    the fetch, a broken connection for the engine; 1,000 fields within
    it are all kept."""
    big = misbehaving.respond(response(body=b'ok', headers=[
        'X-Big: ' + 'a' * 64 * 1024]))
    many = misbehaving.respond(response(body=b'ok', headers=[
        f'X-Field-{number}: v' for number in range(1000)]))
    client = httpclient.AsyncHTTPClient()
    async with MisbehavingServer(big) as url:
        with pytest.raises(httpclient.HTTPClientError) as raised:
            await client.fetch(url)
    async with MisbehavingServer(many) as url:
        result = await client.fetch(url)
    assert raised.value.code == 599
    assert _transports.classify(raised.value) is Failure.CONNECTION
    assert len([name for name in result.headers
                if name.startswith('X-Field-')]) == 1000


@in_a_loop
async def test_header_callback_gets_the_final_responses_lines_first() -> None:
    """header_callback: the final response's status line, each header
    line and the empty line, each with its CRLF, all before the first
    chunk of the body; none of a followed redirect's."""
    events: typing.List[typing.Any] = []
    async with serving() as base:
        result = await httpclient.AsyncHTTPClient().fetch(
            f'{base}/chain/1', header_callback=events.append,
            streaming_callback=lambda chunk: events.append(chunk))
    lines = [event for event in events if isinstance(event, str)]
    chunks = [event for event in events if isinstance(event, bytes)]
    assert lines[0] == 'HTTP/1.1 200 OK\r\n'
    assert lines[-1] == '\r\n'
    assert all(line.endswith('\r\n') for line in lines)
    assert any(line.lower().startswith('content-type: application/json')
               for line in lines)
    assert not any(line.startswith('Location') for line in lines)
    assert events.index(chunks[0]) > events.index('\r\n')
    assert result.body == b''


@in_a_loop
async def test_the_user_agent_is_tornados_unless_given() -> None:
    """Tornado/<version> by default (no aiohttp User-Agent, Accept or
    Accept-Encoding of its own), user_agent wins over the header."""
    client = httpclient.AsyncHTTPClient()
    async with serving() as base:
        plain = echoed(await client.fetch(f'{base}/echo',
                                          decompress_response=False))
        given = echoed(await client.fetch(
            f'{base}/echo', user_agent='mine/1',
            headers={'User-Agent': 'header/1'}))
    assert plain['headers']['User-Agent'] == [
        f'Tornado/{__import__("tornado").version}'.encode()]
    assert 'Accept' not in plain['headers']
    assert 'Accept-Encoding' not in plain['headers']
    assert given['headers']['User-Agent'] == [b'mine/1']


# -- redirects ----------------------------------------------------------------

@in_a_loop
async def test_max_redirects_counted_as_tornado_counts_them() -> None:
    """max_redirects=2 follows two redirects; a third is returned as the
    response (an HTTPClientError(302) unless raise_error=False);
    follow_redirects=False returns the first."""
    client = httpclient.AsyncHTTPClient()
    async with serving() as base:
        two = await client.fetch(f'{base}/chain/2', max_redirects=2)
        three = await client.fetch(f'{base}/chain/3', max_redirects=2,
                                   raise_error=False)
        with pytest.raises(httpclient.HTTPClientError) as raised:
            await client.fetch(f'{base}/chain/3', max_redirects=2)
        unfollowed = await client.fetch(f'{base}/chain/1',
                                        follow_redirects=False,
                                        raise_error=False)
    assert two.code == 200
    assert two.effective_url == f'{base}/chain/0?code=302'
    assert (three.code, three.headers['Location']) == (
        302, '/chain/0?code=302')
    assert raised.value.code == 302
    assert unfollowed.code == 302


@pytest.mark.parametrize('code, method', [
    (301, 'GET'), (302, 'GET'), (303, 'GET'), (307, 'POST'), (308, 'POST')])
@in_a_loop
async def test_a_post_redirected(code: int, method: str) -> None:
    """301, 302 and 303 turn a POST into a GET without its body, 307 and
    308 keep the method and the body."""
    async with serving() as base:
        got = echoed(await httpclient.AsyncHTTPClient().fetch(
            f'{base}/chain/1?code={code}', method='POST', body=b'payload',
            headers={'Content-Type': 'text/plain'}))
    assert got['method'] == method
    assert got['body'] == (b'payload' if method == 'POST' else b'')
    assert ('Content-Type' in got['headers']) is (method == 'POST')


@in_a_loop
async def test_a_redirect_without_location_is_returned() -> None:
    """A 3xx without Location is the response."""
    async with serving() as base:
        result = await httpclient.AsyncHTTPClient().fetch(
            f'{base}/no-location', raise_error=False)
    assert (result.code, result.body) == (302, b'nowhere')


SECRETS = {'Authorization': 'Bearer s3cret', 'Cookie': 'session=1',
           'Proxy-Authorization': 'Basic eDp5', 'X-Api-Key': 'k'}


@in_a_loop
async def test_credentials_never_cross_origins() -> None:
    """A redirect to another origin (localhost for 127.0.0.1) carries no
    Authorization, Cookie, Proxy-Authorization, secret-named header nor
    basic auth; one to the same origin keeps them."""
    client = httpclient.AsyncHTTPClient()
    async with serving() as base:
        other = base.replace('127.0.0.1', 'localhost')
        crossed = echoed(await client.fetch(
            f'{base}/redirect?to={other}/echo', headers=SECRETS))
        basic = echoed(await client.fetch(
            f'{base}/redirect?to={other}/echo', auth_username='user',
            auth_password='pass'))
        same = echoed(await client.fetch(
            f'{base}/redirect?to=/echo', headers=SECRETS,
            auth_username='user', auth_password='pass'))
    assert not set(SECRETS) & set(crossed['headers'])
    assert 'Authorization' not in basic['headers']
    assert same['headers']['Cookie'] == [b'session=1']
    assert same['headers']['X-Api-Key'] == [b'k']
    assert same['headers']['Authorization'][0].startswith(b'Basic ')


@in_a_loop
async def test_an_unusable_location_is_a_value_error() -> None:
    """A Location that is no http(s) URL raises ValueError, as on
    simple_httpclient."""
    async with serving() as base:
        with pytest.raises(ValueError, match='Location'):
            await httpclient.AsyncHTTPClient().fetch(
                f'{base}/redirect?to=ftp://example.com/')


# -- streaming and compression ------------------------------------------------

@in_a_loop
async def test_streaming_callback_gets_chunks_as_they_arrive() -> None:
    """The first chunk reaches the callback while the server waits for
    the client to have it (a buffered body would never arrive), and the
    response's body is empty."""
    app = application()
    received: asyncio.Event = app.settings['received']
    chunks: typing.List[bytes] = []

    def on_chunk(chunk: bytes) -> None:
        chunks.append(chunk)
        received.set()

    async with serving(app) as base:
        result = await httpclient.AsyncHTTPClient().fetch(
            f'{base}/live', streaming_callback=on_chunk, request_timeout=5)
    assert b''.join(chunks) == b'first,second'
    assert chunks[0] == b'first,'
    assert result.buffer is not None
    assert (result.body, result.buffer.getvalue()) == (b'', b'')


@in_a_loop
async def test_a_coroutine_streaming_callback_is_awaited_in_order() -> None:
    """A coroutine callback is awaited before more is read: every chunk
    arrives, in order, and none runs before the previous finished."""
    body = bytes(range(256)) * 2000
    running: typing.List[int] = []
    chunks: typing.List[bytes] = []

    async def on_chunk(chunk: bytes) -> None:
        running.append(1)
        assert len(running) == 1
        await asyncio.sleep(0.001)
        chunks.append(chunk)
        running.pop()

    script = misbehaving.drip(response(length=len(body)), body, 65536, 0.01)
    async with MisbehavingServer(script) as url:
        await httpclient.AsyncHTTPClient().fetch(
            url, streaming_callback=on_chunk, request_timeout=5)
    assert b''.join(chunks) == body


@in_a_loop
async def test_gzip_is_asked_for_and_undone_by_default() -> None:
    """decompress_response (the default) sends Accept-Encoding: gzip and
    gunzips as tornado does: the header moves to
    X-Consumed-Content-Encoding."""
    async with serving() as base:
        result = await httpclient.AsyncHTTPClient().fetch(f'{base}/gzip')
    assert result.body == GzipHandler.BODY
    assert result.headers['X-Accept-Encoding'] == 'gzip'
    assert 'Content-Encoding' not in result.headers
    assert result.headers['X-Consumed-Content-Encoding'] == 'gzip'


@pytest.mark.parametrize('option', ['decompress_response', 'use_gzip'])
@in_a_loop
async def test_no_decompression_keeps_the_raw_bytes(option: str) -> None:
    """decompress_response=False (or use_gzip=False): no Accept-Encoding
    is sent, the body and its Content-Encoding stay as they arrived."""
    async with serving() as base:
        result = await httpclient.AsyncHTTPClient().fetch(
            f'{base}/gzip', **{option: False})
    assert result.headers['X-Accept-Encoding'] == '-'
    assert result.headers['Content-Encoding'] == 'gzip'
    assert gzip.decompress(result.body) == GzipHandler.BODY


@in_a_loop
async def test_a_corrupt_gzip_body_is_a_fatal_599() -> None:
    """A body that cannot be gunzipped: a 599 that is the same next time
    (fatal), streamed or not."""
    script = misbehaving.respond(response(
        body=b'\x1f\x8b\x08\x00' + b'not gzip' * 8,
        headers=['Content-Encoding: gzip']))
    cases: typing.List[typing.Dict[str, typing.Any]] = [
        {}, {'streaming_callback': lambda chunk: None}]
    for options in cases:
        async with MisbehavingServer(script) as url:
            with pytest.raises(httpclient.HTTPClientError) as raised:
                await httpclient.AsyncHTTPClient().fetch(url, **options)
        assert raised.value.code == 599
        assert _transports.classify(raised.value) is Failure.FATAL


@in_a_loop
async def test_a_body_past_max_body_size_is_refused() -> None:
    """max_body_size bounds the body (once decompressed, streamed or
    not)."""
    options: typing.Dict[str, typing.Any]
    async with serving() as base, own_client(max_body_size=20) as client:
        for options in ({}, {'streaming_callback': lambda chunk: None},
                        {'decompress_response': False}):
            with pytest.raises(httpclient.HTTPClientError,
                               match='max_body_size'):
                await client.fetch(f'{base}/gzip', **options)


# -- auth and TLS -------------------------------------------------------------

@in_a_loop
async def test_basic_auth_is_nfc_normalised_utf_8() -> None:
    """auth_username/auth_password: NFC-normalised, UTF-8, Basic; a URL's
    user and password are percent-decoded and win, as in tornado."""
    decomposed = unicodedata.normalize('NFD', 'josé')
    client = httpclient.AsyncHTTPClient()
    async with serving() as base:
        got = echoed(await client.fetch(f'{base}/echo',
                                        auth_username=decomposed,
                                        auth_password='pässword'))
        url = base.replace('://', '://us%40er:p%3Ass@')
        from_url = echoed(await client.fetch(f'{url}/echo',
                                             auth_username='ignored'))
    expected = 'Basic ' + base64.b64encode(
        'josé:pässword'.encode()).decode()
    assert got['headers']['Authorization'] == [expected.encode()]
    assert from_url['headers']['Authorization'] == [
        b'Basic ' + base64.b64encode(b'us@er:p:ss')]


@in_a_loop
async def test_an_unknown_auth_mode_is_an_error() -> None:
    """auth_mode='digest' is refused, never silently basic."""
    server = KeepAlive()
    async with server as url:
        with pytest.raises(ValueError, match='auth_mode'):
            await httpclient.AsyncHTTPClient().fetch(
                url, auth_username='u', auth_password='p',
                auth_mode='digest')
    assert server.connections == 0


@in_a_loop
async def test_tls_options() -> None:
    """A self-signed certificate fails to verify (fatal); validate_cert=
    False, ca_certs, and ssl_options as an SSLContext or a dict succeed;
    one SSL context is made per distinct configuration."""
    trusting = ssl.create_default_context(cafile=CERT)
    async with serving(tls=server_tls()) as base, own_client() as client:
        with pytest.raises(httpclient.HTTPClientError) as raised:
            await client.fetch(f'{base}/status/200')
        options: typing.Dict[str, typing.Any]
        for options in ({'validate_cert': False}, {'ca_certs': CERT},
                        {'ca_certs': CERT}, {'ssl_options': trusting},
                        {'ssl_options': {'ca_certs': CERT,
                                         'cert_reqs': ssl.CERT_REQUIRED}},
                        {'ssl_options': {'ca_certs': CERT,
                                         'cert_reqs': ssl.CERT_REQUIRED}}):
            result = await client.fetch(f'{base}/status/200', **options)
            assert result.code == 200, options
        contexts = [client._ssl(client._settings(httpclient.HTTPRequest(
            f'{base}/', **options))) for options in (
                {'ca_certs': CERT}, {'ca_certs': CERT},
                {'validate_cert': False},
                {'ssl_options': {'ca_certs': CERT}},
                {'ssl_options': {'ca_certs': CERT}})]
    assert raised.value.code == 599
    assert _transports.classify(raised.value) is Failure.FATAL
    assert contexts[0] is contexts[1]
    assert contexts[3] is contexts[4]
    assert len({id(context) for context in contexts}) == 3


@in_a_loop
async def test_a_client_certificate_never_sticks_to_a_pooled_connection(
        ) -> None:
    """A request with a client certificate, then one without, then one
    with again, all pooled: only those with it present it."""
    async with serving(tls=server_tls(client_certificates=True)) as base:
        client = httpclient.AsyncHTTPClient()
        seen = []
        for certificate in (True, False, True, False):
            options: typing.Dict[str, typing.Any] = (
                {'client_cert': CERT, 'client_key': KEY}
                if certificate else {})
            result = await client.fetch(f'{base}/certificate',
                                        ca_certs=CERT, **options)
            seen.append(result.body)
    assert seen == [b'with', b'without', b'with', b'without']


# -- proxies ------------------------------------------------------------------

class Proxy:
    """A raw HTTP proxy on 127.0.0.1: answers absolute-form requests
    itself (``via proxy``, kept alive) and tunnels CONNECT to the target;
    records each request line, its Proxy-Authorization and connection."""

    def __init__(self) -> None:
        self.seen: typing.List[typing.Tuple[int, str,
                                            typing.Optional[str]]] = []
        self.connections = 0
        self._server: typing.Optional[asyncio.AbstractServer] = None
        self._tasks: typing.List[asyncio.Task[typing.Any]] = []
        self._writers: typing.List[asyncio.StreamWriter] = []

    async def __aenter__(self) -> int:
        self._server = await asyncio.start_server(self._serve, '127.0.0.1',
                                                  0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aexit__(self, *exc_info: typing.Any) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self._writers.append(writer)
        try:
            while True:
                head = (await reader.readuntil(b'\r\n\r\n')).decode('latin-1')
                first, *lines = head.split('\r\n')
                credentials = next(
                    (line.partition(':')[2].strip() for line in lines
                     if line.lower().startswith('proxy-authorization:')),
                    None)
                self.seen.append((number, first, credentials))
                if first.startswith('CONNECT '):
                    await self._tunnel(first.split()[1], reader, writer)
                    return
                writer.write(response(body=b'via proxy').replace(
                    b'Connection: close', b'Connection: keep-alive'))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _tunnel(self, target: str, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        host, _, port = target.rpartition(':')
        upstream_reader, upstream_writer = await asyncio.open_connection(
            host, int(port))
        self._writers.append(upstream_writer)
        writer.write(b'HTTP/1.1 200 Connection established\r\n\r\n')
        await writer.drain()

        async def pipe(source: asyncio.StreamReader,
                       sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        tasks = [asyncio.ensure_future(pipe(reader, upstream_writer)),
                 asyncio.ensure_future(pipe(upstream_reader, writer))]
        self._tasks += tasks
        await asyncio.wait(tasks)


@in_a_loop
async def test_an_http_proxy_with_credentials() -> None:
    """proxy_host/proxy_port send the absolute URI to the proxy, with
    basic Proxy-Authorization from proxy_username/proxy_password; a later
    request through the same proxy without them carries none."""
    proxy = Proxy()
    async with proxy as port:
        client = httpclient.AsyncHTTPClient()
        with_credentials = await client.fetch(
            'http://upstream.test/path?q=1', proxy_host='127.0.0.1',
            proxy_port=port, proxy_username='user', proxy_password='pw')
        without = await client.fetch(
            'http://upstream.test/other', proxy_host='127.0.0.1',
            proxy_port=port)
    assert with_credentials.body == without.body == b'via proxy'
    expected = 'Basic ' + base64.b64encode(b'user:pw').decode()
    assert [(line, credentials) for _, line, credentials in proxy.seen] == [
        ('GET http://upstream.test/path?q=1 HTTP/1.1', expected),
        ('GET http://upstream.test/other HTTP/1.1', None)]


@in_a_loop
async def test_https_through_a_proxy_is_tunnelled() -> None:
    """An https URL through a proxy is a CONNECT tunnel, TLS end to end."""
    proxy = Proxy()
    async with serving(tls=server_tls()) as base, proxy as port:
        result = await httpclient.AsyncHTTPClient().fetch(
            f'{base}/status/200', ca_certs=CERT, proxy_host='127.0.0.1',
            proxy_port=port)
    assert result.body == b'status 200'
    target = base.partition('://')[2]
    assert proxy.seen[0][1] == f'CONNECT {target} HTTP/1.1'


@in_a_loop
async def test_an_unknown_proxy_auth_mode_is_an_error() -> None:
    """proxy_auth_mode other than basic is refused."""
    with pytest.raises(ValueError, match='proxy_auth_mode'):
        await httpclient.AsyncHTTPClient().fetch(
            'http://upstream.test/', proxy_host='127.0.0.1', proxy_port=9,
            proxy_username='u', proxy_auth_mode='digest')


# -- pooling and safety -------------------------------------------------------

@in_a_loop
async def test_connections_are_kept_alive_and_reused() -> None:
    """Three GETs in a row go over one connection."""
    server = KeepAlive()
    async with server as url:
        client = httpclient.AsyncHTTPClient()
        for _ in range(3):
            assert (await client.fetch(url)).body == b'ok'
    assert server.connections == 1
    assert len(server.requests) == 3


@in_a_loop
async def test_idle_connections_are_not_reused_after_keepalive_timeout(
        ) -> None:
    """A connection idle longer than keepalive_timeout is closed, and the
    next request opens a new one."""
    server = KeepAlive()
    async with server as url, own_client(keepalive_timeout=0.2) as client:
        await client.fetch(url)
        await client.fetch(url)
        await asyncio.sleep(0.5)
        await client.fetch(url)
    assert [number for number, _, _ in server.requests] == [1, 1, 2]
    assert aiohttp_client.DEFAULT_KEEPALIVE_TIMEOUT < 5


@in_a_loop
async def test_a_dead_pooled_connection_is_never_resent_on() -> None:
    """A GET on a pooled connection the server reads and closes: a 599
    (a broken connection), and the server saw it once: aiohttp's own
    resend of idempotent requests is off."""
    server = KeepAlive(drop=2)
    async with server as url:
        client = httpclient.AsyncHTTPClient()
        await client.fetch(url)
        with pytest.raises(httpclient.HTTPClientError) as raised:
            await client.fetch(url)
    assert raised.value.code == 599
    assert _transports.classify(raised.value) is Failure.CONNECTION
    assert len(server.requests) == 2


@pytest.mark.parametrize('headers, connections', [
    ({}, 2), ({'Idempotency-Key': 'k-1'}, 1)])
@in_a_loop
async def test_a_request_that_may_not_be_repeated_connects_afresh(
        headers: typing.Dict[str, str], connections: int) -> None:
    """A POST without Idempotency-Key goes on a connection of its own
    (Connection: close), never a pooled one that may be stale; one that
    may be repeated reuses the pool."""
    server = KeepAlive()
    async with server as url:
        client = httpclient.AsyncHTTPClient()
        await client.fetch(url)
        await client.fetch(url, method='POST', body=b'x', headers=headers)
    assert server.connections == connections
    closes = server.header(1, 'Connection') == 'close'
    assert closes is (connections == 2)


@pytest.mark.parametrize('policy, connections', [
    (http.RetryPolicy(), 2),
    (http.RetryPolicy(retry_non_idempotent=True), 1)])
@in_a_loop
async def test_the_engine_says_which_requests_connect_afresh(
        policy: http.RetryPolicy, connections: int) -> None:
    """Through the mixin a POST that may not be resent connects afresh;
    one the policy may resend keeps the pool (as on curl)."""
    server = KeepAlive()
    async with server as url:
        client = support.RecordingClient()
        assert (await client.http_fetch(url)).ok
        assert (await client.http_fetch(url, method='POST', body=b'x',
                                        retry_policy=policy)).ok
    assert server.connections == connections


@in_a_loop
async def test_abort_fetch_takes_a_queued_request_out() -> None:
    """abort_fetch on a queued request: answered 599 'Cancelled in request
    queue', never sent; the next one goes in its place."""
    app = application()
    async with serving(app) as base, own_client(max_clients=1) as client:
        first = asyncio.ensure_future(client.fetch(f'{base}/slow?delay=0.3'))
        queued_request = httpclient.HTTPRequest(f'{base}/slow?delay=0')
        queued = asyncio.ensure_future(client.fetch(queued_request))
        last = asyncio.ensure_future(client.fetch(f'{base}/slow?delay=0'))
        await asyncio.sleep(0.05)
        assert client.abort_fetch(queued_request)
        with pytest.raises(httpclient.HTTPClientError,
                           match='Cancelled in request queue'):
            await queued
        assert not client.abort_fetch(queued_request)
        await asyncio.gather(first, last)
    assert app.settings['state']['most'] == 1


@in_a_loop
async def test_abort_fetch_closes_the_connection_at_once() -> None:
    """abort_fetch on a request in flight: answered 599 'Cancelled' and
    its connection closed within a second (the server sees it go)."""
    server = MisbehavingServer('silence')
    async with server as url:
        client: typing.Any = httpclient.AsyncHTTPClient()
        request = httpclient.HTTPRequest(url, request_timeout=30)
        pending = asyncio.ensure_future(client.fetch(request))
        while not server.requests:
            await asyncio.sleep(0.01)
        cancelled_at = time.monotonic()
        assert client.abort_fetch(request)
        with pytest.raises(httpclient.HTTPClientError, match='Cancelled'):
            await pending
        assert await server.settle(1)
    exchange = server.exchanges[0]
    assert exchange.hung_up_at is not None
    assert exchange.hung_up_at - cancelled_at < 1


@in_a_loop
async def test_a_cancelled_call_closes_its_connection() -> None:
    """Cancelling http_fetch ends the attempt's fetch through the
    transport: its connection closes at once."""
    server = MisbehavingServer('silence')
    async with server as url:
        call = asyncio.ensure_future(support.RecordingClient().http_fetch(
            url, request_timeout=30))
        while not server.requests:
            await asyncio.sleep(0.01)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert await server.settle(1)


@in_a_loop
async def test_allow_ipv6_false_resolves_ipv4_only() -> None:
    """allow_ipv6=False asks the resolver for IPv4 addresses only."""
    asked: typing.List[int] = []

    class Recording(netutil.DefaultLoopResolver):
        async def resolve(self, host: str, port: int,
                          family: socket.AddressFamily = socket.AF_UNSPEC
                          ) -> typing.List[typing.Tuple[int, typing.Any]]:
            asked.append(family)
            return await super().resolve(host, port, family)

    async with serving() as base, own_client(resolver=Recording()) as client:
        named = base.replace('127.0.0.1', 'localhost')
        await client.fetch(f'{named}/status/200', allow_ipv6=False)
        await client.fetch(f'{named}/status/200?again')
    assert asked == [socket.AF_INET, socket.AF_UNSPEC]


@in_a_loop
async def test_hostname_mapping() -> None:
    """hostname_mapping resolves a name as simple_httpclient's does."""
    async with serving() as base, own_client(
            hostname_mapping={'service.test': '127.0.0.1'}) as client:
        result = await client.fetch(
            base.replace('127.0.0.1', 'service.test') + '/status/200')
    assert result.code == 200


@in_a_loop
async def test_happy_eyeballs_reaches_the_next_address() -> None:
    """A name whose first address is black-holed: the second is reached
    within a second, far under the connect timeout."""
    async with serving() as base:
        port = int(base.rpartition(':')[2])
        try:
            holes = black_hole('127.0.0.2', port)
        except OSError as error:
            pytest.skip(f'no black hole here: {error}')
        resolver = Resolving(hosts=['127.0.0.2', '127.0.0.1'])
        try:
            if connects_within('127.0.0.2', port, 0.3):
                pytest.skip('a connect to a full accept queue does not hang')
            async with own_client(resolver=resolver) as client:
                started = time.monotonic()
                result = await client.fetch(
                    f'http://eyeballs.test:{port}/status/200',
                    connect_timeout=5)
                elapsed = time.monotonic() - started
        finally:
            resolver.default.close()
            for sock in holes:
                sock.close()
    assert result.code == 200
    assert elapsed < 1


# -- responses ----------------------------------------------------------------

@in_a_loop
async def test_the_response_is_tornados() -> None:
    """A tornado HTTPResponse: code, reason, headers, buffer, body,
    effective_url, request_time, start_time and time_info."""
    async with serving() as base:
        before = time.time()
        result = await httpclient.AsyncHTTPClient().fetch(
            f'{base}/status/201?reason=Made%20It')
    assert isinstance(result, httpclient.HTTPResponse)
    assert (result.code, result.reason, result.body) == (
        201, 'Made It', b'status 201')
    assert result.buffer is not None
    assert result.buffer.getvalue() == b'status 201'
    assert result.headers['Content-Length'] == '10'
    assert result.effective_url == f'{base}/status/201?reason=Made%20It'
    assert result.request_time is not None and 0 < result.request_time < 5
    assert result.start_time is not None and result.start_time >= before - 1
    assert set(result.time_info) >= {'queue', 'connect', 'starttransfer',
                                      'total'}
    assert result.request.url == f'{base}/status/201?reason=Made%20It'


@in_a_loop
async def test_the_mixin_sends_with_it() -> None:
    """The package's engine on the aiohttp client: retries a flaky
    upstream, decodes the body, records every attempt."""
    flaky = misbehaving.MisbehavingServer(_flaky())
    async with flaky as url:
        result = await support.RecordingClient().http_fetch(url)
    assert result.ok
    assert result.attempts == 2
    assert result.body == {'ok': True}


def _flaky() -> misbehaving.Script:
    async def script(exchange: misbehaving.Exchange) -> None:
        if exchange.request.connection == 1:
            await exchange.send(response('503 Service Unavailable'))
        else:
            await exchange.send(response(
                body=b'{"ok": true}',
                headers=['Content-Type: application/json']))
        await exchange.close()
    return script


@in_a_loop
async def test_http_max_clients_resizes_the_shared_instance() -> None:
    """HTTP_MAX_CLIENTS sets max_clients on the loop's shared instance
    itself, as for simple_httpclient."""
    saved = os.environ.get('HTTP_MAX_CLIENTS')
    os.environ['HTTP_MAX_CLIENTS'] = '3'
    try:
        client = _transports.async_http_client()
    finally:
        if saved is None:
            del os.environ['HTTP_MAX_CLIENTS']
        else:
            os.environ['HTTP_MAX_CLIENTS'] = saved
    assert client is httpclient.AsyncHTTPClient()
    assert client.max_clients == 3  # type: ignore[attr-defined]


@in_a_loop
async def test_network_interface_binds_the_source_address() -> None:
    """network_interface, an IP address, is the source of the connection
    (as on simple_httpclient); anything else is a ValueError."""
    async with serving() as base:
        client = httpclient.AsyncHTTPClient()
        result = await client.fetch(f'{base}/status/200',
                                    network_interface='127.0.0.1')
        with pytest.raises(ValueError, match='network_interface'):
            await client.fetch(f'{base}/status/200',
                               network_interface='eth0')
    assert result.code == 200
