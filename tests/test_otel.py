"""OpenTelemetry: one CLIENT span per attempt and trace context propagated,
on both AsyncHTTPClient implementations, against a real local server.

Each test builds its own SDK ``TracerProvider`` with an in-memory exporter
and gives it to the client as ``TRACER_PROVIDER``: the global provider is
never set, so the rest of the suite is not traced and sends no
``traceparent``.  Retry delays are recorded by RecordingClient, never slept.
"""
from __future__ import annotations

import asyncio
import importlib.util
import sys
import typing
from unittest import mock

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from tornado import httpclient, testing, web

from sprockets.mixins import http
from sprockets.mixins.http import _otel, _retry
from sprockets.mixins.http.testing import FakeUpstream
from tests import support

#: The 2.x schedule (3 s, 6 s …), no budget in the way.
EXACT = http.RetryPolicy(jitter=None, budget=None)

#: What every attempt span of a GET to the test server carries.
BASE_KEYS = {'http.request.method', 'url.full', 'server.address',
             'server.port', 'http.response.status_code'}


def traceparent(span: ReadableSpan) -> str:
    """The W3C traceparent that names `span` as the parent."""
    context = span.get_span_context()
    assert context is not None
    assert context.trace_flags.sampled
    return (f'00-{context.trace_id:032x}-{context.span_id:016x}-'
            f'{context.trace_flags:02x}')


class HangingHandler(web.RequestHandler):
    """Never answers; says when a request arrived and when its connection
    closed (what FakeUpstream cannot tell)."""

    def initialize(self, entered: asyncio.Event,
                   closed: asyncio.Event) -> None:
        self.entered = entered
        self.closed = closed

    async def get(self) -> None:
        self.entered.set()
        await self.closed.wait()

    def on_connection_close(self) -> None:
        self.closed.set()


