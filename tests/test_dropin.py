"""2.x drop-in, for real: the response as 2.x code reads it, the hooks as
2.x overrides call them, and a clear answer for every odd argument before
anything is sent, on both clients."""
from __future__ import annotations

import asyncio
import codecs
import io
import json
import logging
import math
import typing
from unittest import mock

import msgpack
import pytest
from tornado import httpclient, httpserver, httputil, testing, web

from sprockets.mixins import http
from sprockets.mixins.http import _checks, _content
from tests import support

LOGGER_NAME = 'sprockets.mixins.http'
Log = typing.List[httputil.HTTPServerRequest]


def tornado_response(code: int = 200, body: bytes = b'',
                     headers: typing.Optional[httputil.HTTPHeaders] = None
                     ) -> httpclient.HTTPResponse:
    return httpclient.HTTPResponse(
        httpclient.HTTPRequest('http://h/'), code,
        headers=headers if headers is not None else httputil.HTTPHeaders(),
        buffer=io.BytesIO(body))


def response_with(raw: httpclient.HTTPResponse) -> http.HTTPResponse:
    response = http.HTTPResponse()
    response.append_response(raw)
    return response


# -- 1. HTTPResponse.headers and .body, pure-----------------------------------

def test_headers_none_when_nothing_arrived() -> None:
    """No response: headers is None, as in 2.x (not an empty mapping)."""
    response = http.HTTPResponse()
    assert response.headers is None
    response.append_exception(OSError('refused'))
    assert response.headers is None


def cookie_headers() -> httputil.HTTPHeaders:
    headers = httputil.HTTPHeaders()
    headers.add('content-type', 'application/json')
    headers.add('Set-Cookie', 'a=1')
    headers.add('Set-Cookie', 'b=2')
    headers.add('x-request-id', 'r1')
    return headers


def test_headers_are_a_fresh_plain_dict() -> None:
    """headers is a dict per access: json.dumps works, and writing to it
    changes neither raw.headers nor the next access."""
    response = response_with(tornado_response(200, b'{}', cookie_headers()))
    headers = response.headers
    assert isinstance(headers, dict)
    assert json.loads(json.dumps(headers)) == dict(headers)
    headers['X-Added'] = 'mine'
    del headers['Content-Type']
    assert 'X-Added' not in response.headers
    assert response.headers['Content-Type'] == 'application/json'
    assert 'X-Added' not in response.raw.headers
    assert response.headers is not response.headers


def test_headers_have_canonical_names_and_2x_values() -> None:
    """Names are tornado's canonical ones and a repeated field is joined
    with a comma, as dict(raw.headers) gave in 2.x."""
    response = response_with(tornado_response(200, b'{}', cookie_headers()))
    assert dict(response.headers) == {
        'Content-Type': 'application/json', 'Set-Cookie': 'a=1,b=2',
        'X-Request-Id': 'r1'}


def test_headers_look_names_up_without_regard_to_case() -> None:
    """['content-type'], .get() and `in` ignore case; get_list keeps
    repeated fields apart."""
    headers = response_with(
        tornado_response(200, b'{}', cookie_headers())).headers
    assert headers['content-type'] == 'application/json'
    assert headers['CONTENT-TYPE'] == 'application/json'
    assert headers.get('x-REQUEST-id') == 'r1'
    assert headers.get('missing', 'default') == 'default'
    assert 'set-cookie' in headers
    assert 'missing' not in headers
    assert headers.get_list('set-cookie') == ['a=1', 'b=2']
    assert headers.get_list('missing') == []
    with pytest.raises(KeyError):
        headers['missing']


def test_headers_written_to_are_looked_up_as_written() -> None:
    """A value the caller writes is what get_list and a case-insensitive
    lookup give afterwards."""
    headers = response_with(
        tornado_response(200, b'{}', cookie_headers())).headers
    headers['set-cookie'] = 'c=3'
    assert headers.get_list('Set-Cookie') == ['c=3']
    headers['X-New'] = 'n'
    assert headers['x-new'] == 'n'
    assert headers.get_list('X-NEW') == ['n']


@pytest.mark.parametrize('code, content_type', [
    (400, 'text/html; charset=UTF-8'),  # tornado's default for an error
    (204, None),
    (200, 'application/json'),
    (200, 'application/msgpack'),
    (500, 'text/plain'),
    (200, None),
])
def test_empty_body_is_none(code: int,
                            content_type: typing.Optional[str]) -> None:
    """An empty final body is None whatever the status and Content-Type,
    as in 2.x."""
    headers = httputil.HTTPHeaders()
    if content_type:
        headers['Content-Type'] = content_type
    response = response_with(tornado_response(code, b'', headers))
    assert response.body is None
    assert response.body_error is None


def test_non_empty_text_body_is_bytes() -> None:
    """A body that is not empty and not JSON or msgpack stays bytes."""
    headers = httputil.HTTPHeaders({'Content-Type': 'text/html'})
    response = response_with(tornado_response(400, b'<p>no</p>', headers))
    assert response.body == b'<p>no</p>'


# -- 3. the validation layer, pure---------------------------------------------

@pytest.mark.parametrize('value, error, message', [
    (math.nan, ValueError, 'NaN'),
    (-1, ValueError, '0 or more'),
    (-0.001, ValueError, '0 or more'),
    (True, TypeError, 'number of seconds'),
    (False, TypeError, 'number of seconds'),
    ('5', TypeError, 'number of seconds'),
    (None, TypeError, 'number of seconds'),
    (math.inf, ValueError, 'finite'),
])
def test_seconds_refused(value: typing.Any, error: typing.Type[Exception],
                         message: str) -> None:
    """NaN, negatives, bool, strings and (unless allowed) infinity are
    errors that name the argument."""
    with pytest.raises(error, match=message) as raised:
        _checks.seconds('request_timeout', value)
    assert 'request_timeout' in str(raised.value)


@pytest.mark.parametrize('value, expected', [
    (0, 0.0), (1, 1.0), (2.5, 2.5), (math.inf, math.inf)])
def test_seconds_accepted(value: float, expected: float) -> None:
    """Numbers of seconds come back as floats; infinity when allowed."""
    assert _checks.seconds('x', value, infinite=True) == expected


@pytest.mark.parametrize('value, error', [
    (True, TypeError), (False, TypeError), (1.0, TypeError), ('3', TypeError),
    (0, ValueError), (-2, ValueError)])
def test_count_refused(value: typing.Any,
                       error: typing.Type[Exception]) -> None:
    """A count refuses bool (True is not 1 here), floats and numbers
    below the minimum, naming the argument."""
    with pytest.raises(error, match='max_http_attempts'):
        _checks.count('max_http_attempts', value)


@pytest.mark.parametrize('value, error', [
    (None, TypeError), (b'GET', TypeError), ('', ValueError),
    ('GET /x', ValueError), ('GET\r\nX: 1', ValueError), ('GET\n', ValueError),
    ('G\x00T', ValueError), ('GÉT', ValueError), ('(GET)', ValueError)])
def test_method_must_be_a_token(value: typing.Any,
                                error: typing.Type[Exception]) -> None:
    """A method is an RFC 9110 token; anything that could split the
    request line is refused."""
    with pytest.raises(error, match='method'):
        _checks.method(value)


def test_method_is_upper_cased() -> None:
    """Any token is accepted, sent upper-cased."""
    assert _checks.method('propfind') == 'PROPFIND'
    assert _checks.method('M-SEARCH') == 'M-SEARCH'


@pytest.mark.parametrize('value, expected', [
    (b'abc', 'abc'), (b'caf\xe9', 'café'), ('plain', 'plain'),
    ('tab\there', 'tab\there'), ('', '')])
