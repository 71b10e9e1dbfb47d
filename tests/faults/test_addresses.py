"""A host whose first address does not answer is reached at its next one
(RFC 8305, "Happy Eyeballs"), on every client (SPEC §3).

simple_httpclient tried the addresses of one family one after the other,
each until it failed: an address whose packets are dropped held every
attempt for its whole connect timeout, and every retry went to the same
dead address.  Now the next address is tried 250 ms after the first (at
once when one fails), and what each address did is remembered, so the
retry of a connect timeout goes to another address.  libcurl races the
addresses of a host on its own (its happy eyeballs delay is 200 ms).

The test name resolves to a black-holed loopback address first, then to
the live server: for simple_httpclient through a tornado ``Resolver`` of
the test's given to the client, for curl through ``CURLOPT_RESOLVE``.  A
black hole needs no root: a socket listening with a backlog of 0 whose
accept queue is filled by a connection never accepted, so that Linux drops
the SYN of any other (the connect hangs); a platform where it does not
skips these tests.  Retries go through :class:`support.RecordingClient`,
which records delays instead of sleeping.
"""
from __future__ import annotations

import asyncio
import datetime
import os
import pathlib
import socket
import sys
import time
import typing

import pytest
from tornado import (
    httpclient,
    netutil,
    simple_httpclient,
    tcpclient,
    testing,
    web,
)

from sprockets.mixins import http
from sprockets.mixins.http import _transports
from sprockets.mixins.http._transports import _eyeballs
from tests import support

NAME = 'eyeballs.test'
LIVE = '127.0.0.1'
#: Loopback addresses that do not answer (black holes), or refuse.
DEAD, OTHER_DEAD = '127.0.0.2', '127.0.0.3'
#: The connect timeout of a call that must not wait for it.
CONNECT_TIMEOUT = 2.0
#: Seconds within which a call reaches the live address on its first
#: attempt: the stagger (250 ms) and a request, far under the connect
#: timeout.
REACHED_WITHIN = 1.0
FDS = pathlib.Path('/proc/self/fd')

A = socket.AF_INET
B = socket.AF_INET6


# -- pure: the order addresses are tried in --------------------------------

def v4(last: int) -> _eyeballs.Address:
    return A, (f'192.0.2.{last}', 443)


def v6(last: int) -> _eyeballs.Address:
    return B, (f'2001:db8::{last}', 443, 0, 0)


@pytest.mark.parametrize('given, expected', [
    ([], []),
    ([v4(1)], [v4(1)]),
    ([v4(1), v4(2), v4(3)], [v4(1), v4(2), v4(3)]),
    # one of each family in turn, the first address's family first
    ([v6(1), v6(2), v4(1), v4(2)], [v6(1), v4(1), v6(2), v4(2)]),
    ([v4(1), v6(1), v6(2), v6(3)], [v4(1), v6(1), v6(2), v6(3)]),
    # an address given twice is tried once
    ([v4(1), v4(1), v6(1)], [v4(1), v6(1)]),
])
def test_interleave(given: typing.List[_eyeballs.Address],
                    expected: typing.List[_eyeballs.Address]) -> None:
    """The addresses alternate by family, as RFC 8305 section 4 says."""
    assert _eyeballs.interleave(given) == expected


KEY = ('example.com', 443)
ADDRESSES = [v4(1), v4(2), v4(3)]


@pytest.mark.parametrize('events, now, expected', [
    ([], 0, ADDRESSES),
    # the one that answered first
    ([('answered', 3, 0)], 1, [v4(3), v4(1), v4(2)]),
    # the ones that failed last, the one that failed longest ago first
    ([('failed', 1, 0)], 1, [v4(2), v4(3), v4(1)]),
    ([('failed', 2, 5), ('failed', 1, 6)], 7, [v4(3), v4(2), v4(1)]),
    # an address that answered after it failed is no longer a failure
    ([('failed', 1, 0), ('answered', 1, 1)], 2, ADDRESSES),
    # one that failed after it answered is
    ([('answered', 1, 0), ('failed', 1, 1)], 2, [v4(2), v4(3), v4(1)]),
    ([('answered', 3, 0), ('failed', 1, 1)], 2, [v4(3), v4(2), v4(1)]),
    # remembered for REMEMBERED_FOR only
    ([('failed', 1, 0)], _eyeballs.REMEMBERED_FOR + 1, ADDRESSES),
    ([('answered', 3, 0)], _eyeballs.REMEMBERED_FOR + 1, ADDRESSES),
])
def test_history_orders_the_addresses(
        events: typing.List[typing.Tuple[str, int, float]], now: float,
        expected: typing.List[_eyeballs.Address]) -> None:
    """What the last connections said of each address orders the next
    connection's: the one that answered first, the failed ones last."""
    history = _eyeballs.History()
    for event, last, when in events:
        getattr(history, event)(KEY, v4(last)[1], when)
    assert history.order(KEY, ADDRESSES, now) == expected
    assert history.order(('other.example', 443), ADDRESSES, now) == ADDRESSES