@support.on_every_client('TestOtel')
class OtelCases(support.ServerTestCase):
    __test__ = False

    def setUp(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        super().setUp()

    def tearDown(self) -> None:
        super().tearDown()
        self.provider.shutdown()

    def get_app(self) -> web.Application:
        # made here, on the test's IOLoop: Python 3.9's asyncio.Event binds
        # to the event loop current when it is created
        self.entered = asyncio.Event()
        self.closed = asyncio.Event()
        self.upstream = FakeUpstream()
        self.upstream.reply('GET', '/echo', 200, {'status': 'ok'},
                            times=support.ALWAYS)
        # /flaky: 503 for the first two requests, then 200
        self.upstream.reply('GET', '/flaky', 503, {'hit': 1})
        self.upstream.reply('GET', '/flaky', 503, {'hit': 2})
        self.upstream.reply('GET', '/flaky', 200, {'hit': 3})
        self.upstream.reply('GET', '/missing', 404,
                            {'message': 'no such thing'})
        self.upstream.reply('GET', '/redirect', 302,
                            headers={'Location': '/echo'})
        # a redirect loop: 302 to itself, as often as it is asked
        self.upstream.reply('GET', '/loop', 302,
                            headers={'Location': '/loop'},
                            times=support.ALWAYS)
        return web.Application([
            ('/hang', HangingHandler,
             {'entered': self.entered, 'closed': self.closed}),
            *self.upstream.handlers(),
        ])

    @property
    def traceparents(self) -> typing.List[typing.Optional[str]]:
        """The traceparent of every request the upstream received."""
        return [request.headers.get('traceparent')
                for request in self.upstream.requests]

    def client(self) -> support.RecordingClient:
        """A RecordingClient that traces to this test's provider."""
        client = support.RecordingClient()
        client.TRACER_PROVIDER = self.provider  # type: ignore[attr-defined]
        return client

    def spans(self) -> typing.List[ReadableSpan]:
        """The finished spans of the package's tracer, in end order."""
        return [span for span in self.exporter.get_finished_spans()
                if span.instrumentation_scope is not None
                and span.instrumentation_scope.name == _otel.TRACER_NAME]

    @testing.gen_test
    async def test_one_client_span_per_attempt(self) -> None:
        """Two 503s then a 200 give three CLIENT spans named GET with the
        semantic conventions' attributes, and the retry delays."""
        client = self.client()
        url = self.get_url('/flaky')
        response = await client.http_fetch(url, retry_policy=EXACT)
        self.assertTrue(response.ok)
        self.assertEqual(client.delays, [3.0, 6.0])
        spans = self.spans()
        self.assertEqual([span.name for span in spans], ['GET'] * 3)
        self.assertEqual({span.kind for span in spans},
                         {trace.SpanKind.CLIENT})
        for span in spans:
            attributes = span.attributes or {}
            self.assertEqual(attributes['http.request.method'], 'GET')
            self.assertEqual(attributes['url.full'], url)
            self.assertEqual(attributes['server.address'], '127.0.0.1')
            self.assertEqual(attributes['server.port'],
                             self.get_http_port())
        self.assertEqual(
            [(span.attributes or {}).get('http.response.status_code')
             for span in spans], [503, 503, 200])
        self.assertEqual(
            [(span.attributes or {}).get('sprockets.retry.delay')
             for span in spans], [3.0, 6.0, None])
        self.assertEqual(
            [(span.attributes or {}).get('sprockets.retry.delay_reason')
             for span in spans], ['backoff', 'backoff', None])
        self.assertEqual(
            [(span.attributes or {}).get('sprockets.stop_reason')
             for span in spans], [None, None, 'success'])

    @testing.gen_test
    async def test_resend_count_counts_retries(self) -> None:
        """http.request.resend_count is absent on the first attempt, then 1
        and 2."""
        await self.client().http_fetch(self.get_url('/flaky'),
                                       retry_policy=EXACT)
        counts = [(span.attributes or {}).get('http.request.resend_count')
                  for span in self.spans()]
        self.assertEqual(counts, [None, 1, 2])
        first = self.spans()[0].attributes or {}
        self.assertNotIn('http.request.resend_count', first)

    @testing.gen_test
    async def test_5xx_attempt_is_an_error(self) -> None:
        """A 503 attempt has error.type '503' and status ERROR without a
        description; the 200 attempt has neither."""
        await self.client().http_fetch(self.get_url('/flaky'),
                                       retry_policy=EXACT)
        first, _, last = self.spans()
        self.assertEqual((first.attributes or {}).get('error.type'), '503')
        self.assertEqual(first.status.status_code, trace.StatusCode.ERROR)
        self.assertIsNone(first.status.description)
        self.assertNotIn('error.type', last.attributes or {})
        self.assertEqual(last.status.status_code, trace.StatusCode.UNSET)

    @testing.gen_test
    async def test_4xx_attempt_is_an_error(self) -> None:
        """A 404 is an error on a client span (the semantic conventions'
        SHOULD): error.type '404', status ERROR, stop reason recorded."""
        response = await self.client().http_fetch(self.get_url('/missing'))
        self.assertEqual(response.code, 404)
        [span] = self.spans()
        attributes = span.attributes or {}
        self.assertEqual(attributes['http.response.status_code'], 404)
        self.assertEqual(attributes['error.type'], '404')
        self.assertEqual(attributes['sprockets.stop_reason'],
                         'not-retryable')
        self.assertEqual(span.status.status_code, trace.StatusCode.ERROR)

    @testing.gen_test
    async def test_upstream_sees_each_attempts_span_as_parent(
            self) -> None:
        """Each request carries a traceparent naming its own attempt's
        span."""
        await self.client().http_fetch(self.get_url('/flaky'),
                                       retry_policy=EXACT)
        self.assertEqual(self.traceparents,
                         [traceparent(span) for span in self.spans()])
        self.assertEqual(len(set(self.traceparents)), 3)

    @testing.gen_test
    async def test_attempts_are_children_of_the_active_span(self) -> None:
        """Inside an active span, every attempt is its child, in its
        trace."""
        tracer = self.provider.get_tracer('test')
        with tracer.start_as_current_span('handler') as parent:
            await self.client().http_fetch(self.get_url('/flaky'),
                                           retry_policy=EXACT)
            self.assertIs(trace.get_current_span(), parent)
        context = parent.get_span_context()
        spans = self.spans()
        self.assertEqual(len(spans), 3)
        for span in spans:
            self.assertIsNotNone(span.parent)
            assert span.parent is not None
            self.assertEqual(span.parent.span_id, context.span_id)
            self.assertEqual(span.context.trace_id, context.trace_id)

    @testing.gen_test
    async def test_without_an_active_span_an_attempt_is_a_root(
            self) -> None:
        """Outside any span, an attempt span has no parent, and it is not
        left current once the call returns."""
        await self.client().http_fetch(self.get_url('/echo'))
        [span] = self.spans()
        self.assertIsNone(span.parent)
        self.assertIs(trace.get_current_span(), trace.INVALID_SPAN)

    @testing.gen_test
    async def test_transport_failure(self) -> None:
        """Connection refused: error.type is the exception's class name,
        status ERROR with its message, and no status code attribute."""
        port = unused_port()
        response = await self.client().http_fetch(
            f'http://127.0.0.1:{port}/', max_http_attempts=1)
        [error] = response.exceptions
        [span] = self.spans()
        attributes = span.attributes or {}
        self.assertEqual(attributes['error.type'], type(error).__qualname__)
        self.assertIn(attributes['error.type'],
                      ('ConnectionRefusedError', 'CurlError',
                       'NoResponseError'))
        self.assertNotIn('http.response.status_code', attributes)
        self.assertEqual(attributes['server.port'], port)
        self.assertEqual(attributes['sprockets.stop_reason'],
                         'attempts-exhausted')
        self.assertEqual(span.status.status_code, trace.StatusCode.ERROR)
        self.assertEqual(span.status.description, str(error))

    @testing.gen_test
    async def test_cancelled_attempt_ends_its_span(self) -> None:
        """Cancelling the call ends the attempt's span with error.type
        CancelledError and status ERROR."""
        task = asyncio.ensure_future(self.client().http_fetch(
            self.get_url('/hang'), request_timeout=60))
        await asyncio.wait_for(self.entered.wait(), 5)
        task.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await asyncio.wait_for(task, 1)
        [span] = self.spans()
        self.assertEqual((span.attributes or {})['error.type'],
                         'CancelledError')
        self.assertEqual(span.status.status_code, trace.StatusCode.ERROR)

    @testing.gen_test
    async def test_redirect_hops_are_events_of_one_span(self) -> None:
        """A followed redirect is one span for the attempt, with a
        sprockets.redirect event, and both hops carry its traceparent."""
        url = self.get_url('/redirect')
        response = await self.client().http_fetch(url, follow_redirects=True)
        self.assertEqual(response.code, 200)
        [span] = self.spans()
        attributes = span.attributes or {}
        self.assertEqual(attributes['url.full'], url)
        self.assertEqual(attributes['http.response.status_code'], 200)
        self.assertEqual(
            [(event.name, dict(event.attributes or {}))
             for event in span.events],
            [(_otel.REDIRECT_EVENT,
              {'http.response.status_code': 302,
               'url.full': self.get_url('/echo')})])
        self.assertEqual(self.traceparents,
                         [traceparent(span)] * 2)

    @testing.gen_test
    async def test_redirect_loop_is_an_error(self) -> None:
        """A redirect loop ends the span with the last 302, error.type
        too-many-redirects and status ERROR."""
        response = await self.client().http_fetch(
            self.get_url('/loop'), follow_redirects=True, max_redirects=2)
        self.assertEqual(response.stop_reason,
                         _retry.StopReason.TOO_MANY_REDIRECTS)
        [span] = self.spans()
        attributes = span.attributes or {}
        self.assertEqual(attributes['http.response.status_code'], 302)
        self.assertEqual(attributes['error.type'], 'too-many-redirects')
        self.assertEqual(len(span.events), 2)
        self.assertEqual(span.status.status_code, trace.StatusCode.ERROR)

    @testing.gen_test
    async def test_callers_headers_are_not_changed(self) -> None:
        """The traceparent goes into a copy: the caller's dict is
        unchanged and the upstream still gets it."""
        headers = {'X-Custom': 'yes'}
        await self.client().http_fetch(self.get_url('/echo'),
                                       request_headers=headers)
        self.assertEqual(headers, {'X-Custom': 'yes'})
        [span] = self.spans()
        self.assertEqual(self.traceparents, [traceparent(span)])

    @testing.gen_test
    async def test_callers_stale_traceparent_is_replaced(self) -> None:
        """A traceparent in request_headers is replaced by the attempt's,
        not sent twice."""
        stale = '00-' + '1' * 32 + '-' + '2' * 16 + '-01'
        await self.client().http_fetch(
            self.get_url('/echo'), request_headers={'traceparent': stale})
        [span] = self.spans()
        self.assertEqual(self.traceparents, [traceparent(span)])

    @testing.gen_test
    async def test_password_is_redacted_in_url_full(self) -> None:
        """url.full never carries the user information of the URL."""
        port = self.get_http_port()
        await self.client().http_fetch(
            f'http://user:secret@127.0.0.1:{port}/echo')
        [span] = self.spans()
        self.assertEqual((span.attributes or {})['url.full'],
                         f'http://REDACTED:REDACTED@127.0.0.1:{port}/echo')

    @testing.gen_test
    async def test_standalone_client_is_traced(self) -> None:
        """Client shares the engine: its attempts are spans too, with the
        provider set on the instance."""
        async with http.Client(self.get_url('/')) as client:
            client.TRACER_PROVIDER = self.provider  # type: ignore
            response = await client.get('echo')
        self.assertTrue(response.ok)
        [span] = self.spans()
        self.assertEqual((span.attributes or {})['url.full'],
                         self.get_url('/echo'))

    @testing.gen_test
    async def test_no_opentelemetry_traces_nothing(self) -> None:
        """With the module flag off (as without opentelemetry-api), no span
        is made and no traceparent is sent."""
        with mock.patch.object(_otel, 'ENABLED', False):
            response = await self.client().http_fetch(
                self.get_url('/flaky'), retry_policy=EXACT)
        self.assertTrue(response.ok)
        self.assertEqual(self.spans(), [])
        self.assertEqual(self.traceparents, [None, None, None])

    @testing.gen_test
    async def test_without_a_provider_nothing_is_added(self) -> None:
        """With the API alone (no provider set, no active trace) no span
        records and no traceparent is sent."""
        self.assertIsInstance(trace.get_tracer_provider(),
                              trace.ProxyTracerProvider)
        response = await support.RecordingClient().http_fetch(
            self.get_url('/echo'))
        self.assertTrue(response.ok)
        self.assertEqual(self.traceparents, [None])

    @testing.gen_test
    async def test_without_a_provider_the_callers_trace_propagates(
            self) -> None:
        """With the API alone, the caller's (remote) trace context still
        reaches the upstream."""
        remote = trace.SpanContext(
            trace_id=0x0af7651916cd43dd8448eb211c80319c,
            span_id=0xb7ad6b7169203331, is_remote=True,
            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED))
        with trace.use_span(trace.NonRecordingSpan(remote)):
            await support.RecordingClient().http_fetch(self.get_url('/echo'))
        self.assertEqual(
            self.traceparents,
            ['00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'])


