"""Request bodies as the server receives them, and response bodies as the
caller reads them, through a real server on both clients."""
from __future__ import annotations

import datetime
import decimal
import json
import logging
import typing
import uuid
from unittest import mock

import msgpack
from ietfparse import errors as ietf_errors
from ietfparse import headers as ietf_headers
from tornado import httputil, testing, web

from sprockets.mixins import http
from sprockets.mixins.http import _content
from sprockets.mixins.http.testing import FakeUpstream
from sprockets.mixins.mediatype import transcoders
from tests import support

Log = typing.List[httputil.HTTPServerRequest]
LOGGER_NAME = 'sprockets.mixins.http'

# -- request side: handlers that record what arrived -------------------------
#
# bespoke: the tests read what tornado parsed (form fields, files, query
# arguments) and /echo sends the request's own body back, which FakeUpstream
# does not do


class RecordingHandler(web.RequestHandler):
    """Records the request (tornado parses form bodies into arguments and
    files) and answers 204 to any method."""

    def initialize(self, log: Log) -> None:
        self.log = log

    def prepare(self) -> None:
        self.log.append(self.request)
        self.set_status(204)
        self.finish()


class EchoBodyHandler(RecordingHandler):
    """Records the request and sends its body back with its
    Content-Type."""

    def prepare(self) -> None:
        self.log.append(self.request)
        self.set_header('Content-Type', self.request.headers['Content-Type'])
        self.finish(self.request.body)


# -- response side: one scripted reply per body ------------------------------

#: path: (Content-Type, body, what it is), each answered 200 to a GET
BODIES: typing.Dict[str, typing.Tuple[str, bytes, str]] = {
    '/invalid-json': ('application/json', b'{"unterminated": ',
                      'Truncated JSON.'),
    '/garbage-msgpack': ('application/msgpack', b'\xc1\xc1\xc1',
                         'Bytes msgpack never uses.'),
    '/latin-1': ('application/json; charset=latin-1',
                 '{"city": "Malmö", "drink": "café"}'.encode('latin-1'),
                 'JSON in latin-1, declared.'),
    '/wrong-charset': ('application/json; charset=utf-8',
                       '{"city": "Malmö"}'.encode('latin-1'),
                       'JSON in latin-1, declared as UTF-8.'),
    '/unknown-charset': ('application/json; charset=no-such-charset',
                         b'{"a": 1}',
                         'JSON in a charset Python does not know.'),
    '/problem': ('application/problem+json', b'{"title": "Out of stock"}',
                 'JSON with a +json suffix.'),
    '/octet-stream': ('application/octet-stream', b'\x00\x01binary',
                      'A content type the package does not decode.'),
    '/empty-json': ('application/json', b'',
                    'An empty body declared as JSON.'),
}

MALFORMED_LINK = 'no angle brackets; rel=next'

#: path: (the response's header fields, what they are), each answered 200
#: without a body to a GET
HEADERS: typing.Dict[str, typing.Tuple[typing.List[typing.Tuple[str, str]],
                                       str]] = {
    '/cookies': ([('Set-Cookie', 'first=1; Path=/'),
                  ('Set-Cookie', 'second=2; HttpOnly')],
                 'Two cookies in two Set-Cookie fields.'),
    '/malformed-link': ([('Link', MALFORMED_LINK)],
                        'A Link header that does not parse.'),
    '/links': ([('Link', '<https://api.example/items?page=3>; rel="next"'),
                ('Link', '<https://api.example/items?page=1>; '
                         'rel=prev; title="previous page"')],
               'A Link header with two links in two fields.'),
}


class BinaryMsgpackHandler(web.RequestHandler):
    """msgpack with a binary value that is not UTF-8.  Bespoke: a test
    counts the calls of _content.deserialize, which FakeUpstream makes too,
    to record each request."""

    def get(self) -> None:
        self.set_header('Content-Type', 'application/msgpack')
        self.finish(msgpack.packb({'name': 'blob', 'data': b'\x00\xff\xfe'},
                                  use_bin_type=True))


