"""The mixin's request headers, hooks and safety guarantees, and the
HTTPResponse it returns, through a real server on both clients."""
from __future__ import annotations

import asyncio
import copy
import io
import logging
import os
import pathlib
import ssl
import types
import typing
from unittest import mock

from tornado import (
    httpclient,
    httpserver,
    httputil,
    iostream,
    locks,
    tcpserver,
    testing,
    web,
)

from sprockets.mixins import http
from sprockets.mixins.http._transports import _curl
from sprockets.mixins.http.testing import FakeUpstream, RecordedRequest
from tests import support

TLS = pathlib.Path(__file__).resolve().parent / 'tls'

# -- handlers -----------------------------------------------------------------


def scripted_upstream() -> FakeUpstream:
    """The upstream the cases send to: each path answers one way."""
    upstream = FakeUpstream()
    # 200 for any method
    support.always(upstream, '/echo', 200, {'ok': True})
    support.always(upstream, '/unavailable', 503)
    # 503 to the first two requests and 200 after that
    support.flaky(upstream, '/flaky', {'attempt': 3},
                  content_type='application/json; charset=UTF-8')
    support.always(upstream, '/warning', 200, {'ok': True},
                   headers={'Warning': '199 - "stale data"'})
    # 503 with a cookie, so that failures are logged
    support.always(upstream, '/cookie-failure', 503,
                   headers={'Set-Cookie': 'sid=SETCOOKIE-SECRET'})
    # a 128 KiB header line: more than tornado's 64 KiB limit and
    # libcurl's 100 KiB one
    support.always(upstream, '/oversized', 200,
                   headers={'X-Oversized': 'x' * 128 * 1024})
    # one 64 KiB header line: at simple_httpclient's limit, within libcurl's
    support.always(upstream, '/long-header', 200,
                   headers={'X-Long': 'x' * 64 * 1024})
    # a Link header and a repeated header
    support.always(upstream, '/paginated', 200, {'page': 1}, headers=[
        ('Link', '</items?page=2>; rel="next"'),
        ('X-Repeated', 'one'), ('X-Repeated', 'two')])
    support.always(upstream, '/error-message', 400,
                   {'message': 'name is required', 'field': 'name'})
    support.always(upstream, '/error-document', 409, {'error': 'conflict'})
    support.always(upstream, '/success-message', 200, {'message': 'created'})
    # answers only when the upstream stops, in tearDown
    support.always(upstream, '/never', 200, delay=support.NEVER)
    # answers at once: a round trip to it is a barrier
    support.always(upstream, '/ping', 200, 'pong')
    return upstream


class Gate:
    """Holds requests until released, counting how many are inside."""

    def __init__(self) -> None:
        self.arrivals = 0
        self.inside = 0
        self.most_inside = 0
        self.arrived = locks.Condition()
        self.released = locks.Event()

    async def enter(self) -> None:
        self.arrivals += 1
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        self.arrived.notify_all()
        try:
            await self.released.wait()
        finally:
            self.inside -= 1

    async def wait_for(self, arrivals: int) -> None:
        while self.arrivals < arrivals:
            await self.arrived.wait()


class HeldHandler(web.RequestHandler):
    """Holds each request at the Gate until the test releases it."""

    def initialize(self, gate: Gate) -> None:
        self.gate = gate

    async def get(self) -> None:
        await self.gate.enter()
        self.write('released')


class ProxyHandler(http.HTTPClientMixin, web.RequestHandler):
    """A real handler that calls /echo on its own server."""

    async def get(self) -> None:
        response = await self.http_fetch(
            f'{self.request.protocol}://{self.request.host}/echo')
        self.write({'upstream': response.code})


class OwnCorrelationProxyHandler(ProxyHandler):
    """A proxy with a correlation_id attribute of its own."""

    correlation_id = 'own-correlation-id'


class TruncatingServer(tcpserver.TCPServer):
    """Promises 100 bytes of body, sends 3 and closes the connection."""

    async def handle_stream(self, stream: iostream.IOStream,
                            address: typing.Any) -> None:
        try:
            await stream.read_until(b'\r\n\r\n')
            await stream.write(b'HTTP/1.1 200 OK\r\n'
                               b'Content-Length: 100\r\n\r\nabc')
        except iostream.StreamClosedError:
            pass
        stream.close()


# -- clients ------------------------------------------------------------------


