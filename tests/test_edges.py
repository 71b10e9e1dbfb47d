"""Edge cases where a careless client hurts its caller: a POST repeated
after a redirect, a deadline lost to rounding, secrets in log lines and on
other hosts, a failing metrics hook, odd bodies and headers."""
from __future__ import annotations

import asyncio
import io
import logging
import typing
from unittest import mock

import pytest
from tornado import httpclient, httpserver, httputil, ioloop, testing, web

from sprockets.mixins import http
from sprockets.mixins.http import _content, _urls
from sprockets.mixins.http._transports import _curl
from sprockets.mixins.http.testing import FakeUpstream
from tests import support

LOGGER_NAME = 'sprockets.mixins.http'


# -- pure ---------------------------------------------------------------------

@pytest.mark.parametrize('url, expected', [
    ('http://h/p?q=1', 'http://h/p?q=1'),
    ('http://user:pw@h/p', 'http://<redacted>@h/p'),
    ('http://ghp_TOKEN@h/p', 'http://<redacted>@h/p'),
    ('http://h/p?access_token=T&page=2',
     'http://h/p?access_token=<redacted>&page=2'),
    ('http://h/p?api_key=K&X-Amz-Signature=S&flag',
     'http://h/p?api_key=<redacted>&X-Amz-Signature=S&flag'),
    ('http://h/p?password=p&Session=s&idempotency-key=k',
     'http://h/p?password=<redacted>&Session=<redacted>&idempotency-key=k'),
    ('http://u:pw@[::1/', 'http://<redacted>@[::1/'),
])
def test_redact_url(url: str, expected: str) -> None:
    """Userinfo and secret-named query values never reach a log line."""
    assert _urls.redact_url(url) == expected


def test_deeply_nested_json_is_a_body_error() -> None:
    """JSON nested deeper than the interpreter recurses is a ValueError
    kept on body_error, not a RecursionError out of .body."""
    data = b'[' * 100_000 + b']' * 100_000
    with pytest.raises(ValueError, match='nested too deeply'):
        _content.deserialize(data, 'application/json')
    response = http.HTTPResponse()
    response.append_response(httpclient.HTTPResponse(
        httpclient.HTTPRequest('http://h/'), 400,
        headers=http_headers('application/json'), buffer=io.BytesIO(data)))
    assert response.body == data
    assert isinstance(response.body_error, ValueError)


def http_headers(content_type: str, **extra: str) -> httputil.HTTPHeaders:
    headers = httputil.HTTPHeaders({'Content-Type': content_type})
    for name, value in extra.items():
        headers[name.replace('_', '-')] = value
    return headers


@pytest.mark.parametrize('link, expected', [
    ('<http://a/next>; rel=', []),  # ietfparse raises IndexError
    ('garbage<<', []),
    ('<http://a/next>; =x', [{'target': 'http://a/next', '': 'x'}]),
    ('<>; ;;;', [{'target': ''}]),
])
def test_links_never_raise(link: str, expected: typing.List[
        typing.Dict[str, str]]) -> None:
    """A Link header ietfparse cannot read gives [], whatever it raises;
    one it reads leniently gives what it read."""
    response = http.HTTPResponse()
    response.append_response(httpclient.HTTPResponse(
        httpclient.HTTPRequest('http://h/'), 200,
        headers=http_headers('text/plain', Link=link),
        buffer=io.BytesIO(b'')))
    assert response.links == expected


# -- a real server ------------------------------------------------------------

class AlmostNoTimeClient(support.VirtualClockClient):
    """A clock at which less than a millisecond is left after the sleep."""

    async def _http_req_sleep(self, seconds: float) -> None:
        await super()._http_req_sleep(seconds)
        self.now += 0.0001  # 0.4 ms left


class OvershootingClient(support.VirtualClockClient):
    """A sleep that wakes late, past the deadline."""

    async def _http_req_sleep(self, seconds: float) -> None:
        await super()._http_req_sleep(seconds)
        self.now += 5.0


class FailingMetricsClient(support.RecordingClient):
    """Metrics hooks that raise."""

    def _http_req_on_attempt(self, response: http.HTTPResponse,
                             record: http.AttemptRecord) -> None:
        raise KeyError('metrics label missing')

    def _http_req_on_complete(self, response: http.HTTPResponse) -> None:
        raise RuntimeError('statsd is down')


