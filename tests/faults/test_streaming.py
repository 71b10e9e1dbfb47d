"""Streaming that streams (SPEC §4): the body of an attempt the policy will
not retry reaches ``streaming_callback`` as it arrives, the body of one it
retries never does, and a body that breaks off after the caller consumed
part of it ends the call (``stream-interrupted``) instead of being sent
again."""
from __future__ import annotations

import asyncio
import gc
import logging
import socket
import struct
import tracemalloc
import typing
import zlib

from tornado import testing, web

from sprockets.mixins import http
from sprockets.mixins.http import _content
from tests import support

#: the first part of each streamed body, sent before the server waits
HEAD = b'h' * 1000
#: the rest, sent once the client has shown it received the first part
TAIL = b't' * 1000
#: how long a server waits for the client to show it got the first part
PATIENCE = 5.0


class State:
    """What the handlers saw, shared with the test."""

    def __init__(self) -> None:
        self.requests = 0
        #: set by the test's callback when the first part arrived
        self.first_part = asyncio.Event()
        #: whether the client showed it got the first part before the rest
        #: of the body was sent (False: the server gave up waiting)
        self.live: typing.List[bool] = []


class PartsHandler(web.RequestHandler):
    """Answers with the status of the path's ``?status=`` for the first
    ``?failures=`` requests, then 200; each body is HEAD, then TAIL once
    the client's callback saw HEAD (or PATIENCE passed, ``?patience=``
    for a failure status)."""

    async def get(self) -> None:
        state: State = self.settings['state']
        state.requests += 1
        failures = int(self.get_argument('failures', '0'))
        status = (int(self.get_argument('status', '503'))
                  if state.requests <= failures else 200)
        self.set_status(status)
        head, tail = HEAD, TAIL
        if self.get_argument('coding', None) == 'gzip':
            head, tail = self.gzipped(status)
        self.set_header('Content-Length', str(len(head) + len(tail)))
        self.write(head)
        await self.flush()
        # a body that should be kept back: wait in vain, shortly
        patience = (PATIENCE if status == 200
                    else float(self.get_argument('patience', '0.3')))
        try:
            await asyncio.wait_for(state.first_part.wait(), patience)
            state.live.append(True)
        except asyncio.TimeoutError:
            state.live.append(False)
        state.first_part.clear()
        self.write(tail)

    def gzipped(self, status: int) -> typing.Tuple[bytes, bytes]:
        """HEAD and TAIL in gzip (HEAD decodable on its own); with
        ``?broken=corrupt`` or ``cut`` the tail of a ``?broken_on=``
        (200) response is garbage, or ends before the gzip does."""
        self.set_header('Content-Encoding', 'gzip')
        compressor = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
        head = compressor.compress(HEAD) + compressor.flush(zlib.Z_SYNC_FLUSH)
        tail = compressor.compress(TAIL) + compressor.flush()
        if status == int(self.get_argument('broken_on', '200')):
            broken = self.get_argument('broken', None)
            if broken == 'corrupt':
                tail = b'\xff' * len(tail)
            elif broken == 'cut':
                tail = tail[:-8]
        return head, tail


class BigHandler(web.RequestHandler):
    """A body of ``?mb=`` MiB in 64 KiB writes, each flushed."""

    async def get(self) -> None:
        block = b'b' * 65536
        self.set_header('Content-Length',
                        str(int(self.get_argument('mb')) * 16 * 65536))
        for _ in range(int(self.get_argument('mb')) * 16):
            self.write(block)
            await self.flush()


class Refuse:
    """A gate that refuses every retry."""

    stop_reason = http.StopReason.BUDGET_EXHAUSTED

    def record(self, upstream: typing.Hashable, now: float) -> None:
        pass

    def admit(self, upstream: typing.Hashable, now: float) -> bool:
        return False