def test_history_forgets_the_host_used_least_recently() -> None:
    """No more than ``hosts`` hosts are remembered."""
    history = _eyeballs.History(hosts=2)
    for host in ('a', 'b', 'c'):
        history.failed((host, 80), v4(1)[1], 0)
    assert repr(history) == '<History of 2 host(s)>'
    assert history.order(('a', 80), ADDRESSES, 1) == ADDRESSES
    assert history.order(('c', 80), ADDRESSES, 1)[-1] == v4(1)


def test_history_forgets_the_failure_seen_least_recently() -> None:
    """No more than REMEMBERED_FAILURES addresses of a host are remembered
    as failed: a failure seen again counts as the most recent."""
    history = _eyeballs.History()
    many = [v4(last) for last in range(_eyeballs.REMEMBERED_FAILURES + 2)]
    for when, address in enumerate(many):
        history.failed(KEY, address[1], when)
    history.failed(KEY, many[0][1], len(many))  # again: the most recent
    order = history.order(KEY, many, len(many))
    # the two forgotten are tried first, as if they never failed
    assert order[:2] == many[1:3]
    assert order[-1] == many[0]


@pytest.mark.parametrize('sockaddr, shown', [
    (('192.0.2.1', 80), '192.0.2.1:80'),
    (('2001:db8::1', 443, 0, 0), '[2001:db8::1]:443'),
    ('/run/socket', '/run/socket'),
])
def test_format_address(sockaddr: typing.Any, shown: str) -> None:
    """Addresses are named as tornado's timeout messages name them."""
    assert _eyeballs.format_address(sockaddr) == shown


@pytest.mark.parametrize('message, failure', [
    ('Timeout while resolving eyeballs.test', http.Failure.CONNECT),
    ('Timeout while connecting to 127.0.0.2:80, 127.0.0.3:80',
     http.Failure.CONNECT),
    ('Timeout during TLS handshake with 127.0.0.1:443',
     http.Failure.CONNECT),
    ('Timeout during request', http.Failure.TIMEOUT),
])
def test_a_timeout_before_the_request_was_sent_is_a_connect_failure(
        message: str, failure: http.Failure) -> None:
    """simple_httpclient's timeouts while resolving, connecting or in the
    TLS handshake are connect failures (nothing was sent: a POST may be
    sent again), as libcurl's are."""
    error = simple_httpclient.HTTPTimeoutError(message)
    assert _transports.classify(error) is failure


# -- integration: a black hole first, the live server second ----------------

def black_hole(host: str, port: int) -> typing.List[socket.socket]:
    """A socket on `host`:`port` that never answers a connection: it
    listens with a backlog of 0 and a connection that is never accepted
    fills its queue.  Returns the sockets to close."""
    listening = socket.socket()
    try:
        listening.bind((host, port))
        listening.listen(0)
        filler = socket.create_connection((host, port), timeout=2)
    except OSError:
        listening.close()
        raise
    return [listening, filler]


def connects_within(host: str, port: int, seconds: float) -> bool:
    """Whether a connection to `host`:`port` completes (or fails) within
    `seconds`."""
    probe = socket.socket()
    probe.settimeout(seconds)
    try:
        probe.connect((host, port))
    except socket.timeout:
        return False
    except OSError:
        return True
    finally:
        probe.close()
    return True


class Resolving(netutil.Resolver):
    """Resolves :data:`NAME` (and any name under it) to `hosts`, in that
    order, at the port asked for; any other name as the default resolver
    does."""

    def initialize(self, hosts: typing.Sequence[str]) -> None:
        self.hosts = list(hosts)
        self.default = netutil.DefaultLoopResolver()

    async def resolve(self, host: str, port: int,
                      family: socket.AddressFamily = socket.AF_UNSPEC
                      ) -> typing.List[typing.Tuple[int, typing.Any]]:
        if not (host == NAME or host.endswith(f'.{NAME}')):
            return list(await self.default.resolve(host, port, family))
        return [(socket.AF_INET, (address, port)) for address in self.hosts]