def unused_port() -> int:
    """A loopback port that nothing listens on."""
    sock, port = testing.bind_unused_port()
    sock.close()
    return port


# Pure functions: no event loop.

@pytest.mark.parametrize('url, expected', [
    ('http://h/p?q=1', 'http://h/p?q=1'),
    ('http://user:pw@h:8080/p', 'http://REDACTED:REDACTED@h:8080/p'),
    ('http://user@h/p', 'http://REDACTED@h/p'),
    ('http://h/p?to=a@b', 'http://h/p?to=a@b'),
    ('https://h/o?sig=abc&x=1', 'https://h/o?sig=REDACTED&x=1'),
    ('https://h/o?Signature=s&AWSAccessKeyId=k&Expires=9',
     'https://h/o?Signature=REDACTED&AWSAccessKeyId=REDACTED&Expires=9'),
    ('https://h/o?X-Goog-Signature=s#frag',
     'https://h/o?X-Goog-Signature=REDACTED#frag'),
    ('https://h/o?signature=lower', 'https://h/o?signature=lower'),
    ('http://u:pw@[::1', 'http://REDACTED@[::1'),
])
def test_url_full(url: str, expected: str) -> None:
    """url.full redacts user information and the semantic conventions'
    signature query values, and nothing else."""
    assert _otel.url_full(url) == expected


