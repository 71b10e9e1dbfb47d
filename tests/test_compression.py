"""Compressed responses: what a request advertises in Accept-Encoding, and
how gzip, br and zstd bodies are decompressed before they are decoded.

Pure tables for :func:`_content.decompress`, the Accept-Encoding value and
:class:`HTTPResponse` over hand-built tornado responses; the rest through a
real server on 127.0.0.1 with both AsyncHTTPClient implementations.
"""
from __future__ import annotations

import gzip
import io
import json
import logging
import re
import typing
import zlib
from unittest import mock

import brotli
import msgpack
import pytest
import zstandard
from tornado import httpclient, httputil, testing, web

from sprockets.mixins import http
from sprockets.mixins.http import _attempt, _codings, _content, _request
from sprockets.mixins.http._cli import render as cli_render
from sprockets.mixins.http.testing import FakeUpstream, RecordedRequest
from tests import support

LOGGER_NAME = 'sprockets.mixins.http'

DOCUMENT = {'greeting': 'héllo', 'numbers': [1, 2, 3], 'nested': {'a': None}}
JSON_BYTES = json.dumps(DOCUMENT).encode('utf-8')
MSGPACK_BYTES = msgpack.packb(DOCUMENT, use_bin_type=True)
TEXT = ('line of text\n' * 200).encode('ascii')


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def _zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def _zstd_unsized(data: bytes) -> bytes:
    """A frame without its content size, as a streaming encoder writes."""
    return zstandard.ZstdCompressor(write_content_size=False).compress(data)


COMPRESS: typing.Dict[str, typing.Callable[[bytes], bytes]] = {
    'gzip': _gzip, 'br': brotli.compress, 'zstd': _zstd}


# -- pure: decompress() -------------------------------------------------------

@pytest.mark.parametrize('content_encoding, data, expected', [
    ('gzip', _gzip(JSON_BYTES), JSON_BYTES),
    ('x-gzip', _gzip(JSON_BYTES), JSON_BYTES),
    ('GZip', _gzip(JSON_BYTES), JSON_BYTES),
    ('gzip', _gzip(b'first ') + _gzip(b'second'), b'first second'),
    ('deflate', zlib.compress(JSON_BYTES), JSON_BYTES),
    ('deflate', _raw_deflate(JSON_BYTES), JSON_BYTES),
    ('br', brotli.compress(MSGPACK_BYTES), MSGPACK_BYTES),
    ('BR', brotli.compress(TEXT), TEXT),
    ('zstd', _zstd(MSGPACK_BYTES), MSGPACK_BYTES),
    ('zstd', _zstd_unsized(TEXT), TEXT),
    ('zstd', _zstd(b'first ') + _zstd_unsized(b'second'), b'first second'),
    ('gzip, br', brotli.compress(_gzip(TEXT)), TEXT),
    ('zstd,gzip', _gzip(_zstd(TEXT)), TEXT),
    ('identity', JSON_BYTES, JSON_BYTES),
    ('gzip, identity', _gzip(JSON_BYTES), JSON_BYTES),
    ('', JSON_BYTES, JSON_BYTES),
    (None, JSON_BYTES, JSON_BYTES),
    ('gzip', b'', b''),
    ('br', b'', b''),
])
def test_decompress(content_encoding: typing.Optional[str], data: bytes,
                    expected: bytes) -> None:
    """Each coding is undone, stacked codings last first, names in any
    case; identity, no header and an empty body leave the bytes alone."""
    assert _content.decompress(data, content_encoding) == expected


