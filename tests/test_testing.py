"""The testing kit tests itself: FakeUpstream, instant retries in all three
forms, and the handler tests shown in docs/testing.rst."""
from __future__ import annotations

import asyncio
import json
import pathlib
import subprocess
import sys
import textwrap
import typing
import unittest

import msgpack
import pytest
import tornado.testing
from tornado import httpclient, web

from sprockets.mixins import http
from sprockets.mixins.http import _transports, testing
from tests import support


# -- example: handler
class UserHandler(http.HTTPClientMixin, web.RequestHandler):
    """Answers with the name of a user kept by the users service."""

    async def get(self, user_id: str) -> None:
        response = await self.http_fetch(
            f"{self.settings['users_url']}/users/{user_id}")
        if not response.ok:
            raise web.HTTPError(502)
        self.write({'name': response.body['name']})


def make_app(users_url: str, *handlers: typing.Any) -> web.Application:
    return web.Application([(r'/users/(\d+)', UserHandler), *handlers],
                           users_url=users_url)
# -- end example


# -- example: unittest
class TestUserHandler(testing.InstantRetriesMixin,
                      tornado.testing.AsyncHTTPTestCase):

    def get_app(self) -> web.Application:
        self.upstream = testing.FakeUpstream()
        return make_app(self.get_url('/upstream'),
                        *self.upstream.handlers(prefix='/upstream'))

    def test_retries_until_the_upstream_answers(self) -> None:
        """The handler retries a 503 and answers with the user's name."""
        self.upstream.reply('GET', '/users/1', 503)
        self.upstream.reply('GET', '/users/1', 200, {'name': 'Alice'})
        response = self.fetch('/users/1')
        self.assertEqual(response.code, 200)
        self.assertEqual(json.loads(response.body), {'name': 'Alice'})
        self.assertEqual(len(self.retry_delays), 1)
        self.upstream.assert_requested('GET', '/users/1', times=2)

    def test_gives_up_after_three_attempts(self) -> None:
        """Three 503s in a row make the handler answer 502."""
        self.upstream.reply('GET', '/users/2', 503, times=3)
        response = self.fetch('/users/2')
        self.assertEqual(response.code, 502)
        self.assertEqual(len(self.retry_delays), 2)
        self.upstream.assert_no_pending_replies()
# -- end example


class TestUserHandlerCurl(TestUserHandler):
    """The documented unittest example, on curl_httpclient."""

    def setUp(self) -> None:
        httpclient.AsyncHTTPClient.configure(support.CURL)
        super().setUp()

    def tearDown(self) -> None:
        super().tearDown()
        httpclient.AsyncHTTPClient.configure(None)


# -- example: pytest
def test_user_handler_retries(instant_retries: typing.List[float]) -> None:
    """pytest style: the handler retries a 503 and answers with the name."""

    async def scenario() -> httpclient.HTTPResponse:
        async with testing.FakeUpstream() as upstream:
            upstream.reply('GET', '/users/1', 503)
            upstream.reply('GET', '/users/1', 200, {'name': 'Alice'})
            async with testing.serve(make_app(upstream.url())) as url:
                response = await httpclient.AsyncHTTPClient().fetch(
                    f'{url}/users/1', raise_error=False)
            upstream.assert_requested('GET', '/users/1', times=2)
        return response

    response = asyncio.run(scenario())
    assert response.code == 200
    assert json.loads(response.body) == {'name': 'Alice'}
    assert len(instant_retries) == 1
# -- end example


# -- pure: scripting errors --------------------------------------------------

@pytest.mark.parametrize('kwargs, message', [
    ({'status': 99}, 'status must be an int from 200 to 599'),
    ({'status': 600}, 'status must be an int from 200 to 599'),
    ({'status': '200'}, 'status must be an int from 200 to 599'),
    ({'status': True}, 'status must be an int from 200 to 599'),
    ({'status': 100}, 'status 100 is informational: a 1xx cannot be the '
                      'final answer'),
    ({'status': 101}, 'status 101 is informational'),
    ({'method': 'GET /'}, 'method must be an HTTP method token'),
    ({'method': ''}, 'method must be an HTTP method token'),
    ({'path': 'users'}, 'path must start with /'),
    ({'path': '/users?id=1'}, 'path must not have a query'),
    ({'path': '/a b'}, 'path cannot have spaces or control characters'),
    ({'path': '/a\nb'}, 'path cannot have spaces or control characters'),
    ({'times': 0}, 'times must be an int >= 1'),
    ({'delay': -1}, 'delay must be a number of seconds >= 0'),
    ({'delay': float('nan')}, 'delay must be a number of seconds >= 0'),
    ({'status': 204, 'body': {'a': 1}}, 'a 204 response cannot have a body'),
    ({'status': 304, 'body': 'x'}, 'a 304 response cannot have a body'),
])
def test_reply_refuses_bad_arguments(kwargs: typing.Dict[str, typing.Any],
                                     message: str) -> None:
    """reply() raises ValueError naming the bad argument."""
    arguments = {'method': 'GET', 'path': '/users', 'status': 200, **kwargs}
    with pytest.raises(ValueError, match=message):
        testing.FakeUpstream().reply(**arguments)


