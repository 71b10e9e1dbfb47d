"""Servers that break HTTP at the byte level (issue 8 §2): every fault is
a failed attempt or a whole response, never a crash, a hang or a
truncated 200 shown as ok; an idempotent GET is sent again, a POST the
server may have read never is (SPEC §3, §6).

Each test runs on every AsyncHTTPClient implementation of
:data:`support.IMPLEMENTATIONS`, against a
:class:`~tests.faults.misbehaving.MisbehavingServer` on 127.0.0.1, in an
event loop of its own; retries through :class:`support.RecordingClient`,
which records delays instead of sleeping.  Timeouts are short (half a
second) and every wait is bounded.
"""
from __future__ import annotations

import asyncio
import inspect
import time
import typing

import pytest
from tornado import iostream

from sprockets.mixins import http
from sprockets.mixins.http import _transports
from tests import support
from tests.faults import misbehaving
from tests.faults.misbehaving import MisbehavingServer, response

#: The request timeout of the tests whose server is too slow, in seconds.
TIMEOUT = 0.5

#: The request timeout of the other tests: far more than they need.
PATIENT = 5.0

#: Seconds one test may run at most, whatever the client does.
TEST_TIMEOUT = 20.0

#: ``max_http_attempts`` of the class: a GET is tried this many times.
ATTEMPTS = http.HTTPClientMixin.MAX_HTTP_RETRIES

#: A head that announces 100 bytes.
ANNOUNCES_100 = response(length=100)

GARBAGE_STATUS_LINES = [
    pytest.param(b'HTTP/1.1 abc OK\r\n\r\n', id='code-not-a-number'),
    pytest.param(b'FOO\r\n\r\n', id='not-http'),
    pytest.param(b'\r\n', id='empty-line'),
]

#: libcurl reports a status line it cannot parse as errno 1,
#: CURLE_UNSUPPORTED_PROTOCOL ("Received HTTP/0.9 when not allowed",
#: "Unsupported HTTP/1 subversion in response"), which the curl transport
#: classifies as fatal, like an unsupported URL scheme.
AsyncTest = typing.Callable[..., typing.Awaitable[None]]
Test = typing.Callable[..., None]


def clients(xfail: typing.Optional[typing.Mapping[str, str]] = None
            ) -> typing.List[typing.Any]:
    """:func:`support.every_client`, with the implementations of `xfail`
    marked as failing strictly, for the reason given."""
    params = []
    for param in support.every_client():
        [implementation] = param.values
        marks = list(param.marks)
        if xfail and implementation in xfail:
            marks.append(pytest.mark.xfail(
                strict=True, reason=xfail[implementation]))
        params.append(pytest.param(implementation, marks=marks))
    return params


def in_a_loop_on_every_client(
        xfail: typing.Optional[typing.Mapping[str, str]] = None
) -> typing.Callable[[AsyncTest], Test]:
    """Run an ``async def test_…(implementation, …)`` in an event loop of
    its own with each AsyncHTTPClient implementation configured (those of
    `xfail` marked as failing strictly), bounded by
    :data:`TEST_TIMEOUT`."""

    def decorate(test: AsyncTest) -> Test:
        def run(implementation: str, **arguments: typing.Any) -> None:
            support.run_in_a_loop(
                implementation, lambda: test(implementation, **arguments),
                timeout=TEST_TIMEOUT)

        # pytest reads the parameters from the signature: the test's own
        run.__signature__ = inspect.signature(test)  # type: ignore[attr-defined]
        for name in ('__name__', '__qualname__', '__doc__', '__module__'):
            setattr(run, name, getattr(test, name))
        marked: Test = pytest.mark.parametrize(
            'implementation', clients(xfail))(run)
        return marked

    return decorate


async def fetch(url: str, method: str = 'GET', **kwargs: typing.Any
                ) -> typing.Tuple[http.HTTPResponse, support.RecordingClient]:
    """One call through the mixin, its retries instant."""
    client = support.RecordingClient()
    kwargs.setdefault('request_timeout', PATIENT)
    kwargs.setdefault('connect_timeout', PATIENT)
    result = await client.http_fetch(
        url, method=method, body=b'x' if method == 'POST' else None,
        **kwargs)
    return result, client


