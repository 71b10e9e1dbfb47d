"""Adversarial review 3 of the streamed decompression and of curl's
resends: each test here showed a bug of the change reviewed, and is a
regression test now that it is fixed."""
from __future__ import annotations

import asyncio
import logging
import pathlib
import ssl
import struct
import typing
import zlib

import pytest

from sprockets.mixins import http
from tests import support
from tests.faults.misbehaving import Exchange, MisbehavingServer, response
from tests.faults.test_protocol import in_a_loop_on_every_client
from tests.faults.test_review2 import digest_works
from tests.faults.test_streaming import Refuse

CURL_ONLY = 'only libcurl sends a request twice within one transfer'
CHALLENGE = ('WWW-Authenticate: Digest realm="r", nonce="abc", qop="auth", '
             'algorithm=MD5')


async def digest_no_reason(exchange: Exchange) -> None:
    """401 with a Digest challenge and an empty reason phrase
    ("HTTP/1.1 401 ", valid: RFC 9112 reason-phrase may be empty)."""
    if exchange.request.header('Authorization') is None:
        await exchange.send(response('401 ', b'no', headers=[CHALLENGE]))
    else:
        await exchange.send(response('200 OK', b'yes'))
    await exchange.close()


@in_a_loop_on_every_client()
async def test_digest_auth_after_a_401_without_reason_phrase(
        implementation: str) -> None:
    """_Sends reads "a response arrived" from the X-Http-Reason field
    tornado adds at each status line, but tornado adds it only when
    httputil.parse_response_start_line accepts the line, which it does
    not for an empty reason phrase ("HTTP/1.1 401 " is rstripped to
    "HTTP/1.1 401": no match): the digest send after that 401 is taken for
    a resend on a dead connection (refused with max_http_attempts=1, a
    made-up transport-resend record otherwise).  A 417 to Expect or a 407
    without reason phrase do the same."""
    if implementation != support.CURL:
        pytest.skip(CURL_ONLY)
    await digest_works(digest_no_reason)



# -- 1b. the same over HTTP/2 (libcurl's default for https, by ALPN) ---------

TLS = pathlib.Path(__file__).parent.parent / 'tls'


def h2_frame(kind: int, flags: int, stream: int, payload: bytes = b''
             ) -> bytes:
    return (struct.pack('>I', len(payload))[1:] + bytes([kind, flags])
            + struct.pack('>I', stream) + payload)


def h2_field(index: int, value: str) -> bytes:
    """HPACK: a literal field without indexing, its name from the static
    table (no Huffman)."""
    name = bytes([index]) if index < 15 else bytes([15, index - 15])
    return name + bytes([len(value)]) + value.encode()


class H2Server:
    """HTTP/2 over TLS on 127.0.0.1 (ALPN h2): the n-th request stream
    is answered with ``answer(n)``: (status, [(static index, value)],
    body).  Enough of HTTP/2 for libcurl's GETs, nothing more."""

    def __init__(self, answer: typing.Callable[[int], typing.Tuple[
            str, typing.List[typing.Tuple[int, str]], bytes]]) -> None:
        self.answer = answer
        self.streams: typing.List[int] = []
        self.tasks: typing.Set[asyncio.Task[typing.Any]] = set()
        self.writers: typing.Set[asyncio.StreamWriter] = set()
        self.server: typing.Optional[asyncio.AbstractServer] = None

    async def __aenter__(self) -> str:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(TLS / 'cert.pem', TLS / 'key.pem')
        context.set_alpn_protocols(['h2'])
        self.server = await asyncio.start_server(
            self.serve, '127.0.0.1', 0, ssl=context)
        return f'https://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/'

    async def __aexit__(self, *_: typing.Any) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()  # no TLS close_notify to wait for
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=5)

    async def serve(self, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        task = typing.cast(asyncio.Task[typing.Any], asyncio.current_task())
        self.tasks.add(task)
        self.writers.add(writer)
        try:
            await asyncio.wait_for(reader.readexactly(24), 5)  # preface
            writer.write(h2_frame(4, 0, 0))  # SETTINGS
            for _ in range(100):
                head = await asyncio.wait_for(reader.readexactly(9), 5)
                kind, flags = head[3], head[4]
                stream = int.from_bytes(head[5:9], 'big') & 0x7fffffff
                await reader.readexactly(int.from_bytes(head[:3], 'big'))
                if kind == 4 and not flags & 1:
                    writer.write(h2_frame(4, 1, 0))  # SETTINGS ACK
                elif kind == 1:  # HEADERS: a request
                    self.streams.append(stream)
                    status, fields, body = self.answer(len(self.streams))
                    block = h2_field(8, status) + h2_field(28, str(len(body)))
                    for index, value in fields:
                        block += h2_field(index, value)
                    writer.write(h2_frame(1, 4, stream, block))
                    writer.write(h2_frame(0, 1, stream, body))
                elif kind == 7:  # GOAWAY
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError,
                asyncio.TimeoutError, asyncio.CancelledError, ssl.SSLError):
            pass
        finally:
            self.tasks.discard(task)
            self.writers.discard(writer)
            writer.close()


