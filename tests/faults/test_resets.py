"""A connection that breaks in the middle of a response body is a failed
attempt at once, on every client (SPEC §3, §6).

simple_httpclient let a reset (RST) there run to the request timeout: its
``on_connection_close`` raised the stream's error where nothing catches
it since tornado 6, and no answer ever came.  A plain close (FIN) at the
same point ended the attempt at once already; both are tested, with a
body framed by Content-Length and a chunked one.  An idempotent request
is retried after either, a POST is not: the server read it and began to
answer.

A raw asyncio server on 127.0.0.1 sends the status line, the headers and
half of the body, then ends the connection; retries go through
:class:`support.RecordingClient`, which records delays instead of
sleeping, so a call's time is its attempts' time.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import struct
import sys
import time
import typing

from tornado import simple_httpclient, testing

from sprockets.mixins import http
from sprockets.mixins.http import _transports
from sprockets.mixins.http._transports import _simple
from tests import support

#: The length the response announces; half of it is sent.
LENGTH = 100_000
#: A request timeout long enough that an attempt ending by it fails the
#: detection bound by far (the default is 20 s; a shorter one keeps a
#: failing run short).
REQUEST_TIMEOUT = 5.0
#: Attempts of a GET: it is retried once (a run where each attempt lasts
#: its request timeout stays short).
ATTEMPTS = 2
#: The most seconds an attempt may take to fail after the break (it takes
#: milliseconds; the server waits :data:`PAUSE` before breaking).
DETECTED_WITHIN = 1.0
#: Seconds the server waits, after sending half of the body, before it
#: ends the connection: the client has read the headers by then, so the
#: break is in the body.
PAUSE = 0.05

ENDINGS = ('reset', 'close')


class BreakingServer:
    """A raw HTTP/1.1 server on 127.0.0.1 that answers every request with
    a 200 announcing :data:`LENGTH` bytes (by Content-Length, or chunked),
    sends half of them and ends the connection: with a reset (``SO_LINGER``
    on with a zero timeout, then close: an RST) or a plain close (a FIN).
    """

    def __init__(self, ending: str, chunked: bool = False) -> None:
        assert ending in ENDINGS
        self.ending = ending
        self.chunked = chunked
        self.methods: typing.List[str] = []
        self.server: typing.Optional[asyncio.AbstractServer] = None
        self.tasks: typing.Set[asyncio.Task[typing.Any]] = set()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self.serve, '127.0.0.1', 0)
        port = self.server.sockets[0].getsockname()[1]
        return f'http://127.0.0.1:{port}/'

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        if self.tasks:
            await asyncio.wait_for(asyncio.gather(*self.tasks), 5)
        await self.server.wait_closed()

    def head(self) -> bytes:
        framing = (b'Transfer-Encoding: chunked' if self.chunked
                   else b'Content-Length: %d' % LENGTH)
        return (b'HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream'
                b'\r\n' + framing + b'\r\n\r\n')

    def half_body(self) -> bytes:
        half = b'x' * (LENGTH // 2)
        if self.chunked:  # a whole chunk, and no last chunk
            return b'%x\r\n' % len(half) + half + b'\r\n'
        return half

    async def serve(self, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            head = await reader.readuntil(b'\r\n\r\n')
            lines = head.decode('latin-1').split('\r\n')
            for line in lines[1:]:
                name, _, value = line.partition(':')
                if name.strip().lower() == 'content-length':
                    await reader.readexactly(int(value))
            self.methods.append(lines[0].split(' ', 1)[0])
            writer.write(self.head() + self.half_body())
            await writer.drain()
            await asyncio.sleep(PAUSE)
            if self.ending == 'reset':
                writer.get_extra_info('socket').setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack('ii', 1, 0))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self.tasks.discard(task)


class Collected(logging.Handler):
    """The records of a logger, kept."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: typing.List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@support.on_every_client('TestResets')