def test_reply_refuses_a_body_its_content_type_cannot_carry() -> None:
    """A dict body with a text content type raises UnsupportedContentType
    when queued, not when served."""
    with pytest.raises(http.UnsupportedContentType):
        testing.FakeUpstream().reply('GET', '/', 200, {'a': 1},
                                     content_type='text/plain')


def test_reply_to_a_dict_under_a_text_header_is_refused() -> None:
    """A dict body under a text/plain Content-Type header raises when
    queued, as it does with content_type='text/plain'."""
    with pytest.raises(http.UnsupportedContentType):
        testing.FakeUpstream().reply(
            'GET', '/', 200, {'a': 1}, headers={'Content-Type': 'text/plain'})


@pytest.mark.parametrize('method, body, headers, message', [
    ('GET', 'abc', {'Content-Length': '10'},
     'Content-Length 10 contradicts the body, which is 3 bytes'),
    ('GET', 'abc', {'content-length': '2'},
     'Content-Length 2 contradicts the body, which is 3 bytes'),
    ('GET', None, {'Content-Length': '5'},
     'Content-Length 5 contradicts the body, which is 0 bytes'),
    ('HEAD', {'a': 1}, {'Content-Length': '99'},
     'Content-Length 99 contradicts the body, which is 7 bytes'),
    ('GET', 'abc', [('Content-Length', '3'), ('Content-Length', '4')],
     'Content-Length 4 contradicts the body, which is 3 bytes'),
    ('GET', 'abc', {'Content-Length': 'three'},
     'Content-Length must be a number of bytes'),
    ('GET', 'abc', {'Content-Length': '-3'},
     'Content-Length must be a number of bytes'),
])
def test_reply_refuses_a_contradicting_content_length(
        method: str, body: typing.Any, headers: typing.Any,
        message: str) -> None:
    """A Content-Length header that is not the encoded body's length is a
    ValueError, and nothing is queued."""
    upstream = testing.FakeUpstream()
    with pytest.raises(ValueError, match=message):
        upstream.reply(method, '/a', 200, body, headers=headers)
    with pytest.raises(ValueError, match=message):
        upstream.set_default(200, body, headers=headers)
    upstream.assert_no_pending_replies()


@pytest.mark.parametrize('headers, error, message', [
    ({'Bad Name': 'x'}, ValueError, "reply header name 'Bad Name' is not"),
    ({'': 'x'}, ValueError, "reply header name '' is not a token"),
    ({b'X-Tag': 'x'}, TypeError, 'reply header names must be str'),
    ({'X-Tag': 'secret\r\nSet-Cookie: a=1'}, ValueError,
     "reply header 'X-Tag' has a control character"),
    ({'X-Tag': 5}, TypeError, "reply header 'X-Tag' must be str or bytes"),
    ({'X-Tag': None}, TypeError, "reply header 'X-Tag' must be str"),
    ({'X-Tag': 'secret \u20ac'}, ValueError,
     "reply header 'X-Tag' has a character Latin-1 cannot encode"),
    ([('X-Tag',)], TypeError, 'headers must be a mapping or'),
    ('X-Tag: x', TypeError, 'headers must be a mapping or'),
])
def test_reply_refuses_headers_that_cannot_be_sent(
        headers: typing.Any, error: typing.Type[Exception],
        message: str) -> None:
    """Reply header names and values go through the package's validation
    layer: the message names the header, never its value, and nothing is
    queued."""
    upstream = testing.FakeUpstream()
    with pytest.raises(error, match=message) as raised:
        upstream.reply('GET', '/a', 200, headers=headers)
    assert 'secret' not in str(raised.value)
    upstream.assert_no_pending_replies()


def test_reply_refuses_a_content_type_that_cannot_be_sent() -> None:
    """A content_type with a line break is a ValueError naming it."""
    with pytest.raises(ValueError,
                       match="reply header 'Content-Type' has a control"):
        testing.FakeUpstream().reply('GET', '/a', 200, 'x',
                                     content_type='text/plain\r\nX: y')


@pytest.mark.parametrize('body, content_type, message', [
    ({'a': 1}, 'application/json; charset=no-such-charset',
     "unknown charset 'no-such-charset'"),
    ('x', 'text/plain; charset=no-such-charset',
     "unknown charset 'no-such-charset'"),
    (['a'], 'application/json; charset=base64',  # a codec, not a charset
     "unknown charset 'base64'"),
    ('caf\u00e9 \u20ac', 'text/plain; charset=latin-1',
     "the body has characters that charset 'latin-1' cannot encode"),
])
def test_reply_refuses_a_charset_it_cannot_encode_in(
        body: typing.Any, content_type: str, message: str) -> None:
    """A charset Python does not know, or one that cannot carry a text
    body, is a ValueError, and nothing is queued."""
    upstream = testing.FakeUpstream()
    with pytest.raises(ValueError, match=message):
        upstream.reply('GET', '/a', 200, body, content_type=content_type)
    upstream.assert_no_pending_replies()