@support.on_every_client('TestEdges')
class EdgeCases(support.ServerTestCase):
    __test__ = False

    def setUp(self) -> None:
        super().setUp()
        # another origin, whose /seen answers 200
        self.other = FakeUpstream()
        support.always(self.other, '/seen', 200, {'ok': True})
        sock, port = testing.bind_unused_port()
        self.other_server = httpserver.HTTPServer(
            web.Application(self.other.handlers()))
        self.other_server.add_sockets([sock])
        support.always(self.upstream, '/hop', 302,
                       headers={'Location': f'http://127.0.0.1:{port}/seen'})

    def tearDown(self) -> None:
        self.other_server.stop()
        super().tearDown()

    def get_app(self) -> web.Application:
        self.upstream = FakeUpstream()
        # a POST answered 303 to /result: the POST took effect
        support.always(self.upstream, '/create', 303,
                       headers={'Location': '/result'}, methods=['POST'])
        # the GET after the redirect
        support.always(self.upstream, '/result', 503)
        support.always(self.upstream, '/unavailable', 503)
        return web.Application(self.upstream.handlers())

    @property
    def posts(self) -> typing.List[bytes]:
        """The bodies of the POSTs /create received."""
        return [request.raw_body
                for request in self.upstream.requests_for('POST', '/create')]

    @property
    def other_seen(self) -> typing.List[typing.Dict[str, str]]:
        """The headers of each request the other origin's /seen
        received."""
        return [dict(request.headers)
                for request in self.other.requests_for('GET', '/seen')]

    @testing.gen_test
    async def test_post_is_not_repeated_after_a_303(self) -> None:
        """A POST answered 303 took effect: the 503 of the GET that
        follows does not send the POST again."""
        client = support.RecordingClient()
        response = await client.http_fetch(
            self.get_url('/create'), method='POST', body={'order': 1},
            content_type='application/json', follow_redirects=True)
        self.assertEqual(self.posts, [b'{"order":1}'])
        self.assertEqual(response.code, 503)
        self.assertEqual(response.stop_reason, 'unsafe-method')
        self.assertEqual(client.delays, [])

    @testing.gen_test
    async def test_post_303_retried_when_the_policy_allows(self) -> None:
        """retry_non_idempotent=True is the caller accepting repeats."""
        client = support.RecordingClient()
        response = await client.http_fetch(
            self.get_url('/create'), method='POST', body=b'x',
            follow_redirects=True,
            retry_policy=http.RetryPolicy(retry_non_idempotent=True,
                                          budget=None))
        self.assertEqual(len(self.posts), 3)
        self.assertEqual(response.stop_reason, 'attempts-exhausted')

    @testing.gen_test
    async def test_less_than_a_millisecond_left_is_the_deadline(
            self) -> None:
        """With under 1 ms left no attempt is sent: curl would round the
        timeout down to 0, which it reads as no limit."""
        client = AlmostNoTimeClient()
        response = await client.http_fetch(
            self.get_url('/unavailable'), deadline=1.0,
            retry_policy=http.RetryPolicy(jitter=None, retry_timeout=0.9995,
                                          budget=None))
        self.assertEqual(len(response), 1)
        self.assertEqual(response.stop_reason, 'deadline')

    @testing.gen_test
    async def test_deadline_reached_mid_sleep(self) -> None:
        """A sleep that wakes past the deadline ends the call with
        'deadline' and sends nothing more."""
        client = OvershootingClient()
        response = await client.http_fetch(
            self.get_url('/unavailable'), deadline=2.0,
            retry_policy=http.RetryPolicy(jitter=None, retry_timeout=1.0,
                                          budget=None))
        self.assertEqual(client.delays, [1.0])
        self.assertEqual(len(response), 1)
        self.assertEqual(response.stop_reason, 'deadline')

    @testing.gen_test
    async def test_secret_headers_stay_home_on_redirect(self) -> None:
        """Key- and token-named headers are dropped on a redirect to
        another origin, as Authorization is; the rest go along."""
        async with http.Client(self.get_url('/'), headers={
                'X-Api-Key': 'SECRET-KEY', 'X-Auth-Token': 'SECRET-TOKEN',
                'Authorization': 'Bearer SECRET', 'X-Tenant': 'acme',
                'Idempotency-Key': 'k1'}) as client:
            response = await client.get('hop', follow_redirects=True)
        self.assertTrue(response.ok)
        [seen] = self.other_seen
        self.assertFalse({'X-Api-Key', 'X-Auth-Token', 'Authorization'}
                         & set(seen))
        self.assertEqual((seen['X-Tenant'], seen['Idempotency-Key']),
                         ('acme', 'k1'))

    @testing.gen_test
    async def test_secrets_in_urls_are_not_logged(self) -> None:
        """Log lines show neither a token in the userinfo nor a token in
        the query string."""
        url = self.get_url('/unavailable?access_token=SECRET-QUERY&page=1')
        url = url.replace('http://', 'http://SECRET-USER:SECRET-PW@')
        with self.assertLogs(LOGGER_NAME, logging.DEBUG) as logs:
            await support.RecordingClient().http_fetch(url)
        text = '\n'.join(logs.output)
        self.assertIn('access_token=<redacted>&page=1', text)
        self.assertNotIn('SECRET', text)

    @testing.gen_test
    async def test_failing_metrics_hooks_do_not_escape(self) -> None:
        """A metrics hook that raises is logged; the call still returns
        its response, retries included."""
        client = FailingMetricsClient()
        with self.assertLogs(LOGGER_NAME, logging.ERROR) as logs:
            response = await client.http_fetch(self.get_url('/unavailable'))
        self.assertEqual(len(response), 3)
        self.assertEqual(response.stop_reason, 'attempts-exhausted')
        self.assertEqual([record.getMessage() for record in logs.records],
                         ['_http_req_on_attempt failed'] * 3
                         + ['_http_req_on_complete failed'])

    @testing.gen_test
    async def test_a_599_response_object_is_no_response(self) -> None:
        """A fetch (a 2.x test's patch) returning a 599 response with an
        error counts as no response: the error is in exceptions, history
        and raw stay empty."""
        error = httpclient.HTTPClientError(599, 'Stream closed')

        async def fetch(self: typing.Any, request: typing.Any,
                        **kwargs: typing.Any) -> httpclient.HTTPResponse:
            return httpclient.HTTPResponse(request, 599, error=error)

        with mock.patch.object(httpclient.AsyncHTTPClient, 'fetch', fetch):
            response = await support.RecordingClient().http_fetch(
                self.get_url('/'), method='POST', body=b'x')
        self.assertEqual(response.exceptions, [error])
        self.assertEqual((response.history, response.raw, response.links),
                         ([], None, None))
        self.assertEqual(response.code, 599)
        self.assertEqual(response.stop_reason, 'unsafe-method')