class ExactClient(support.RecordingClient):
    """Records delays, with 2.x's exact schedule (no jitter)."""

    RETRY_POLICY = http.RetryPolicy(jitter=None, retry_timeout=0.5)


class FakeClockClient(support.VirtualClockClient):
    """A clock that only moves when the engine sleeps; 2.x's schedule."""

    RETRY_POLICY = ExactClient.RETRY_POLICY


class HookedClient(support.RecordingClient):
    """Overrides the four 2.x hooks, recording their arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: typing.List[typing.Tuple[str, typing.Any]] = []

    def _http_req_apply_default_headers(
            self, request_headers: typing.Any, content_type: typing.Any,
            body: typing.Any) -> typing.Any:
        self.calls.append(('apply_default_headers',
                           (dict(request_headers or {}), str(content_type),
                            body)))
        headers = super()._http_req_apply_default_headers(
            request_headers, content_type, body)
        headers['X-Default-Hook'] = 'applied'
        return headers

    def _http_req_body_serialize(self, body: typing.Any,
                                 content_type: typing.Any) -> bytes:
        self.calls.append(('body_serialize', (body, content_type)))
        return b'serialized-by-hook'

    def _http_req_user_agent(self) -> str:
        self.calls.append(('user_agent', ()))
        return 'hooked-agent/9.9'

    def _http_req_modify_for_retry(
            self, response: http.HTTPResponse, attempt: int, url: str,
            headers: typing.Any, body: typing.Any) -> typing.Any:
        self.calls.append(('modify_for_retry',
                           (response.attempts, attempt, url,
                            headers.get('X-Nonce'), body)))
        url, headers, body = super()._http_req_modify_for_retry(
            response, attempt, url, headers, body)
        headers['X-Nonce'] = f'nonce-{attempt}'
        return f'{url.split("?")[0]}?attempt={attempt}', headers, (
            f'retry-body-{attempt}'.encode())


# -- cases --------------------------------------------------------------------

LOGGER_NAME = 'sprockets.mixins.http'


@support.on_every_client('TestMixin')
class MixinCases(support.ServerTestCase):
    """Headers, hooks and guarantees of HTTPClientMixin."""

    __test__ = False  # run through on_every_client

    def get_app(self) -> web.Application:
        self.upstream = scripted_upstream()
        self.gate = Gate()
        self.servers: typing.List[tcpserver.TCPServer] = []
        self.app = web.Application([
            ('/held', HeldHandler, {'gate': self.gate}),
            ('/proxy', ProxyHandler),
            ('/proxy-own', OwnCorrelationProxyHandler),
            *self.upstream.handlers(),
        ], service='inventory', version='4.2.0')
        return self.app

    def tearDown(self) -> None:
        # answer the requests still held open
        self.io_loop.run_sync(self.upstream.stop)
        self.gate.released.set()
        for server in self.servers:
            server.stop()
            if isinstance(server, httpserver.HTTPServer):
                self.io_loop.run_sync(server.close_all_connections)
        for client in _curl.SIZED.clients.pop(self.io_loop, {}).values():
            client.close()
        super().tearDown()

    def received(self, path: str) -> typing.List[RecordedRequest]:
        """The requests that reached `path`, in order."""
        return self.upstream.requests_for(path=path)

    def sent(self, path: str, index: int = 0) -> httputil.HTTPHeaders:
        """The headers of request `index` that reached `path`."""
        return self.received(path)[index].headers

    def assert_failed(self, response: http.HTTPResponse, attempts: int,
                      stop_reason: str) -> None:
        """A call that got no response: 599, not ok, every exception
        recorded."""
        self.assertIsInstance(response, http.HTTPResponse)
        self.assertEqual(response.code, 599)
        self.assertFalse(response.ok)
        self.assertEqual(response.history, [])
        self.assertEqual(len(response.exceptions), attempts)
        self.assertEqual(response.attempts, attempts)
        self.assertTrue(all(isinstance(error, Exception)
                            for error in response.exceptions))
        self.assertEqual(response.stop_reason, stop_reason)
        self.assertIsNone(response.body)

    # default headers ---------------------------------------------------------

    @testing.gen_test
    async def test_accept_header(self) -> None:
        """Accept asks for JSON and msgpack."""
        await support.RecordingClient().http_fetch(self.get_url('/echo'))
        self.assertEqual(self.sent('/echo')['Accept'],
                         'application/json, application/msgpack')

    @testing.gen_test
    async def test_content_type_only_with_body(self) -> None:
        """Content-Type is the content_type argument when a body is given,
        and absent without one."""
        client = support.RecordingClient()
        await client.http_fetch(self.get_url('/echo'), method='POST',
                                body={'a': 1},
                                content_type='application/json')
        await client.http_fetch(self.get_url('/echo'),
                                content_type='application/json')
        self.assertEqual(self.sent('/echo', 0)['Content-Type'],
                         'application/json')
        self.assertNotIn('Content-Type', self.sent('/echo', 1))

    @testing.gen_test
    async def test_explicit_content_type_wins(self) -> None:
        """A Content-Type in request_headers beats the content_type
        argument, and the body is serialized by it."""
        await support.RecordingClient().http_fetch(
            self.get_url('/echo'), method='POST', body={'a': 1},
            request_headers={'content-type': 'application/json'},
            content_type='application/msgpack')
        self.assertEqual(self.sent('/echo').get_list('Content-Type'),
                         ['application/json'])
        self.assertEqual(self.received('/echo')[0].raw_body, b'{"a":1}')

    @testing.gen_test
    async def test_correlation_id_attribute(self) -> None:
        """Correlation-Id comes from self.correlation_id."""
        client = support.RecordingClient()
        client.correlation_id = 'attribute-id'  # type: ignore[attr-defined]
        await client.http_fetch(self.get_url('/echo'))
        self.assertEqual(self.sent('/echo')['Correlation-Id'],
                         'attribute-id')

    @testing.gen_test
    async def test_correlation_id_from_incoming_request(self) -> None:
        """A handler passes its incoming Correlation-Id upstream."""
        response = await self.http_client.fetch(
            self.get_url('/proxy'), headers={'Correlation-Id': 'incoming'})
        self.assertEqual(response.code, 200)
        self.assertEqual(self.sent('/echo')['Correlation-Id'], 'incoming')

    @testing.gen_test
    async def test_correlation_id_attribute_beats_request(self) -> None:
        """A handler's correlation_id attribute beats the incoming
        header."""
        await self.http_client.fetch(
            self.get_url('/proxy-own'),
            headers={'Correlation-Id': 'incoming'})
        self.assertEqual(self.sent('/echo')['Correlation-Id'],
                         'own-correlation-id')

    @testing.gen_test
    async def test_correlation_id_absent(self) -> None:
        """Without either source there is no Correlation-Id, from a handler
        or from a plain client."""
        await self.http_client.fetch(self.get_url('/proxy'))
        await support.RecordingClient().http_fetch(self.get_url('/echo'))
        self.assertNotIn('Correlation-Id', self.sent('/echo', 0))
        self.assertNotIn('Correlation-Id', self.sent('/echo', 1))

    @testing.gen_test
    async def test_user_agent_from_settings(self) -> None:
        """A handler's User-Agent is settings service/version."""
        await self.http_client.fetch(self.get_url('/proxy'))
        self.assertEqual(self.sent('/echo')['User-Agent'],
                         'inventory/4.2.0')

    @testing.gen_test
    async def test_user_agent_from_consumer(self) -> None:
        """A rejected consumer's User-Agent is its process's consumer name
        and version."""
        client = support.RecordingClient()
        client._process = types.SimpleNamespace(  # type: ignore[attr-defined]
            consumer_name='order-consumer', consumer_version='1.0.1')
        await client.http_fetch(self.get_url('/echo'))
        self.assertEqual(self.sent('/echo')['User-Agent'],
                         'order-consumer/1.0.1')

    @testing.gen_test
    async def test_user_agent_default(self) -> None:
        """Otherwise the User-Agent is DEFAULT_USER_AGENT."""
        await support.RecordingClient().http_fetch(self.get_url('/echo'))
        self.assertEqual(self.sent('/echo')['User-Agent'],
                         http.DEFAULT_USER_AGENT)

    @testing.gen_test
    async def test_user_agent_argument_wins(self) -> None:
        """The user_agent argument beats settings, consumer and
        request_headers."""
        client = support.RecordingClient()
        client.settings = {  # type: ignore[attr-defined]
            'service': 'inventory', 'version': '4.2.0'}
        await client.http_fetch(self.get_url('/echo'),
                                request_headers={'User-Agent': 'header/1'},
                                user_agent='argument/2')
        self.assertEqual(self.sent('/echo').get_list('User-Agent'),
                         ['argument/2'])

    @testing.gen_test
    async def test_retry_attempt_header(self) -> None:
        """X-Retry-Attempt is absent on the first attempt, then 2 and 3."""
        response = await support.RecordingClient().http_fetch(
            self.get_url('/flaky'))
        self.assertTrue(response.ok)
        self.assertEqual(
            [request.headers.get('X-Retry-Attempt')
             for request in self.received('/flaky')], [None, '2', '3'])

    # 2.x hooks --------------------------------------------------------------

    @testing.gen_test
    async def test_two_x_hooks_are_called_and_used(self) -> None:
        """The four 2.x hooks get the 2.x arguments and what they return is
        what is sent."""
        client = HookedClient()
        headers = {'X-Caller': 'yes'}
        response = await client.http_fetch(
            self.get_url('/flaky'), method='PUT', request_headers=headers,
            body={'key': 'value'}, content_type='application/json')
        self.assertTrue(response.ok)
        url = self.get_url('/flaky')
        self.assertEqual(client.calls, [
            ('apply_default_headers',
             ({'X-Caller': 'yes'}, 'application/json', {'key': 'value'})),
            ('user_agent', ()),
            ('body_serialize', ({'key': 'value'}, 'application/json')),
            ('modify_for_retry', (1, 1, url, None, b'serialized-by-hook')),
            ('modify_for_retry', (2, 2, f'{url}?attempt=1', 'nonce-1',
                                  b'retry-body-1')),
        ])
        sent = self.received('/flaky')
        self.assertEqual([support.uri(r) for r in sent],
                         ['/flaky', '/flaky?attempt=1', '/flaky?attempt=2'])
        self.assertEqual([r.raw_body for r in sent], [
            b'serialized-by-hook', b'retry-body-1', b'retry-body-2'])
        self.assertEqual([r.headers.get('X-Nonce') for r in sent],
                         [None, 'nonce-1', 'nonce-2'])
        self.assertEqual({r.headers['X-Default-Hook'] for r in sent},
                         {'applied'})
        self.assertEqual({r.headers['User-Agent'] for r in sent},
                         {'hooked-agent/9.9'})

    # HTTP_MAX_CLIENTS -------------------------------------------------------

    async def round_trips(self, count: int) -> None:
        """Make `count` round trips on a client of its own: by their end,
        a request that was not queued would have reached the server."""
        client = httpclient.AsyncHTTPClient(force_instance=True)
        try:
            for _ in range(count):
                await client.fetch(self.get_url('/ping'))
        finally:
            client.close()

    @testing.gen_test
    async def test_max_clients_serializes_requests(self) -> None:
        """HTTP_MAX_CLIENTS=1 keeps the second request queued until the
        first has finished."""
        client = support.RecordingClient()
        with mock.patch.dict(os.environ, {'HTTP_MAX_CLIENTS': '1'}):
            calls = [asyncio.ensure_future(
                client.http_fetch(self.get_url('/held')))
                for _ in range(2)]
            await self.gate.wait_for(1)
            await self.round_trips(3)
            self.assertEqual(self.gate.arrivals, 1)
            self.gate.released.set()
            responses = await asyncio.gather(*calls)
        self.assertEqual([r.code for r in responses], [200, 200])
        self.assertEqual(self.gate.arrivals, 2)
        self.assertEqual(self.gate.most_inside, 1)

    @testing.gen_test
    async def test_without_max_clients_requests_overlap(self) -> None:
        """Without HTTP_MAX_CLIENTS the same two requests are at the server
        together (the control for the test above)."""
        client = support.RecordingClient()
        with mock.patch.dict(os.environ):
            os.environ.pop('HTTP_MAX_CLIENTS', None)
            calls = [asyncio.ensure_future(
                client.http_fetch(self.get_url('/held')))
                for _ in range(2)]
            await self.gate.wait_for(2)
            self.gate.released.set()
            responses = await asyncio.gather(*calls)
        self.assertEqual([r.code for r in responses], [200, 200])
        self.assertEqual(self.gate.most_inside, 2)

    # logging ----------------------------------------------------------------

    @testing.gen_test
    async def test_warning_header_is_logged(self) -> None:
        """A Warning response header is logged at WARNING by LOGGER."""
        url = self.get_url('/warning')
        with self.assertLogs(LOGGER_NAME, logging.WARNING) as logs:
            response = await support.RecordingClient().http_fetch(url)
        self.assertTrue(response.ok)
        self.assertEqual(logs.output, [
            f'WARNING:{LOGGER_NAME}:Warning header from {url}: '
            '199 - "stale data"'])
        self.assertIs(logs.records[0].name, http.LOGGER.name)

    @testing.gen_test
    async def test_secrets_are_never_logged(self) -> None:
        """Credentials, cookies, keys and tokens never reach a log line, at
        any level, while the header names still do."""
        secrets = {
            'Authorization': 'Bearer AUTH-SECRET',
            'Proxy-Authorization': 'Basic PROXY-SECRET',
            'Cookie': 'session=COOKIE-SECRET',
            'X-Api-Key': 'APIKEY-SECRET',
            'X-Auth-Token': 'TOKEN-SECRET',
        }
        url = self.get_url('/cookie-failure').replace(
            '://', '://user:URL-SECRET@')
        with self.assertLogs(LOGGER_NAME, logging.DEBUG) as logs:
            response = await support.RecordingClient().http_fetch(
                url, request_headers=secrets)
        self.assertEqual(response.code, 503)
        self.assertEqual(self.sent('/cookie-failure')['X-Api-Key'],
                         'APIKEY-SECRET')
        self.assertIn('sid=SETCOOKIE-SECRET',
                      response.headers.get_list('Set-Cookie'))
        messages = [record.getMessage() for record in logs.records]
        self.assertGreaterEqual(len(messages), 4)
        for message in messages:
            self.assertNotRegex(message, 'SECRET')
        attempt_lines = [m for m in messages if m.startswith('Attempt ')]
        self.assertEqual(len(attempt_lines), 3)
        for name in secrets:
            self.assertIn(f"'{name}': '<redacted>'", attempt_lines[0])
        self.assertIn("'Accept': 'application/json, application/msgpack'",
                      attempt_lines[0])

    # nothing escapes --------------------------------------------------------

    @testing.gen_test
    async def test_connection_refused(self) -> None:
        """Connection refused is recorded and retried, never raised."""
        sock, port = testing.bind_unused_port()
        sock.close()
        client = support.RecordingClient()
        response = await client.http_fetch(f'http://127.0.0.1:{port}/')
        self.assert_failed(response, 3, 'attempts-exhausted')
        self.assertEqual(len(client.delays), 2)

    @testing.gen_test
    async def test_request_timeout(self) -> None:
        """A request that outlives request_timeout is recorded and retried,
        never raised."""
        response = await support.RecordingClient().http_fetch(
            self.get_url('/never'), request_timeout=0.05,
            max_http_attempts=2)
        self.assert_failed(response, 2, 'attempts-exhausted')
        for error in response.exceptions:
            self.assertIsInstance(error, httpclient.HTTPClientError)
            self.assertEqual(getattr(error, 'code', None), 599)

    @testing.gen_test
    async def test_connection_closed_mid_response(self) -> None:
        """A server that closes the connection mid-body is recorded and
        retried, never raised."""
        sock, port = testing.bind_unused_port()
        server = TruncatingServer()
        server.add_sockets([sock])
        self.servers.append(server)
        response = await support.RecordingClient().http_fetch(
            f'http://127.0.0.1:{port}/')
        self.assert_failed(response, 3, 'attempts-exhausted')

    @testing.gen_test
    async def test_oversized_header(self) -> None:
        """A response header too large for the client is recorded and
        retried, never raised."""
        response = await support.RecordingClient().http_fetch(
            self.get_url('/oversized'))
        self.assert_failed(response, 3, 'attempts-exhausted')
        self.assertEqual(len(self.received('/oversized')), 3)

    @testing.gen_test
    async def test_64k_header_line(self) -> None:
        """A 64 KiB header line never raises: simple_httpclient refuses
        it (recorded, retried), curl_httpclient returns the header."""
        response = await support.RecordingClient().http_fetch(
            self.get_url('/long-header'))
        if self.implementation == support.CURL:
            self.assertTrue(response.ok)
            self.assertEqual(len(response.headers['X-Long']), 64 * 1024)
        else:
            self.assert_failed(response, 3, 'attempts-exhausted')

    def start_tls_server(self) -> int:
        """Serve /echo over HTTPS with the self-signed tests/tls cert."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(TLS / 'cert.pem', TLS / 'key.pem')
        sock, port = testing.bind_unused_port()
        server = httpserver.HTTPServer(self.app, ssl_options=context)
        server.add_sockets([sock])
        self.servers.append(server)
        return port

    @testing.gen_test
    async def test_tls_verification_failure(self) -> None:
        """A certificate that does not verify is recorded and never
        retried."""
        port = self.start_tls_server()
        client = support.RecordingClient()
        response = await client.http_fetch(f'https://127.0.0.1:{port}/echo')
        self.assert_failed(response, 1, 'not-retryable')
        self.assertIn('certificate', str(response.exceptions[0]).lower())
        self.assertEqual(client.delays, [])
        self.assertEqual(self.received('/echo'), [])

    @testing.gen_test
    async def test_tls_without_validation(self) -> None:
        """validate_cert=False reaches the self-signed server, and so does
        trusting its certificate through ca_certs."""
        port = self.start_tls_server()
        client = support.RecordingClient()
        insecure = await client.http_fetch(
            f'https://127.0.0.1:{port}/echo', validate_cert=False)
        trusted = await client.http_fetch(
            f'https://127.0.0.1:{port}/echo',
            ca_certs=str(TLS / 'cert.pem'))
        self.assertEqual((insecure.code, trusted.code), (200, 200))
        self.assertEqual(len(self.received('/echo')), 2)

    @testing.gen_test
    async def test_invalid_url(self) -> None:
        """An invalid URL is recorded and never retried, and a password in
        it is not logged."""
        for url in ('nosuchscheme://127.0.0.1/', 'http://[::1/',
                    'http://user:URL-SECRET@[::1/'):
            with self.subTest(url=url):
                client = support.RecordingClient()
                with self.assertLogs(LOGGER_NAME, logging.DEBUG) as logs:
                    response = await client.http_fetch(url)
                self.assert_failed(response, 1, 'not-retryable')
                self.assertEqual(client.delays, [])
                for record in logs.records:
                    self.assertNotIn('SECRET', record.getMessage())

    # the caller's objects ---------------------------------------------------

    @testing.gen_test
    async def test_caller_objects_are_not_mutated(self) -> None:
        """request_headers, body, dont_retry and the policy survive two
        retried calls unchanged."""
        headers = {'X-Caller': 'yes', 'Authorization': 'Bearer t'}
        bodies: typing.List[typing.Any] = [{'items': [1, {'a': 'b'}]},
                                           [{'nested': [1, 2]}]]
        dont_retry = {404}
        policy = http.RetryPolicy(jitter=None, retry_timeout=0.5)
        originals = copy.deepcopy((headers, bodies, dont_retry))
        fields = {name: getattr(policy, name)
                  for name in policy.__dataclass_fields__}
        client = support.RecordingClient()
        for body in bodies:
            response = await client.http_fetch(
                self.get_url('/unavailable'), method='PUT',
                request_headers=headers, body=body,
                content_type='application/json', dont_retry=dont_retry,
                retry_policy=policy)
            self.assertEqual(response.attempts, 3)
        self.assertEqual((headers, bodies, dont_retry), originals)
        self.assertEqual({name: getattr(policy, name)
                          for name in policy.__dataclass_fields__}, fields)
        self.assertEqual(
            self.sent('/unavailable', 5)['X-Retry-Attempt'], '3')

    # HTTPResponse -----------------------------------------------------------

    @testing.gen_test
    async def test_response_properties(self) -> None:
        """After two 503s and a 200 the response reports every attempt."""
        client = FakeClockClient()
        response = await client.http_fetch(self.get_url('/flaky'))
        self.assertTrue(response.ok)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.body, {'attempt': 3})
        self.assertEqual(response.attempts, 3)
        self.assertEqual(len(response), 3)
        self.assertEqual([r.code for r in response.history],
                         [503, 503, 200])
        self.assertEqual(response.exceptions, [])
        self.assertIs(response.raw, response.history[-1])
        self.assertEqual(response.headers['Content-Type'],
                         'application/json; charset=UTF-8')
        self.assertEqual(response.links, [])
        self.assertEqual(client.delays, [0.5, 1.0])
        self.assertEqual(response.duration, 1.5)
        self.assertEqual(response.stop_reason, 'success')
        self.assertEqual(
            [(r.number, r.started, r.status, r.delay, r.delay_reason)
             for r in response.records],
            [(1, 0.0, 503, 0.5, 'backoff'), (2, 0.5, 503, 1.0, 'backoff'),
             (3, 1.5, 200, 0.0, None)])

    @testing.gen_test
    async def test_response_headers_and_links(self) -> None:
        """headers joins repeated fields as 2.x did, get_list keeps them
        apart, and links parses the Link header."""
        response = await support.RecordingClient().http_fetch(
            self.get_url('/paginated'))
        self.assertEqual(response.headers['X-Repeated'], 'one,two')
        self.assertEqual(response.headers.get_list('X-Repeated'),
                         ['one', 'two'])
        self.assertEqual(response.links,
                         [{'target': '/items?page=2', 'rel': 'next'}])

    @testing.gen_test
    async def test_failed_response_properties(self) -> None:
        """A call that got no response has no headers, links or raw."""
        sock, port = testing.bind_unused_port()
        sock.close()
        response = await support.RecordingClient().http_fetch(
            f'http://127.0.0.1:{port}/', max_http_attempts=1)
        self.assertIsNone(response.headers)  # 2.x: None, not {}
        self.assertIsNone(response.links)
        self.assertIsNone(response.raw)
        self.assertEqual(len(response), 1)

    @testing.gen_test
    async def test_simplified_error_message(self) -> None:
        """For 400 and up, body is the error document's message."""
        response = await support.RecordingClient().http_fetch(
            self.get_url('/error-message'))
        self.assertFalse(response.ok)
        self.assertEqual(response.code, 400)
        self.assertEqual(response.body, 'name is required')

    @testing.gen_test
    async def test_error_without_message(self) -> None:
        """An error document without a message is returned whole."""
        response = await support.RecordingClient().http_fetch(
            self.get_url('/error-document'))
        self.assertEqual(response.body, {'error': 'conflict'})

    @testing.gen_test
    async def test_success_message_not_simplified(self) -> None:
        """Below 400 a document with a message is returned whole."""
        response = await support.RecordingClient().http_fetch(
            self.get_url('/success-message'))
        self.assertEqual(response.body, {'message': 'created'})