class CountingHandler(web.RequestHandler):
    def initialize(self, arrivals: typing.List[str]) -> None:
        self.arrivals = arrivals

    def get(self) -> None:
        self.arrivals.append(self.request.method or '')
        self.write('live')

    post = get


class AddressCases(support.ServerTestCase):
    """A server on :data:`LIVE`, a black hole on :data:`DEAD` at the same
    port (and on :data:`OTHER_DEAD` when a test asks), and :data:`NAME`
    resolving to ``hosts`` (the black hole, then the live server, unless
    a test says otherwise)."""

    __test__ = False
    hosts: typing.Sequence[str] = (DEAD, LIVE)

    def setUp(self) -> None:
        self.arrivals: typing.List[str] = []
        self.resolver = Resolving(hosts=self.hosts)
        super().setUp()
        self.holes: typing.List[socket.socket] = []
        for host in sorted({DEAD, OTHER_DEAD} & set(self.hosts)):
            try:
                self.holes += black_hole(host, self.get_http_port())
            except OSError as error:
                self.close_holes()
                self.skipTest(f'no black hole on {host} here: {error}')
            if connects_within(host, self.get_http_port(), 0.3):
                self.close_holes()
                self.skipTest('a connect to a full accept queue does not '
                              'hang here (its SYN is answered)')

    def close_holes(self) -> None:
        for sock in self.holes:
            sock.close()
        self.holes = []

    def tearDown(self) -> None:
        self.close_holes()
        super().tearDown()
        self.resolver.default.close()

    def get_http_client(self) -> httpclient.AsyncHTTPClient:
        if self.implementation != support.CURL:
            # the shared instance of this loop, which the mixin sends with
            return httpclient.AsyncHTTPClient(resolver=self.resolver)
        return httpclient.AsyncHTTPClient()

    def get_app(self) -> web.Application:
        return web.Application([('/', CountingHandler,
                                 {'arrivals': self.arrivals})])

    def options(self, name: str, **kwargs: typing.Any
                ) -> typing.Dict[str, typing.Any]:
        """http_fetch's arguments for a call to `name` (on curl, resolved
        by ``CURLOPT_RESOLVE``)."""
        if self.implementation == support.CURL:
            import pycurl
            resolve = [f'{name}:{self.get_http_port()}:{",".join(self.hosts)}']
            kwargs['prepare_curl_callback'] = (
                lambda curl: curl.setopt(pycurl.RESOLVE, resolve))
        return dict({'connect_timeout': CONNECT_TIMEOUT,
                     'request_timeout': 10}, **kwargs)

    async def call(self, method: str = 'GET', name: str = NAME,
                   **kwargs: typing.Any
                   ) -> typing.Tuple[http.HTTPResponse, float]:
        """A call to `name`: its response and duration in seconds."""
        started = time.monotonic()
        response = await asyncio.wait_for(
            support.RecordingClient().http_fetch(
                f'http://{name}:{self.get_http_port()}/', method=method,
                body=b'x' if method == 'POST' else None,
                **self.options(name, **kwargs)), 30)
        elapsed = time.monotonic() - started
        sys.stderr.write(
            f'\n{self.implementation.rsplit(".", 1)[-1]} {self.id()}: '
            f'{response.code} after {elapsed:.3f} s, {response.attempts} '
            f'attempt(s) {[str(error) for error in response.exceptions]}\n')
        return response, elapsed

    def simple_only(self, why: str) -> None:
        if self.implementation != support.SIMPLE:
            self.skipTest(why)