@pytest.mark.parametrize('content_encoding, data, message', [
    ('gzip', _gzip(TEXT)[:-6], 'truncated gzip body'),
    ('gzip', b'not gzip at all', 'invalid gzip body: '),
    ('gzip', _gzip(TEXT) + b'junk', 'invalid gzip body: '),
    ('deflate', zlib.compress(TEXT)[:-6], 'truncated deflate body'),
    ('deflate', zlib.compress(TEXT) + b'junk',
     '4 bytes of trailing data after the deflate body'),
    ('br', brotli.compress(TEXT)[:-2], 'truncated br body'),
    ('br', b'not brotli at all', 'invalid br body: '),
    ('zstd', _zstd(TEXT)[:-3], 'truncated zstd body'),
    ('zstd', b'not zstd at all', 'invalid zstd body: '),
    ('zstd', _zstd(TEXT) + b'junk', 'invalid zstd body: '),
    ('compress', b'\x1f\x9d\x90', "unsupported Content-Encoding 'compress'"),
    ('gzip, compress', b'\x1f\x9d\x90',
     "unsupported Content-Encoding 'compress'"),
])
def test_decompress_errors(content_encoding: str, data: bytes,
                           message: str) -> None:
    """A corrupt, truncated or padded body, or an unknown coding, raises
    DecompressionError, a ValueError, saying which."""
    with pytest.raises(_content.DecompressionError) as caught:
        _content.decompress(data, content_encoding)
    assert isinstance(caught.value, ValueError)
    assert str(caught.value).startswith(message)


ZEROS = bytes(1024 * 1024)


@pytest.mark.parametrize('content_encoding, data', [
    ('gzip', _gzip(ZEROS)),
    ('deflate', zlib.compress(ZEROS)),
    ('br', brotli.compress(ZEROS)),
    ('zstd', _zstd(ZEROS)),
    ('zstd', _zstd_unsized(ZEROS)),
])
@pytest.mark.parametrize('limit, fits', [
    (len(ZEROS), True),
    (len(ZEROS) - 1, False),
    (4096, False),
])
def test_decompress_limit(content_encoding: str, data: bytes, limit: int,
                          fits: bool) -> None:
    """A body that decompresses to more than the limit raises instead of
    filling memory; one that fits exactly is returned."""
    if fits:
        assert _content.decompress(data, content_encoding, limit) == ZEROS
    else:
        with pytest.raises(_content.DecompressionError,
                           match=f'decompresses to more than {limit} '):
            _content.decompress(data, content_encoding, limit)


def test_decompress_limit_default() -> None:
    """The default limit is 100 MiB, tornado's default max_body_size."""
    bomb = _zstd(bytes(_content.MAX_DECOMPRESSED_SIZE + 1))
    assert len(bomb) < 10_000
    with pytest.raises(_content.DecompressionError,
                       match='decompresses to more than 104857600 bytes'):
        _content.decompress(bomb, 'zstd')


@pytest.mark.parametrize('module, content_encoding, extra', [
    ('brotli', 'br', 'sprockets.mixins.http[brotli]'),
    ('zstandard', 'zstd', 'sprockets.mixins.http[zstd]'),
])
def test_decompress_without_extra(monkeypatch: pytest.MonkeyPatch,
                                  module: str, content_encoding: str,
                                  extra: str) -> None:
    """Without its extra, a br or zstd body raises an error that names
    the extra to install."""
    monkeypatch.setattr(_codings, module, None)
    data = COMPRESS[content_encoding](TEXT)
    with pytest.raises(_content.DecompressionError,
                       match=re.escape(f'install {extra}')):
        _content.decompress(data, content_encoding)


# -- pure: Accept-Encoding ----------------------------------------------------

@pytest.mark.parametrize('has_brotli, has_zstandard, expected', [
    (True, True, 'gzip, br, zstd'),
    (False, True, 'gzip, zstd'),
    (True, False, 'gzip, br'),
    (False, False, 'gzip'),
])
def test_accept_encoding(monkeypatch: pytest.MonkeyPatch, has_brotli: bool,
                         has_zstandard: bool, expected: str) -> None:
    """gzip is always advertised, br and zstd only when their module
    imports."""
    if not has_brotli:
        monkeypatch.setattr(_codings, 'brotli', None)
    if not has_zstandard:
        monkeypatch.setattr(_codings, 'zstandard', None)
    assert _codings.accept_encoding() == expected