def test_header_value_accepted(value: typing.Any, expected: str) -> None:
    """bytes are decoded as Latin-1 and sent as their text, as 2.x did."""
    assert _checks.header_value('X-Note', value) == expected


@pytest.mark.parametrize('value, error', [
    (None, TypeError), (5, TypeError), (['a'], TypeError),
    ('SECRET\r\nX: 1', ValueError), ('SECRET\n', ValueError),
    ('SECRET\x00', ValueError), (b'SECRET\r\n', ValueError),
    ('SECRET\x7f', ValueError), ('SECRET€', ValueError)])
def test_header_value_refused_without_echo(
        value: typing.Any, error: typing.Type[Exception]) -> None:
    """A value that cannot be sent is an error naming the header, and the
    message never shows the value (it may be a secret)."""
    with pytest.raises(error, match='X-Token') as raised:
        _checks.header_value('X-Token', value)
    assert 'SECRET' not in str(raised.value)


@pytest.mark.parametrize('name, error', [
    (b'X-Name', TypeError), (5, TypeError), ('', ValueError),
    ('bad name', ValueError), ('X-Name:', ValueError),
    ('X\r\nInjected', ValueError)])
def test_header_name_refused(name: typing.Any,
                             error: typing.Type[Exception]) -> None:
    """A field name is a str token."""
    with pytest.raises(error):
        _checks.header_name(name)


@pytest.mark.parametrize('url, expected', [
    ('http://h/a b', 'http://h/a%20b'),
    ('http://h/a?q=a b#f g', 'http://h/a?q=a%20b#f%20g'),
    ('http://h/a\r\nX-Injected: 1', 'http://h/a%0D%0AX-Injected:%201'),
    ('http://h/a\tb\x00c', 'http://h/a%09b%00c'),
    ('  http://h/path\n', 'http://h/path'),
    ('http://h/plain', 'http://h/plain'),
    ('http://h/caf%C3%A9', 'http://h/caf%C3%A9'),
    ('http://h', 'http://h'),
    ('http://h?a b', 'http://h?a%20b'),
])
def test_url_spaces_and_controls_are_percent_encoded(url: str,
                                                     expected: str) -> None:
    """Spaces and controls in the path, query and fragment are
    percent-encoded, and stripped from the ends (as the WHATWG URL
    Standard does), so they never split the request line."""
    assert _checks.url(url) == expected


class NoStr:
    """An object without a __str__ of its own."""


@pytest.mark.parametrize('url', [b'http://h/', bytearray(b'http://h/'),
                                 None, NoStr()])
def test_url_must_be_text(url: typing.Any) -> None:
    """bytes, None and objects whose str() is not a URL are a TypeError."""
    with pytest.raises(TypeError, match='url'):
        _checks.url(url)


@pytest.mark.parametrize('params, expected', [
    ({'a': 1, 'b': None, 'c': 'x'}, [('a', 1), ('c', 'x')]),
    ([('a', 1), ('a', 2), ('b', None)], [('a', 1), ('a', 2)]),
    ({'tag': ['x', None, 'y']}, [('tag', 'x'), ('tag', 'y')]),
    ((('a', '1'),), [('a', '1')]),
    ({}, []),
])
def test_params(params: typing.Any,
                expected: typing.List[typing.Tuple[str, typing.Any]]) -> None:
    """A mapping or pairs; None values dropped; lists repeat the name."""
    assert _checks.params(params) == expected


@pytest.mark.parametrize('params', ['a=1', 5, [('a', 1, 2)], ['ab'],
                                    {1: 'x'}])
def test_params_refused(params: typing.Any) -> None:
    """Anything but a mapping or (name, value) pairs is a TypeError."""
    with pytest.raises(TypeError, match='params'):
        _checks.params(params)


# -- 3. bodies, pure-----------------------------------------------------------

@pytest.mark.parametrize('body', [
    {'x': math.nan}, [math.inf], {'y': [-math.inf]}])
def test_json_refuses_nan_and_infinity(body: typing.Any) -> None:
    """NaN and infinities are not JSON: a ValueError, not a body that a
    strict parser refuses."""
    with pytest.raises(ValueError, match='not JSON'):
        _content.serialize(body, 'application/json')