@support.on_every_client('TestReachingTheLiveAddress')
class ReachingTheLiveAddressCases(AddressCases):
    __test__ = False

    @testing.gen_test(timeout=30)
    async def test_the_first_attempt_reaches_the_live_address(self) -> None:
        """With the first address black-holed, the first attempt reaches
        the second within REACHED_WITHIN, far under its connect timeout
        (simple_httpclient waited it out on every attempt)."""
        response, elapsed = await self.call()
        self.assertTrue(response.ok, response.exceptions)
        self.assertEqual(response.attempts, 1)
        self.assertEqual(response.body, b'live')
        self.assertLess(elapsed, REACHED_WITHIN)
        self.assertEqual(self.arrivals, ['GET'])

    @testing.gen_test(timeout=30)
    async def test_the_address_that_answered_is_tried_first_next_time(
            self) -> None:
        """A call after one reached the live address connects to it
        first: it does not wait the stagger for the black hole again."""
        self.simple_only('curl keeps the connection alive: the next call '
                         'does not connect')
        first, _ = await self.call()
        self.assertTrue(first.ok, first.exceptions)
        response, elapsed = await self.call()
        self.assertTrue(response.ok, response.exceptions)
        self.assertLess(elapsed, _eyeballs.CONNECTION_ATTEMPT_DELAY)

    @testing.gen_test(timeout=30)
    async def test_the_retry_of_a_connect_timeout_goes_to_another_address(
            self) -> None:
        """With a connect timeout shorter than the stagger, the first
        attempt times out on the black hole and the retry goes to the live
        address; a POST too (nothing was sent)."""
        self.simple_only(
            'libcurl keeps nothing of the addresses that failed from one '
            'transfer to the next: with a connect timeout under its 200 ms '
            'happy eyeballs delay, every attempt goes to the first address '
            'and times out (libcurl 8.23: 3 attempts, "Connection timed '
            'out after 200 milliseconds")')
        for method in ('GET', 'POST'):
            with self.subTest(method=method):
                # a name of its own: nothing remembered of its addresses
                response, _ = await self.call(
                    method, f'{method.lower()}.{NAME}', connect_timeout=0.2)
                self.assertTrue(response.ok, response.exceptions)
                self.assertEqual(response.attempts, 2)
                (timeout,) = response.exceptions
                port = self.get_http_port()
                self.assertEqual(str(timeout), 'Timeout while connecting '
                                 f'to {DEAD}:{port}')
        self.assertEqual(self.arrivals, ['GET', 'POST'])

    @testing.gen_test(timeout=30)
    async def test_a_bound_interface_reaches_the_live_address(
            self) -> None:
        """``network_interface`` binds every address's socket, and the
        live address is still reached on the first attempt."""
        self.simple_only('the binding is tornado\'s own on curl')
        response, elapsed = await self.call(network_interface=LIVE)
        self.assertTrue(response.ok, response.exceptions)
        self.assertLess(elapsed, REACHED_WITHIN)


@support.on_every_client('TestRefusingFirstAddress')
class RefusingFirstAddressCases(AddressCases):
    __test__ = False
    hosts = ('127.0.0.4', LIVE)  # nothing listens there: refused

    @testing.gen_test(timeout=30)
    async def test_a_refused_address_moves_on_at_once(self) -> None:
        """An address that refuses is followed by the next at once, not
        after the stagger."""
        response, elapsed = await self.call()
        self.assertTrue(response.ok, response.exceptions)
        self.assertEqual(response.attempts, 1)
        self.assertLess(elapsed, _eyeballs.CONNECTION_ATTEMPT_DELAY)


class OwnTCPClient(tcpclient.TCPClient):
    """A TCPClient that connects its own way (here: counting)."""

    connects = 0

    async def connect(self, *args: typing.Any,
                      **kwargs: typing.Any) -> typing.Any:
        OwnTCPClient.connects += 1
        return await super().connect(*args, **kwargs)


class OwnTCPClientCase(AddressCases):
    __test__ = True
    hosts = ('127.0.0.4', LIVE)

    @testing.gen_test(timeout=30)
    async def test_a_tcp_client_of_its_own_connects_its_own_way(
            self) -> None:
        """A client whose ``tcp_client`` is not tornado's own keeps it:
        its connect is called, not raced around."""
        OwnTCPClient.connects = 0
        self.http_client.tcp_client = OwnTCPClient(  # type: ignore[attr-defined]
            resolver=self.resolver)
        response, _ = await self.call()
        self.assertTrue(response.ok, response.exceptions)
        self.assertEqual(OwnTCPClient.connects, 1)