def test_set_default_leaves_the_queues_alone() -> None:
    """set_default does not take a reply queued for method DEFAULT path /,
    nor queue one."""
    upstream = testing.FakeUpstream()
    upstream.reply('DEFAULT', '/', 201)
    upstream.set_default(500)
    with pytest.raises(AssertionError) as raised:
        upstream.assert_no_pending_replies()
    assert str(raised.value) == 'replies never requested: DEFAULT /: 201'


def test_handlers_refuse_a_relative_prefix() -> None:
    """A mount prefix must start with a slash."""
    with pytest.raises(ValueError, match='prefix must start with /'):
        testing.FakeUpstream().handlers(prefix='upstream')


def test_url_needs_a_running_upstream() -> None:
    """url() before start raises RuntimeError."""
    with pytest.raises(RuntimeError, match='not running'):
        testing.FakeUpstream().url('/users')


def test_scripting_calls_chain() -> None:
    """reply, disconnect and set_default return the upstream."""
    upstream = testing.FakeUpstream()
    assert upstream.reply('GET', '/a').disconnect('GET', '/a').set_default(
        500) is upstream


def test_pending_replies_are_named() -> None:
    """assert_no_pending_replies names every reply still queued."""
    upstream = testing.FakeUpstream()
    upstream.reply('get', '/a', 503, times=2).disconnect('POST', '/b',
                                                          delay=1)
    with pytest.raises(AssertionError) as raised:
        upstream.assert_no_pending_replies()
    assert str(raised.value) == (
        'replies never requested: GET /a: 503; GET /a: 503; '
        'POST /b: connection reset after 1.0 s')


def test_clear_forgets_everything() -> None:
    """clear() drops the queued replies and the default."""
    upstream = testing.FakeUpstream()
    upstream.reply('GET', '/a').set_default(500)
    upstream.clear()
    upstream.assert_no_pending_replies()
    assert upstream.requests == []


# -- FakeUpstream against both AsyncHTTPClient implementations ---------------

class Sender(http.HTTPClientMixin):
    """Sends without retrying unless asked, and records retry delays."""

    MAX_HTTP_RETRIES = 1

    def __init__(self) -> None:
        super().__init__()
        self.delays: typing.List[float] = []

    async def _http_req_sleep(self, seconds: float) -> None:
        self.delays.append(seconds)


