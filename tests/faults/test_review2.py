"""An adversarial review of the two changes "curl: every resend libcurl
makes on its own is an attempt in records" and "streamed bodies are
decompressed by the package, chunk by chunk": each test here showed a bug
of the code reviewed, and is a regression test now that it is fixed.

Every test runs in an event loop of its own
(:func:`tests.faults.test_protocol.in_a_loop_on_every_client`), against a
server on 127.0.0.1, with short timeouts and bounded waits; retries are
instant (:class:`support.RecordingClient`).
"""
from __future__ import annotations

import asyncio
import functools
import gc
import json
import tracemalloc
import typing

import brotli
import pytest
import zstandard

from sprockets.mixins import http
from sprockets.mixins.http import _codings, _content
from tests import support
from tests.faults.misbehaving import Exchange, MisbehavingServer, response
from tests.faults.test_protocol import in_a_loop_on_every_client
from tests.faults.test_resends import DroppingServer

CURL_ONLY = 'only libcurl sends a request twice within one transfer'


# -- 1. libcurl's digest handshake is no dead kept-alive connection ----------

CHALLENGE = ('WWW-Authenticate: Digest realm="r", nonce="abc", qop="auth", '
             'algorithm=MD5')


async def digest(exchange: Exchange) -> None:
    """401 with a Digest challenge without Authorization, else 200."""
    if exchange.request.header('Authorization') is None:
        await exchange.send(response('401 Unauthorized', b'no',
                                     headers=[CHALLENGE]))
    else:
        await exchange.send(response('200 OK', b'yes'))
    await exchange.close()


@in_a_loop_on_every_client()
async def test_digest_auth_works_with_one_attempt(implementation: str) -> None:
    """auth_mode='digest' (what docs/transports.rst sends users to curl
    for): libcurl sends the request, gets the 401 challenge and sends it
    again with the credentials, within one transfer.  That second send is
    no resend on a dead connection, yet PREREQFUNCTION counts it: with
    max_http_attempts=1 it is refused (aborted) and the call fails with a
    made-up ConnectionResetError; with more attempts it is recorded as a
    dead send that never happened."""
    if implementation != support.CURL:
        pytest.skip(CURL_ONLY)
    await digest_works(digest)


async def digest_works(answer: typing.Callable[
        [Exchange], typing.Awaitable[None]]) -> None:
    """With one attempt and with three, a digest call to the server that
    `answer` makes: two requests (the challenge, the credentials), one
    attempt, a 200."""
    for attempts in (1, 3):
        server = MisbehavingServer(answer)
        async with server as url:
            result = await support.RecordingClient().http_fetch(
                url, auth_username='u', auth_password='p',
                auth_mode='digest', max_http_attempts=attempts,
                request_timeout=5)
        assert result.exceptions == [], (attempts, result.exceptions)
        assert len(server.requests) == 2
        assert (result.ok, result.code, result.attempts) == (True, 200, 1)


# -- 2. a refused resend is reported as one that happened --------------------

@in_a_loop_on_every_client()
async def test_a_refused_resend_does_not_say_it_was_sent_again(
        implementation: str) -> None:
    """max_http_attempts=1 and the kept-alive connection dies: the resend
    is refused (PREREQFUNC_ABORT) and the server sees the GET once, but
    the exception recorded says 'libcurl sent the request again on a new
    connection'."""
    if implementation != support.CURL:
        pytest.skip(CURL_ONLY)
    server = DroppingServer(2)
    url = await server.start()
    try:
        client = support.RecordingClient()
        await client.http_fetch(url, request_timeout=5)
        result = await client.http_fetch(url, request_timeout=5,
                                         max_http_attempts=1)
    finally:
        await server.stop()
    assert server.methods == ['GET', 'GET']
    [error] = result.exceptions
    assert isinstance(error, ConnectionResetError)
    assert 'sent the request again' not in str(error)


# -- 3. the last attempt after a resend is withheld, not live ---------------