@support.on_every_client('TestNoAddressAnswers')
class NoAddressAnswersCases(AddressCases):
    __test__ = False
    hosts = (DEAD, OTHER_DEAD)

    @testing.gen_test(timeout=30)
    async def test_a_post_to_addresses_that_never_answer_is_retried(
            self) -> None:
        """When no address answers, each attempt is a connect timeout
        (naming on simple every address still connecting), so a POST is
        retried: nothing was sent."""
        response, _ = await self.call('POST', connect_timeout=0.6)
        self.assertFalse(response.ok)
        self.assertEqual(response.attempts, 3)
        self.assertEqual(response.stop_reason,
                         http.StopReason.ATTEMPTS_EXHAUSTED)
        if self.implementation == support.SIMPLE:
            port = self.get_http_port()
            self.assertEqual(
                [str(error) for error in response.exceptions],
                [f'Timeout while connecting to {DEAD}:{port}, '
                 f'{OTHER_DEAD}:{port}'] * 3)
        self.assertEqual(self.arrivals, [])

    @pytest.mark.skipif(not FDS.is_dir(), reason='needs /proc/self/fd')
    @testing.gen_test(timeout=30)
    async def test_a_cancelled_call_closes_the_sockets_still_connecting(
            self) -> None:
        """Cancelling a call while its addresses are still connecting
        closes their sockets at once, not at the connect timeout."""
        before = len(os.listdir(FDS))
        task = asyncio.ensure_future(self.call(connect_timeout=20))
        await asyncio.sleep(2 * _eyeballs.CONNECTION_ATTEMPT_DELAY)
        self.assertGreaterEqual(len(os.listdir(FDS)), before + 2)
        task.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.01)
        self.assertEqual(len(os.listdir(FDS)), before)


@pytest.mark.parametrize('timeout', [
    0.5, datetime.timedelta(seconds=0.5)])
def test_connect_takes_the_timeouts_tcpclient_takes(
        timeout: typing.Any) -> None:
    """A timeout in seconds or as a timedelta bounds the connection, as
    for tornado's TCPClient; anything else is refused."""

    async def connect(timeout: typing.Any) -> None:
        resolver = Resolving(hosts=['127.0.0.4'])  # refused
        try:
            await _eyeballs.connect(resolver, _eyeballs.History(), NAME, 9,
                                    timeout=timeout)
        finally:
            resolver.default.close()

    with pytest.raises(OSError):
        asyncio.run(connect(timeout))
    with pytest.raises(TypeError, match='Unsupported timeout'):
        asyncio.run(connect('0.5'))


class Fixed(netutil.Resolver):
    """Resolves any name to `addresses`."""

    def initialize(self, addresses: typing.List[_eyeballs.Address]) -> None:
        self.addresses = addresses

    async def resolve(self, host: str, port: int,
                      family: socket.AddressFamily = socket.AF_UNSPEC
                      ) -> typing.List[typing.Tuple[int, typing.Any]]:
        return list(self.addresses)


#: An address family no socket can be made of.
NO_FAMILY = 9999


@pytest.mark.parametrize('source_port', [None, 'free'])
def test_an_address_no_socket_can_be_opened_for_is_skipped(
        source_port: typing.Optional[str]) -> None:
    """An address whose socket cannot even be made (a family the system
    lacks) is a failed attempt: the next goes at once, and it is tried
    last next time; a source port binds the loopback address."""

    async def connect() -> typing.Tuple[int, typing.List[typing.Any]]:
        server = await asyncio.start_server(
            lambda reader, writer: writer.close(), LIVE, 0)
        port = server.sockets[0].getsockname()[1]
        live: _eyeballs.Address = (socket.AF_INET, (LIVE, port))
        bound = None
        if source_port is not None:
            with socket.socket() as free:
                free.bind((LIVE, 0))
                bound = free.getsockname()[1]
        history = _eyeballs.History()
        try:
            started = time.monotonic()
            stream = await _eyeballs.connect(
                Fixed(addresses=[(NO_FAMILY, ('nowhere', port)), live]),
                history, NAME, port, source_port=bound, timeout=5)
            elapsed = time.monotonic() - started
            local = stream.socket.getsockname()
            stream.close()
        finally:
            server.close()
            await server.wait_closed()
        assert elapsed < _eyeballs.CONNECTION_ATTEMPT_DELAY
        if bound is not None:
            assert local == (LIVE, bound)
        return port, history.order(
            (NAME, port), [(NO_FAMILY, ('nowhere', port)), live], 0)

    port, order = asyncio.run(connect())
    assert order == [(socket.AF_INET, (LIVE, port)),
                     (NO_FAMILY, ('nowhere', port))]