async def fetch_from(script: typing.Union[misbehaving.Script, str],
                     method: str = 'GET', **kwargs: typing.Any
                     ) -> typing.Tuple[http.HTTPResponse,
                                       support.RecordingClient,
                                       MisbehavingServer]:
    """One call to a new server that runs `script`; the server stopped."""
    server = MisbehavingServer(script)
    async with server as url:
        result, client = await fetch(url, method, **kwargs)
    return result, client, server


def assert_failed(result: http.HTTPResponse, client: support.RecordingClient,
                  attempts: int, stop_reason: http.StopReason,
                  failure: typing.Optional[http.Failure] = None) -> None:
    """`attempts` attempts, every one an exception (of the kind `failure`
    when given), no response at all, and a delay asked for before each
    retry."""
    assert (result.ok, result.code, result.raw, result.headers,
            result.body, result.history) == (
        False, 599, None, None, None, []), result.exceptions
    assert (result.attempts, result.stop_reason) == (
        attempts, stop_reason), result.exceptions
    assert len(result.exceptions) == attempts
    assert [record.exception for record in result.records] == (
        result.exceptions)
    assert [record.status for record in result.records] == [None] * attempts
    assert len(client.delays) == attempts - 1
    if failure is not None:
        assert [_transports.classify(error)
                for error in result.exceptions] == [failure] * attempts, (
            result.exceptions)


async def assert_get_retried_post_not(
        script: typing.Union[misbehaving.Script, str],
        failure: typing.Optional[http.Failure] = http.Failure.CONNECTION,
        **kwargs: typing.Any) -> None:
    """A GET to a server that runs `script` is sent :data:`ATTEMPTS`
    times and fails each time; a POST, which the server read, is sent
    once."""
    got, client, server = await fetch_from(script, 'GET', **kwargs)
    assert_failed(got, client, ATTEMPTS, http.StopReason.ATTEMPTS_EXHAUSTED,
                  failure)
    assert server.methods == ['GET'] * ATTEMPTS
    posted, client, server = await fetch_from(script, 'POST', **kwargs)
    assert_failed(posted, client, 1, http.StopReason.UNSAFE_METHOD, failure)
    assert server.methods == ['POST']
    assert server.requests[0].body == b'x'


def assert_whole(result: http.HTTPResponse, server: MisbehavingServer,
                 body: bytes) -> None:
    """One attempt, one request, and a 200 with all of `body`."""
    assert (result.ok, result.code, result.stop_reason) == (
        True, 200, http.StopReason.SUCCESS), result.exceptions
    assert (result.attempts, result.exceptions, len(result.history)) == (
        1, [], 1)
    assert result.raw is not None
    assert result.raw.body == body
    assert result.body == body
    assert server.methods == ['GET']


# --- nothing listens --------------------------------------------------------

@in_a_loop_on_every_client()
async def test_connection_refused_is_retried_whatever_the_method(
        implementation: str) -> None:
    """A refused connection is a failure that provably sent nothing: a GET
    and a POST alike are tried every attempt."""
    url = misbehaving.refused_url()
    for method in ('GET', 'POST'):
        result, client = await fetch(url, method)
        assert_failed(result, client, ATTEMPTS,
                      http.StopReason.ATTEMPTS_EXHAUSTED,
                      http.Failure.CONNECT)


# --- the connection dies before the response is whole ------------------------

@in_a_loop_on_every_client()
async def test_reset_before_any_response_byte(implementation: str) -> None:
    """An RST after the server read the request: a GET is retried, the
    POST is not (``unsafe-method``)."""
    await assert_get_retried_post_not('reset')


@in_a_loop_on_every_client()
async def test_close_right_after_the_headers(implementation: str) -> None:
    """A FIN right after a head that announced 100 bytes is a failed
    attempt, never a truncated 200 shown as ok."""
    await assert_get_retried_post_not(misbehaving.respond(ANNOUNCES_100))


@in_a_loop_on_every_client()
async def test_content_length_longer_than_the_body(
        implementation: str) -> None:
    """10 of the 100 bytes Content-Length announced, then a FIN: a failed
    attempt."""
    await assert_get_retried_post_not(
        misbehaving.respond(ANNOUNCES_100 + b'0123456789'))


# --- slow servers ------------------------------------------------------------