@support.on_every_client('TestStreaming')
class StreamingCases(support.ServerTestCase):
    __test__ = False

    def get_app(self) -> web.Application:
        self.state = State()
        return web.Application([('/parts', PartsHandler),
                                ('/big', BigHandler)], state=self.state)

    def collector(self) -> typing.Tuple[typing.List[bytes],
                                        typing.Callable[[bytes], None]]:
        chunks: typing.List[bytes] = []

        def collect(chunk: bytes) -> None:
            chunks.append(chunk)
            if b''.join(chunks).startswith(HEAD):
                self.state.first_part.set()

        return chunks, collect

    async def fetch(self, path: str, **kwargs: typing.Any
                    ) -> http.HTTPResponse:
        client = support.RecordingClient()
        return await asyncio.wait_for(client.http_fetch(
            self.get_url(path), request_timeout=10, **kwargs), 20)

    @testing.gen_test(timeout=30)
    async def test_a_final_body_streams_as_it_arrives(self) -> None:
        """With the default three attempts, the chunks of a 200 reach the
        callback before the server sends the rest (they were kept until
        the body ended)."""
        chunks, collect = self.collector()
        response = await self.fetch('/parts', streaming_callback=collect)
        self.assertTrue(response.ok, response.exceptions)
        self.assertEqual(b''.join(chunks), HEAD + TAIL)
        self.assertEqual(self.state.live, [True])
        self.assertEqual(response.records[0].streamed, len(HEAD + TAIL))

    @testing.gen_test(timeout=30)
    async def test_a_compressed_body_streams_decompressed_as_it_arrives(
            self) -> None:
        """A gzip body's decompressed chunks reach the callback before the
        server sends the rest: the package decompresses chunk by chunk."""
        chunks, collect = self.collector()
        response = await self.fetch('/parts?coding=gzip',
                                    streaming_callback=collect)
        self.assertTrue(response.ok, response.exceptions)
        self.assertEqual(b''.join(chunks), HEAD + TAIL)
        self.assertEqual(self.state.live, [True])
        self.assertEqual(response.records[0].streamed, len(HEAD + TAIL))
        self.assertEqual(response.headers.get('X-Consumed-Content-Encoding'),
                         'gzip')

    @testing.gen_test(timeout=30)
    async def test_a_compressed_body_that_breaks_off_is_not_sent_again(
            self) -> None:
        """A streamed gzip body that turns corrupt, or ends before its
        gzip does, after the caller consumed part of it: the call stops
        (stream-interrupted) with the DecompressionError, sent once."""
        for broken, truncated in (('corrupt', False), ('cut', True)):
            with self.subTest(broken=broken):
                self.state.requests = 0
                chunks, collect = self.collector()
                response = await self.fetch(
                    f'/parts?coding=gzip&broken={broken}',
                    streaming_callback=collect)
                self.assertEqual(self.state.requests, 1)
                self.assertEqual(response.stop_reason,
                                 http.StopReason.STREAM_INTERRUPTED)
                self.assertTrue(b''.join(chunks).startswith(HEAD))
                error = response.exceptions[-1]
                self.assertIsInstance(error, _content.DecompressionError)
                self.assertIs(error.truncated, truncated)
                self.assertFalse(response.ok)

    @testing.gen_test(timeout=30)
    async def test_a_retried_compressed_body_is_never_decoded(self) -> None:
        """A 503 whose gzip body is corrupt, retried: its body is kept
        back as it arrived and thrown away, never decoded; the 200's
        streams decompressed."""
        chunks, collect = self.collector()
        response = await self.fetch(
            '/parts?failures=1&status=503&coding=gzip&broken=corrupt'
            '&broken_on=503', streaming_callback=collect)
        self.assertTrue(response.ok, response.exceptions)
        self.assertEqual([record.status for record in response.records],
                         [503, 200])
        self.assertEqual(b''.join(chunks), HEAD + TAIL)

    @testing.gen_test(timeout=30)
    async def test_a_retried_body_is_withheld_and_the_last_one_streams(
            self) -> None:
        """Two 503s the policy retries: their bodies never reach the
        callback (the server waits in vain), the 200's body streams."""
        chunks, collect = self.collector()
        response = await self.fetch('/parts?failures=2&status=503',
                                    streaming_callback=collect)
        self.assertTrue(response.ok, response.exceptions)
        self.assertEqual(response.attempts, 3)
        self.assertEqual(b''.join(chunks), HEAD + TAIL)
        self.assertEqual(self.state.live, [False, False, True])
        self.assertEqual([record.streamed for record in response.records],
                         [0, 0, len(HEAD + TAIL)])

    @testing.gen_test(timeout=30)
    async def test_the_last_attempts_error_body_streams(self) -> None:
        """A 503 on the last attempt is the answer: its body streams live,
        as does a 404 that is never retried."""
        chunks, collect = self.collector()
        response = await self.fetch(
            '/parts?failures=9&status=503&patience=2',
            streaming_callback=collect, max_http_attempts=2)
        self.assertEqual((response.code, response.attempts,
                          response.stop_reason),
                         (503, 2, http.StopReason.ATTEMPTS_EXHAUSTED))
        self.assertEqual(b''.join(chunks), HEAD + TAIL)
        self.assertEqual(self.state.live, [False, True])
        chunks.clear()
        response = await self.fetch(
            '/parts?failures=9&status=404&patience=2',
            streaming_callback=collect)
        self.assertEqual((response.code, response.attempts), (404, 1))
        self.assertEqual(b''.join(chunks), HEAD + TAIL)
        self.assertEqual(self.state.live[-1], True)

    @testing.gen_test(timeout=30)
    async def test_a_body_kept_back_is_handed_on_when_a_gate_refuses(
            self) -> None:
        """A 503 the policy would retry but a gate refuses is the answer
        after all: its body, kept back, reaches the callback at the end."""
        chunks, collect = self.collector()
        response = await self.fetch(
            '/parts?failures=9&status=503', streaming_callback=collect,
            retry_policy=http.RetryPolicy(gates=(Refuse(),)))
        self.assertEqual((response.code, response.stop_reason),
                         (503, http.StopReason.BUDGET_EXHAUSTED))
        self.assertEqual(b''.join(chunks), HEAD + TAIL)
        self.assertEqual(self.state.live, [False])

    @testing.gen_test(timeout=30)
    async def test_a_coroutine_callback_is_awaited_in_order(self) -> None:
        """A coroutine function as streaming_callback gets every chunk, in
        order, live, on every client (curl_httpclient refused it), and
        every decompressed piece of a gzip body alike (curl_httpclient
        hands the next chunk over before the callback is done with the
        last)."""
        for path in ('/parts', '/parts?coding=gzip'):
            with self.subTest(path=path):
                self.state.live.clear()
                chunks: typing.List[bytes] = []

                async def collect(chunk: bytes,
                                  chunks: typing.List[bytes] = chunks
                                  ) -> None:
                    await asyncio.sleep(0)
                    chunks.append(chunk)
                    if b''.join(chunks).startswith(HEAD):
                        self.state.first_part.set()

                response = await self.fetch(path, streaming_callback=collect)
                self.assertTrue(response.ok, response.exceptions)
                self.assertEqual(b''.join(chunks), HEAD + TAIL)
                self.assertEqual(self.state.live, [True])

    @testing.gen_test(timeout=30)
    async def test_a_callback_that_raises_ends_the_call_alike(
            self) -> None:
        """The callback's exception ends the call the same way with one
        attempt or three: recorded (never raised from http_fetch), logged,
        not retried, stop reason stream-interrupted, ok False."""
        for attempts in (1, 3):
            def explode(chunk: bytes) -> None:
                raise RuntimeError('the caller broke')

            self.state.requests = 0
            with self.assertLogs('sprockets.mixins.http',
                                 logging.WARNING) as logs:
                response = await self.fetch(
                    '/parts', streaming_callback=explode,
                    max_http_attempts=attempts)
            self.assertEqual(response.stop_reason,
                             http.StopReason.STREAM_INTERRUPTED, attempts)
            self.assertFalse(response.ok)
            self.assertEqual(response.attempts, 1)
            self.assertEqual(self.state.requests, 1)
            error = response.records[0].exception
            self.assertIsInstance(error, RuntimeError)
            self.assertEqual(str(error), 'the caller broke')
            self.assertIn('streaming_callback', logs.output[0])

    @testing.gen_test(timeout=30)
    async def test_a_callback_that_raises_on_a_body_kept_back(
            self) -> None:
        """A callback raising on the body handed on at the end (a gate
        refused the retry) ends the call the same way."""

        def explode(chunk: bytes) -> None:
            raise RuntimeError('the caller broke')

        with self.assertLogs('sprockets.mixins.http', logging.WARNING):
            response = await self.fetch(
                '/parts?failures=9&status=503', streaming_callback=explode,
                retry_policy=http.RetryPolicy(gates=(Refuse(),)))
        self.assertEqual(response.stop_reason,
                         http.StopReason.STREAM_INTERRUPTED)
        self.assertFalse(response.ok)
        self.assertIsInstance(response.records[-1].exception, RuntimeError)

    @testing.gen_test(timeout=60)
    async def test_a_large_body_is_never_held_whole(self) -> None:
        """16 MiB streamed with three attempts allowed: the package never
        holds the body (it kept every chunk until the end)."""
        received = 0

        def count(chunk: bytes) -> None:
            nonlocal received
            received += len(chunk)

        gc.collect()
        tracemalloc.start()
        try:
            response = await self.fetch('/big?mb=16', streaming_callback=count)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        self.assertTrue(response.ok, response.exceptions)
        self.assertEqual(received, 16 * 1024 * 1024)
        self.assertLess(peak, 8 * 1024 * 1024)


