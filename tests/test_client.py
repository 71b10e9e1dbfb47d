"""The standalone Client: path joining, headers, fetch defaults, closing,
and the mixin's engine behind it."""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import typing
from unittest import mock

import msgpack
import pytest
from tornado import httpclient, httpserver, netutil, testing, web

from sprockets.mixins import http
from sprockets.mixins.http import testing as http_testing
from tests import support

LOGGER_NAME = 'sprockets.mixins.http'

MakeClient = typing.Callable[..., http.Client]


@pytest.fixture
def make_client() -> typing.Iterator[MakeClient]:
    """Build Clients and close them after the test."""
    clients: typing.List[http.Client] = []

    def make(*args: typing.Any, **kwargs: typing.Any) -> http.Client:
        clients.append(http.Client(*args, **kwargs))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


# -- pure: URLs, validation, construction -----------------------------------

JOINS = [
    ('http://h/api/', 'users/1', 'http://h/api/users/1'),
    ('http://h/api/', '/users/1', 'http://h/api/users/1'),
    ('http://h/api', 'users/1', 'http://h/api/users/1'),
    ('http://h/api', '/users/1', 'http://h/api/users/1'),
    ('http://h', 'users/1', 'http://h/users/1'),
    ('http://h/', '/users/1', 'http://h/users/1'),
    ('http://h/api/', '', 'http://h/api/'),
    ('http://h/api', '', 'http://h/api/'),
    ('http://h/api/', 'users//1', 'http://h/api/users//1'),
    ('http://h/api/', 'users?active=1', 'http://h/api/users?active=1'),
    ('http://h/api/', 'a:b', 'http://h/api/a:b'),
    ('http://h/api/v1/', '../v2/x', 'http://h/api/v1/../v2/x'),
    ('https://h:8443/api/', 'x', 'https://h:8443/api/x'),
    ('http://h/api/', 'http://h/other', 'http://h/other'),
    ('http://h/api/', 'HTTP://H:80/other', 'HTTP://H:80/other'),
    ('https://h/api/', '//h/other', 'https://h/other'),
]


@pytest.mark.parametrize('base_url, path, expected', JOINS)
def test_url_joins_paths(make_client: MakeClient, base_url: str, path: str,
                         expected: str) -> None:
    """A path is relative to the base path, leading slash or not; an
    absolute URL on the same origin is used as it is."""
    assert make_client(base_url).url(path) == expected


@pytest.mark.parametrize('path', [
    'http://other/api/x',
    'https://h/api/x',
    'http://h:8080/api/x',
    '//other/api/x',
    'ftp://h/api/x',
])
def test_url_refuses_another_origin(make_client: MakeClient,
                                    path: str) -> None:
    """An absolute URL on another origin raises ValueError, so the client's
    headers never reach another host."""
    with pytest.raises(ValueError, match='is not on the origin of'):
        make_client('http://h/api/').url(path)


def test_url_refuses_a_path_that_is_not_a_string(
        make_client: MakeClient) -> None:
    """A path that is not a str raises TypeError naming its type."""
    with pytest.raises(TypeError, match='path must be a str, got bytes'):
        make_client('http://h/').url(b'users')  # type: ignore[arg-type]


@pytest.mark.parametrize('base_url', [
    '',
    'h/api',
    '/api',
    'ftp://h/api',
    'http:///api',
    'http://',
    'http://h:99999/',
    'http://h/api?key=1',
    'http://h/api#top',
])
def test_base_url_is_validated(base_url: str) -> None:
    """A base URL that is not http(s) with a host, or that has a query or
    fragment, raises ValueError."""
    with pytest.raises(ValueError, match='base_url'):
        http.Client(base_url)


def test_base_url_error_hides_the_password() -> None:
    """The ValueError for a bad base URL does not show its password."""
    with pytest.raises(ValueError) as raised:
        http.Client('http://user:secret@h/api?x=1')
    assert 'secret' not in str(raised.value)


def test_base_url_gets_a_trailing_slash(make_client: MakeClient) -> None:
    """base_url is normalized to end with a slash."""
    assert make_client('http://h/api').base_url == 'http://h/api/'