HEAD, TAIL = b'h' * 1000, b't' * 1000


@in_a_loop_on_every_client()
async def test_the_last_attempt_after_a_resend_streams_live(
        implementation: str) -> None:
    """max_http_attempts=2; the GET's kept-alive connection dies, the
    second send (libcurl's resend, or the engine's retry) gets a 503 that
    is the answer (no attempt is left): its body must stream as it
    arrives.  After a curl resend it is kept back until the end (the
    engine asks whether it is final with the attempt number from before
    the resend), so the whole body is held in memory."""
    seen = asyncio.Event()
    live: typing.List[bool] = []
    count = 0
    tasks: typing.Dict[asyncio.StreamWriter, asyncio.Task[typing.Any]] = {}

    async def serve(reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        nonlocal count
        tasks[writer] = typing.cast(asyncio.Task[typing.Any],
                                    asyncio.current_task())
        try:
            while True:
                await asyncio.wait_for(reader.readuntil(b'\r\n\r\n'), 5)
                count += 1
                if count == 1:
                    writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 2'
                                 b'\r\n\r\nok')
                    await writer.drain()
                    continue
                if count == 2:
                    break  # read it, then close without a word
                writer.write(b'HTTP/1.1 503 Service Unavailable\r\n'
                             b'Content-Length: 2000\r\n\r\n' + HEAD)
                await writer.drain()
                try:
                    await asyncio.wait_for(seen.wait(), 1.0)
                    live.append(True)
                except asyncio.TimeoutError:
                    live.append(False)
                writer.write(TAIL)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError,
                asyncio.TimeoutError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, '127.0.0.1', 0)
    url = f'http://127.0.0.1:{server.sockets[0].getsockname()[1]}/'
    chunks: typing.List[bytes] = []

    def collect(chunk: bytes) -> None:
        chunks.append(chunk)
        if len(b''.join(chunks)) >= len(HEAD):
            seen.set()

    try:
        client = support.RecordingClient()
        await client.http_fetch(url, request_timeout=5)
        result = await client.http_fetch(
            url, request_timeout=5, max_http_attempts=2,
            streaming_callback=collect)
    finally:
        server.close()
        for writer in tasks:
            writer.transport.abort()
        await asyncio.wait(list(tasks.values()), timeout=5)
    assert (result.code, result.attempts) == (503, 2)
    assert b''.join(chunks) == HEAD + TAIL
    assert live == [True]


# -- 4. a streamed br body that expands is cut short -------------------------

#: 3.3 MB of JSON that brotli makes 42-47 KB of: any API listing
LISTING = json.dumps([{'id': n, 'status': 'active', 'roles': ['user'],
                       'deleted': False, 'meta': {}}
                      for n in range(40000)]).encode()


@functools.cache
def listing_br() -> bytes:
    """:data:`LISTING` in br (quality 5: quick to make, 47 KB)."""
    return brotli.compress(LISTING, quality=5)


def test_stream_decoder_decodes_a_br_body_that_expands() -> None:
    """StreamDecoder('br') must give what decompress() gives: it stops
    draining brotli as soon as can_accept_more_data() is true, which
    brotli 1.2 says while output is still pending, so output is lost and
    end() raises 'truncated br body'."""
    body = listing_br()
    assert _codings.decompress(body, 'br') == LISTING
    for size in (16384, 65536, len(body)):
        decoder = _codings.StreamDecoder('br')
        pieces: typing.List[bytes] = []
        for start in range(0, len(body), size):
            pieces.extend(decoder.feed(body[start:start + size]))
        pieces.extend(decoder.end())
        assert b''.join(pieces) == LISTING, size