class BreakingServer:
    """A raw server on 127.0.0.1: reads a request, answers 200 with a
    Content-Length of 2,000, sends HEAD, waits until the client's
    callback got it, then resets (or closes) the connection."""

    def __init__(self, reset: bool) -> None:
        self.reset = reset
        self.requests = 0
        self.first_part = asyncio.Event()
        self.server: typing.Optional[asyncio.AbstractServer] = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self.serve, '127.0.0.1', 0)
        return f'http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/'

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def serve(self, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b'\r\n\r\n')
            self.requests += 1
            writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n'
                         + HEAD)
            await writer.drain()
            await asyncio.wait_for(self.first_part.wait(), PATIENCE)
            if self.reset:
                sock = writer.get_extra_info('socket')
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                struct.pack('ii', 1, 0))
        except (asyncio.IncompleteReadError, ConnectionError,
                asyncio.TimeoutError):
            pass
        finally:
            writer.close()


@support.on_every_client('TestInterrupted')
class InterruptedCases(support.ServerTestCase):
    __test__ = False

    @testing.gen_test(timeout=30)
    async def test_a_body_that_breaks_off_after_streaming_is_not_resent(
            self) -> None:
        """A GET whose body breaks off (reset or close) after its first
        part reached the callback: one attempt, the error recorded with
        the bytes streamed, stop reason stream-interrupted, ok False (it
        was sent three times and the caller got nothing)."""
        for reset in (True, False):
            server = BreakingServer(reset)
            url = await server.start()
            chunks: typing.List[bytes] = []

            def collect(chunk: bytes, server: BreakingServer = server,
                        chunks: typing.List[bytes] = chunks) -> None:
                chunks.append(chunk)
                if len(b''.join(chunks)) >= len(HEAD):
                    server.first_part.set()

            try:
                response = await asyncio.wait_for(
                    support.RecordingClient().http_fetch(
                        url, streaming_callback=collect,
                        request_timeout=5), 20)
            finally:
                await server.stop()
            self.assertEqual(server.requests, 1, reset)
            self.assertEqual(response.stop_reason,
                             http.StopReason.STREAM_INTERRUPTED)
            self.assertFalse(response.ok)
            record = response.records[0]
            self.assertIsNotNone(record.exception)
            self.assertEqual(record.streamed, len(HEAD))
            self.assertEqual(b''.join(chunks), HEAD)