def test_repr_hides_the_password(make_client: MakeClient) -> None:
    """The repr names the base URL without its password, and the state."""
    client = make_client('http://user:secret@h/api')
    assert repr(client) == '<Client http://<redacted>@h/api/ open>'
    client.close()
    assert repr(client) == '<Client http://<redacted>@h/api/ closed>'


def test_headers_are_copied(make_client: MakeClient) -> None:
    """The headers dict passed in is neither kept nor changed."""
    headers = {'Authorization': 'Bearer a'}
    client = make_client('http://h/', headers=headers)
    headers['Authorization'] = 'Bearer b'
    assert client.headers['Authorization'] == 'Bearer a'
    client.headers['Authorization'] = 'Bearer c'
    assert client.headers['Authorization'] == 'Bearer a'
    assert headers == {'Authorization': 'Bearer b'}


def test_unknown_fetch_default_is_refused() -> None:
    """A fetch default that neither http_fetch nor HTTPRequest takes raises
    TypeError at construction."""
    with pytest.raises(TypeError, match='request_timout'):
        http.Client('http://h/', request_timout=1)


@pytest.mark.parametrize('name', ['body', 'params', 'url', 'method',
                                  'request_headers'])
def test_call_arguments_are_not_fetch_defaults(name: str) -> None:
    """A call's own arguments cannot be fetch defaults."""
    with pytest.raises(TypeError, match=name):
        http.Client('http://h/', **{name: {}})


def test_raise_error_is_refused() -> None:
    """raise_error as a fetch default raises RuntimeError, as with the
    mixin."""
    with pytest.raises(RuntimeError, match='raise_error'):
        http.Client('http://h/', raise_error=True)


def test_retry_policy_must_be_a_policy() -> None:
    """A retry_policy that is not a RetryPolicy raises TypeError."""
    with pytest.raises(TypeError, match='retry_policy must be a'):
        http.Client('http://h/', retry_policy={'max_attempts': 1})


def test_retry_policy_becomes_the_client_policy(
        make_client: MakeClient) -> None:
    """retry_policy is the client's RETRY_POLICY; the class keeps None."""
    policy = http.RetryPolicy(max_attempts=5)
    assert make_client('http://h/', retry_policy=policy).RETRY_POLICY \
        is policy
    assert http.Client.RETRY_POLICY is None


def test_close_is_idempotent(make_client: MakeClient) -> None:
    """Closing twice is harmless and the client stays closed."""
    client = make_client('http://h/')
    client.close()
    client.close()
    assert client.closed


def test_close_all_closes_every_open_client() -> None:
    """close_all closes the open clients, counts them, and skips the ones
    closed already."""
    http.close_all()  # whatever earlier tests left open
    first, second, third = (http.Client('http://h/'), http.Client(
        'http://h/'), http.Client('http://h/'))
    third.close()
    assert http.close_all() == 2
    assert first.closed and second.closed
    assert http.close_all() == 0


def test_closed_client_refuses_requests() -> None:
    """A request on a closed client raises RuntimeError naming it."""
    client = http.Client('http://h/api')
    client.close()
    with pytest.raises(RuntimeError,
                       match=r'<Client http://h/api/ closed> is closed'):
        asyncio.run(client.get('users'))


BAD_HEADERS = [  # the messages of the one validation layer, _checks
    ({'X-Price': '10 €'},
     "header 'X-Price' has a character Latin-1 cannot encode"),
    ({'bad name': 'x'}, "header name 'bad name' is not a token"),
    ({'X-Split': 'a\nb'}, "header 'X-Split' has a control character"),
    ({'': 'x'}, "header name '' is not a token"),
]


@pytest.mark.parametrize('headers, message', BAD_HEADERS)
def test_invalid_client_header_is_a_value_error(
        headers: typing.Dict[str, str], message: str) -> None:
    """A header HTTP cannot carry raises ValueError naming it when the
    client is built, not tornado's HTTPInputError."""
    with pytest.raises(ValueError, match=message):
        http.Client('http://h/', headers=headers)