@pytest.mark.parametrize('url, address, port', [
    ('http://Example.COM/p', 'example.com', 80),
    ('https://example.com/p', 'example.com', 443),
    ('http://127.0.0.1:8080/', '127.0.0.1', 8080),
    ('http://[::1]:81/', '::1', 81),
    ('http://h:notaport/', '', 0),
])
def test_server_address_and_port(url: str, address: str, port: int) -> None:
    """server.address is the URL's host and server.port its port or the
    scheme's default; an unparseable URL has neither."""
    assert _otel._target(url)[1:] == (address, port)


@pytest.mark.parametrize('value, expected', [
    (None, _otel._DEFAULT_METHODS),
    ('', _otel._DEFAULT_METHODS),
    ('GET, PURGE', frozenset({'GET', 'PURGE'})),
    ('purge', frozenset({'purge'})),
])
def test_known_methods(value: typing.Optional[str],
                       expected: typing.FrozenSet[str]) -> None:
    """OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS replaces the default known
    methods as a whole, case-sensitively."""
    assert _otel.known_methods(value) == expected


@pytest.mark.parametrize('method, name, attribute, original', [
    ('GET', 'GET', 'GET', None),
    ('PATCH', 'PATCH', 'PATCH', None),
    ('PURGE', 'HTTP', '_OTHER', 'PURGE'),
])
def test_span_name_and_method(method: str, name: str, attribute: str,
                              original: typing.Optional[str]) -> None:
    """A known method names the span; any other is 'HTTP' with
    http.request.method '_OTHER' and the method kept as
    http.request.method_original."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    owner = mock.Mock(TRACER_PROVIDER=provider)
    request = httpclient.HTTPRequest('http://h/', method=method)
    span = _otel.attempt_span(owner, method, 'http://h/', 1, request)
    span.end(_otel_record(200), _retry.StopReason.SUCCESS,
             _retry.Decision(_retry.StopReason.SUCCESS))
    [finished] = exporter.get_finished_spans()
    attributes = finished.attributes or {}
    assert finished.name == name
    assert attributes['http.request.method'] == attribute
    assert attributes.get('http.request.method_original') == original


def _otel_record(status: int) -> http.AttemptRecord:
    record = http.AttemptRecord(1, 0.0)
    record.status = status
    return record


def test_import_without_opentelemetry(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """When opentelemetry cannot be imported the module loads with ENABLED
    false and every attempt gets the no-op span, headers untouched."""
    monkeypatch.setitem(sys.modules, 'opentelemetry', None)
    spec = importlib.util.spec_from_file_location(
        'sprockets_mixins_http_otel_without', _otel.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.ENABLED is False
    request = httpclient.HTTPRequest('http://h/', headers={'A': 'b'})
    headers = request.headers
    span = module.attempt_span(object(), 'GET', 'http://h/', 2, request)
    assert span is module.NO_SPAN
    assert request.headers is headers
    assert dict(headers) == {'A': 'b'}
    module.redirected(302, 'http://h/next')  # does nothing, raises nothing


def test_no_span_without_a_provider_or_a_trace(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With the API but no tracer provider set, and no current trace, an
    attempt creates no span at all (nothing would record or propagate);
    within a trace it still propagates the context."""
    monkeypatch.setattr(trace, '_TRACER_PROVIDER', None)
    started = []
    monkeypatch.setattr(_otel, '_tracer', lambda provider: started.append(
        provider) or trace.NoOpTracer())
    owner = mock.Mock(TRACER_PROVIDER=None)
    request = httpclient.HTTPRequest('http://h/')
    assert _otel.attempt_span(owner, 'GET', 'http://h/', 1,
                              request) is _otel.NO_SPAN
    assert started == []
    parent = trace.NonRecordingSpan(trace.SpanContext(
        trace_id=1, span_id=2, is_remote=True,
        trace_flags=trace.TraceFlags(1)))
    with trace.use_span(parent):
        _otel.attempt_span(owner, 'GET', 'http://h/', 1, request)
    assert started == [None]