@in_a_loop_on_every_client()
async def test_a_streamed_br_body_arrives_whole(implementation: str) -> None:
    """The same body over the wire: without streaming it arrives whole;
    streamed, the call fails stream-interrupted with 'truncated br body'
    after 2 of its 3.3 MB reached the callback."""
    body = listing_br()

    async def answer(exchange: Exchange) -> None:
        await exchange.send(response('200 OK', body, headers=[
            'Content-Type: application/json', 'Content-Encoding: br']))
        await exchange.close()

    chunks: typing.List[bytes] = []
    async with MisbehavingServer(answer) as url:
        result = await support.RecordingClient().http_fetch(
            url, request_timeout=5, streaming_callback=chunks.append)
    assert result.exceptions == []
    assert result.ok
    assert b''.join(chunks) == LISTING


# -- 5. a body kept back that cannot be decoded is no stream interrupted -----

CORRUPT = b'\x1f\x8b' + b'\xff' * 50


@in_a_loop_on_every_client()
async def test_a_streamed_redirect_past_max_redirects_with_a_corrupt_body(
        implementation: str) -> None:
    """A redirect loop whose gzip body is corrupt: without streaming the
    last redirect is the response (too-many-redirects, the error in its
    record's content_error, nothing in exceptions), as Attempt.send
    documents.  Streamed, the body kept back is decoded when handed on,
    fails, and the call stops stream-interrupted with the
    DecompressionError in exceptions, though no byte reached the caller
    (and its headers say X-Consumed-Content-Encoding: gzip)."""

    async def loop(exchange: Exchange) -> None:
        await exchange.send(response('302 Found', CORRUPT, headers=[
            'Content-Encoding: gzip', 'Location: /']))
        await exchange.close()

    outcomes = []
    for streaming in (False, True):
        chunks: typing.List[bytes] = []
        options: typing.Dict[str, typing.Any] = (
            {'streaming_callback': chunks.append} if streaming else {})
        async with MisbehavingServer(loop) as url:
            result = await support.RecordingClient().http_fetch(
                url, request_timeout=5, follow_redirects=True,
                max_redirects=1, **options)
        record = result.records[-1]
        outcomes.append((result.stop_reason, result.code,
                         [type(error) for error in result.exceptions],
                         type(record.content_error), record.streamed))
    assert outcomes[0] == (http.StopReason.TOO_MANY_REDIRECTS, 302, [],
                           _content.DecompressionError, 0)
    assert outcomes[1] == outcomes[0]


# -- 6. a coroutine callback holds the whole decompressed bomb ---------------

#: 128 MiB of zeros in 4 KB of zstd
BOMB_SIZE = 128 * 1024 * 1024
#: what the package may hold at a time: a few pieces
BOUND = 40 * 1024 * 1024


@in_a_loop_on_every_client()
async def test_a_coroutine_callback_is_not_handed_a_whole_bomb_at_once(
        implementation: str) -> None:
    """A 4 KB zstd body that expands to 128 MiB, streamed to a coroutine
    callback on a client that waits for it (simple_httpclient awaits what
    the callback returns, so does the aiohttp client): the relay makes
    every piece of a chunk, and a task holding it, before the first is
    consumed, so the package holds the whole 128 MiB (a 64 KB chunk could
    be 2 GiB) where a plain callback peaks at 16 MiB.  StreamDecoder's
    docstring promises a piece is handed on before the next is made."""
    if implementation == support.CURL:
        pytest.skip('curl_httpclient cannot wait for a callback')
    body = zstandard.ZstdCompressor(level=1).compress(b'\0' * BOMB_SIZE)

    async def answer(exchange: Exchange) -> None:
        await exchange.send(response('200 OK', body, headers=[
            'Content-Encoding: zstd']))
        await exchange.close()

    received = 0

    async def count(chunk: bytes) -> None:
        nonlocal received
        await asyncio.sleep(0)
        received += len(chunk)

    gc.collect()
    tracemalloc.start()
    try:
        async with MisbehavingServer(answer) as url:
            result = await support.RecordingClient().http_fetch(
                url, request_timeout=10, streaming_callback=count)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.ok, result.exceptions
    assert received == BOMB_SIZE
    assert peak < BOUND, f'{peak / 2 ** 20:.0f} MiB held at once'