@pytest.mark.parametrize('headers, message', BAD_HEADERS)
def test_invalid_call_header_is_a_value_error(
        make_client: MakeClient, headers: typing.Dict[str, str],
        message: str) -> None:
    """A call header HTTP cannot carry raises ValueError naming it, before
    anything is sent."""
    client = make_client('http://h/')
    with pytest.raises(ValueError, match=message):
        asyncio.run(client.get('users', headers=headers))


def test_header_name_must_be_a_string(make_client: MakeClient) -> None:
    """A header name that is not a str raises TypeError."""
    with pytest.raises(TypeError, match='header names must be str, got 1'):
        make_client('http://h/', headers={1: 'x'})  # type: ignore[dict-item]


def test_closed_client_refuses_http_fetch() -> None:
    """The inherited http_fetch on a closed client raises the same
    RuntimeError as its own methods."""
    client = http.Client('http://h/api')
    client.close()
    with pytest.raises(RuntimeError,
                       match=r'<Client http://h/api/ closed> is closed'):
        asyncio.run(client.http_fetch('http://127.0.0.1:9/users',
                                      max_http_attempts=1))


@pytest.fixture
def threaded_server() -> typing.Iterator[str]:
    """The echo app on a loopback port, served from its own thread and
    event loop, so that it outlives the loops of asyncio.run()."""
    sockets = netutil.bind_sockets(0, '127.0.0.1')
    port = sockets[0].getsockname()[1]
    started = threading.Event()
    state: typing.Dict[str, typing.Any] = {}

    async def serve() -> None:
        server = httpserver.HTTPServer(web.Application([('/.*', EchoHandler)]))
        server.add_sockets(sockets)
        state['loop'], state['stop'] = asyncio.get_running_loop(), \
            asyncio.Event()
        started.set()
        await state['stop'].wait()
        server.stop()
        await server.close_all_connections()

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    assert started.wait(10)
    yield f'http://127.0.0.1:{port}'
    state['loop'].call_soon_threadsafe(state['stop'].set)
    thread.join(10)


@pytest.mark.parametrize('implementation', support.every_client())
def test_http_clients_of_closed_loops_are_closed(
        threaded_server: str, implementation: str) -> None:
    """A client used across several asyncio.run() calls holds only the
    AsyncHTTPClient of the last loop: each earlier one is closed when the
    client next sends."""
    closed: typing.List[object] = []
    httpclient.AsyncHTTPClient.configure(implementation)
    httpclient.AsyncHTTPClient.configure(
        recording_implementation(closed, []))
    try:
        client = http.Client(threaded_server)
        codes = [asyncio.run(client.get('echo')).code for _ in range(3)]
        held, closed_before = len(client._http_clients), len(closed)
        client.close()
    finally:
        httpclient.AsyncHTTPClient.configure(None)
    assert codes == [200, 200, 200]
    assert (held, closed_before) == (1, 2)
    assert len({id(each) for each in closed}) == 3


# -- integration: a real server, both AsyncHTTPClient implementations -------

class EchoHandler(web.RequestHandler):
    """Answers with what it received."""

    def _echo(self) -> None:
        self.write({
            'method': self.request.method,
            'path': self.request.path,
            'query': self.request.query,
            'headers': {name: self.request.headers.get_list(name)
                        for name in self.request.headers},
            'body': self.request.body.decode('latin-1'),
        })

    get = post = put = patch = delete = _echo


class FlakyHandler(web.RequestHandler):
    """503 until the third attempt."""

    def get(self) -> None:
        if self.request.headers.get('X-Retry-Attempt') != '3':
            self.set_status(503)
        self.write({'attempt': self.request.headers.get('X-Retry-Attempt')})


class RateLimitedHandler(web.RequestHandler):
    """429 with Retry-After: 2 on the first attempt, then 200."""

    def get(self) -> None:
        if 'X-Retry-Attempt' not in self.request.headers:
            self.set_status(429)
            self.set_header('Retry-After', '2')
        self.write({'ok': True})


class BrokenHandler(web.RequestHandler):
    """Always 500."""

    def get(self) -> None:
        self.set_status(500)


