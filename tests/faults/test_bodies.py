"""Bodies that must not be lost or misread (SPEC §4, §6).

* A response whose Content-Encoding cannot be undone is a failed attempt,
  never a 200 whose body is still compressed; a truncated one is retried
  as a broken connection is, anything else is not.
* Decompressing a body of many small gzip members (or zstd frames) is
  linear in its size.
* ``body_producer`` is refused before anything is sent, never dropped.

Real servers on 127.0.0.1 with every AsyncHTTPClient implementation;
retries through :class:`support.RecordingClient`, which records delays
instead of sleeping.
"""
from __future__ import annotations

import gzip
import time
import types
import typing
import zlib
from unittest import mock

import zstandard
from tornado import testing, web

from sprockets.mixins import http
from sprockets.mixins.http import _attempt, _codings, _content
from sprockets.mixins.http.testing import FakeUpstream, RecordedRequest
from tests import support

BODY = b'{"answer": 42}'
GZIPPED = gzip.compress(BODY, mtime=0)
TRUNCATED = GZIPPED[:-6]
CORRUPT = b'\x1f\x8b this is not gzip'


def _reply(upstream: FakeUpstream, method: str, path: str, body: bytes,
           times: int = support.ALWAYS, status: int = 200) -> None:
    upstream.reply(method, path, status, body, times=times,
                   content_type='application/json',
                   headers={'Content-Encoding': 'gzip'})