class PlainHandler(web.RequestHandler):
    def get(self) -> None:
        self.write('ok')


def test_sized_clients_of_closed_loops_are_dropped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The AsyncHTTPClients made for HTTP_MAX_CLIENTS are not kept for
    every event loop a process ever ran (asyncio.run in a script)."""
    httpclient.AsyncHTTPClient.configure(None)

    async def once() -> None:
        sock, port = testing.bind_unused_port()
        server = httpserver.HTTPServer(web.Application([('/', PlainHandler)]))
        server.add_sockets([sock])
        shared = httpclient.AsyncHTTPClient()  # made with the default size
        monkeypatch.setenv('HTTP_MAX_CLIENTS', '3')
        response = await http.HTTPClientMixin().http_fetch(
            f'http://127.0.0.1:{port}/')
        monkeypatch.delenv('HTTP_MAX_CLIENTS')
        assert response.ok
        # the sized clients of this loop (an earlier test's may be kept,
        # already closed): closed once, here
        loop = ioloop.IOLoop.current()
        for client in _curl.SIZED.clients.pop(loop, {}).values():
            client.close()
        shared.close()
        server.stop()

    for _ in range(5):
        asyncio.run(once())
    assert len(_curl.SIZED.clients) <= 1


@pytest.mark.parametrize('headers', [{'X-Note': 'a\r\nInjected: 1'},
                                     {'bad name': 'x'}])
def test_unsendable_request_header_is_a_value_error(
        headers: typing.Dict[str, str]) -> None:
    """A header tornado refuses raises ValueError naming it, before
    anything is sent (no header injection)."""
    with pytest.raises(ValueError, match='request header'):
        asyncio.run(http.HTTPClientMixin().http_fetch(
            'http://127.0.0.1:9/', request_headers=headers))