@support.on_every_client('TestFakeUpstream')
class FakeUpstreamCases(support.ServerTestCase):
    __test__ = False  # run on every client by the decorator

    def get_app(self) -> web.Application:
        self.mounted = testing.FakeUpstream()
        return web.Application(self.mounted.handlers(prefix='/mounted'))

    async def fetch_from(self, upstream: testing.FakeUpstream, path: str,
                         **kwargs: typing.Any) -> http.HTTPResponse:
        return await Sender().http_fetch(upstream.url(path), **kwargs)

    @tornado.testing.gen_test
    async def test_runs_on_an_ephemeral_loopback_port(self) -> None:
        """It listens on 127.0.0.1 while in 'async with', and not after."""
        async with testing.FakeUpstream() as upstream:
            url = upstream.url('/users')
            upstream.reply('GET', '/users', 200, {'ok': True})
            response = await Sender().http_fetch(url)
        self.assertRegex(url, r'^http://127\.0\.0\.1:[1-9][0-9]*/users$')
        self.assertEqual(response.body, {'ok': True})
        after = await Sender().http_fetch(url)
        self.assertEqual((after.code, _failure(after)),
                         (599, http.Failure.CONNECT))
        with self.assertRaisesRegex(RuntimeError, 'not running'):
            upstream.url()

    @tornado.testing.gen_test
    async def test_cannot_start_twice(self) -> None:
        """start() on a running upstream raises RuntimeError."""
        async with testing.FakeUpstream() as upstream:
            with self.assertRaisesRegex(RuntimeError, 'running already'):
                await upstream.start()

    @tornado.testing.gen_test
    async def test_replies_in_queue_order_then_404(self) -> None:
        """Queued replies are used in order; then a 404 names the
        request."""
        async with testing.FakeUpstream() as upstream:
            upstream.reply('GET', '/users/1', 503)
            upstream.reply('GET', '/users/1', 200, {'name': 'Alice'})
            codes = [(await self.fetch_from(upstream, '/users/1')).code
                     for _ in range(2)]
            empty = await self.fetch_from(upstream, '/users/1')
        self.assertEqual(codes, [503, 200])
        self.assertEqual((empty.code, empty.body), (
            404, 'FakeUpstream: no reply queued for GET /users/1'))

    @tornado.testing.gen_test
    async def test_replies_are_per_method_and_path(self) -> None:
        """A reply answers only its method and path; the method in any
        case."""
        async with testing.FakeUpstream() as upstream:
            upstream.reply('post', '/users', 201)
            other_method = await self.fetch_from(upstream, '/users')
            other_path = await self.fetch_from(upstream, '/users/',
                                               method='POST', body=b'')
            answered = await self.fetch_from(upstream, '/users',
                                             method='POST', body=b'')
        self.assertEqual((other_method.code, other_path.code,
                          answered.code), (404, 404, 201))

    @tornado.testing.gen_test
    async def test_times_repeats_a_reply(self) -> None:
        """times=3 answers three requests."""
        async with testing.FakeUpstream() as upstream:
            upstream.reply('GET', '/a', 202, times=3)
            codes = [(await self.fetch_from(upstream, '/a')).code
                     for _ in range(4)]
        self.assertEqual(codes, [202, 202, 202, 404])

    @tornado.testing.gen_test
    async def test_set_default_answers_what_is_not_queued(self) -> None:
        """set_default replaces the 404 for every unqueued request."""
        async with testing.FakeUpstream() as upstream:
            upstream.set_default(200, {'fallback': True})
            first = await self.fetch_from(upstream, '/a')
            second = await self.fetch_from(upstream, '/b', method='DELETE')
        self.assertEqual((first.body, second.body),
                         ({'fallback': True}, {'fallback': True}))

    @tornado.testing.gen_test
    async def test_set_default_keeps_a_reply_queued_for_default(
            self) -> None:
        """A reply queued for method DEFAULT path / answers that request;
        set_default answers the others."""
        async with testing.FakeUpstream() as upstream:
            upstream.reply('DEFAULT', '/', 201, 'queued')
            upstream.set_default(500, 'fallback')
            queued = await self.fetch_from(
                upstream, '/', method='DEFAULT',
                allow_nonstandard_methods=True)
            other = await self.fetch_from(upstream, '/x')
        self.assertEqual((queued.code, queued.raw.body), (201, b'queued'))
        self.assertEqual((other.code, other.raw.body), (500, b'fallback'))
        upstream.assert_no_pending_replies()

    @tornado.testing.gen_test
    async def test_bodies_follow_the_charset_of_their_content_type(
            self) -> None:
        """A JSON or str body is encoded in the charset its Content-Type
        names; outside the Unicode charsets JSON escapes non-ASCII."""
        utf16 = 'application/json; charset=utf-16'
        latin1 = 'application/json; charset=latin-1'
        async with testing.FakeUpstream() as upstream:
            upstream.reply('GET', '/utf-16', 200, {'name': 'Zo\u00eb \u20ac'},
                           content_type=utf16)
            upstream.reply('GET', '/latin-1', 200,
                           {'name': 'Zo\u00eb \u20ac'},
                           headers={'Content-Type': latin1})
            upstream.reply('GET', '/text', 200, 'h\u00e9llo',
                           content_type='text/plain; charset=latin-1')
            responses = {path: await self.fetch_from(upstream, path)
                         for path in ('/utf-16', '/latin-1', '/text')}
        self.assertEqual(
            {path: response.raw.body for path, response in responses.items()},
            {'/utf-16': '{"name":"Zo\u00eb \u20ac"}'.encode('utf-16'),
             '/latin-1': b'{"name":"Zo\\u00eb \\u20ac"}',
             '/text': b'h\xe9llo'})
        self.assertEqual(
            [responses[path].body for path in ('/utf-16', '/latin-1')],
            [{'name': 'Zo\u00eb \u20ac'}] * 2)

    @tornado.testing.gen_test
    async def test_content_length_that_agrees_is_sent(self) -> None:
        """A Content-Length equal to the body's length is sent; a HEAD or
        a 304 reply without a body may name any length."""
        async with testing.FakeUpstream() as upstream:
            upstream.reply('GET', '/a', 200, 'abc',
                           headers={'Content-Length': '3'})
            upstream.reply('HEAD', '/a', 200,
                           headers={'Content-Length': '1234'})
            upstream.reply('GET', '/b', 304,
                           headers={'Content-Length': '50'})
            get = await self.fetch_from(upstream, '/a')
            head = await self.fetch_from(upstream, '/a', method='HEAD')
            unchanged = await self.fetch_from(upstream, '/b')
        self.assertEqual((get.raw.body, get.headers['Content-Length']),
                         (b'abc', '3'))
        self.assertEqual((head.raw.body, head.headers['Content-Length']),
                         (b'', '1234'))
        self.assertEqual((unchanged.code, unchanged.raw.body), (304, b''))

    @tornado.testing.gen_test
    async def test_bodies_are_encoded_by_content_type(self) -> None:
        """dict bodies are JSON by default or msgpack when asked; str is
        text/plain; bytes are application/octet-stream."""
        async with testing.FakeUpstream() as upstream:
            upstream.reply('GET', '/json', 200, {'a': [1, 2]})
            upstream.reply('GET', '/msgpack', 200, {'b': b'\x00\xff'},
                           content_type='application/msgpack')
            upstream.reply('GET', '/text', 200, 'héllo')
            upstream.reply('GET', '/bytes', 200, b'\x00\x01')
            upstream.reply('GET', '/vendor', 200, {'c': 1},
                           content_type='application/vnd.x+json')
            responses = {path: await self.fetch_from(upstream, path)
                         for path in ('/json', '/msgpack', '/text',
                                      '/bytes', '/vendor')}
        self.assertEqual(
            {path: (response.headers['Content-Type'], response.raw.body)
             for path, response in responses.items()}, {
                '/json': ('application/json', b'{"a":[1,2]}'),
                '/msgpack': ('application/msgpack',
                             msgpack.packb({'b': b'\x00\xff'})),
                '/text': ('text/plain', 'héllo'.encode()),
                '/bytes': ('application/octet-stream', b'\x00\x01'),
                '/vendor': ('application/vnd.x+json', b'{"c":1}'),
            })
        self.assertEqual(responses['/msgpack'].body, {'b': b'\x00\xff'})

    @tornado.testing.gen_test
    async def test_content_type_header_decides_the_encoding(self) -> None:
        """Without content_type, the Content-Type header given (any case)
        encodes the body, so body and header agree."""
        async with testing.FakeUpstream() as upstream:
            upstream.reply('GET', '/a', 200, {'a': 1}, headers={
                'content-TYPE': 'application/msgpack'})
            response = await self.fetch_from(upstream, '/a')
        self.assertEqual(response.headers.get_list('Content-Type'),
                         ['application/msgpack'])
        self.assertEqual(response.raw.body, msgpack.packb({'a': 1}))
        self.assertEqual(response.body, {'a': 1})

    @tornado.testing.gen_test
    async def test_any_method_is_answered(self) -> None:
        """A reply queued for a method tornado does not know (PROPFIND)
        answers it, and the request is recorded."""
        async with testing.FakeUpstream() as upstream:
            upstream.reply('PROPFIND', '/dav', 207, {'found': 1})
            response = await self.fetch_from(
                upstream, '/dav', method='PROPFIND', body=b'',
                allow_nonstandard_methods=True)
        self.assertEqual((response.code, response.body), (207, {'found': 1}))
        upstream.assert_requested('PROPFIND', '/dav', times=1)
        upstream.assert_no_pending_replies()

    @tornado.testing.gen_test
    async def test_non_ascii_path_matches_its_percent_encoding(self) -> None:
        """A reply queued for /café answers /caf%C3%A9, which is recorded
        and asserted by either spelling."""
        async with testing.FakeUpstream() as upstream:
            upstream.reply('GET', '/café', 200, 'ok')
            response = await self.fetch_from(upstream, '/caf%C3%A9')
        self.assertEqual(response.raw.body, b'ok')
        self.assertEqual(upstream.requests[0].path, '/caf%C3%A9')
        upstream.assert_requested('GET', '/café', times=1)

    @tornado.testing.gen_test
    async def test_headers_are_sent(self) -> None:
        """Reply headers are sent; pairs repeat a header; a Content-Type
        header wins over the default."""
        async with testing.FakeUpstream() as upstream:
            upstream.reply('GET', '/a', 429, 'slow down', headers=[
                ('Retry-After', '7'), ('X-Tag', 'one'), ('X-Tag', 'two'),
                ('Content-Type', 'text/x-note')])
            response = await self.fetch_from(upstream, '/a')
        self.assertEqual(response.headers['Retry-After'], '7')
        self.assertEqual(response.headers.get_list('X-Tag'), ['one', 'two'])
        self.assertEqual(response.headers.get_list('Content-Type'),
                         ['text/x-note'])

    @tornado.testing.gen_test
    async def test_a_reply_without_body_has_no_content_type(self) -> None:
        """A 204 has no body and no Content-Type."""
        async with testing.FakeUpstream() as upstream:
            upstream.reply('DELETE', '/a', 204)
            response = await self.fetch_from(upstream, '/a',
                                             method='DELETE')
        self.assertEqual((response.code, response.raw.body), (204, b''))
        self.assertNotIn('Content-Type', response.headers)

    @tornado.testing.gen_test
    async def test_head_gets_no_body(self) -> None:
        """A HEAD request gets the status and headers, with the
        Content-Length of the body, without the body."""
        async with testing.FakeUpstream() as upstream:
            upstream.reply('HEAD', '/a', 200, {'a': 1})
            response = await self.fetch_from(upstream, '/a', method='HEAD')
        self.assertEqual((response.code, response.raw.body), (200, b''))
        self.assertEqual(response.headers['Content-Type'],
                         'application/json')
        self.assertEqual(response.headers['Content-Length'],
                         str(len(b'{"a":1}')))

    @tornado.testing.gen_test
    async def test_records_every_request(self) -> None:
        """Method, path, query, headers, raw and decoded body are
        recorded, in order."""
        async with testing.FakeUpstream() as upstream:
            await self.fetch_from(
                upstream, '/users', method='POST', body={'name': 'Alice'},
                content_type='application/json',
                params={'tag': ['a', 'b'], 'empty': ''},
                request_headers={'X-Request': 'one'})
            await self.fetch_from(upstream, '/packed', method='PUT',
                                  body={'b': b'\x01'})
            await self.fetch_from(upstream, '/form', method='POST',
                                  body={'a': '1'}, content_type=(
                                      'application/x-www-form-urlencoded'))
            await self.fetch_from(upstream, '/broken', method='POST',
                                  body=b'{not json',
                                  content_type='application/json')
        first, packed, form, broken = upstream.requests
        self.assertEqual((first.method, first.path, first.query),
                         ('POST', '/users',
                          {'tag': ['a', 'b'], 'empty': ['']}))
        self.assertEqual(first.headers['X-Request'], 'one')
        self.assertEqual((first.raw_body, first.body),
                         (b'{"name":"Alice"}', {'name': 'Alice'}))
        self.assertEqual((packed.method, packed.body), ('PUT', {'b': b'\x01'}))
        self.assertEqual((form.raw_body, form.body), (b'a=1', b'a=1'))
        self.assertEqual(broken.body, b'{not json')
        self.assertEqual(repr(first), '<RecordedRequest POST /users>')

    @tornado.testing.gen_test
    async def test_assertion_helpers(self) -> None:
        """assert_requested counts and returns the last match;
        assert_not_requested passes for what was never asked; both name
        what was received when they fail."""
        async with testing.FakeUpstream() as upstream:
            await self.fetch_from(upstream, '/a', params={'n': 1})
            await self.fetch_from(upstream, '/a', params={'n': 2})
            await self.fetch_from(upstream, '/b', method='DELETE')
        last = upstream.assert_requested('get', '/a', times=2)
        self.assertEqual(last.query, {'n': ['2']})
        self.assertEqual(len(upstream.requests_for(path='/a')), 2)
        self.assertEqual(len(upstream.requests_for('DELETE')), 1)
        upstream.assert_not_requested('GET', '/b')
        with self.assertRaises(AssertionError) as times:
            upstream.assert_requested('GET', '/a', times=1)
        with self.assertRaises(AssertionError) as never:
            upstream.assert_requested('GET', '/c')
        with self.assertRaises(AssertionError) as unexpected:
            upstream.assert_not_requested('DELETE', '/b')
        self.assertEqual(str(times.exception), (
            'expected GET /a 1 time(s), got it 2 time(s); received: '
            'GET /a, GET /a, DELETE /b'))
        self.assertEqual(str(never.exception), (
            'expected GET /c at least once, got it 0 time(s); received: '
            'GET /a, GET /a, DELETE /b'))
        self.assertEqual(str(unexpected.exception), (
            'expected no DELETE /b, got it 1 time(s); received: '
            'GET /a, GET /a, DELETE /b'))

    @tornado.testing.gen_test
    async def test_delay_outlasts_a_short_request_timeout(self) -> None:
        """A reply delayed past the request timeout times the attempt out,
        and the next reply is served normally."""
        async with testing.FakeUpstream() as upstream:
            upstream.reply('GET', '/slow', 200, 'late', delay=0.5)
            upstream.reply('GET', '/slow', 200, 'on time')
            response = await self.fetch_from(upstream, '/slow',
                                             request_timeout=0.05,
                                             max_http_attempts=2)
        self.assertEqual([record.outcome != '200'
                          for record in response.records], [True, False])
        self.assertEqual(response.raw.body, b'on time')
        self.assertEqual(http.Failure.TIMEOUT, _failure(response))

    @tornado.testing.gen_test
    async def test_delay_holds_the_answer(self) -> None:
        """A delayed reply arrives after at least its delay."""
        async with testing.FakeUpstream() as upstream:
            upstream.reply('GET', '/slow', 200, 'late', delay=0.1)
            response = await self.fetch_from(upstream, '/slow')
        self.assertEqual(response.raw.body, b'late')
        self.assertGreaterEqual(response.records[0].duration, 0.1)

    @tornado.testing.gen_test
    async def test_stop_ends_delayed_replies(self) -> None:
        """Leaving 'async with' cuts a pending delayed reply short."""
        upstream = testing.FakeUpstream()
        await upstream.start()
        upstream.reply('GET', '/slow', 200, 'late', delay=30)
        call = asyncio.ensure_future(self.fetch_from(upstream, '/slow'))

        async def arrived() -> None:
            while not upstream.requests:
                await asyncio.sleep(0)

        await asyncio.wait_for(arrived(), 5)
        await upstream.stop()
        response = await call
        self.assertEqual(response.code, 599)
        self.assertLess(response.duration, 5)

    @tornado.testing.gen_test
    async def test_disconnect_resets_the_connection(self) -> None:
        """disconnect() resets the connection; the engine retries it as a
        connection failure."""
        async with testing.FakeUpstream() as upstream:
            upstream.disconnect('GET', '/users/1')
            upstream.reply('GET', '/users/1', 200, {'name': 'Alice'})
            sender = Sender()
            response = await sender.http_fetch(upstream.url('/users/1'),
                                               max_http_attempts=3)
        self.assertEqual(_failure(response), http.Failure.CONNECTION)
        self.assertIn('reset by peer', str(response.records[0].exception))
        self.assertEqual(response.body, {'name': 'Alice'})
        self.assertEqual(len(sender.delays), 1)
        upstream.assert_requested('GET', '/users/1', times=2)

    @tornado.testing.gen_test
    async def test_mounted_under_a_prefix(self) -> None:
        """Mounted into an app, it answers under the prefix and records
        paths without it."""
        self.mounted.reply('GET', '/users/1', 200, {'name': 'Alice'})
        response = await Sender().http_fetch(
            self.get_url('/mounted/users/1?full=1'))
        self.assertEqual(response.body, {'name': 'Alice'})
        request = self.mounted.assert_requested('GET', '/users/1')
        self.assertEqual(request.query, {'full': ['1']})

    @tornado.testing.gen_test
    async def test_mounted_disconnect_and_delay(self) -> None:
        """A mounted upstream resets and delays as a standalone one does."""
        self.mounted.disconnect('GET', '/a', delay=0.05)
        self.mounted.reply('GET', '/a', 200, 'ok')
        sender = Sender()
        response = await sender.http_fetch(self.get_url('/mounted/a'),
                                           max_http_attempts=2)
        self.assertEqual(_failure(response), http.Failure.CONNECTION)
        self.assertGreaterEqual(response.records[0].duration, 0.05)
        self.assertEqual(response.raw.body, b'ok')