def test_accept_encoding_computed_at_import() -> None:
    """The default header is the value computed at import: with the test
    extra, all three codings."""
    assert _content.ACCEPT_ENCODING == 'gzip, br, zstd'
    assert _request.DEFAULT_ACCEPT_ENCODING == _content.ACCEPT_ENCODING


@pytest.mark.parametrize('options, expected', [
    ({}, True),
    ({'decompress_response': None}, True),
    ({'request_timeout': 5}, True),
    ({'decompress_response': False}, False),
    ({'decompress_response': True}, False),
    ({'use_gzip': False}, False),
    ({'use_gzip': True}, False),
    ({'streaming_callback': print}, True),
    ({'streaming_callback': print, 'decompress_response': True}, False),
])
def test_package_decompresses(options: typing.Dict[str, typing.Any],
                              expected: bool) -> None:
    """The package decompresses unless the caller names tornado's
    decompress_response (or use_gzip), a streamed body included."""
    assert _request.package_decompresses(options) is expected


@pytest.mark.parametrize('request_headers, expected', [
    (None, 'gzip, br, zstd'),
    ({'Accept-Encoding': 'identity'}, 'identity'),
    ({'accept-encoding': 'gzip'}, 'gzip'),
])
def test_default_header(request_headers: typing.Optional[
        typing.Dict[str, str]], expected: str) -> None:
    """The default headers add Accept-Encoding; the caller's own, in any
    case, wins and is not changed."""
    given = dict(request_headers) if request_headers else None
    headers = http.HTTPClientMixin()._http_req_apply_default_headers(
        given, http.CONTENT_TYPE_MSGPACK, None)
    assert headers.get_list('Accept-Encoding') == [expected]
    assert given == request_headers


# -- pure: HTTPResponse over hand-built tornado responses ---------------------

def _tornado_response(body: bytes, content_encoding: typing.Optional[str],
                      decompress_response: typing.Optional[bool],
                      content_type: str = 'application/json',
                      code: int = 200) -> httpclient.HTTPResponse:
    headers = httputil.HTTPHeaders({'Content-Type': content_type})
    if content_encoding is not None:
        headers['Content-Encoding'] = content_encoding
    request = httpclient.HTTPRequest(
        'http://127.0.0.1/', decompress_response=decompress_response)
    return httpclient.HTTPResponse(request, code, headers=headers,
                                   buffer=io.BytesIO(body))


@pytest.mark.parametrize('content_encoding, body, expected', [
    ('gzip', _gzip(JSON_BYTES), JSON_BYTES),
    ('br', brotli.compress(JSON_BYTES), JSON_BYTES),
    ('zstd', _zstd(JSON_BYTES), JSON_BYTES),
    ('gzip, br', brotli.compress(_gzip(JSON_BYTES)), JSON_BYTES),
])
def test_inflate_replaces_the_body(content_encoding: str, body: bytes,
                                   expected: bytes) -> None:
    """inflate() undoes the coding in place, as tornado's decompression
    does: raw.body is decompressed, the header moves to
    X-Consumed-Content-Encoding."""
    raw = _tornado_response(body, content_encoding, False)
    assert _attempt.inflate(raw) is None
    assert raw.body == expected
    assert 'Content-Encoding' not in raw.headers
    assert raw.headers['X-Consumed-Content-Encoding'] == content_encoding


@pytest.mark.parametrize('content_encoding', [None, 'identity'])
def test_inflate_leaves_plain_bodies(
        content_encoding: typing.Optional[str]) -> None:
    """A body with no coding (or identity) is left as it is."""
    raw = _tornado_response(JSON_BYTES, content_encoding, False)
    assert _attempt.inflate(raw) is None
    assert raw.body == JSON_BYTES
    assert 'X-Consumed-Content-Encoding' not in raw.headers