def response_side() -> FakeUpstream:
    """The upstream that answers with :data:`BODIES` and
    :data:`HEADERS`."""
    upstream = FakeUpstream()
    for path, (content_type, body, _) in BODIES.items():
        support.always(upstream, path, 200, body,
                       content_type=content_type, methods=['GET'])
    for path, (headers, _) in HEADERS.items():
        support.always(upstream, path, 200, headers=headers,
                       methods=['GET'])
    return upstream


class Widget:
    """A type no codec knows."""


_TRANSCODER = transcoders.JSONTranscoder()
AN_UUID = uuid.UUID('b4e2d3a9-35a1-4fbc-9d3b-5b0b3f7d0c11')
A_DATETIME = datetime.datetime(2024, 2, 29, 13, 45, 30, 250000,
                               tzinfo=datetime.timezone.utc)
A_DATE = datetime.date(2024, 2, 29)
EXTENDED = {'id': AN_UUID, 'at': A_DATETIME, 'on': A_DATE,
            'amount': decimal.Decimal('10.50'), 'blob': b'\x00\xff\xfe'}


@support.on_every_client('TestBodies')
class BodyCases(support.ServerTestCase):
    """Serialization on the way out, decoding on the way back."""

    __test__ = False  # run through on_every_client

    @property
    def get_with_body(self) -> bool:
        """Whether the client sends a GET with a body (curl refuses)."""
        return self.implementation != support.CURL

    def get_app(self) -> web.Application:
        self.log: Log = []
        self.upstream = response_side()
        return web.Application([
            ('/record', RecordingHandler, {'log': self.log}),
            ('/echo', EchoBodyHandler, {'log': self.log}),
            ('/binary-msgpack', BinaryMsgpackHandler),
            *self.upstream.handlers(),
        ])

    async def send(self, body: typing.Any, content_type: typing.Any,
                   path: str = '/record', **kwargs: typing.Any
                   ) -> http.HTTPResponse:
        return await support.RecordingClient().http_fetch(
            self.get_url(path), method='POST', body=body,
            content_type=content_type, **kwargs)

    def received(self) -> httputil.HTTPServerRequest:
        self.assertEqual(len(self.log), 1)
        return self.log[0]

    # request serialization --------------------------------------------------

    @testing.gen_test
    async def test_json_bodies(self) -> None:
        """dict, list and tuple bodies are sent as JSON for
        application/json."""
        for body, expected in (({'a': [1, 'two']}, {'a': [1, 'two']}),
                               ([1, {'b': None}], [1, {'b': None}]),
                               ((1, 2), [1, 2])):
            with self.subTest(body=body):
                self.log.clear()
                await self.send(body, http.CONTENT_TYPE_JSON)
                request = self.received()
                self.assertEqual(request.headers['Content-Type'],
                                 'application/json')
                self.assertEqual(json.loads(request.body), expected)

    @testing.gen_test
    async def test_json_suffix(self) -> None:
        """A +json content type is serialized as JSON and sent as given."""
        await self.send({'a': 1}, 'application/vnd.example.order+json')
        request = self.received()
        self.assertEqual(request.headers['Content-Type'],
                         'application/vnd.example.order+json')
        self.assertEqual(json.loads(request.body), {'a': 1})

    @testing.gen_test
    async def test_msgpack_types(self) -> None:
        """The default content type, application/x-msgpack and +msgpack are
        all serialized as msgpack."""
        for content_type in (None, 'application/x-msgpack',
                             'application/vnd.example+msgpack'):
            with self.subTest(content_type=content_type):
                self.log.clear()
                kwargs: typing.Dict[str, typing.Any] = {}
                if content_type is not None:
                    kwargs['content_type'] = content_type
                await support.RecordingClient().http_fetch(
                    self.get_url('/record'), method='PUT',
                    body={'a': [1, 'two']}, **kwargs)
                request = self.received()
                self.assertEqual(request.headers['Content-Type'],
                                 content_type or 'application/msgpack')
                self.assertEqual(msgpack.unpackb(request.body, raw=False),
                                 {'a': [1, 'two']})

    @testing.gen_test
    async def test_empty_containers_are_sent(self) -> None:
        """Empty {} and [] are serialized, not dropped."""
        cases: typing.List[typing.Tuple[typing.Any, str, bytes]] = [
            ({}, 'application/json', b'{}'),
            ([], 'application/json', b'[]'),
            ({}, 'application/msgpack', b'\x80'),
            ([], 'application/msgpack', b'\x90')]
        for body, content_type, expected in cases:
            with self.subTest(body=body, content_type=content_type):
                self.log.clear()
                await self.send(body, content_type)
                request = self.received()
                self.assertEqual(request.body, expected)
                self.assertEqual(request.headers['Content-Type'],
                                 content_type)

    @testing.gen_test
    async def test_str_and_bytes_are_sent_as_they_are(self) -> None:
        """A str body is sent as UTF-8 text and a bytes body byte for byte,
        whatever the content type."""
        await self.send('grüße, 世界', 'text/plain; charset=utf-8')
        await self.send(b'\x00{not json\xff', 'application/json')
        self.assertEqual([request.body for request in self.log],
                         ['grüße, 世界'.encode(), b'\x00{not json\xff'])
        self.assertEqual(self.log[1].headers['Content-Type'],
                         'application/json')

    @testing.gen_test
    async def test_form_urlencoded(self) -> None:
        """A dict with application/x-www-form-urlencoded is form-encoded;
        a list value repeats the field."""
        await self.send({'name': 'Ada Lovelace', 'tag': ['a', 'b&c']},
                        'application/x-www-form-urlencoded')
        request = self.received()
        self.assertEqual(request.body_arguments,
                         {'name': [b'Ada Lovelace'], 'tag': [b'a', b'b&c']})

    @testing.gen_test
    async def test_multipart_form_data(self) -> None:
        """multipart/form-data sends fields and (filename, data[,
        content_type]) files that tornado parses."""
        await self.send({'title': 'Report',
                         'report': ('report.csv', b'a,b\n1,2\n', 'text/csv'),
                         'logo': ('logo.png', b'\x89PNG\x00')},
                        'multipart/form-data')
        request = self.received()
        self.assertRegex(request.headers['Content-Type'],
                         r'^multipart/form-data; boundary=\S+$')
        self.assertEqual(request.body_arguments, {'title': [b'Report']})
        files = {name: [(f.filename, f.body, f.content_type)
                        for f in values]
                 for name, values in request.files.items()}
        self.assertEqual(files, {
            'report': [('report.csv', b'a,b\n1,2\n', 'text/csv')],
            'logo': [('logo.png', b'\x89PNG\x00', 'image/png')]})

    @testing.gen_test
    async def test_params_merge_into_query(self) -> None:
        """params= is merged into a query string the URL already has; a
        list value repeats the argument."""
        await support.RecordingClient().http_fetch(
            self.get_url('/record?page=2'),
            params={'q': 'a b', 'tag': ['x', 'y'], 'limit': 10})
        self.assertEqual(self.received().query_arguments, {
            'page': [b'2'], 'q': [b'a b'], 'tag': [b'x', b'y'],
            'limit': [b'10']})

    @testing.gen_test
    async def test_extended_types_as_json(self) -> None:
        """UUID, datetime, date and bytes go out as the mediatype JSON
        transcoder writes them, Decimal as a string, and come back so."""
        response = await self.send(EXTENDED, 'application/json', '/echo')
        expected = {'id': _TRANSCODER.dump_object(AN_UUID),
                    'at': _TRANSCODER.dump_object(A_DATETIME),
                    'on': _TRANSCODER.dump_object(A_DATE),
                    'amount': '10.50',
                    'blob': _TRANSCODER.dump_object(b'\x00\xff\xfe')}
        self.assertEqual(expected['at'], '2024-02-29T13:45:30.250000+00:00')
        self.assertEqual(json.loads(self.received().body), expected)
        self.assertEqual(response.body, expected)

    @testing.gen_test
    async def test_extended_types_as_msgpack(self) -> None:
        """In msgpack, bytes stay binary; UUID, dates and Decimal are
        strings."""
        response = await self.send(EXTENDED, 'application/msgpack', '/echo')
        expected = {'id': str(AN_UUID), 'at': A_DATETIME.isoformat(),
                    'on': '2024-02-29', 'amount': '10.50',
                    'blob': b'\x00\xff\xfe'}
        self.assertEqual(msgpack.unpackb(self.received().body, raw=False),
                         expected)
        self.assertEqual(response.body, expected)

    # programming errors: raised before anything is sent ------------------

    @testing.gen_test
    async def test_unserializable_value(self) -> None:
        """A value no codec knows raises TypeError naming its type, and
        nothing is sent."""
        for content_type in ('application/json', 'application/msgpack'):
            with self.subTest(content_type=content_type), \
                    self.assertRaisesRegex(TypeError, r'\bWidget\b'):
                await self.send({'widget': Widget()}, content_type)
        self.assertEqual(self.log, [])

    @testing.gen_test
    async def test_unsendable_body_types(self) -> None:
        """A set or object() body raises TypeError naming the type, and
        nothing is sent."""
        for body, name in (({1, 2}, 'set'), (object(), 'object')):
            with self.subTest(body=name), \
                    self.assertRaisesRegex(TypeError, rf'\b{name}\b'):
                await self.send(body, 'application/json')
        self.assertEqual(self.log, [])

    @testing.gen_test
    async def test_dict_with_unsupported_content_type(self) -> None:
        """A dict sent as text/plain raises UnsupportedContentType, a
        ValueError, and nothing is sent."""
        with self.assertRaisesRegex(http.UnsupportedContentType,
                                    'text/plain') as raised:
            await self.send({'a': 1}, 'text/plain')
        self.assertIsInstance(raised.exception, ValueError)
        self.assertEqual(self.log, [])

    @testing.gen_test
    async def test_body_with_get_or_head(self) -> None:
        """A GET or HEAD with a body raises ValueError before sending."""
        for method in ('GET', 'HEAD'):
            with self.subTest(method=method), \
                    self.assertRaisesRegex(ValueError,
                                           'allow_nonstandard_methods'):
                await support.RecordingClient().http_fetch(
                    self.get_url('/record'), method=method, body=b'x')
        self.assertEqual(self.log, [])

    @testing.gen_test
    async def test_body_with_get_allowed(self) -> None:
        """allow_nonstandard_methods=True sends a GET body with the simple
        client; curl refuses it, and that is recorded, never raised."""
        response = await support.RecordingClient().http_fetch(
            self.get_url('/record'), body={'a': 1},
            content_type='application/json', allow_nonstandard_methods=True)
        if self.get_with_body:
            self.assertEqual(response.code, 204)
            self.assertEqual(self.received().body, b'{"a":1}')
        else:
            self.assertEqual(response.code, 599)
            self.assertEqual(response.stop_reason, 'not-retryable')
            self.assertIsInstance(response.exceptions[0], ValueError)
            self.assertEqual(self.log, [])

    # response decoding ------------------------------------------------------

    async def get(self, path: str) -> http.HTTPResponse:
        return await support.RecordingClient().http_fetch(self.get_url(path))

    @testing.gen_test
    async def test_undecodable_bodies(self) -> None:
        """Invalid JSON, garbage msgpack and a wrong or unknown charset give
        the raw bytes, keep the error and log it once at DEBUG."""
        for path, error_type in (('/invalid-json', ValueError),
                                 ('/garbage-msgpack', ValueError),
                                 ('/wrong-charset', UnicodeDecodeError),
                                 ('/unknown-charset', LookupError)):
            with self.subTest(path=path):
                response = await self.get(path)
                raw = response.raw
                assert raw is not None
                with self.assertLogs(LOGGER_NAME, logging.DEBUG) as logs:
                    first = response.body
                    second = response.body
                    error = response.body_error
                self.assertEqual(first, raw.body)
                self.assertIs(second, first)
                self.assertIsInstance(first, bytes)
                self.assertIsInstance(error, error_type)
                self.assertEqual(logs.output, [
                    f'DEBUG:{LOGGER_NAME}:Could not decode the 200 '
                    f'response body as {raw.headers["Content-Type"]}: '
                    f'{error}'])

    @testing.gen_test
    async def test_latin_1_json(self) -> None:
        """JSON is decoded with the charset its Content-Type declares."""
        response = await self.get('/latin-1')
        self.assertEqual(response.body, {'city': 'Malmö', 'drink': 'café'})
        self.assertIsNone(response.body_error)

    @testing.gen_test
    async def test_binary_msgpack_value(self) -> None:
        """A binary msgpack value stays bytes; strings are str."""
        response = await self.get('/binary-msgpack')
        self.assertEqual(response.body,
                         {'name': 'blob', 'data': b'\x00\xff\xfe'})

    @testing.gen_test
    async def test_json_suffix_response(self) -> None:
        """A +json response is decoded as JSON."""
        response = await self.get('/problem')
        self.assertEqual(response.body, {'title': 'Out of stock'})

    @testing.gen_test
    async def test_unknown_content_type(self) -> None:
        """A content type the package does not decode gives the bytes."""
        response = await self.get('/octet-stream')
        self.assertEqual(response.body, b'\x00\x01binary')
        self.assertIsNone(response.body_error)

    @testing.gen_test
    async def test_empty_json_body(self) -> None:
        """An empty JSON body decodes to None, without an error."""
        response = await self.get('/empty-json')
        self.assertTrue(response.ok)
        self.assertIsNone(response.body)
        self.assertIsNone(response.body_error)

    @testing.gen_test
    async def test_body_is_decoded_once_and_only_when_read(self) -> None:
        """The body is decoded on first access, not to log anything, and
        the result is cached."""
        with mock.patch.object(_content, 'deserialize',
                               wraps=_content.deserialize) as deserialize:
            response = await self.get('/binary-msgpack')
            self.assertEqual(deserialize.call_count, 0)
            first = response.body
            second = response.body
            self.assertIsNone(response.body_error)
        self.assertEqual(deserialize.call_count, 1)
        self.assertIs(first, second)

    @testing.gen_test
    async def test_repeated_set_cookie(self) -> None:
        """Repeated Set-Cookie fields stay apart in headers.get_list."""
        response = await self.get('/cookies')
        self.assertEqual(response.headers.get_list('Set-Cookie'),
                         ['first=1; Path=/', 'second=2; HttpOnly'])

    @testing.gen_test
    async def test_malformed_link(self) -> None:
        """A malformed Link header gives [] and a DEBUG line, never an
        exception."""
        with self.assertRaises((ietf_errors.RootException,
                                ValueError)) as parsing:
            ietf_headers.parse_link(MALFORMED_LINK, strict=False)
        response = await self.get('/malformed-link')
        with self.assertLogs(LOGGER_NAME, logging.DEBUG) as logs:
            self.assertEqual(response.links, [])
            self.assertEqual(response.links, [])
        self.assertEqual(logs.output, [
            f'DEBUG:{LOGGER_NAME}:Ignoring a malformed Link header: '
            f'{parsing.exception}'])

    @testing.gen_test
    async def test_links(self) -> None:
        """Link fields become a list of dicts with the target and the
        link's parameters, in order."""
        response = await self.get('/links')
        self.assertEqual(response.links, [
            {'target': 'https://api.example/items?page=3', 'rel': 'next'},
            {'target': 'https://api.example/items?page=1', 'rel': 'prev',
             'title': 'previous page'}])