@in_a_loop_on_every_client()
async def test_a_dripping_body_within_the_timeout_is_whole(
        implementation: str) -> None:
    """100 bytes, 10 every 50 ms, within a 2 s request timeout: one
    attempt, the whole body."""
    body = bytes(range(100))
    script = misbehaving.drip(
        response(length=len(body),
                 headers=['Content-Type: application/octet-stream']),
        body, 10, 0.05)
    started = time.monotonic()
    result, client, server = await fetch_from(script, request_timeout=2)
    assert_whole(result, server, body)
    assert 0.4 <= time.monotonic() - started < 2
    assert client.delays == []


async def assert_times_out(script: misbehaving.Script) -> None:
    """A GET (two attempts) and a POST (one), sent at once to a server
    that runs `script`, each attempt a timeout detected about
    :data:`TIMEOUT` after it started, and every connection closed by the
    client."""
    server = MisbehavingServer(script)
    async with server as url:
        started = time.monotonic()
        (got, get_client), (posted, post_client) = await asyncio.gather(
            fetch(url, 'GET', request_timeout=TIMEOUT,
                  max_http_attempts=2),
            fetch(url, 'POST', request_timeout=TIMEOUT))
        took = time.monotonic() - started
        # the client hung up on each (nothing the server had to abort)
        assert await server.settle(), server.exchanges
    assert_failed(got, get_client, 2, http.StopReason.ATTEMPTS_EXHAUSTED,
                  http.Failure.TIMEOUT)
    assert_failed(posted, post_client, 1, http.StopReason.UNSAFE_METHOD,
                  http.Failure.TIMEOUT)
    durations = [record.duration
                 for record in [*got.records, *posted.records]]
    assert all(TIMEOUT * 0.9 <= duration < TIMEOUT + 1
               for duration in durations), durations
    assert took < 2 * TIMEOUT + 1.5, took
    assert sorted(server.methods) == ['GET', 'GET', 'POST']
    assert all(exchange.hung_up for exchange in server.exchanges)


@in_a_loop_on_every_client()
async def test_a_dripping_body_past_the_timeout(implementation: str) -> None:
    """1,000 bytes, 10 every 100 ms, against a 0.5 s request timeout: a
    timeout recorded, detected at the timeout."""
    await assert_times_out(misbehaving.drip(
        response(length=1000), b'x' * 1000, 10, 0.1))


@in_a_loop_on_every_client()
async def test_headers_slower_than_the_timeout(implementation: str) -> None:
    """A server that sends nothing: a timeout recorded, detected at the
    0.5 s request timeout."""
    await assert_times_out(misbehaving.silence)


# --- what the server says is not HTTP ----------------------------------------

@pytest.mark.parametrize('status_line', GARBAGE_STATUS_LINES)
@in_a_loop_on_every_client()
async def test_a_garbage_status_line_is_a_failed_attempt(
        implementation: str, status_line: bytes) -> None:
    """A status line no parser accepts, then a FIN: ok False, every
    attempt an exception, no crash; a POST is sent once."""
    got, client, server = await fetch_from(misbehaving.respond(status_line))
    assert_failed(got, client, got.attempts,
                  typing.cast(http.StopReason, got.stop_reason))
    assert len(server.requests) == got.attempts
    posted, client, server = await fetch_from(
        misbehaving.respond(status_line), 'POST')
    assert_failed(posted, client, 1,
                  typing.cast(http.StopReason, posted.stop_reason))
    assert server.methods == ['POST']


@pytest.mark.parametrize('status_line', GARBAGE_STATUS_LINES)
@in_a_loop_on_every_client()
async def test_a_garbage_status_line_is_retried_as_a_broken_connection(
        implementation: str, status_line: bytes) -> None:
    """A garbage status line is a malformed response (Failure.CONNECTION):
    a GET is retried as after a broken connection, a POST is not."""
    await assert_get_retried_post_not(misbehaving.respond(status_line))