def test_raw_utf8_path_is_recorded_percent_encoded() -> None:
    """A request line with raw UTF-8 (as tornado's simple client sends
    /café) takes the reply queued for /café; its path is recorded
    percent-encoded."""
    async def scenario() -> bytes:
        async with testing.FakeUpstream() as upstream:
            upstream.reply('GET', '/café', 200, 'ok')
            port = int(upstream.url().rsplit(':', 1)[1])
            reader, writer = await asyncio.open_connection('127.0.0.1', port)
            writer.write('GET /café HTTP/1.0\r\n\r\n'.encode())
            answer = await reader.read()
            writer.close()
            await writer.wait_closed()
            upstream.assert_requested('GET', '/caf%C3%A9', times=1)
        return answer

    answer = asyncio.run(scenario())
    assert answer.startswith(b'HTTP/1.1 200 ')
    assert answer.endswith(b'\r\n\r\nok')


def _failure(response: http.HTTPResponse) -> http.Failure:
    """How the engine classifies the first attempt's exception."""
    exception = response.records[0].exception
    assert exception is not None
    return _transports.classify(exception)


# -- instant retries ---------------------------------------------------------

ORIGINAL_SLEEP = http.HTTPClientMixin.__dict__['_http_req_sleep']


def test_context_manager_records_and_restores() -> None:
    """instant_retries() records the delays asked for without sleeping,
    and puts the real sleep back on the way out."""
    with testing.instant_retries() as delays:
        asyncio.run(http.HTTPClientMixin()._http_req_sleep(30))
        asyncio.run(http.Client('http://h/')._http_req_sleep(60))
    assert delays == [30, 60]
    assert http.HTTPClientMixin.__dict__['_http_req_sleep'] is ORIGINAL_SLEEP