@in_a_loop_on_every_client()
async def test_digest_auth_over_http2(implementation: str) -> None:
    """libcurl speaks HTTP/2 to an https server that offers it: its status
    lines are "HTTP/2 401 ", which tornado's parse_response_start_line
    refuses (HTTP/1.x only), so no X-Http-Reason is ever collected and
    every send after the first is taken for a resend: digest auth fails
    with max_http_attempts=1 and records a made-up transport-resend
    otherwise."""
    if implementation != support.CURL:
        pytest.skip(CURL_ONLY)

    def answer(number: int) -> typing.Tuple[
            str, typing.List[typing.Tuple[int, str]], bytes]:
        if number == 1:
            return '401', [(61, CHALLENGE.split(': ', 1)[1])], b'no'
        return '200', [], b'yes'

    for attempts in (1, 3):
        server = H2Server(answer)
        async with server as url:
            result = await support.RecordingClient().http_fetch(
                url, ca_certs=str(TLS / 'cert.pem'), auth_username='u',
                auth_password='p', auth_mode='digest',
                max_http_attempts=attempts, request_timeout=5)
        assert result.exceptions == [], (attempts, result.exceptions)
        assert (result.ok, result.code, result.attempts) == (True, 200, 1)


# -- 2. cancelling the drain throws into simple_httpclient's reading -------

#: a body of 20 parts of 1 MiB (20 KB of gzip): at least 20 pieces, however
#: the client cuts the chunks (a piece is 1 MiB at most)
PARTS = [bytes([65 + n]) * 2 ** 20 for n in range(20)]


def gzipped(parts: typing.Sequence[bytes]) -> typing.List[bytes]:
    """`parts` in gzip, each flushed (a chunk that decodes on its own)."""
    compressor = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    chunks = [compressor.compress(part) + compressor.flush(zlib.Z_SYNC_FLUSH)
              for part in parts]
    chunks[-1] += compressor.flush()
    return chunks


def parts_server(status: str = '200 OK', coding: bool = True
                 ) -> MisbehavingServer:
    chunks = gzipped(PARTS) if coding else PARTS

    async def answer(exchange: Exchange) -> None:
        await exchange.send(response(
            status, b''.join(chunks),
            headers=['Content-Encoding: gzip'] if coding else []))
        await exchange.close()

    return MisbehavingServer(answer)


class Errors(logging.Handler):
    """The ERROR records logged while installed (on the root logger)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: typing.List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> Errors:
        logging.getLogger().addHandler(self)
        return self

    def __exit__(self, *_: typing.Any) -> None:
        logging.getLogger().removeHandler(self)


def stalling() -> typing.Tuple[asyncio.Event, typing.Callable[
        [bytes], typing.Awaitable[None]]]:
    """A coroutine callback that stalls on its second piece until the
    event is set (5 s at most)."""
    blocked = asyncio.Event()
    calls = 0

    async def slow(chunk: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            await asyncio.wait_for(blocked.wait(), 5)

    return blocked, slow


@in_a_loop_on_every_client()
async def test_a_slow_coroutine_callback_of_a_gzip_body_logs_no_error(
        implementation: str) -> None:
    """A coroutine callback that takes longer than request_timeout on a
    gzip body: the attempt ends with the callback's TimeoutError, as for
    an identity body.  On simple_httpclient, tornado logs 'Uncaught
    exception' (tornado.application, ERROR): Relay._decoded hands it the
    drain *task* to await (not a future resolved when the piece is done,
    as _hand_on does), and Relay.cancel() cancels that task, so the
    CancelledError is thrown into tornado's _deliver_body."""
    blocked, slow = stalling()

    with Errors() as errors:
        async with parts_server() as url:
            result = await support.RecordingClient().http_fetch(
                url, request_timeout=0.5, streaming_callback=slow)
        for _ in range(20):
            await asyncio.sleep(0)
    blocked.set()
    assert result.stop_reason == http.StopReason.STREAM_INTERRUPTED
    assert [type(error) for error in result.exceptions] == [TimeoutError]
    assert [record.getMessage() for record in errors.records] == []