def test_inflate_reports_a_corrupt_body() -> None:
    """A body that does not decompress is left as it arrived, with its
    header, and the error is returned."""
    raw = _tornado_response(b'not brotli', 'br', False)
    error = _attempt.inflate(raw)
    assert isinstance(error, _content.DecompressionError)
    assert raw.body == b'not brotli'
    assert raw.headers['Content-Encoding'] == 'br'


def test_response_reports_the_content_error() -> None:
    """HTTPResponse gives the raw bytes and the decompression error when
    the engine could not undo the coding."""
    response = http.HTTPResponse()
    raw = _tornado_response(b'not gzip', 'gzip', False)
    record = response.start_attempt(1, 0.0)
    response.record_response(record, raw, _attempt.inflate(raw))
    assert response.body == b'not gzip'
    assert isinstance(response.body_error, _content.DecompressionError)


def test_response_error_body_simplified_after_decompression() -> None:
    """A compressed error body is decompressed, decoded, then simplified
    to its message."""
    response = http.HTTPResponse()
    raw = _tornado_response(_gzip(b'{"message": "gone"}'), 'gzip', False,
                            code=404)
    assert _attempt.inflate(raw) is None
    response.append_response(raw)
    assert response.body == 'gone'


def test_cli_renders_decompressed_text() -> None:
    """The command line shows a compressed text body decompressed."""
    response = http.HTTPResponse()
    raw = _tornado_response(brotli.compress(TEXT), 'br', False,
                            'text/plain; charset=utf-8')
    _attempt.inflate(raw)
    response.append_response(raw)
    assert cli_render.render_body(response).text == TEXT.decode('ascii')


# -- a real server ------------------------------------------------------------


#: path: (Content-Encoding, Content-Type, data before compression, status,
#: what it is), each answered to a GET
ENCODED: typing.Dict[str, typing.Tuple[str, str, bytes, int, str]] = {
    '/gzip-json': ('gzip', 'application/json', JSON_BYTES, 200,
                   'gzip-compressed JSON.'),
    '/br-json': ('br', 'application/json', JSON_BYTES, 200,
                 'br-compressed JSON.'),
    '/zstd-json': ('zstd', 'application/json', JSON_BYTES, 200,
                   'zstd-compressed JSON.'),
    '/gzip-msgpack': ('gzip', 'application/msgpack', MSGPACK_BYTES, 200,
                      'gzip-compressed msgpack.'),
    '/br-msgpack': ('br', 'application/msgpack', MSGPACK_BYTES, 200,
                    'br-compressed msgpack.'),
    '/zstd-msgpack': ('zstd', 'application/msgpack', MSGPACK_BYTES, 200,
                      'zstd-compressed msgpack.'),
    '/gzip-not-found': ('gzip', 'application/json',
                        b'{"message": "no such user"}', 404,
                        'A 404 with a gzip-compressed JSON error.'),
}


def scripted_upstream() -> FakeUpstream:
    """The upstream of the cases, but for /negotiate."""
    upstream = FakeUpstream()
    for path, (coding, content_type, data, status, _) in ENCODED.items():
        support.always(upstream, path, status, COMPRESS[coding](data),
                       content_type=content_type,
                       headers={'Content-Encoding': coding}, methods=['GET'])
    # says br, sends bytes that are not brotli
    support.always(upstream, '/corrupt-br', 200, b'not brotli at all',
                   content_type='application/json',
                   headers={'Content-Encoding': 'br'}, methods=['GET'])
    # the request's Accept-Encoding is read from upstream.requests
    support.always(upstream, '/accept-encoding', 204, methods=['GET'])
    support.always(upstream, '/redirect', 302,
                   headers={'Location': '/gzip-json'}, methods=['GET'])
    return upstream