class SlowHandler(web.RequestHandler):
    """Answers after 0.2 s; ARRIVED is set when a request comes in."""

    ARRIVED: typing.ClassVar[typing.Optional[asyncio.Event]] = None

    async def get(self) -> None:
        if self.ARRIVED is not None:
            self.ARRIVED.set()
        await asyncio.sleep(0.2)
        self.write({'slow': True})


def recording_implementation(closed: typing.List[object],
                             sizes: typing.List[object]) -> type:
    """The configured AsyncHTTPClient class, recording max_clients and
    close()."""
    base = httpclient.AsyncHTTPClient.configured_class()

    class Recording(base):  # type: ignore[valid-type,misc]
        def initialize(self, **kwargs: typing.Any) -> None:
            sizes.append(kwargs.get('max_clients'))
            super().initialize(**kwargs)

        def close(self) -> None:
            closed.append(self)
            super().close()

    return Recording


class MixinUser(http.HTTPClientMixin):
    """A plain mixin user, to compare with the Client."""


@support.on_every_client('TestClient')
class ClientCases(support.ServerTestCase):
    __test__ = False  # run through on_every_client

    handlers: typing.ClassVar[typing.List[typing.Any]] = [
        ('/flaky', FlakyHandler),
        ('/limited', RateLimitedHandler),
        ('/broken', BrokenHandler),
        ('/slow', SlowHandler),
        ('/.*', EchoHandler),
    ]

    def setUp(self) -> None:
        super().setUp()
        self.clients: typing.List[http.Client] = []

    def tearDown(self) -> None:
        for client in self.clients:
            client.close()
        super().tearDown()

    def client(self, path: str = '/', *args: typing.Any,
               **kwargs: typing.Any) -> http.Client:
        self.clients.append(http.Client(self.get_url(path), *args, **kwargs))
        return self.clients[-1]

    def record_closes(self) -> typing.Tuple[typing.List[object],
                                            typing.List[object]]:
        closed: typing.List[object] = []
        sizes: typing.List[object] = []
        httpclient.AsyncHTTPClient.configure(
            recording_implementation(closed, sizes))
        return closed, sizes

    # paths

    @testing.gen_test
    async def test_relative_path_is_under_the_base_path(self) -> None:
        """'users/1' on a base URL of /api goes to /api/users/1."""
        response = await self.client('/api').get('users/1')
        self.assertEqual(response.body['path'], '/api/users/1')

    @testing.gen_test
    async def test_leading_slash_stays_under_the_base_path(self) -> None:
        """'/users/1' on a base URL of /api/ also goes to /api/users/1."""
        response = await self.client('/api/').get('/users/1')
        self.assertEqual(response.body['path'], '/api/users/1')

    @testing.gen_test
    async def test_same_origin_absolute_url_is_sent_as_is(self) -> None:
        """An absolute URL on the base URL's origin leaves the base path."""
        response = await self.client('/api/').get(self.get_url('/other'))
        self.assertEqual(response.body['path'], '/other')

    @testing.gen_test
    async def test_params_are_added_to_the_query(self) -> None:
        """params are merged into the query string the path already has."""
        response = await self.client('/api').get(
            'users?active=1', params={'page': 2, 'tag': ['a', 'b']})
        self.assertEqual(response.body['query'],
                         'active=1&page=2&tag=a&tag=b')

    @testing.gen_test
    async def test_every_method_helper_sends_its_method(self) -> None:
        """get, post, put, patch and delete send their methods."""
        client = self.client('/api')
        for helper, method in [(client.get, 'GET'), (client.post, 'POST'),
                               (client.put, 'PUT'), (client.patch, 'PATCH'),
                               (client.delete, 'DELETE')]:
            response = await helper('things/1')
            self.assertEqual((response.body['method'],
                              response.body['path']),
                             (method, '/api/things/1'))

    @testing.gen_test
    async def test_request_sends_any_method(self) -> None:
        """request() takes the method and the path."""
        response = await self.client('/api').request('put', 'things/2',
                                                     body='x')
        self.assertEqual((response.body['method'], response.body['body']),
                         ('PUT', 'x'))

    # headers

    @testing.gen_test
    async def test_call_headers_merge_over_client_headers(self) -> None:
        """A call header replaces the client's of any case; the others and
        the mixin's defaults are kept."""
        client = self.client('/', headers={'Authorization': 'Bearer a',
                                           'X-Client': 'one'})
        response = await client.get('echo',
                                    headers={'authorization': 'Bearer b'})
        headers = response.body['headers']
        self.assertEqual(headers['Authorization'], ['Bearer b'])
        self.assertEqual(headers['X-Client'], ['one'])
        self.assertEqual(headers['Accept'],
                         ['application/json, application/msgpack'])
        self.assertEqual(headers['User-Agent'], [http.DEFAULT_USER_AGENT])

    @testing.gen_test
    async def test_none_removes_a_client_header(self) -> None:
        """A call header set to None is not sent for that call only."""
        client = self.client('/', headers={'X-Client': 'one'})
        without = await client.get('echo', headers={'X-Client': None})
        again = await client.get('echo')
        self.assertNotIn('X-Client', without.body['headers'])
        self.assertEqual(again.body['headers']['X-Client'], ['one'])

    @testing.gen_test
    async def test_call_headers_are_not_changed(self) -> None:
        """The call's headers dict is left as it was, and does not stick
        to the client."""
        client = self.client('/', headers={'X-Client': 'one'})
        call_headers = {'X-Call': 'two'}
        await client.post('echo', headers=call_headers, body={'a': 1})
        response = await client.get('echo')
        self.assertEqual(call_headers, {'X-Call': 'two'})
        self.assertNotIn('X-Call', response.body['headers'])
        self.assertEqual(dict(client.headers), {'X-Client': 'one'})

    # fetch defaults

    @testing.gen_test
    async def test_fetch_defaults_apply_to_every_call(self) -> None:
        """A content_type fetch default serializes bodies as JSON."""
        client = self.client('/', content_type=http.CONTENT_TYPE_JSON)
        response = await client.post('echo', body={'a': 1})
        self.assertEqual(response.body['headers']['Content-Type'],
                         ['application/json'])
        self.assertEqual(json.loads(response.body['body']), {'a': 1})

    @testing.gen_test
    async def test_call_kwargs_override_fetch_defaults(self) -> None:
        """A call's content_type wins over the client's."""
        client = self.client('/', content_type=http.CONTENT_TYPE_JSON)
        response = await client.post(
            'echo', body={'a': 1}, content_type='application/msgpack')
        self.assertEqual(response.body['headers']['Content-Type'],
                         ['application/msgpack'])
        self.assertEqual(
            msgpack.unpackb(response.body['body'].encode('latin-1')),
            {'a': 1})

    @testing.gen_test
    async def test_request_timeout_default_and_override(self) -> None:
        """A request_timeout fetch default times a slow call out; a call's
        own request_timeout lets it finish."""
        client = self.client('/', request_timeout=0.05, max_http_attempts=1)
        short = await client.get('slow')
        longer = await client.get('slow', request_timeout=5)
        self.assertEqual((short.code, short.stop_reason),
                         (599, http.StopReason.ATTEMPTS_EXHAUSTED))
        self.assertEqual((longer.code, longer.body), (200, {'slow': True}))

    @testing.gen_test
    async def test_unknown_call_kwarg_is_refused(self) -> None:
        """An unknown keyword argument to a call raises TypeError before
        anything is sent."""
        with self.assertRaisesRegex(TypeError, 'request_timout'):
            await self.client('/').get('echo', request_timout=1)

    @testing.gen_test
    async def test_raise_error_call_kwarg_is_refused(self) -> None:
        """raise_error on a call raises RuntimeError."""
        with self.assertRaisesRegex(RuntimeError, 'raise_error'):
            await self.client('/').get('echo', raise_error=True)

    @testing.gen_test
    async def test_other_origin_path_is_refused(self) -> None:
        """A path on another origin raises ValueError; nothing is sent."""
        with self.assertRaisesRegex(ValueError, 'is not on the origin'):
            await self.client('/').get('http://127.0.0.2:1/x')

    # retries: the mixin's engine

    @testing.gen_test
    async def test_retries_with_the_client_policy(self) -> None:
        """The client's retry_policy drives the retries; the delays are
        the policy's backoff."""
        client = self.client('/', retry_policy=http.RetryPolicy(
            jitter=None, retry_timeout=0.5))
        with http_testing.instant_retries() as delays:
            response = await client.get('flaky')
        self.assertEqual(delays, [0.5, 1.0])
        self.assertEqual([record.status for record in response.records],
                         [503, 503, 200])
        self.assertEqual(
            [record.delay_reason for record in response.records],
            ['backoff', 'backoff', None])
        self.assertEqual(response.stop_reason, http.StopReason.SUCCESS)
        self.assertEqual(response.body, {'attempt': '3'})

    @testing.gen_test
    async def test_retry_after_is_honoured(self) -> None:
        """A 429 with Retry-After: 2 waits 2 s before the retry."""
        with http_testing.instant_retries() as delays:
            response = await self.client('/').get('limited')
        self.assertEqual(delays, [2.0])
        self.assertEqual(response.records[0].delay_reason, 'retry-after')
        self.assertTrue(response.ok)

    @testing.gen_test
    async def test_call_retry_policy_overrides_the_client_policy(
            self) -> None:
        """A call's retry_policy and max_http_attempts win."""
        client = self.client('/', retry_policy=http.RetryPolicy(
            jitter=None, max_attempts=5))
        with http_testing.instant_retries() as delays:
            response = await client.get(
                'broken', retry_policy=http.RetryPolicy(
                    jitter=None, retry_timeout=1), max_http_attempts=2)
        self.assertEqual(delays, [1.0])
        self.assertEqual(len(response), 2)

    @testing.gen_test
    async def test_same_engine_as_the_mixin(self) -> None:
        """The same policy gives the mixin and the Client the same attempts,
        delays, stop reason and log lines."""
        policy = http.RetryPolicy(jitter=None, retry_timeout=0.25)
        url = self.get_url('/broken')

        async def outcome(fetch: typing.Callable[
                [], typing.Awaitable[http.HTTPResponse]]) -> typing.Any:
            with http_testing.instant_retries() as delays, \
                    self.assertLogs(LOGGER_NAME, logging.WARNING) as logs:
                response = await fetch()
            return ([record.status for record in response.records],
                    [record.delay_reason for record in response.records],
                    response.stop_reason, delays, logs.output)

        client = self.client('/', retry_policy=policy)
        outcomes = [
            await outcome(lambda: MixinUser().http_fetch(
                url, retry_policy=policy)),
            await outcome(lambda: client.get('broken')),
        ]
        self.assertEqual(outcomes[0], outcomes[1])
        self.assertEqual(outcomes[1], (
            [500, 500, 500], ['backoff', 'backoff', None],
            http.StopReason.ATTEMPTS_EXHAUSTED, [0.25, 0.5], [
                f'WARNING:{LOGGER_NAME}:GET {url} attempt 1/3: 500, '
                'retrying in 0.250 s (backoff)',
                f'WARNING:{LOGGER_NAME}:GET {url} attempt 2/3: 500, '
                'retrying in 0.500 s (backoff)',
                f'WARNING:{LOGGER_NAME}:GET {url} failed after 3 '
                'attempt(s): 500 (attempts-exhausted)',
            ]))

    @testing.gen_test
    async def test_hooks_overridden_on_a_subclass_are_called(self) -> None:
        """A Client subclass's _http_req_* hooks run as on the mixin."""
        events: typing.List[typing.Any] = []

        class HookedClient(http.Client):
            def _http_req_user_agent(self) -> str:
                return 'hooked/1.0'

            def _http_req_modify_for_retry(
                    self, response: http.HTTPResponse, attempt: int,
                    url: str, headers: typing.MutableMapping[str, str],
                    body: typing.Any) -> typing.Tuple[
                        str, typing.MutableMapping[str, str], typing.Any]:
                events.append(('retry', attempt))
                return super()._http_req_modify_for_retry(
                    response, attempt, url, headers, body)

            async def _http_req_sleep(self, seconds: float) -> None:
                events.append(('sleep', seconds))

            def _http_req_on_attempt(self, response: http.HTTPResponse,
                                     record: http.AttemptRecord) -> None:
                events.append(('attempt', record.number, record.status))

            def _http_req_on_complete(
                    self, response: http.HTTPResponse) -> None:
                events.append(('complete', response.code))

        client = HookedClient(self.get_url('/'), retry_policy=http.RetryPolicy(
            jitter=None, retry_timeout=0.5))
        self.clients.append(client)
        response = await client.get('flaky')
        echo = await client.get('echo')
        self.assertEqual(events[:8], [
            ('attempt', 1, 503), ('sleep', 0.5), ('retry', 1),
            ('attempt', 2, 503), ('sleep', 1.0), ('retry', 2),
            ('attempt', 3, 200), ('complete', 200)])
        self.assertTrue(response.ok)
        self.assertEqual(echo.body['headers']['User-Agent'], ['hooked/1.0'])

    # closing

    @testing.gen_test
    async def test_http_fetch_is_the_mixin_s_while_open(self) -> None:
        """The inherited http_fetch sends the URL as given, without the
        base URL or the client's headers, until the client is closed."""
        client = self.client('/api', headers={'X-Client': 'one'})
        response = await client.http_fetch(self.get_url('/other'))
        client.close()
        self.assertEqual(response.body['path'], '/other')
        self.assertNotIn('X-Client', response.body['headers'])
        with self.assertRaisesRegex(RuntimeError, 'is closed'):
            await client.http_fetch(self.get_url('/other'))

    @testing.gen_test
    async def test_async_with_closes_the_client(self) -> None:
        """Leaving 'async with' closes the client; using it then raises."""
        async with http.Client(self.get_url('/api')) as client:
            response = await client.get('users')
            self.assertFalse(client.closed)
        self.assertTrue(client.closed)
        self.assertEqual(response.body['path'], '/api/users')
        with self.assertRaisesRegex(RuntimeError, 'is closed'):
            await client.get('users')

    @testing.gen_test
    async def test_closed_client_cannot_be_entered(self) -> None:
        """'async with' on a closed client raises RuntimeError."""
        client = self.client('/')
        client.close()
        with self.assertRaisesRegex(RuntimeError, 'is closed'):
            async with client:
                pass  # pragma: no cover - never entered

    @testing.gen_test
    async def test_close_all_closes_clients_in_use(self) -> None:
        """close_all closes every client that sent requests, and their
        AsyncHTTPClients."""
        closed, _ = self.record_closes()
        first, second = self.client('/'), self.client('/')
        await first.get('echo')
        await second.get('echo')
        http.close_all()
        self.assertTrue(first.closed and second.closed)
        self.assertEqual(len(closed), 2)
        for client in (first, second):
            with self.assertRaisesRegex(RuntimeError, 'is closed'):
                await client.get('echo')

    @testing.gen_test
    async def test_close_lets_calls_in_flight_finish(self) -> None:
        """close() during a call lets it finish, then closes the client's
        AsyncHTTPClient."""
        closed, _ = self.record_closes()
        client = self.client('/')
        arrived = SlowHandler.ARRIVED = asyncio.Event()
        self.addCleanup(setattr, SlowHandler, 'ARRIVED', None)
        call = asyncio.ensure_future(client.get('slow'))
        await asyncio.wait_for(arrived.wait(), 5)
        client.close()
        self.assertEqual(closed, [])
        response = await call
        self.assertEqual(response.body, {'slow': True})
        self.assertEqual(len(closed), 1)

    @testing.gen_test
    async def test_client_has_its_own_http_client(self) -> None:
        """Each client sends with its own AsyncHTTPClient, sized by
        HTTP_MAX_CLIENTS, and closing it leaves the shared one alone."""
        closed, sizes = self.record_closes()
        with mock.patch.dict('os.environ', {'HTTP_MAX_CLIENTS': '3'}):
            client = self.client('/')
            await client.get('echo')
            await client.get('echo')
        client.close()
        self.assertEqual(sizes, [3])
        self.assertEqual(len(closed), 1)
        self.assertIsNot(closed[0], httpclient.AsyncHTTPClient())
        response = await MixinUser().http_fetch(self.get_url('/echo'))
        self.assertTrue(response.ok)