class ResetCases(support.ServerTestCase):
    __test__ = False

    def setUp(self) -> None:
        super().setUp()
        # tornado logs what a connection raised where nothing catches it
        self.tornado_log = Collected()
        logging.getLogger('tornado').addHandler(self.tornado_log)

    def tearDown(self) -> None:
        logging.getLogger('tornado').removeHandler(self.tornado_log)
        super().tearDown()

    async def call(self, ending: str, method: str = 'GET',
                   chunked: bool = False
                   ) -> typing.Tuple[BreakingServer, http.HTTPResponse,
                                     float]:
        """One call to a server breaking each response with `ending`:
        the server, the response and the call's duration in seconds."""
        self.tornado_log.records.clear()
        server = BreakingServer(ending, chunked)
        url = await server.start()
        started = time.monotonic()
        try:
            response = await asyncio.wait_for(
                support.RecordingClient().http_fetch(
                    url, method=method,
                    body=b'x' if method == 'POST' else None,
                    request_timeout=REQUEST_TIMEOUT, connect_timeout=5,
                    max_http_attempts=ATTEMPTS),
                4 * REQUEST_TIMEOUT)
        finally:
            elapsed = time.monotonic() - started
            await server.stop()
        return server, response, elapsed

    def assert_each_attempt_failed_at_once(
            self, response: http.HTTPResponse, ending: str,
            label: str) -> None:
        durations = [record.duration for record in response.records]
        sys.stderr.write(
            f'\n{self.implementation.rsplit(".", 1)[-1]} {label}: '
            f'attempts failed after {", ".join(f"{d:.3f}" for d in durations)}'
            ' s\n')
        self.assertFalse(response.ok)
        for record in response.records:
            self.assertIsNone(record.status, record)
            self.assertIsNotNone(record.exception)
            self.assertLess(record.duration, DETECTED_WITHIN,
                            f'{ending}: {record.exception!r}')
            self.assertNotIn('Timeout', str(record.exception))
        errors = [record for record in self.tornado_log.records
                  if record.levelno >= logging.ERROR]
        self.assertEqual(errors, [], 'tornado logged an uncaught error')

    @testing.gen_test(timeout=60)
    async def test_a_get_broken_mid_body_fails_at_once_and_is_retried(
            self) -> None:
        """A GET whose response body breaks off (a reset or a close, after
        a Content-Length or chunked head) fails each attempt within
        DETECTED_WITHIN, not at its request timeout, and is retried until
        the attempts are exhausted."""
        for ending in ENDINGS:
            for chunked in (False, True):
                label = f'{ending} {"chunked" if chunked else "sized"} GET'
                with self.subTest(ending=ending, chunked=chunked):
                    server, response, _ = await self.call(
                        ending, chunked=chunked)
                    self.assert_each_attempt_failed_at_once(
                        response, ending, label)
                    self.assertEqual(response.attempts, ATTEMPTS)
                    self.assertEqual(server.methods, ['GET'] * ATTEMPTS)
                    self.assertEqual(response.stop_reason,
                                     http.StopReason.ATTEMPTS_EXHAUSTED)

    @testing.gen_test(timeout=60)
    async def test_a_post_broken_mid_body_fails_at_once_and_is_not_retried(
            self) -> None:
        """A POST whose response body breaks off fails within
        DETECTED_WITHIN and is not sent again: the server read it."""
        for ending in ENDINGS:
            with self.subTest(ending=ending):
                server, response, _ = await self.call(ending, 'POST')
                self.assert_each_attempt_failed_at_once(
                    response, ending, f'{ending} sized POST')
                self.assertEqual(response.attempts, 1)
                self.assertEqual(server.methods, ['POST'])
                self.assertEqual(response.stop_reason,
                                 http.StopReason.UNSAFE_METHOD)

    @testing.gen_test(timeout=60)
    async def test_a_reset_is_reported_as_a_broken_connection(self) -> None:
        """The failed attempt of a reset carries the reset, classified as a
        broken connection (what a reset before the headers gives)."""
        _, response, elapsed = await self.call('reset', 'POST')
        self.assertLess(elapsed, DETECTED_WITHIN)
        (error,) = response.exceptions
        self.assertIn('reset', str(error).lower())
        self.assertIs(_transports.classify(error), http.Failure.CONNECTION)


class OwnConnection(simple_httpclient._HTTPConnection):
    """A connection class of a client's own (here: counting)."""

    made = 0

    def __init__(self, *args: typing.Any, **kwargs: typing.Any) -> None:
        OwnConnection.made += 1
        super().__init__(*args, **kwargs)


class OwnConnectionClient(simple_httpclient.SimpleAsyncHTTPClient):
    """simple_httpclient with a connection class of its own."""

    def _connection_class(self) -> type:
        return OwnConnection


class OwnConnectionClassCase(ResetCases):
    __test__ = True
    implementation = f'{__name__}.OwnConnectionClient'

    def setUp(self) -> None:
        OwnConnection.made = 0
        super().setUp()

    @testing.gen_test(timeout=60)
    async def test_a_client_s_own_connection_class_reports_resets_too(
            self) -> None:
        """A client's own connection class is kept (its methods run) and
        reports a reset at once as tornado's does."""
        _, response, _ = await self.call('reset')
        self.assert_each_attempt_failed_at_once(
            response, 'reset', 'reset sized GET, own connection class')
        self.assertEqual(response.attempts, ATTEMPTS)
        self.assertEqual(OwnConnection.made, ATTEMPTS)


def test_a_connection_class_that_is_not_tornado_s_is_left_alone() -> None:
    """Only tornado's connection class (or a subclass) is made to report
    resets: anything else a client returns is used as it is."""

    def factory(*args: typing.Any) -> None:
        return None

    assert _simple._reporting_resets(factory) is factory
    assert _simple._reporting_resets(object) is object
    assert (_simple._reporting_resets(simple_httpclient._HTTPConnection)
            is _simple._ReportedResets)
    own = _simple._reporting_resets(OwnConnection)
    assert issubclass(own, _simple._ReportedResets)
    assert issubclass(own, OwnConnection)
    assert _simple._reporting_resets(OwnConnection) is own
    assert _simple._reporting_resets(own) is own