def test_context_manager_leaves_overrides_alone() -> None:
    """A class with its own _http_req_sleep keeps it."""
    sender = Sender()
    with testing.instant_retries() as delays:
        asyncio.run(sender._http_req_sleep(2))
    assert (delays, sender.delays) == ([], [2])


def test_fixture_records_delays(instant_retries: typing.List[float]) -> None:
    """The instant_retries fixture yields the list of delays."""
    asyncio.run(http.HTTPClientMixin()._http_req_sleep(30))
    assert instant_retries == [30]


def test_fake_upstream_fixture(fake_upstream: testing.FakeUpstream) -> None:
    """The fake_upstream fixture is a fresh upstream to start in the test's
    event loop."""
    async def scenario() -> http.HTTPResponse:
        async with fake_upstream:
            fake_upstream.reply('GET', '/a', 200, {'ok': True})
            return await Sender().http_fetch(fake_upstream.url('/a'))

    assert fake_upstream.requests == []
    assert asyncio.run(scenario()).body == {'ok': True}


def test_mixin_restores_the_sleep_after_each_test() -> None:
    """InstantRetriesMixin gives each test its own delays and puts the real
    sleep back after it."""
    seen: typing.List[typing.Any] = []

    class Case(testing.InstantRetriesMixin, unittest.TestCase):
        def test_one(self) -> None:
            asyncio.run(http.HTTPClientMixin()._http_req_sleep(1))
            seen.append(list(self.retry_delays))

        def test_two(self) -> None:
            seen.append(list(self.retry_delays))

    result = unittest.TestResult()
    unittest.defaultTestLoader.loadTestsFromTestCase(Case).run(result)
    assert (result.testsRun, result.errors, result.failures) == (2, [], [])
    assert seen == [[1], []]
    assert http.HTTPClientMixin.__dict__['_http_req_sleep'] is ORIGINAL_SLEEP