@in_a_loop_on_every_client()
async def test_status_999(implementation: str) -> None:
    """``HTTP/1.1 999 Weird`` is a response with code 999 on every client:
    outside 200 to 399, so not ok, and not a status to retry."""
    result, client, server = await fetch_from(
        misbehaving.respond(response('999 Weird', b'ok')))
    assert (result.ok, result.code, result.stop_reason) == (
        False, 999, http.StopReason.NOT_RETRYABLE)
    assert (result.attempts, result.exceptions, client.delays) == (1, [], [])
    assert [record.status for record in result.records] == [999]
    assert result.raw is not None
    assert (result.raw.reason, result.body) == ('Weird', b'ok')
    assert server.methods == ['GET']


@pytest.mark.parametrize('chunks', [
    pytest.param(b'zz\r\nhello\r\n0\r\n\r\n', id='size-not-hex'),
    pytest.param(b'5\r\nhelloworld\r\n0\r\n\r\n', id='longer-than-declared'),
])
@in_a_loop_on_every_client()
async def test_a_bad_chunk_is_a_failed_attempt(implementation: str,
                                               chunks: bytes) -> None:
    """A chunked body whose chunk size is no hex number, or whose chunk
    is longer than declared: a failed attempt, a GET retried."""
    await assert_get_retried_post_not(misbehaving.respond(
        response(length=-1, headers=['Transfer-Encoding: chunked'])
        + chunks))


# --- big heads ---------------------------------------------------------------

@in_a_loop_on_every_client()
async def test_a_64_kib_header_line(implementation: str) -> None:
    """A header line of 64 KiB: curl returns it (libcurl takes a header of
    up to 100 KB); the simple client fails the attempt, since the head is
    past its max_header_size (64 KiB), an oversized head being retried as
    a broken connection (SPEC §3); either way nothing crashes."""
    value = 'a' * (64 * 1024)
    script = misbehaving.respond(response(body=b'ok',
                                          headers=[f'X-Big: {value}']))
    result, client, server = await fetch_from(script)
    if implementation == support.CURL:
        assert_whole(result, server, b'ok')
        assert result.headers is not None
        assert result.headers['X-Big'] == value
    else:
        assert_failed(result, client, ATTEMPTS,
                      http.StopReason.ATTEMPTS_EXHAUSTED,
                      http.Failure.CONNECTION)
        if implementation == support.SIMPLE:
            assert all(isinstance(error, iostream.UnsatisfiableReadError)
                       for error in result.exceptions), result.exceptions
        assert server.methods == ['GET'] * ATTEMPTS


@in_a_loop_on_every_client()
async def test_a_thousand_headers(implementation: str) -> None:
    """1,000 header fields (15 KB, under every client's limit): one
    response with every one of them, on every client."""
    names = [f'X-Field-{number:04d}' for number in range(1000)]
    script = misbehaving.respond(response(
        body=b'ok', headers=[f'{name}: v{name[-4:]}' for name in names]))
    result, _, server = await fetch_from(script)
    assert_whole(result, server, b'ok')
    headers = result.headers
    assert headers is not None
    assert {name: headers.get(name) for name in names} == {
        name: f'v{name[-4:]}' for name in names}


# --- odd but valid -----------------------------------------------------------

@in_a_loop_on_every_client()
async def test_a_close_delimited_http_1_0_body(implementation: str) -> None:
    """HTTP/1.0, no Content-Length, ``Connection: close``, the body ended
    by a FIN: ok with all of it."""
    body = bytes(range(256)) * 800  # 200 KiB: many reads
    script = misbehaving.respond(b'HTTP/1.0 200 OK\r\nConnection: close\r\n'
                                 b'Content-Type: application/octet-stream'
                                 b'\r\n\r\n' + body)
    result, _, server = await fetch_from(script)
    assert_whole(result, server, body)


@in_a_loop_on_every_client()
async def test_informational_responses_before_the_final_one(
        implementation: str) -> None:
    """``100 Continue`` and ``103 Early Hints`` before the 200: the 200 is
    the answer, with its body, and none of the 103's headers."""
    script = misbehaving.respond(
        b'HTTP/1.1 100 Continue\r\n\r\n'
        b'HTTP/1.1 103 Early Hints\r\n'
        b'Link: </style.css>; rel=preload; as=style\r\n\r\n'
        + response(body=b'hello',
                   headers=['Content-Type: application/octet-stream']))
    result, _, server = await fetch_from(script)
    assert_whole(result, server, b'hello')
    assert result.headers is not None
    assert 'Link' not in result.headers
    assert result.links == []