class NegotiatingHandler(web.RequestHandler):
    """Compresses JSON with the first coding of the request's
    Accept-Encoding that it knows, or sends it as it is (bespoke:
    FakeUpstream's answer does not depend on the request)."""

    def get(self) -> None:
        self.set_header('Content-Type', 'application/json')
        offered = self.request.headers.get('Accept-Encoding', '')
        for coding in (value.strip() for value in offered.split(',')):
            if coding in COMPRESS:
                self.set_header('Content-Encoding', coding)
                self.finish(COMPRESS[coding](JSON_BYTES))
                return
        self.finish(JSON_BYTES)


ENCODED_PATHS = [
    ('/gzip-json', 'gzip', JSON_BYTES),
    ('/br-json', 'br', JSON_BYTES),
    ('/zstd-json', 'zstd', JSON_BYTES),
    ('/gzip-msgpack', 'gzip', MSGPACK_BYTES),
    ('/br-msgpack', 'br', MSGPACK_BYTES),
    ('/zstd-msgpack', 'zstd', MSGPACK_BYTES),
]


@support.on_every_client('TestCompression')
class CompressionCases(support.ServerTestCase):
    __test__ = False

    def get_app(self) -> web.Application:
        self.upstream = scripted_upstream()
        return web.Application([
            ('/negotiate', NegotiatingHandler),
            *self.upstream.handlers(),
        ])

    @property
    def log(self) -> typing.List[RecordedRequest]:
        """Every request the upstream received, in order."""
        return self.upstream.requests

    async def call(self, path: str, **kwargs: typing.Any
                    ) -> http.HTTPResponse:
        return await support.RecordingClient().http_fetch(
            self.get_url(path), **kwargs)

    def sent_accept_encoding(self) -> typing.Optional[str]:
        """The Accept-Encoding of the last request the server got."""
        value: typing.Optional[str] = self.log[-1].headers.get(
            'Accept-Encoding')
        return value

    @testing.gen_test
    async def test_advertises_what_the_package_decodes(self) -> None:
        """A request says Accept-Encoding: gzip, br, zstd, on both
        clients."""
        response = await self.call('/accept-encoding')
        self.assertEqual(response.code, 204)
        self.assertEqual(self.log[-1].headers.get_list('Accept-Encoding'),
                         ['gzip, br, zstd'])

    @testing.gen_test
    async def test_compressed_bodies_are_decoded(self) -> None:
        """gzip, br and zstd bodies are decompressed, then decoded as JSON
        or msgpack; raw.body is decompressed too (as tornado's own gzip
        handling leaves it) and the coding moves to
        X-Consumed-Content-Encoding."""
        for path, coding, serialized in ENCODED_PATHS:
            with self.subTest(path=path):
                response = await self.call(path)
                self.assertEqual(response.body, DOCUMENT)
                self.assertIsNone(response.body_error)
                self.assertNotIn('Content-Encoding', response.headers)
                self.assertEqual(
                    response.headers['X-Consumed-Content-Encoding'], coding)
                raw = response.raw
                assert raw is not None
                self.assertEqual(raw.body, serialized)

    @testing.gen_test
    async def test_server_choice_is_decoded(self) -> None:
        """A server that picks from our Accept-Encoding is understood."""
        response = await self.call('/negotiate')
        self.assertEqual(
            (response.headers.get('X-Consumed-Content-Encoding'),
             response.body), ('gzip', DOCUMENT))

    @testing.gen_test
    async def test_callers_accept_encoding_wins(self) -> None:
        """The caller's Accept-Encoding is sent as given, and what the
        server answers to it is still decompressed."""
        for value, coding in (('identity', None), ('zstd', 'zstd'),
                              ('br', 'br')):
            with self.subTest(value=value):
                response = await self.call(
                    '/negotiate', request_headers={'accept-encoding': value})
                self.assertEqual(
                    (response.headers.get('X-Consumed-Content-Encoding'),
                     response.body), (coding, DOCUMENT))
        await self.call('/accept-encoding',
                         request_headers={'Accept-Encoding': 'identity'})
        self.assertEqual(self.log[-1].headers.get_list('Accept-Encoding'),
                         ['identity'])

    @testing.gen_test
    async def test_decompress_response_false(self) -> None:
        """decompress_response=False sends no Accept-Encoding of ours and
        leaves the body compressed, so JSON does not decode."""
        await self.call('/accept-encoding', decompress_response=False)
        self.assertIsNone(self.sent_accept_encoding())
        response = await self.call('/gzip-json', decompress_response=False)
        compressed = _gzip(JSON_BYTES)
        assert response.raw is not None
        self.assertEqual((response.raw.body, response.body),
                         (compressed, compressed))
        self.assertIsInstance(response.body_error, ValueError)

    @testing.gen_test
    async def test_decompress_response_false_keeps_callers_header(
            self) -> None:
        """With decompress_response=False the caller's own Accept-Encoding
        is sent, and the answer is still left compressed (a proxy passes
        it on)."""
        response = await self.call(
            '/br-json', decompress_response=False,
            request_headers={'Accept-Encoding': 'br'})
        self.assertEqual(self.sent_accept_encoding(), 'br')
        assert response.raw is not None
        self.assertEqual(response.raw.body, brotli.compress(JSON_BYTES))

    @testing.gen_test
    async def test_decompress_response_true_is_tornados(self) -> None:
        """decompress_response=True lets tornado decompress, as 2.x did:
        tornado's own Accept-Encoding, a decoded gzip body in raw."""
        response = await self.call('/gzip-json', decompress_response=True)
        sent = self.sent_accept_encoding()
        assert sent is not None
        self.assertTrue(sent.startswith('gzip'), sent)
        self.assertNotIn('br', sent)
        self.assertEqual(response.body, DOCUMENT)
        raw = response.raw
        assert raw is not None
        self.assertEqual(raw.body, JSON_BYTES)

    @testing.gen_test
    async def test_streaming_gets_the_packages_decompression(self) -> None:
        """A streaming_callback receives the body decompressed by the
        package, in every coding it advertises (tornado decoded gzip
        only), and the header says what was undone."""
        for path, coding in (('/gzip-json', 'gzip'), ('/br-json', 'br'),
                             ('/zstd-json', 'zstd')):
            with self.subTest(coding=coding):
                chunks: typing.List[bytes] = []
                response = await self.call(path,
                                           streaming_callback=chunks.append)
                self.assertEqual(response.code, 200)
                self.assertEqual(self.sent_accept_encoding(),
                                 _codings.ACCEPT_ENCODING)
                self.assertEqual(b''.join(chunks), JSON_BYTES)
                self.assertEqual(
                    response.headers.get('X-Consumed-Content-Encoding'),
                    coding)
                self.assertEqual(response.records[0].streamed,
                                 len(JSON_BYTES))

    @testing.gen_test
    async def test_streaming_with_tornados_decompression(self) -> None:
        """decompress_response=True with a streaming_callback: tornado
        decompresses, as in 2.x."""
        chunks: typing.List[bytes] = []
        response = await self.call('/gzip-json', decompress_response=True,
                                   streaming_callback=chunks.append)
        self.assertEqual(response.code, 200)
        self.assertNotIn('br', self.sent_accept_encoding() or '')
        self.assertEqual(b''.join(chunks), JSON_BYTES)

    @testing.gen_test
    async def test_a_corrupt_streamed_body(self) -> None:
        """A corrupt streamed br body fails its attempt with the
        DecompressionError, sent once, as without streaming."""
        chunks: typing.List[bytes] = []
        response = await self.call('/corrupt-br',
                                   streaming_callback=chunks.append)
        self.assertFalse(response.ok)
        self.assertEqual((len(self.log), chunks), (1, []))
        error = response.exceptions[0]
        self.assertIsInstance(error, _content.DecompressionError)
        self.assertTrue(str(error).startswith('invalid br body: '))
        self.assertEqual(response.stop_reason,
                         http.StopReason.NOT_RETRYABLE)

    @testing.gen_test
    async def test_corrupt_body(self) -> None:
        """A corrupt br body is a failed attempt, not a 200: ok is False,
        the DecompressionError is in exceptions (with the response as it
        arrived), logged once at DEBUG; never raised and not retried
        (the same body would come again)."""
        with self.assertLogs(LOGGER_NAME, logging.DEBUG) as logs:
            response = await self.call('/corrupt-br')
        error = self.failed_on_content(response, b'not brotli at all')
        self.assertEqual([line for line in logs.output
                          if 'decompress' in line], [
            f'DEBUG:{LOGGER_NAME}:Could not decompress the 200 response '
            f'body (Content-Encoding br): {error}'])
        self.assertTrue(str(error).startswith('invalid br body: '))

    def failed_on_content(self, response: http.HTTPResponse,
                          arrived: bytes) -> _content.DecompressionError:
        """Check that `response` is one attempt that failed on a body it
        could not decompress, sent once, and return its error."""
        self.assertEqual(
            (response.ok, response.code, len(response), response.history,
             response.raw, response.body, response.stop_reason),
            (False, 599, 1, [], None, None, http.StopReason.NOT_RETRYABLE))
        self.assertEqual(len(self.log), 1)
        [error] = response.exceptions
        assert isinstance(error, _content.DecompressionError)
        self.assertIsInstance(error, ValueError)
        self.assertEqual(error.response.code, 200)
        self.assertEqual(error.response.body, arrived)
        self.assertIsNone(response.records[0].status)
        return error

    @testing.gen_test
    async def test_oversized_body(self) -> None:
        """A body that decompresses past MAX_DECOMPRESSED_SIZE is a failed
        attempt, its error saying so."""
        with mock.patch.object(http.HTTPClientMixin, 'MAX_DECOMPRESSED_SIZE',
                               len(JSON_BYTES) - 1):
            response = await self.call('/zstd-json')
        error = self.failed_on_content(response, _zstd(JSON_BYTES))
        self.assertEqual(
            str(error),
            f'the zstd body decompresses to more than {len(JSON_BYTES) - 1}'
            ' bytes')

    @testing.gen_test
    async def test_without_brotli(self) -> None:
        """Without the brotli module, a br body is a failed attempt whose
        error names the extra to install."""
        with mock.patch.object(_codings, 'brotli', None):
            response = await self.call('/br-json')
        error = self.failed_on_content(response, brotli.compress(JSON_BYTES))
        self.assertIn('install sprockets.mixins.http[brotli]', str(error))

    @testing.gen_test
    async def test_error_body(self) -> None:
        """A compressed error body is decompressed and simplified to its
        message."""
        response = await self.call('/gzip-not-found')
        self.assertEqual((response.code, response.body),
                         (404, 'no such user'))

    @testing.gen_test
    async def test_redirect(self) -> None:
        """The body at the end of a redirect is decompressed, and every hop
        advertised the same codings."""
        response = await self.call('/redirect', follow_redirects=True)
        self.assertEqual((response.code, response.body), (200, DOCUMENT))
        self.assertEqual(self.sent_accept_encoding(), 'gzip, br, zstd')

    @testing.gen_test
    async def test_client(self) -> None:
        """Client decompresses too, and honours decompress_response=False
        as a fetch default."""
        async with http.Client(self.get_url('/')) as client:
            response = await client.get('br-msgpack')
        self.assertEqual(response.body, DOCUMENT)
        async with http.Client(self.get_url('/'),
                               decompress_response=False) as client:
            response = await client.get('zstd-msgpack')
        self.assertIsNone(self.sent_accept_encoding())
        assert response.raw is not None
        self.assertEqual(response.raw.body, _zstd(MSGPACK_BYTES))