@support.on_every_client('TestUndecodableBody')
class UndecodableBodyCases(support.ServerTestCase):
    __test__ = False

    def get_app(self) -> web.Application:
        self.upstream = upstream = FakeUpstream()
        for method in ('GET', 'POST'):
            _reply(upstream, method, '/corrupt', CORRUPT)
            # truncated twice, then whole
            _reply(upstream, method, '/truncated-then-whole', TRUNCATED,
                   times=2)
            _reply(upstream, method, '/truncated-then-whole', GZIPPED)
        _reply(upstream, 'GET', '/whole', GZIPPED)
        upstream.reply('GET', '/unavailable-then-corrupt', 503, times=1)
        _reply(upstream, 'GET', '/unavailable-then-corrupt', CORRUPT)
        support.always(upstream, '/zstd', 200,
                       zstandard.ZstdCompressor().compress(BODY),
                       content_type='application/json',
                       headers={'Content-Encoding': 'zstd'},
                       methods=['GET'])
        return web.Application(upstream.handlers())

    @property
    def log(self) -> typing.List[RecordedRequest]:
        return self.upstream.requests

    async def send_call(self, path: str, **kwargs: typing.Any
                    ) -> typing.Tuple[http.HTTPResponse,
                                      support.RecordingClient]:
        client = support.RecordingClient()
        response = await client.http_fetch(
            self.get_url(path), request_timeout=10, connect_timeout=5,
            **kwargs)
        return response, client

    def assert_failed_on_content(self, response: http.HTTPResponse,
                                 arrived: bytes
                                 ) -> _content.DecompressionError:
        """One attempt, failed on its body: no answer, the error kept with
        the response as it arrived."""
        self.assertEqual(
            (response.ok, response.code, len(response), response.history,
             response.raw, response.body, response.headers),
            (False, 599, 1, [], None, None, None))
        [error] = response.exceptions
        assert isinstance(error, _content.DecompressionError)
        self.assertIs(response.records[0].exception, error)
        self.assertIsNone(response.records[0].status)
        self.assertIsNone(response.records[0].response)
        self.assertEqual((error.response.code, error.response.body),
                         (200, arrived))
        return error

    @testing.gen_test(timeout=20)
    async def test_corrupt_gzip_is_a_failed_attempt(self) -> None:
        """A corrupt gzip body is no 200: ok False, the error recorded,
        not retried (the same body would come again)."""
        response, client = await self.send_call('/corrupt')
        error = self.assert_failed_on_content(response, CORRUPT)
        self.assertTrue(str(error).startswith('invalid gzip body: '))
        self.assertFalse(error.truncated)
        self.assertEqual(response.stop_reason,
                         http.StopReason.NOT_RETRYABLE)
        self.assertEqual((len(self.log), client.delays), (1, []))

    @testing.gen_test(timeout=20)
    async def test_truncated_gzip_is_retried_when_idempotent(self) -> None:
        """A truncated gzip body may have been cut on the way: a GET is
        sent again, as after a broken connection, and the whole body is
        the answer."""
        response, client = await self.send_call('/truncated-then-whole')
        self.assertEqual((response.ok, response.code, response.body),
                         (True, 200, {'answer': 42}))
        self.assertEqual(response.stop_reason, http.StopReason.SUCCESS)
        self.assertEqual((len(response), len(self.log), len(client.delays)),
                         (3, 3, 2))
        self.assertEqual(len(response.history), 1)
        self.assertEqual([str(error) for error in response.exceptions],
                         ['truncated gzip body'] * 2)
        self.assertTrue(all(
            isinstance(error, _content.DecompressionError)
            and error.truncated for error in response.exceptions))

    @testing.gen_test(timeout=20)
    async def test_truncated_gzip_post_is_not_resent(self) -> None:
        """A POST whose answer was truncated reached the server: it is not
        sent again."""
        response, client = await self.send_call('/truncated-then-whole',
                                            method='POST', body=b'x')
        error = self.assert_failed_on_content(response, TRUNCATED)
        self.assertTrue(error.truncated)
        self.assertEqual(response.stop_reason,
                         http.StopReason.UNSAFE_METHOD)
        self.assertEqual((len(self.log), client.delays), (1, []))

    @testing.gen_test(timeout=20)
    async def test_an_earlier_answer_stays_final(self) -> None:
        """After a 503, an attempt that fails on its body leaves the 503
        as the final answer, as a transport failure would."""
        response, client = await self.send_call(
            '/unavailable-then-corrupt',
            retry_policy=http.RetryPolicy(max_attempts=3))
        self.assertEqual((response.ok, response.code, len(response)),
                         (False, 503, 2))
        self.assertEqual([raw.code for raw in response.history], [503])
        [error] = response.exceptions
        self.assertIsInstance(error, _content.DecompressionError)
        self.assertEqual(response.stop_reason,
                         http.StopReason.NOT_RETRYABLE)
        self.assertEqual(len(client.delays), 1)

    @testing.gen_test(timeout=20)
    async def test_too_large_once_decompressed(self) -> None:
        """A body past MAX_DECOMPRESSED_SIZE once decompressed is a failed
        attempt, not retried."""
        with mock.patch.object(http.HTTPClientMixin,
                               'MAX_DECOMPRESSED_SIZE', len(BODY) - 1):
            response, client = await self.send_call('/whole')
        error = self.assert_failed_on_content(response, GZIPPED)
        self.assertEqual(
            str(error),
            f'the gzip body decompresses to more than {len(BODY) - 1} '
            'bytes')
        self.assertEqual(response.stop_reason,
                         http.StopReason.NOT_RETRYABLE)
        self.assertEqual((len(self.log), client.delays), (1, []))

    @testing.gen_test(timeout=20)
    async def test_missing_extra_names_it(self) -> None:
        """A coding whose extra is missing is a failed attempt whose error
        names the extra, not retried."""
        with mock.patch.object(_codings, 'zstandard', None):
            response, client = await self.send_call('/zstd')
        error = self.assert_failed_on_content(
            response, zstandard.ZstdCompressor().compress(BODY))
        self.assertIn('install sprockets.mixins.http[zstd]', str(error))
        self.assertEqual((len(self.log), client.delays), (1, []))


def test_content_failure_classification() -> None:
    """Truncated: a broken connection; anything else: fatal."""
    assert _attempt.content_failure(
        _content.DecompressionError('x', truncated=True)) is (
        http.Failure.CONNECTION)
    assert _attempt.content_failure(
        _content.DecompressionError('x')) is http.Failure.FATAL


# -- many small members -------------------------------------------------------

EMPTY_MEMBER = gzip.compress(b'', mtime=0)
EMPTY_FRAME = zstandard.ZstdCompressor().compress(b'')


class _CountingInflater:
    """A zlib decompressobj that counts the bytes it is given and the bytes
    it copies out of its input (unused_data, unconsumed_tail)."""

    def __init__(self, wbits: int, counted: typing.List[int]) -> None:
        self._inflater = zlib.decompressobj(wbits)
        self._counted = counted

    def decompress(self, data: typing.Any, max_length: int = 0) -> bytes:
        self._counted.append(len(data))
        return self._inflater.decompress(data, max_length)

    @property
    def eof(self) -> bool:
        return self._inflater.eof

    @property
    def unused_data(self) -> bytes:
        value = self._inflater.unused_data
        self._counted.append(len(value))
        return value

    @property
    def unconsumed_tail(self) -> bytes:
        value = self._inflater.unconsumed_tail
        self._counted.append(len(value))
        return value