@support.on_every_client('TestInstantRetriesMixin')
class InstantRetriesMixinCases(testing.InstantRetriesMixin,
                               support.ServerTestCase):
    __test__ = False  # run on every client by the decorator

    def get_app(self) -> web.Application:
        self.upstream = testing.FakeUpstream()
        return web.Application(self.upstream.handlers())

    @tornado.testing.gen_test
    async def test_retry_delays_are_recorded(self) -> None:
        """self.retry_delays holds the backoff of each retry."""
        self.upstream.reply('GET', '/a', 503, times=2)
        self.upstream.reply('GET', '/a', 200)
        policy = http.RetryPolicy(jitter=None, retry_timeout=1)
        async with http.Client(self.get_url('/'),
                               retry_policy=policy) as client:
            response = await client.get('a')
        self.assertTrue(response.ok)
        self.assertEqual(self.retry_delays, [1.0, 2.0])


# -- the pytest plugin needs no conftest -------------------------------------

PLUGIN_TEST = '''
import asyncio

from sprockets.mixins.http import HTTPClientMixin, testing


def test_instant_retries(instant_retries):
    asyncio.run(HTTPClientMixin()._http_req_sleep(5))
    assert instant_retries == [5]


def test_fake_upstream(fake_upstream):
    assert isinstance(fake_upstream, testing.FakeUpstream)
'''