def test_no_address_at_all_is_an_error() -> None:
    """A resolver that answers nothing ends the connection at once."""

    async def connect() -> None:
        await _eyeballs.connect(Fixed(addresses=[]), _eyeballs.History(),
                                NAME, 80)

    with pytest.raises(OSError, match='no address'):
        asyncio.run(connect())


@pytest.mark.parametrize('host, af, expected', [
    ('127.0.0.1', socket.AF_UNSPEC, [(socket.AF_INET, ('127.0.0.1', 80))]),
    ('127.0.0.1', socket.AF_INET, [(socket.AF_INET, ('127.0.0.1', 80))]),
    ('::1', socket.AF_UNSPEC, [(socket.AF_INET6, ('::1', 80, 0, 0))]),
    ('::1', socket.AF_INET, None),  # allow_ipv6=False: the resolver says
    ('127.0.0.1', socket.AF_INET6, None),
    ('localhost', socket.AF_UNSPEC, None),
    ('1.example', socket.AF_UNSPEC, None),
    ('fe80::1%lo', socket.AF_UNSPEC, None),  # scoped: its interface index
    ('300.1.1.1', socket.AF_UNSPEC, None),
])
def test_an_address_literal_needs_no_resolver(
        host: str, af: socket.AddressFamily,
        expected: typing.Optional[typing.List[_eyeballs.Address]]) -> None:
    """An IP address literal is what tornado's getaddrinfo resolvers would
    answer, without asking one (a thread and about 0.2 ms of CPU each
    time); a name, or an address the family excludes, is asked."""
    resolver = netutil.DefaultExecutorResolver()
    assert _eyeballs.literal_addresses(resolver, host, 80, af) == expected
    if expected is not None:
        # what getaddrinfo says of it, as the resolver hands it on
        assert expected == asyncio.run(resolver.resolve(host, 80, af))[:1]


def test_a_resolver_that_may_map_an_address_is_still_asked() -> None:
    """An OverrideResolver (or any resolver of the application's) may send
    an address literal elsewhere: it is asked."""
    inner = netutil.DefaultExecutorResolver()
    mapped = netutil.OverrideResolver(
        resolver=inner, mapping={('127.0.0.9', 80): ('127.0.0.1', 80)})
    assert _eyeballs.literal_addresses(mapped, '127.0.0.9', 80) is None
    assert _eyeballs.literal_addresses(
        Fixed(addresses=[]), '127.0.0.1', 80) is None

    class Patched(netutil.DefaultExecutorResolver):
        async def resolve(self, host: str, port: int,
                          family: socket.AddressFamily = socket.AF_UNSPEC
                          ) -> typing.List[typing.Tuple[int, typing.Any]]:
            return []  # pragma: no cover - never asked here

    assert _eyeballs.literal_addresses(Patched(), '127.0.0.1', 80) is None


def test_simple_httpclient_resolves_no_address_literal(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A call to an IP address over simple_httpclient never asks the
    resolver (tornado's TCPClient asked it on every request); a call to a
    name does."""
    asked: typing.List[str] = []
    resolve = netutil.DefaultLoopResolver.resolve

    async def counting(self: typing.Any, host: str, port: int,
                       family: socket.AddressFamily = socket.AF_UNSPEC
                       ) -> typing.Any:
        asked.append(host)
        return await resolve(self, host, port, family)

    monkeypatch.setattr(netutil.DefaultLoopResolver, 'resolve', counting)

    async def calls() -> typing.List[int]:
        server = await asyncio.start_server(_answer_ok, LIVE, 0)
        port = server.sockets[0].getsockname()[1]
        client = support.RecordingClient()
        try:
            codes = []
            for host in (LIVE, LIVE, 'localhost'):
                response = await client.http_fetch(
                    f'http://{host}:{port}/', request_timeout=5,
                    allow_ipv6=False)
                codes.append(response.code)
        finally:
            httpclient.AsyncHTTPClient().close()
            server.close()
            await server.wait_closed()
        return codes

    httpclient.AsyncHTTPClient.configure(support.SIMPLE)
    try:
        assert asyncio.run(calls()) == [200, 200, 200]
    finally:
        httpclient.AsyncHTTPClient.configure(None)
    assert asked == ['localhost']


async def _answer_ok(reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b'\r\n\r\n')
    writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n'
                 b'Connection: close\r\n\r\n')
    await writer.drain()
    writer.close()