def test_many_gzip_members_are_linear_in_bytes() -> None:
    """The bytes zlib is given and copies back, over 20,000 empty members,
    are a small multiple of the body (copying the rest of the body at
    each member makes them about 10,000 times it)."""
    counted: typing.List[int] = []
    counting = types.SimpleNamespace(
        decompressobj=lambda wbits: _CountingInflater(wbits, counted),
        MAX_WBITS=zlib.MAX_WBITS, error=zlib.error)
    data = EMPTY_MEMBER * 20_000
    with mock.patch.object(_codings, 'zlib', counting):
        assert _codings.decompress(data, 'gzip') == b''
    assert sum(counted) <= 8 * len(data), sum(counted) / len(data)


def test_many_gzip_members_still_decode_together() -> None:
    """Members of every size, side by side, still give their bodies in
    order, and trailing garbage after them is still refused."""
    parts = [bytes(range(256)) * size for size in (0, 1, 3, 100, 1000)]
    data = b''.join(gzip.compress(part, mtime=0) for part in parts * 50)
    assert _codings.decompress(data, 'gzip') == b''.join(parts * 50)
    try:
        _codings.decompress(data + b'junk', 'gzip')
    except _content.DecompressionError as error:
        assert str(error).startswith('invalid gzip body: ')
    else:  # pragma: no cover
        raise AssertionError('trailing junk was accepted')


def _best_time(data: bytes, coding: str, runs: int) -> float:
    best = float('inf')
    for _ in range(runs):
        started = time.perf_counter()
        _codings.decompress(data, coding)
        best = min(best, time.perf_counter() - started)
    return best


def _assert_linear(member: bytes, coding: str) -> None:
    """Decompressing 200,000 members takes no more than a few times 20
    times as long as 10,000 members (a quadratic decompression takes
    about 200 times as long)."""
    small = _best_time(member * 10_000, coding, 5)
    large = _best_time(member * 200_000, coding, 2)
    assert large < 4 * 20 * small, (large, small)


def test_many_gzip_members_time_is_linear() -> None:
    _assert_linear(EMPTY_MEMBER, 'gzip')


def test_many_zstd_frames_time_is_linear() -> None:
    _assert_linear(EMPTY_FRAME, 'zstd')


# -- body_producer ------------------------------------------------------------


@support.on_every_client('TestBodyProducer')
class BodyProducerCases(support.ServerTestCase):
    __test__ = False

    def get_app(self) -> web.Application:
        self.upstream = FakeUpstream()
        support.always(self.upstream, '/echo', 200, b'ok')
        return web.Application(self.upstream.handlers())

    @testing.gen_test(timeout=20)
    async def test_body_producer_is_refused_before_sending(self) -> None:
        """A body_producer raises ValueError naming it; nothing is sent,
        the producer is never called, nothing is recorded."""
        called: typing.List[object] = []

        async def producer(write: typing.Callable[[bytes], typing.Any]
                           ) -> None:
            called.append(write)
            await write(b'produced body')

        client = support.RecordingClient()
        for method in ('POST', 'PUT'):
            with self.subTest(method=method), self.assertRaisesRegex(
                    ValueError, 'body_producer'):
                await client.http_fetch(self.get_url('/echo'),
                                        method=method,
                                        body_producer=producer,
                                        request_timeout=10)
        async with http.Client(self.get_url('/')) as session:
            with self.assertRaisesRegex(ValueError, 'body_producer'):
                await session.post('echo', body_producer=producer)
        self.assertEqual((self.upstream.requests, called, client.delays),
                         ([], [], []))

    @testing.gen_test(timeout=20)
    async def test_body_producer_none_is_no_producer(self) -> None:
        """body_producer=None is tornado's default: the call goes."""
        response = await support.RecordingClient().http_fetch(
            self.get_url('/echo'), method='POST', body=b'sent',
            body_producer=None, request_timeout=10)
        self.assertEqual((response.code, response.body), (200, b'ok'))
        self.assertEqual(self.upstream.requests[-1].body, b'sent')