# -- HTTPResponse on its own --------------------------------------------------


class Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def _tornado_response(code: int, body: bytes = b'',
                      **headers: str) -> httpclient.HTTPResponse:
    request = httpclient.HTTPRequest('http://upstream.example/thing')
    return httpclient.HTTPResponse(
        request, code, headers=httputil.HTTPHeaders(
            {name.replace('_', '-'): value
             for name, value in headers.items()}),
        buffer=io.BytesIO(body), effective_url=request.url)


def test_response_built_by_hand() -> None:
    """append_exception, append_response and finish drive every property
    of a response built directly."""
    clock = Clock()
    response = http.HTTPResponse(clock=clock)
    assert (response.code, response.ok, response.body, response.raw,
            response.links, len(response)) == (599, False, None, None,
                                               None, 0)
    error = ConnectionResetError('reset')
    response.append_exception(error)
    clock.now += 2.0
    final = _tornado_response(200, b'{"done":true}',
                              Content_Type='application/json',
                              Link='<http://upstream.example/2>; rel=next')
    response.append_response(final)
    clock.now += 0.25
    response.finish('success')
    clock.now += 100.0
    assert response.exceptions == [error]
    assert response.history == [final]
    assert response.attempts == len(response) == 2
    assert response.raw is final
    assert response.ok
    assert response.code == 200
    assert response.body == {'done': True}
    assert response.links == [{'target': 'http://upstream.example/2',
                               'rel': 'next'}]
    assert response.duration == 2.25
    assert response.stop_reason == 'success'


def test_response_body_follows_the_last_response() -> None:
    """A body read before another response is appended is decoded again
    from the new final response."""
    response = http.HTTPResponse()
    response.append_response(_tornado_response(
        503, b'{"message":"busy"}', Content_Type='application/json'))
    assert response.body == 'busy'
    response.append_response(_tornado_response(
        200, b'{"message":"fine"}', Content_Type='application/json'))
    assert response.body == {'message': 'fine'}


def test_response_simplify_false() -> None:
    """HTTPResponse(simplify_error_response=False) keeps error documents
    whole."""
    response = http.HTTPResponse(simplify_error_response=False)
    response.append_response(_tornado_response(
        422, b'{"message":"bad"}', Content_Type='application/json'))
    assert response.body == {'message': 'bad'}
    assert not response.ok