def deep(depth: int) -> typing.List[typing.Any]:
    value: typing.List[typing.Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize('content_type', [
    'application/json', 'application/msgpack'])
def test_nesting_too_deep_is_a_value_error(content_type: str) -> None:
    """A body nested deeper than the codec goes is a ValueError, never a
    RecursionError."""
    with pytest.raises(ValueError, match='nested too deeply'):
        _content.serialize(deep(100_000), content_type)


def test_json_serializes_to_str() -> None:
    """JSON is serialized to str, as 2.x's _http_req_body_serialize
    returned; msgpack to bytes."""
    assert _content.serialize({'a': 'é'}, 'application/json') == '{"a":"é"}'
    assert isinstance(_content.serialize({'a': 1}, 'application/msgpack'),
                      bytes)


@pytest.mark.parametrize('charset', [
    'latin-1', 'utf-16', 'utf-8', 'ascii', 'utf-32-le', 'cp1252'])
def test_json_body_encoded_in_its_charset(charset: str) -> None:
    """A JSON body is sent in the charset its Content-Type names, and
    decodes back to the same document."""
    content_type = f'application/json; charset={charset}'
    document = {'name': 'café €', 'n': [1, 2]}
    text = _content.serialize(document, content_type)
    data = _content.encode_body(text, content_type)
    assert isinstance(data, bytes)
    assert json.loads(codecs.decode(data, charset)) == document


def test_unknown_charset_is_refused() -> None:
    """A charset Python does not know cannot be sent: ValueError."""
    with pytest.raises(ValueError, match='charset'):
        _content.serialize({'a': 1}, 'application/json; charset=klingon')
    with pytest.raises(ValueError, match='charset'):
        _content.encode_body('text', 'text/plain; charset=klingon')
    for codec in ('base64', 'rot13', 'zlib'):  # codecs, not text encodings
        with pytest.raises(ValueError, match='charset'):
            _content.encode_body('text', f'text/plain; charset={codec}')
        with pytest.raises(ValueError, match='charset'):
            _content.serialize({'a': 1}, f'application/json; charset={codec}')


def test_text_that_its_charset_cannot_carry_is_refused() -> None:
    """A str body with characters its charset cannot encode is a
    ValueError, not mojibake."""
    with pytest.raises(ValueError, match='latin-1'):
        _content.encode_body('€', 'text/plain; charset=latin-1')
    assert _content.encode_body('é', 'text/plain; charset=latin-1') == b'\xe9'
    assert _content.encode_body('é', 'text/plain') == b'\xc3\xa9'
    assert _content.encode_body(b'raw', 'text/plain') == b'raw'
    assert _content.encode_body(None, 'text/plain') is None


@pytest.mark.parametrize('fields', [
    {'na\r\nme': 'x'},
    {'name': ('fi\nle.txt', b'data')},
    {'name': ('file.txt', b'data', 'text/plain\r\nX-Injected: 1')},
    {'na\x00me': 'x'},
])
def test_multipart_refuses_line_breaks(fields: typing.Any) -> None:
    """CR, LF or NUL in a part's name, filename or content type is a
    ValueError (it would inject part headers)."""
    with pytest.raises(ValueError, match='multipart'):
        _content.serialize(fields, 'multipart/form-data; boundary=b')


# -- Retry-After, pure---------------------------------------------------------

@pytest.mark.parametrize('value', ['-5', '-0', '+5', '- 5', '-1.5'])
def test_signed_retry_after_is_not_delta_seconds(value: str) -> None:
    """delta-seconds is digits only (RFC 9110): a sign makes it garbage,
    ignored like any unparseable value."""
    assert http.parse_retry_after(value, 0.0) is None


def test_retry_after_date_in_the_past_is_no_wait() -> None:
    """A date in the past still means no wait."""
    assert http.parse_retry_after('Thu, 01 Jan 1970 00:00:00 GMT',
                                  1e9) == 0.0


def test_negative_retry_after_uses_the_backoff() -> None:
    """The policy, given no Retry-After, backs off as usual."""
    policy = http.RetryPolicy(jitter=None, budget=None)
    decision = policy.decide(
        attempt=1, method='GET', idempotent=True, status=503,
        retry_after=http.parse_retry_after('-5', 0.0))
    assert (decision.delay, decision.delay_reason) == (3.0, 'backoff')


# -- the policy's numbers------------------------------------------------------

@pytest.mark.parametrize('field, value, error', [
    ('max_delay', math.nan, ValueError),
    ('max_delay', '30', TypeError),
    ('retry_timeout', math.inf, ValueError),
    ('retry_timeout', True, TypeError),
    ('retry_after_max', math.nan, ValueError),
    ('retry_after_max', -1, ValueError),
    ('retry_after_max', 'soon', TypeError),
    ('deadline', math.nan, ValueError),
    ('deadline', False, TypeError),
])
def test_policy_seconds_refused(field: str, value: typing.Any,
                                error: typing.Type[Exception]) -> None:
    """The policy's numbers of seconds follow the one rule."""
    with pytest.raises(error, match=field):
        http.RetryPolicy(**{field: value})


def test_policy_infinite_deadline_is_no_deadline() -> None:
    """deadline=inf means no deadline; retry_after_max of inf means no
    cap; max_delay=inf is refused (a sleep of inf never returns), with
    the finite cap that gives the 2.x schedule in the message."""
    with pytest.raises(ValueError, match=r'^max_delay .*max_delay=1e9'):
        http.RetryPolicy(max_delay=math.inf)
    with pytest.raises(ValueError, match=r'^max_delay .*max_delay=1e9'):
        http.RetryPolicy(max_delay=10 ** 400)  # an int that is inf
    assert http.RetryPolicy(max_delay=1e9, jitter=None).backoff(5) == 48.0
    assert http.RetryPolicy(max_delay=1e9, jitter=None).backoff(
        10 ** 6) == 1e9
    assert http.RetryPolicy(deadline=math.inf).deadline is None
    assert http.RetryPolicy(retry_after_max=math.inf).retry_after_max == (
        math.inf)


# -- handlers------------------------------------------------------------------

class RecordingHandler(web.RequestHandler):
    """Records every request; subclasses answer."""

    SUPPORTED_METHODS = ('GET', 'HEAD', 'POST', 'DELETE', 'PATCH', 'PUT',
                         'OPTIONS', 'PROPFIND')

    def initialize(self, log: Log) -> None:
        self.log = log

    def prepare(self) -> None:
        self.log.append(self.request)


class EchoHandler(RecordingHandler):
    """200 with a JSON body."""

    def prepare(self) -> None:
        super().prepare()
        self.set_header('Set-Cookie', 'a=1')
        self.add_header('Set-Cookie', 'b=2')
        self.finish({'ok': True})


class EmptyErrorHandler(RecordingHandler):
    """400 with no body and tornado's default Content-Type."""

    def prepare(self) -> None:
        super().prepare()
        self.set_status(400)
        self.finish()


class NoContentHandler(RecordingHandler):
    """204, no Content-Type."""

    def prepare(self) -> None:
        super().prepare()
        self.clear_header('Content-Type')
        self.set_status(204)
        self.finish()


class UnavailableHandler(RecordingHandler):
    """Always 503."""

    def prepare(self) -> None:
        super().prepare()
        self.set_status(503)
        self.finish()


class NegativeRetryAfterHandler(RecordingHandler):
    """503 with Retry-After: -5."""

    def prepare(self) -> None:
        super().prepare()
        self.set_status(503)
        self.set_header('Retry-After', '-5')
        self.finish()


class WarningsHandler(RecordingHandler):
    """200 with 2,000 Warning header fields."""

    def prepare(self) -> None:
        super().prepare()
        for number in range(2000):
            self.add_header('Warning', f'199 - "warning {number}"')
        self.finish({'ok': True})


class BadLocationHandler(RecordingHandler):
    """A redirect whose Location is not a usable http(s) URL."""

    def prepare(self) -> None:
        super().prepare()
        self.set_status(302)
        self.set_header('Location', self.get_query_argument('to'))
        self.finish({'moved': True})


class HopHandler(RecordingHandler):
    """Redirects to the other server."""

    def prepare(self) -> None:
        super().prepare()
        self.redirect(self.settings['other'])


class SeenHandler(web.RequestHandler):
    """The other server: records the headers it is sent."""

    def get(self) -> None:
        self.settings['seen'].append(self.request.headers.copy())
        self.write({'ok': True})


# -- clients written the 2.x way-----------------------------------------------

class ModifyForRetryClient(support.RecordingClient):
    """Records what _http_req_modify_for_retry receives; calls super."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: typing.List[typing.Tuple[typing.Any, ...]] = []

    def _http_req_modify_for_retry(
            self, response: http.HTTPResponse, attempt: int, url: str,
            headers: typing.Any, body: typing.Any) -> typing.Any:
        self.seen.append((attempt, type(headers), dict(headers), body))
        return super()._http_req_modify_for_retry(response, attempt, url,
                                                  headers, body)


class TwoXModifyForRetryClient(support.RecordingClient):
    """An override that copies the 2.x default and adds a nonce."""

    def _http_req_modify_for_retry(
            self, response: http.HTTPResponse, attempt: int, url: str,
            headers: typing.Dict[str, str], body: typing.Any
    ) -> typing.Tuple[str, typing.Dict[str, str], typing.Any]:
        headers['X-Retry-Attempt'] = str(attempt + 1)
        headers['X-Nonce'] = f'nonce-{attempt}'
        return url, headers, body


class TwoXDefaultHeadersClient(support.RecordingClient):
    """A 2.x override that builds its own plain dict of headers."""

    def _http_req_apply_default_headers(
            self, request_headers: typing.Any, content_type: typing.Any,
            body: typing.Any) -> typing.Dict[str, str]:
        headers = dict(request_headers or {})
        headers.setdefault('Accept', 'application/json')
        headers['X-Service'] = 'orders'
        if body is not None:
            headers['Content-Type'] = str(content_type)
        return headers


class TwoXSuperDefaultHeadersClient(support.RecordingClient):
    """A 2.x override that adds a header to what super() returns."""

    def _http_req_apply_default_headers(
            self, request_headers: typing.Any, content_type: typing.Any,
            body: typing.Any) -> typing.Any:
        headers = super()._http_req_apply_default_headers(
            request_headers, content_type, body)
        headers['X-Tenant'] = 'acme'
        return headers


class TwoXSerializeClient(support.RecordingClient):
    """A 2.x override that serializes text/csv and defers the rest."""

    def _http_req_body_serialize(self, body: typing.Any,
                                 content_type: typing.Any) -> typing.Any:
        if str(content_type).startswith('text/csv'):
            return '\n'.join(','.join(map(str, row)) for row in body)
        return super()._http_req_body_serialize(body, content_type)


class TwoXUserAgentClient(support.RecordingClient):
    """A 2.x override of the User-Agent."""

    def _http_req_user_agent(self) -> str:
        return 'orders/1.2.3'


class BadHookClient(support.RecordingClient):
    """A default-header hook that adds a header value with a line break."""

    def _http_req_apply_default_headers(
            self, request_headers: typing.Any, content_type: typing.Any,
            body: typing.Any) -> typing.Any:
        headers = super()._http_req_apply_default_headers(
            request_headers, content_type, body)
        headers['X-Signature'] = 'SECRET\r\nX-Injected: 1'
        return headers


class BadRetryHookClient(support.RecordingClient):
    """A retry hook that returns a header value that cannot be sent."""

    def _http_req_modify_for_retry(
            self, response: http.HTTPResponse, attempt: int, url: str,
            headers: typing.Dict[str, str], body: typing.Any
    ) -> typing.Tuple[str, typing.Dict[str, str], typing.Any]:
        headers['X-Nonce'] = 'SECRET\nX-Injected: 1'
        return url, headers, body


class CorrelatedClient(support.RecordingClient):
    """A consumer with a correlation_id attribute."""

    correlation_id = 'abc\r\nX-Injected: 1'


class CappedDeadlineClient(support.VirtualClockClient):
    """A policy hook that caps every call at 1 s."""

    def _http_req_retry_policy(self, *args: typing.Any) -> http.RetryPolicy:
        policy = super()._http_req_retry_policy(*args)
        return policy.replace(deadline=1.0)


# -- integration---------------------------------------------------------------

@support.on_every_client('TestDropIn')
class DropInCases(support.ServerTestCase):
    """Through a real server, on both clients."""

    __test__ = False

    def setUp(self) -> None:
        super().setUp()
        self.other_seen: typing.List[httputil.HTTPHeaders] = []
        sock, port = testing.bind_unused_port()
        self.other = httpserver.HTTPServer(web.Application(
            [('/seen', SeenHandler)], seen=self.other_seen))
        self.other.add_sockets([sock])
        self.other_port = port
        self._app.settings['other'] = f'http://127.0.0.1:{port}/seen'

    def tearDown(self) -> None:
        self.other.stop()
        super().tearDown()

    def get_app(self) -> web.Application:
        self.log: Log = []
        routes = {
            '/echo': EchoHandler, '/empty-error': EmptyErrorHandler,
            '/no-content': NoContentHandler,
            '/unavailable': UnavailableHandler,
            '/negative-retry-after': NegativeRetryAfterHandler,
            '/warnings': WarningsHandler, '/bad-location': BadLocationHandler,
            '/hop': HopHandler, '/a%20b': EchoHandler}
        return web.Application([
            (path, handler, {'log': self.log})
            for path, handler in routes.items()])

    # 1. the response --------------------------------------------------------

    @testing.gen_test
    async def test_headers_are_a_dict_from_a_real_response(self) -> None:
        """headers from a server is a plain dict with canonical names,
        case-insensitive lookups and get_list."""
        response = await support.RecordingClient().http_fetch(
            self.get_url('/echo'))
        headers = response.headers
        self.assertIsInstance(headers, dict)
        self.assertEqual(headers['content-type'],
                         'application/json; charset=UTF-8')
        self.assertEqual(headers.get_list('set-cookie'), ['a=1', 'b=2'])
        self.assertIn('Content-Length', headers)
        json.dumps(headers)

    @testing.gen_test
    async def test_headers_none_when_the_connection_was_refused(
            self) -> None:
        """Every attempt raised: headers is None."""
        sock, port = testing.bind_unused_port()
        sock.close()
        response = await support.RecordingClient().http_fetch(
            f'http://127.0.0.1:{port}/', max_http_attempts=1)
        self.assertEqual(response.code, 599)
        self.assertIsNone(response.headers)

    @testing.gen_test
    async def test_empty_error_body_is_none(self) -> None:
        """An empty 400 with tornado's text/html Content-Type: body None."""
        response = await support.RecordingClient().http_fetch(
            self.get_url('/empty-error'))
        self.assertEqual(response.code, 400)
        self.assertTrue(response.headers['Content-Type'].startswith(
            'text/html'))
        self.assertIsNone(response.body)

    @testing.gen_test
    async def test_no_content_body_is_none(self) -> None:
        """A 204 without Content-Type: body None."""
        response = await support.RecordingClient().http_fetch(
            self.get_url('/no-content'))
        self.assertEqual(response.code, 204)
        self.assertIsNone(response.body)

    # 2. the hooks ------------------------------------------------------------

    @testing.gen_test
    async def test_modify_for_retry_gets_what_2x_passed(self) -> None:
        """attempt is the 0-based index of the attempt about to be sent,
        headers a plain dict copy, a JSON body a str; X-Retry-Attempt is
        attempt + 1."""
        client = ModifyForRetryClient()
        caller_headers = {'X-Caller': 'mine'}
        await client.http_fetch(
            self.get_url('/unavailable'), method='POST',
            request_headers=caller_headers, body={'a': 1},
            content_type='application/json',
            retry_policy=http.RetryPolicy(retry_non_idempotent=True,
                                          budget=None))
        self.assertEqual([seen[0] for seen in client.seen], [1, 2])
        self.assertEqual({seen[1] for seen in client.seen}, {dict})
        self.assertEqual([seen[3] for seen in client.seen],
                         ['{"a":1}', '{"a":1}'])
        self.assertNotIn('X-Retry-Attempt', client.seen[0][2])
        self.assertEqual(client.seen[1][2]['X-Retry-Attempt'], '2')
        self.assertEqual(
            [request.headers.get('X-Retry-Attempt') for request in self.log],
            [None, '2', '3'])
        self.assertEqual(caller_headers, {'X-Caller': 'mine'})
        self.assertEqual({request.body for request in self.log},
                         {b'{"a":1}'})

    @testing.gen_test
    async def test_2x_modify_for_retry_override_sends_the_same(self) -> None:
        """An override copying the 2.x default sends X-Retry-Attempt 2 and
        3, as the package's default does, plus its own header."""
        await TwoXModifyForRetryClient().http_fetch(
            self.get_url('/unavailable'))
        self.assertEqual(
            [(request.headers.get('X-Retry-Attempt'),
              request.headers.get('X-Nonce')) for request in self.log],
            [(None, None), ('2', 'nonce-1'), ('3', 'nonce-2')])

    @testing.gen_test
    async def test_retry_hook_headers_are_checked(self) -> None:
        """Headers a retry hook returns are checked before the retry is
        sent: ValueError naming the header, no retry sent."""
        with self.assertRaisesRegex(ValueError, 'X-Nonce') as raised:
            await BadRetryHookClient().http_fetch(
                self.get_url('/unavailable'))
        self.assertNotIn('SECRET', str(raised.exception))
        self.assertEqual(len(self.log), 1)

    @testing.gen_test
    async def test_2x_default_headers_override_returning_a_dict(
            self) -> None:
        """An override that returns its own plain dict is honoured."""
        await TwoXDefaultHeadersClient().http_fetch(
            self.get_url('/echo'), method='POST', body={'a': 1},
            content_type='application/json')
        [request] = self.log
        self.assertEqual(request.headers['X-Service'], 'orders')
        self.assertEqual(request.headers['Accept'], 'application/json')
        self.assertEqual(request.headers['Content-Type'], 'application/json')
        self.assertEqual(request.body, b'{"a":1}')

    @testing.gen_test
    async def test_2x_default_headers_override_calling_super(self) -> None:
        """An override that adds to super()'s headers keeps the
        defaults."""
        await TwoXSuperDefaultHeadersClient().http_fetch(
            self.get_url('/echo'))
        [request] = self.log
        self.assertEqual(request.headers['X-Tenant'], 'acme')
        self.assertEqual(request.headers['Accept'],
                         'application/json, application/msgpack')

    @testing.gen_test
    async def test_2x_serialize_override(self) -> None:
        """An override serializing its own content type, deferring the
        rest to super(), sends both."""
        client = TwoXSerializeClient()
        await client.http_fetch(self.get_url('/echo'), method='POST',
                                body=[[1, 2], [3, 4]], content_type='text/csv')
        await client.http_fetch(self.get_url('/echo'), method='POST',
                                body={'a': 1}, content_type='application/json')
        self.assertEqual([request.body for request in self.log],
                         [b'1,2\n3,4', b'{"a":1}'])

    @testing.gen_test
    async def test_2x_user_agent_override(self) -> None:
        """_http_req_user_agent's value is the User-Agent sent."""
        await TwoXUserAgentClient().http_fetch(self.get_url('/echo'))
        self.assertEqual(self.log[0].headers['User-Agent'], 'orders/1.2.3')

    # 3. odd arguments: refused before anything is sent -----------------------

    async def assert_refused(self, error: typing.Type[Exception],
                             pattern: str, client: typing.Any = None,
                             **kwargs: typing.Any) -> None:
        client = client or support.RecordingClient()
        kwargs.setdefault('url', self.get_url('/echo'))
        with self.assertRaisesRegex(error, pattern) as raised:
            await client.http_fetch(**kwargs)
        self.assertNotIn('SECRET', str(raised.exception))
        self.assertEqual(self.log, [])
        self.assertEqual(client.delays, [])

    @testing.gen_test
    async def test_odd_arguments_are_refused_before_sending(self) -> None:
        """Each odd argument raises TypeError or ValueError naming it, and
        nothing reaches the server nor is retried."""
        nan, inf = math.nan, math.inf
        table: typing.List[typing.Tuple[typing.Type[Exception], str,
                                        typing.Dict[str, typing.Any]]] = [
            (TypeError, 'X-Count',
             {'request_headers': {'X-Count': 5}}),
            (TypeError, 'X-Gone', {'request_headers': {'X-Gone': None}}),
            (ValueError, 'X-Token',
             {'request_headers': {'X-Token': 'SECRET\r\nX-Injected: 1'}}),
            (ValueError, 'X-Token',
             {'request_headers': {'X-Token': 'SECRET\x00'}}),
            (ValueError, 'X-Token',
             {'request_headers': {'X-Token': b'SECRET\n'}}),
            (ValueError, 'not a token',
             {'request_headers': {'X Bad': 'x'}}),
            (ValueError, 'Content-Type',
             {'method': 'POST', 'body': b'x',
              'content_type': 'text/plain\r\nX-Injected: 1'}),
            (ValueError, 'Content-Type',
             {'content_type': 'text/plain\nX-Injected: 1'}),
            (ValueError, 'User-Agent', {'user_agent': 'ua\r\nX-Injected: 1'}),
            (TypeError, 'User-Agent', {'user_agent': 5}),
            (TypeError, 'method', {'method': None}),
            (ValueError, 'method', {'method': 'GET /x'}),
            (ValueError, 'method', {'method': 'GET\r\nX-Injected: 1'}),
            (ValueError, 'method', {'method': 'GET /x',
                                    'allow_nonstandard_methods': True}),
            (TypeError, 'url', {'url': self.get_url('/echo').encode()}),
            (TypeError, 'url', {'url': NoStr()}),
            (TypeError, 'url', {'url': None}),
            (TypeError, 'params', {'params': 'a=1'}),
            (ValueError, 'not JSON',
             {'method': 'POST', 'body': {'x': nan},
              'content_type': 'application/json'}),
            (ValueError, 'not JSON',
             {'method': 'POST', 'body': [inf],
              'content_type': 'application/json'}),
            (ValueError, 'charset',
             {'method': 'POST', 'body': {'x': 1},
              'content_type': 'application/json; charset=klingon'}),
            (ValueError, 'latin-1',
             {'method': 'POST', 'body': '€',
              'content_type': 'text/plain; charset=latin-1'}),
            (ValueError, 'nested too deeply',
             {'method': 'POST', 'body': deep(100_000),
              'content_type': 'application/json'}),
            (ValueError, 'nested too deeply',
             {'method': 'POST', 'body': deep(100_000)}),
            (ValueError, 'multipart',
             {'method': 'POST', 'body': {'f': ('a\r\nb.txt', b'x')},
              'content_type': 'multipart/form-data'}),
        ]
        for name in ('connect_timeout', 'request_timeout', 'retry_timeout',
                     'deadline'):
            table += [
                (ValueError, name, {name: nan}),
                (ValueError, name, {name: -1}),
                (TypeError, name, {name: True}),
                (TypeError, name, {name: '5'}),
            ]
        table += [
            (ValueError, 'retry_timeout', {'retry_timeout': inf}),
            (TypeError, 'max_http_attempts', {'max_http_attempts': True}),
            (TypeError, 'max_http_attempts', {'max_http_attempts': 2.0}),
            (ValueError, 'max_http_attempts', {'max_http_attempts': 0}),
            (TypeError, 'max_redirects', {'max_redirects': True}),
            (ValueError, 'max_redirects', {'max_redirects': -1}),
        ]
        for error, pattern, kwargs in table:
            with self.subTest(kwargs=kwargs):
                await self.assert_refused(error, pattern, **kwargs)

    @testing.gen_test
    async def test_odd_values_from_the_object_are_refused(self) -> None:
        """A bad correlation_id or a bad default header from a hook is a
        ValueError naming the header, before sending."""
        await self.assert_refused(ValueError, 'Correlation-Id',
                                  CorrelatedClient())
        await self.assert_refused(ValueError, 'X-Signature', BadHookClient())

    @testing.gen_test
    async def test_bool_attempts_refused_whatever_was_cached(self) -> None:
        """MAX_HTTP_RETRIES = True is a TypeError even after a call with
        1 attempt cached the policy of (1, 3)."""
        await support.RecordingClient().http_fetch(
            self.get_url('/echo'), max_http_attempts=1)
        client_class = type('Client', (support.RecordingClient,),
                            {'MAX_HTTP_RETRIES': 1})
        await client_class().http_fetch(self.get_url('/echo'))
        self.log.clear()
        bad = type('Client', (support.RecordingClient,),
                   {'MAX_HTTP_RETRIES': True})
        await self.assert_refused(TypeError, 'MAX_HTTP_RETRIES', bad())
        await self.assert_refused(TypeError, 'max_http_attempts',
                                  max_http_attempts=True)

    @testing.gen_test
    async def test_bytes_header_values_are_sent_as_text(self) -> None:
        """b'abc' is sent as abc, never as b'abc'."""
        await support.RecordingClient().http_fetch(
            self.get_url('/echo'),
            request_headers={'X-Bytes': b'abc', 'X-Latin': b'caf\xe9'})
        [request] = self.log
        self.assertEqual(request.headers['X-Bytes'], 'abc')
        self.assertEqual(request.headers['X-Latin'].encode('latin-1'),
                         b'caf\xe9')

    @testing.gen_test
    async def test_client_headers_follow_the_same_rule(self) -> None:
        """Client: bytes are sent as text, None removes a client header,
        other types are a TypeError and a line break a ValueError, both
        before sending."""
        async with http.Client(self.get_url('/'), headers={
                'X-Bytes': b'abc', 'X-Drop': 'client'}) as client:
            response = await client.get('echo', headers={'X-Drop': None})
            with self.assertRaisesRegex(TypeError, 'X-Count'):
                await client.get('echo', headers={'X-Count': 5})
            with self.assertRaisesRegex(ValueError, 'X-Token') as raised:
                await client.get('echo', headers={'X-Token': 'SECRET\r\n'})
            with self.assertRaisesRegex(ValueError, 'method'):
                await client.request('GE T', 'echo')
        self.assertNotIn('SECRET', str(raised.exception))
        self.assertTrue(response.ok)
        [request] = self.log
        self.assertEqual(request.headers['X-Bytes'], 'abc')
        self.assertNotIn('X-Drop', request.headers)
        with self.assertRaisesRegex(TypeError, 'X-Count'):
            http.Client(self.get_url('/'), headers={'X-Count': 5})

    @testing.gen_test
    async def test_any_token_method_is_sent(self) -> None:
        """A method token is sent upper-cased, with or without
        allow_nonstandard_methods."""
        response = await support.RecordingClient().http_fetch(
            self.get_url('/echo'), method='propfind',
            allow_nonstandard_methods=True)
        self.assertTrue(response.ok)
        self.assertEqual(self.log[0].method, 'PROPFIND')

    @testing.gen_test
    async def test_space_in_the_path_is_percent_encoded(self) -> None:
        """A space in the path reaches the server as %20."""
        response = await support.RecordingClient().http_fetch(
            self.get_url('/a b'))
        self.assertTrue(response.ok)
        self.assertEqual(self.log[-1].path, '/a%20b')
        response = await support.RecordingClient().http_fetch(
            self.get_url('/echo?q=a b'))
        self.assertTrue(response.ok)
        self.assertEqual(self.log[-1].uri, '/echo?q=a%20b')

    @testing.gen_test
    async def test_params_pairs_and_none(self) -> None:
        """params as pairs repeat names; None values are dropped."""
        await support.RecordingClient().http_fetch(
            self.get_url('/echo?x=0'),
            params=[('a', 1), ('a', 2), ('b', None), ('c', ['y', None])])
        self.assertEqual(self.log[0].uri, '/echo?x=0&a=1&a=2&c=y')

    @testing.gen_test
    async def test_json_in_latin_1_and_utf_16(self) -> None:
        """A JSON body is sent in the charset of its content_type."""
        client = support.RecordingClient()
        for charset in ('latin-1', 'utf-16'):
            await client.http_fetch(
                self.get_url('/echo'), method='POST',
                body={'name': 'café'},
                content_type=f'application/json; charset={charset}')
        self.assertEqual(
            [json.loads(request.body.decode(charset))
             for request, charset in zip(self.log, ('latin-1', 'utf-16'))],
            [{'name': 'café'}] * 2)
        self.assertTrue(self.log[1].body.startswith(codecs.BOM_UTF16))

    @testing.gen_test
    async def test_infinite_timeouts_mean_no_limit(self) -> None:
        """request_timeout, connect_timeout and deadline of infinity mean
        no limit, on both clients alike."""
        response = await support.RecordingClient().http_fetch(
            self.get_url('/echo'), request_timeout=math.inf,
            connect_timeout=math.inf, deadline=math.inf)
        self.assertTrue(response.ok, response.exceptions)

    @testing.gen_test
    async def test_negative_retry_after_backs_off(self) -> None:
        """Retry-After: -5 is ignored: the backoff is used."""
        client = support.RecordingClient()
        response = await client.http_fetch(
            self.get_url('/negative-retry-after'),
            retry_policy=http.RetryPolicy(jitter=None, retry_timeout=0.5,
                                          budget=None))
        self.assertEqual(client.delays, [0.5, 1.0])
        self.assertEqual([record.delay_reason for record in response.records],
                         ['backoff', 'backoff', None])

    @testing.gen_test
    async def test_unusable_location_returns_the_redirect(self) -> None:
        """A Location that is not a usable http(s) URL ends the call with
        the 3xx response, the problem recorded; nothing is retried."""
        for target in ('http://[::1', 'file:///etc/passwd', 'ftp://h/x'):
            with self.subTest(target=target):
                self.log.clear()
                client = support.RecordingClient()
                response = await client.http_fetch(
                    self.get_url('/bad-location?to=')
                    + target.replace(':', '%3A').replace('/', '%2F')
                    .replace('[', '%5B'), follow_redirects=True)
                self.assertEqual(response.code, 302)
                self.assertEqual(response.body, {'moved': True})
                self.assertEqual(response.stop_reason, 'not-retryable')
                self.assertTrue(response.ok)  # SPEC: 200-399
                self.assertEqual(response.exceptions, [])
                [record] = response.records
                self.assertEqual(record.status, 302)
                self.assertIsInstance(record.redirect_error, ValueError)
                self.assertEqual(len(self.log), 1)
                self.assertEqual(client.delays, [])

    # 4. review findings ------------------------------------------------------

    @testing.gen_test
    async def test_next_hop_carries_its_own_host(self) -> None:
        """After a redirect to another host, the request carries that
        host's Host header, not the previous one's."""
        response = await support.RecordingClient().http_fetch(
            self.get_url('/hop'), follow_redirects=True)
        self.assertTrue(response.ok)
        [seen] = self.other_seen
        self.assertEqual(seen.get_list('Host'),
                         [f'127.0.0.1:{self.other_port}'])

    @testing.gen_test
    async def test_policy_hook_deadline_caps_the_callers(self) -> None:
        """A _http_req_retry_policy override's deadline of 1 s caps a
        caller's deadline of 10 s: the shorter wins."""
        client = CappedDeadlineClient()
        response = await client.http_fetch(
            self.get_url('/unavailable'), deadline=10.0,
            max_http_attempts=5,
            retry_policy=http.RetryPolicy(jitter=None, retry_timeout=0.4,
                                          budget=None))
        self.assertEqual(response.stop_reason, 'deadline')
        self.assertEqual(client.delays, [0.4])
        self.assertEqual(len(self.log), 2)

    @testing.gen_test
    async def test_caller_deadline_caps_a_longer_policy_hook(self) -> None:
        """The caller's shorter deadline wins over the hook's longer."""
        client = CappedDeadlineClient()
        response = await client.http_fetch(
            self.get_url('/unavailable'), deadline=0.3, max_http_attempts=5,
            retry_policy=http.RetryPolicy(jitter=None, retry_timeout=0.4,
                                          budget=None))
        self.assertEqual(response.stop_reason, 'deadline')
        self.assertEqual(client.delays, [])

    @testing.gen_test
    async def test_many_warning_headers_are_one_line(self) -> None:
        """2,000 Warning fields are logged as one capped WARNING line per
        attempt."""
        with self.assertLogs(LOGGER_NAME, logging.WARNING) as logs:
            response = await support.RecordingClient().http_fetch(
                self.get_url('/warnings'))
        self.assertTrue(response.ok)
        [record] = logs.records
        message = record.getMessage()
        self.assertIn('warning 0', message)
        self.assertIn('1990 more', message)
        self.assertNotIn('warning 1999', message)
        self.assertLess(len(message), 2000)


# -- HTTP_MAX_CLIENTS----------------------------------------------------------

class PlainHandler(web.RequestHandler):
    def get(self) -> None:
        self.write('ok')


def test_max_clients_set_on_the_shared_simple_client(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_MAX_CLIENTS sets max_clients of the shared simple
    AsyncHTTPClient() itself, as 2.x did."""
    httpclient.AsyncHTTPClient.configure(support.SIMPLE)

    async def check() -> typing.Tuple[int, int, bool]:
        sock, port = testing.bind_unused_port()
        server = httpserver.HTTPServer(web.Application([('/', PlainHandler)]))
        server.add_sockets([sock])
        monkeypatch.setenv('HTTP_MAX_CLIENTS', '7')
        try:
            response = await http.HTTPClientMixin().http_fetch(
                f'http://127.0.0.1:{port}/')
            shared = httpclient.AsyncHTTPClient()
            return shared.max_clients, response.code, response.ok
        finally:
            httpclient.AsyncHTTPClient().close()
            server.stop()

    try:
        assert asyncio.run(check()) == (7, 200, True)
    finally:
        httpclient.AsyncHTTPClient.configure(None)


def test_max_clients_used_by_the_mixin_is_the_shared_instance(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The simple client the mixin sends with is AsyncHTTPClient()."""
    httpclient.AsyncHTTPClient.configure(support.SIMPLE)
    used: typing.List[httpclient.AsyncHTTPClient] = []
    original = httpclient.AsyncHTTPClient.fetch

    def spy(self: httpclient.AsyncHTTPClient, request: typing.Any,
            **kwargs: typing.Any) -> typing.Any:
        used.append(self)
        return original(self, request, **kwargs)

    async def check() -> bool:
        sock, port = testing.bind_unused_port()
        server = httpserver.HTTPServer(web.Application([('/', PlainHandler)]))
        server.add_sockets([sock])
        monkeypatch.setenv('HTTP_MAX_CLIENTS', '3')
        try:
            with mock.patch.object(httpclient.AsyncHTTPClient, 'fetch', spy):
                await http.HTTPClientMixin().http_fetch(
                    f'http://127.0.0.1:{port}/')
            return used == [httpclient.AsyncHTTPClient()]
        finally:
            httpclient.AsyncHTTPClient().close()
            server.stop()

    try:
        assert asyncio.run(check())
    finally:
        httpclient.AsyncHTTPClient.configure(None)


def test_msgpack_still_keeps_binary() -> None:
    """The msgpack path is unchanged: bytes stay binary."""
    data = _content.serialize({'b': b'\x00\xff'}, 'application/msgpack')
    assert msgpack.unpackb(data, raw=False) == {'b': b'\x00\xff'}


# -- what an adversarial review found ---------------------------------------


@pytest.mark.parametrize('value, expected', [
    (' Bearer tok ', 'Bearer tok'), ('\tv\t', 'v'), ('a b', 'a b'),
    (b' raw ', 'raw'), ('   ', '')])
def test_edge_white_space_is_not_part_of_a_value(value: typing.Any,
                                                 expected: str) -> None:
    """Spaces and tabs at either end are dropped (RFC 9110 5.5), so that
    tornado never refuses the value with a message that shows it."""
    assert _checks.header_value('Authorization', value) == expected


@pytest.mark.parametrize('name', [None, 1, (1, 2)])
def test_response_headers_take_any_key_like_a_dict(name: typing.Any) -> None:
    """Keys that are not str behave as in a plain dict: get gives the
    default, [] raises KeyError."""
    headers = http.ResponseHeaders(cookie_headers())
    assert headers.get(name) is None
    assert name not in headers
    with pytest.raises(KeyError):
        headers[name]
    assert headers.setdefault('x-default') is None
    assert headers['X-Default'] is None


@pytest.mark.parametrize('params', [
    {'a': {'b': 1}}, {'a': {1, 2}}, [('a', [[1]])], {'a': ({'b': 1},)}])
def test_params_refuse_values_sent_as_a_repr(params: typing.Any) -> None:
    """A mapping, set or nested list as a query value is a TypeError: it
    would be sent as its Python repr."""
    with pytest.raises(TypeError, match="params value of 'a'"):
        _checks.params(params)


@pytest.mark.parametrize('value, error', [
    (1e16, ValueError), (10 ** 400, ValueError), (-10 ** 400, ValueError)])
def test_seconds_beyond_any_timer_are_refused(
        value: typing.Any, error: typing.Type[Exception]) -> None:
    """More seconds than a timer holds is a ValueError, not an
    OverflowError from curl later."""
    with pytest.raises(error, match='request_timeout'):
        _checks.seconds('request_timeout', value)


def test_huge_int_timeout_is_no_limit_where_infinity_is() -> None:
    """An int too large for a float counts as infinity."""
    assert _checks.seconds('t', 10 ** 400, infinite=True) == math.inf


@pytest.mark.parametrize('error', [
    FileNotFoundError(2, 'No such file', 'ca.pem'),
    PermissionError(13, 'Permission denied', 'client.key'),
    IsADirectoryError(21, 'Is a directory', '/etc')])
def test_unreadable_tls_files_are_not_retried(error: OSError) -> None:
    """A ca_certs or client_cert that cannot be read fails the same way
    every time: fatal, where other OSErrors are connection failures."""
    from sprockets.mixins.http import _transports
    assert _transports.classify(error) is http.Failure.FATAL
    assert _transports.classify(ConnectionResetError()) is (
        http.Failure.CONNECTION)


def test_json_body_with_a_byte_order_mark_decodes() -> None:
    """A UTF-8 BOM before JSON is ignored (RFC 8259 section 8.1)."""
    assert _content.deserialize(codecs.BOM_UTF8 + b'{"a":1}',
                                'application/json') == {'a': 1}
    assert _content.deserialize(codecs.BOM_UTF8 + b'[]',
                                'application/json; charset=utf-8') == []


class PostOnceHandler(RecordingHandler):
    """A 307 whose Location resolves to the request's own URL."""

    def prepare(self) -> None:
        super().prepare()
        self.set_status(307)
        self.set_header('Location', self.get_query_argument('to'))
        self.finish()


class HopTicksClockHandler(RecordingHandler):
    """Each hop moves the client's virtual clock 0.6 s on, then
    redirects to the next hop."""

    def prepare(self) -> None:
        super().prepare()
        self.settings['clock'].now += 0.6
        hop = int(self.request.path.rsplit('/', 1)[1])
        if hop < 4:
            self.redirect(f'/tick/{hop + 1}')
        else:
            self.finish({'done': True})


class CookieEchoHandler(RecordingHandler):
    """503 to the first two requests, then 200."""

    def prepare(self) -> None:
        super().prepare()
        if len(self.log) < 3:
            self.set_status(503)
        self.finish()


class DictBodyRetryClient(support.RecordingClient):
    """A 2.x override that re-builds the body as a dict on retry."""

    def _http_req_modify_for_retry(
            self, response: http.HTTPResponse, attempt: int, url: str,
            headers: typing.Dict[str, str], body: typing.Any
    ) -> typing.Tuple[str, typing.Dict[str, str], typing.Any]:
        document = json.loads(body)
        document['attempt'] = attempt
        return url, headers, document


class IntSerializer(support.RecordingClient):
    """A serializer override that returns what cannot be sent."""

    def _http_req_body_serialize(self, body: typing.Any,
                                 content_type: typing.Any) -> typing.Any:
        return 42


class BytesCorrelatedClient(support.RecordingClient):
    correlation_id = b'abc-123'


@support.on_every_client('TestReview')
class ReviewCases(support.ServerTestCase):
    """Findings of the adversarial review, on both clients."""

    __test__ = False

    def get_app(self) -> web.Application:
        self.log: Log = []
        self.clock = support.VirtualClockClient()
        return web.Application([
            ('/echo', EchoHandler, {'log': self.log}),
            ('/unavailable', UnavailableHandler, {'log': self.log}),
            ('/post-once', PostOnceHandler, {'log': self.log}),
            ('/bad-location', BadLocationHandler, {'log': self.log}),
            (r'/tick/\d+', HopTicksClockHandler, {'log': self.log}),
            ('/cookies', CookieEchoHandler, {'log': self.log}),
            (r'/.*', EchoHandler, {'log': self.log}),
        ], clock=self.clock)

    def location(self, target: str) -> str:
        return self.get_url('/bad-location?to=' + urllib_quote(target))

    @testing.gen_test
    async def test_white_space_around_values_is_dropped(self) -> None:
        """A value with spaces at its ends is sent without them, from
        request_headers, user_agent and Client headers alike."""
        await support.RecordingClient().http_fetch(
            self.get_url('/echo'), user_agent=' agent/1 ',
            request_headers={'Authorization': 'Bearer SECRET '})
        async with http.Client(self.get_url('/'),
                               headers={'X-Tenant': '\tacme '}) as client:
            await client.get('echo')
        self.assertEqual(
            (self.log[0].headers['Authorization'],
             self.log[0].headers['User-Agent'],
             self.log[1].headers['X-Tenant']),
            ('Bearer SECRET', 'agent/1', 'acme'))

    @testing.gen_test
    async def test_patched_fetch_with_dict_headers(self) -> None:
        """A 2.x test's fetch returning a response built with a dict of
        headers works: the body decodes, headers is a dict."""
        async def fetch(this: typing.Any, request: typing.Any,
                        **kwargs: typing.Any) -> httpclient.HTTPResponse:
            return httpclient.HTTPResponse(
                request, 200, headers={'Content-Type': 'application/json',
                                       'Warning': '199 - "canned"',
                                       'Link': '<http://h/n>; rel=next'},
                buffer=io.BytesIO(b'{"canned": true}'))

        with mock.patch.object(httpclient.AsyncHTTPClient, 'fetch', fetch):
            response = await support.RecordingClient().http_fetch(
                self.get_url('/echo'))
        self.assertEqual(response.body, {'canned': True})
        self.assertEqual(response.headers['content-type'],
                         'application/json')
        self.assertEqual(response.links,
                         [{'target': 'http://h/n', 'rel': 'next'}])

    @testing.gen_test
    async def test_locations_without_a_host_are_not_followed(self) -> None:
        """An empty Location, '//' and 'http://' would resolve to the
        request's own URL: the POST is sent once and the 307 returned."""
        for target in ('', '//', 'http://', '  '):
            with self.subTest(target=target):
                self.log.clear()
                response = await support.RecordingClient().http_fetch(
                    self.get_url('/post-once?to=' + urllib_quote(target)),
                    method='POST', body=b'once', follow_redirects=True)
                self.assertEqual(len(self.log), 1)
                self.assertEqual(response.code, 307)
                self.assertIsInstance(response.records[0].redirect_error,
                                      ValueError)
                self.assertEqual(response.stop_reason, 'not-retryable')

    @testing.gen_test
    async def test_redirect_targets_are_percent_encoded(self) -> None:
        """A Location with a space or non-ASCII text is sent
        percent-encoded, never as raw text in the request line."""
        client = support.RecordingClient()
        for target, path in (('/after HTTP/1.0', '/after%20HTTP/1.0'),
                             ('/café', '/caf%C3%A9')):
            with self.subTest(target=target):
                self.log.clear()
                response = await client.http_fetch(
                    self.location(target), follow_redirects=True)
                self.assertTrue(response.ok, response.exceptions)
                self.assertEqual(self.log[-1].path, path)

    @testing.gen_test
    async def test_non_ascii_paths_are_sent_by_both_clients(self) -> None:
        """A non-ASCII path is percent-encoded as UTF-8, so both clients
        send it (curl refused raw text)."""
        response = await support.RecordingClient().http_fetch(
            self.get_url('/café?q=ü'))
        self.assertTrue(response.ok, response.exceptions)
        self.assertEqual(self.log[0].uri, '/caf%C3%A9?q=%C3%BC')

    @testing.gen_test
    async def test_white_space_in_the_host_is_recorded(self) -> None:
        """A tab or line break in the authority is an invalid URL on both
        clients (urlsplit drops them silently)."""
        url = self.get_url('/echo').replace('/echo', '\t/echo')
        response = await support.RecordingClient().http_fetch(url)
        self.assertEqual(response.stop_reason, 'not-retryable')
        self.assertIn('white space', str(response.exceptions[0]))
        self.assertEqual(self.log, [])

    @testing.gen_test
    async def test_deadline_bounds_the_hops_of_a_redirect(self) -> None:
        """Hops of one attempt draw on the deadline too: with 0.6 s per
        hop and a 1 s deadline the call stops after two hops."""
        client = self.clock
        response = await client.http_fetch(
            self.get_url('/tick/0'), follow_redirects=True, deadline=1.0)
        self.assertEqual(response.stop_reason, 'deadline')
        self.assertEqual(response.code, 302)
        self.assertEqual([request.path for request in self.log],
                         ['/tick/0', '/tick/1'])

    @testing.gen_test
    async def test_methods_tornado_refuses_are_refused_before(self) -> None:
        """A body with DELETE or OPTIONS, or TRACE without
        allow_nonstandard_methods, raises before sending instead of
        being recorded as a failed attempt."""
        client = support.RecordingClient()
        for kwargs in ({'method': 'DELETE', 'body': b'x'},
                       {'method': 'OPTIONS', 'body': {'a': 1}},
                       {'method': 'TRACE'}, {'method': 'FOO'}):
            with self.subTest(**kwargs), self.assertRaisesRegex(
                    ValueError, 'allow_nonstandard_methods'):
                await client.http_fetch(self.get_url('/echo'), **kwargs)
        self.assertEqual(self.log, [])
        response = await client.http_fetch(
            self.get_url('/echo'), method='DELETE', body=b'x',
            allow_nonstandard_methods=True)
        self.assertTrue(response.ok)
        self.assertEqual(self.log[0].body, b'x')

    @testing.gen_test
    async def test_repeated_request_headers_stay_apart_on_retry(
            self) -> None:
        """Two Cookie fields are two fields on every attempt, not one
        joined with a comma from the second attempt on."""
        headers = httputil.HTTPHeaders()
        headers.add('Cookie', 'a=1')
        headers.add('Cookie', 'b=2')
        response = await support.RecordingClient().http_fetch(
            self.get_url('/cookies'), request_headers=headers)
        self.assertTrue(response.ok)
        self.assertEqual(
            [request.headers.get_list('Cookie') for request in self.log],
            [['a=1', 'b=2']] * 3)

    @testing.gen_test
    async def test_retry_hook_returning_a_dict_body(self) -> None:
        """A dict body from the retry hook is serialized by the call's
        content type, as the first attempt's was."""
        await DictBodyRetryClient().http_fetch(
            self.get_url('/unavailable'), method='PUT', body={'a': 1},
            content_type='application/json')
        self.assertEqual([json.loads(request.body) for request in self.log],
                         [{'a': 1}, {'a': 1, 'attempt': 1},
                          {'a': 1, 'attempt': 2}])

    @testing.gen_test
    async def test_small_fixes(self) -> None:
        """content_type=None means the default; a bytes correlation_id is
        its text; a huge max_redirects works on curl too; a serializer
        returning an int raises naming the hook."""
        await support.RecordingClient().http_fetch(
            self.get_url('/echo'), method='POST', body=b'x',
            content_type=None)
        await BytesCorrelatedClient().http_fetch(self.get_url('/echo'))
        response = await support.RecordingClient().http_fetch(
            self.location('/echo'), follow_redirects=True,
            max_redirects=2 ** 70)
        self.assertTrue(response.ok, response.exceptions)
        self.assertEqual(self.log[0].headers['Content-Type'],
                         'application/msgpack')
        self.assertEqual(self.log[1].headers['Correlation-Id'], 'abc-123')
        with self.assertRaisesRegex(TypeError, '_http_req_body_serialize'):
            await IntSerializer().http_fetch(
                self.get_url('/echo'), method='POST', body={'a': 1})
        self.assertEqual(len(self.log), 4)


def urllib_quote(text: str) -> str:
    import urllib.parse
    return urllib.parse.quote(text, safe='')