# the first test leaves its upstream running, with a connection open; the
# second proves that the fixture's teardown closed both
LEFT_RUNNING_TEST = '''
import asyncio
import socket

import pytest

LEFT = {}


def test_starts_and_forgets_to_stop(fake_upstream):
    async def scenario():
        await fake_upstream.start()
        fake_upstream.reply('GET', '/a', 200, 'ok')
        port = int(fake_upstream.url().rsplit(':', 1)[1])
        sock = socket.create_connection(('127.0.0.1', port), timeout=5)
        sock.sendall(b'GET /a HTTP/1.1\\r\\nHost: test\\r\\n\\r\\n')
        head = await asyncio.get_running_loop().run_in_executor(
            None, sock.recv, 65536)
        LEFT.update(port=port, sock=sock, head=head)

    asyncio.run(scenario())
    assert LEFT['head'].startswith(b'HTTP/1.1 200 ')


def test_teardown_closed_the_port_and_the_connection():
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(('127.0.0.1', LEFT['port']), timeout=5)
    sock = LEFT['sock']
    with sock:
        while sock.recv(65536):  # the rest of the answer, then the end
            pass
'''


def run_pytest(directory: pathlib.Path, *options: str,
               source: str = PLUGIN_TEST
               ) -> subprocess.CompletedProcess[str]:
    (directory / 'test_plugin.py').write_text(textwrap.dedent(source))
    return subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
         '-W', 'error', *options, 'test_plugin.py'],
        cwd=directory, capture_output=True, text=True, timeout=60,
        check=False)


def test_fixtures_need_no_conftest(tmp_path: pathlib.Path) -> None:
    """The pytest11 entry point provides the fixtures to a directory that
    has no conftest.py."""
    result = run_pytest(tmp_path)
    assert not list(tmp_path.glob('conftest.py'))
    assert result.returncode == 0, result.stdout + result.stderr
    assert '2 passed' in result.stdout


def test_fake_upstream_fixture_stops_what_the_test_left_running(
        tmp_path: pathlib.Path) -> None:
    """A test that starts the fake_upstream fixture and never stops it
    leaves neither its port listening nor its connections open."""
    result = run_pytest(tmp_path, source=LEFT_RUNNING_TEST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert '2 passed' in result.stdout


def test_fixtures_come_from_the_plugin(tmp_path: pathlib.Path) -> None:
    """Without the plugin, the fixtures are unknown: the entry point is
    what provides them."""
    result = run_pytest(tmp_path, '-p', 'no:sprockets_mixins_http')
    assert result.returncode == 1
    assert "fixture 'instant_retries' not found" in result.stdout


def test_module_imports_without_pytest(tmp_path: pathlib.Path) -> None:
    """sprockets.mixins.http.testing imports where pytest cannot."""
    (tmp_path / 'pytest.py').write_text('raise ImportError("no pytest")\n')
    result = subprocess.run(
        [sys.executable, '-c',
         'import sprockets.mixins.http.testing as t; '
         'print(t.instant_retries.__name__, hasattr(t, "pytest"), '
         't.pytest)'],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        check=False, env={'PYTHONPATH': str(tmp_path), 'PATH': ''})
    assert result.stdout.split() == ['instant_retries', 'True', 'None'], \
        result.stderr