@in_a_loop_on_every_client()
async def test_cancelling_the_caller_mid_drain_logs_no_error(
        implementation: str) -> None:
    """The same, when the caller cancels (asyncio.wait_for) while the
    pieces of a gzip chunk are handed on one by one."""
    blocked, slow = stalling()

    with Errors() as errors:
        async with parts_server() as url:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(support.RecordingClient().http_fetch(
                    url, request_timeout=5, streaming_callback=slow), 0.5)
        for _ in range(20):
            await asyncio.sleep(0)
    blocked.set()
    assert [record.getMessage() for record in errors.records] == []


# -- 3. a cancelled call goes on calling the streaming_callback --------------

async def calls_after_cancel(url: str, **options: typing.Any) -> int:
    """Cancel a streamed call (asyncio.wait_for) while its coroutine
    callback is stuck on the 2nd piece, then let the callback go on: how
    many times it is called after http_fetch raised."""
    blocked = asyncio.Event()
    cancelled = False
    calls_after = 0
    calls = 0

    async def slow(chunk: bytes) -> None:
        nonlocal calls, calls_after
        calls += 1
        calls_after += cancelled
        if calls == 2:
            await asyncio.wait_for(blocked.wait(), 5)

    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(support.RecordingClient().http_fetch(
            url, request_timeout=5, streaming_callback=slow, **options),
            0.5)
    cancelled = True
    blocked.set()
    for _ in range(200):  # bounded: every piece is in memory already
        await asyncio.sleep(0)
    return calls_after


@in_a_loop_on_every_client()
async def test_a_cancelled_call_hands_nothing_more_on_body_kept_back(
        implementation: str) -> None:
    """A 503 kept back (a gate refuses the retry) is handed on by
    Engine.run -> Attempt.deliver_withheld -> Relay.finished(); the caller
    cancels meanwhile: nothing calls Relay.cancel() (only a cancel inside
    Attempt.send's fetch does), so the drain goes on handing the pieces to
    the callback of a call that raised CancelledError."""
    async with parts_server('503 Service Unavailable') as url:
        calls = await calls_after_cancel(url, retry_policy=http.RetryPolicy(
            gates=(Refuse(),)))
    assert calls == 0


@in_a_loop_on_every_client()
async def test_a_cancelled_call_hands_nothing_more_on(
        implementation: str) -> None:
    """The same for a live 200 on curl_httpclient: the transfer is done
    (curl does not wait for the callback) and Attempt.send waits in
    Relay.finished(), outside its ``except CancelledError`` that cancels
    the relay."""
    async with parts_server() as url:
        calls = await calls_after_cancel(url)
    assert calls == 0


# -- 4. a callback that raises CancelledError at once is not seen to fail ---

@in_a_loop_on_every_client()
async def test_a_callback_raising_cancelled_error_at_once_ends_the_call(
        implementation: str) -> None:
    """'A callback that raises (at once, or in the awaitable it returns)
    ends the attempt': a CancelledError raised by the awaitable is the
    attempt's exception on every client (Relay._after), but
    Relay._hand_on catches only Exception, so one raised at once escapes
    into the drain task or into tornado: simple_httpclient logs 'Uncaught
    exception' and the call fails with 'Connection closed', the aiohttp
    client with '599 Cancelled', curl_httpclient with
    DecompressionError('truncated gzip body') for a whole body (the drain
    dies mid-chunk, end() finds the gzip unfinished); with several curl
    chunks the next one starts a new drain and the call succeeds.  (Not
    new for identity bodies, which _hand_on hands on directly.)"""
    calls = 0

    async def later() -> None:
        await asyncio.sleep(0)

    def callback(chunk: bytes) -> typing.Awaitable[None]:
        nonlocal calls
        calls += 1
        if calls == 5:
            raise asyncio.CancelledError()
        return later()

    async with parts_server() as url:
        result = await support.RecordingClient().http_fetch(
            url, request_timeout=5, streaming_callback=callback)
    assert result.stop_reason == http.StopReason.STREAM_INTERRUPTED
    assert calls == 5
    assert [type(error) for error in result.exceptions] == [
        asyncio.CancelledError]
