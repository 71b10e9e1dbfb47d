"""OpenTelemetry tracing of the engine: one CLIENT span per attempt.

This is the only module that imports :mod:`opentelemetry`, and only its API
(``opentelemetry-api``, the ``otel`` extra).  Without it :data:`ENABLED` is
false, :func:`attempt_span` returns :data:`NO_SPAN` whose methods do
nothing, and an attempt costs the engine a branch and two no-op calls.

The engine's span observer (``_observe.SpanObserver``) asks for one span
per attempt just before it sends, awaits the send through
:meth:`AttemptSpan.active` (the span is the
current span while the request is in flight) and ends the span with
:meth:`AttemptSpan.end` once it knows what follows the attempt, before any
sleep.  What a span carries, and why, is in ``docs/observability.rst``:

* name ``{method}`` (``HTTP`` for a method outside the known set), kind
  CLIENT, with ``http.request.method``, ``url.full`` (credentials and the
  semantic conventions' signature query values redacted),
  ``server.address`` and ``server.port`` at creation so samplers see them;
* ``http.request.resend_count`` = attempt - 1 on attempts after the first;
* ``http.response.status_code`` when a response arrived; ``error.type``
  (the status as a string for 400 and above, the exception's class name
  for a transport failure, ``too-many-redirects`` for a redirect loop) with
  status ERROR;
* ``sprockets.retry.delay`` and ``sprockets.retry.delay_reason`` when a
  retry follows, ``sprockets.stop_reason`` on the last attempt;
* a ``sprockets.redirect`` event per redirect hop followed inside the
  attempt: hops are not spans of their own;
* a ``sprockets.transport_resend`` event (``error.type``,
  ``exception.message``) when the transport sent the request again by
  itself (libcurl, on a kept-alive connection that died): the span covers
  both sends, which ``records`` keep apart, and its
  ``http.request.resend_count`` counts the resend.

The trace context (``traceparent``, and whatever else the global
propagator injects) goes into a copy of the attempt's request headers, so
that the upstream sees the attempt's span as its parent; neither the
caller's headers nor the engine's own copy are changed.

"""
from __future__ import annotations

import functools
import os
import typing
import urllib.parse

from tornado import httputil

from sprockets.mixins.http._retry import StopReason
from sprockets.mixins.http._version import __version__

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
except ImportError:  # the otel extra is not installed: nothing is traced
    ENABLED = False
else:
    ENABLED = True

if typing.TYPE_CHECKING:  # pragma: no cover
    from tornado import httpclient

    from sprockets.mixins.http._response import AttemptRecord
    from sprockets.mixins.http._retry import Decision

__all__ = ['ENABLED', 'NO_SPAN', 'AttemptSpan', 'NoSpan', 'attempt_span',
           'redirected', 'url_full']

T = typing.TypeVar('T')

#: The instrumentation scope name of every span.
TRACER_NAME = 'sprockets.mixins.http'

#: The name of the event recorded on an attempt's span per redirect hop.
REDIRECT_EVENT = 'sprockets.redirect'

#: The ``error.type`` of an attempt that ended in a redirect loop.
TOO_MANY_REDIRECTS = str(StopReason.TOO_MANY_REDIRECTS)

REDACTED = 'REDACTED'

# the semantic conventions' known methods (RFC 9110 and PATCH), replaced
# as a whole by OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS as they require
_DEFAULT_METHODS = frozenset({'CONNECT', 'DELETE', 'GET', 'HEAD', 'OPTIONS',
                              'PATCH', 'POST', 'PUT', 'TRACE'})


def known_methods(value: typing.Optional[str]) -> typing.FrozenSet[str]:
    """Return the methods named in `value` (comma-separated, case-sensitive),
    or the default set when `value` is empty or unset."""
    methods = frozenset(name.strip() for name in (value or '').split(',')
                        if name.strip())
    return methods or _DEFAULT_METHODS


KNOWN_METHODS = known_methods(
    os.environ.get('OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS'))

# query values the semantic conventions ask to redact by default
_SECRET_QUERY_KEYS = frozenset({'AWSAccessKeyId', 'Signature', 'sig',
                                'X-Goog-Signature'})

# the attempt span, on the OpenTelemetry context while the send runs
_ATTEMPT_KEY = otel_context.create_key('sprockets-mixins-http-attempt') \
    if ENABLED else ''

# the tracer of the global provider (a proxy until one is set), and of the
# last explicit provider asked for
_global_tracer: typing.Any = None
_last_tracer: typing.Tuple[typing.Any, typing.Any] = (None, None)


class NoSpan:
    """An attempt that is not traced: every method does nothing."""

    __slots__ = ()

    def active(self, awaitable: typing.Awaitable[T]
               ) -> typing.Awaitable[T]:
        """Return `awaitable` unchanged."""
        return awaitable

    def resent(self, record: AttemptRecord) -> None:
        """Do nothing."""

    def end(self, record: AttemptRecord,
            stop_reason: typing.Optional[StopReason],
            decision: Decision) -> None:
        """Do nothing."""


#: The one :class:`NoSpan`.
NO_SPAN = NoSpan()


class AttemptSpan(NoSpan):
    """The span of one attempt, started by :func:`attempt_span`."""

    __slots__ = ('span',)

    def __init__(self, span: trace.Span) -> None:
        self.span = span

    async def active(self, awaitable: typing.Awaitable[T]) -> T:
        """Await the send with this span as the current span.

        A cancelled (or otherwise interrupted) send ends the span with
        ``error.type`` the exception's class name: the engine never sees
        such an exception.  Other exceptions are the engine's to record and
        pass to :meth:`end`.

        """
        context = trace.set_span_in_context(self.span)
        token = otel_context.attach(
            otel_context.set_value(_ATTEMPT_KEY, self.span, context))
        try:
            return await awaitable
        except BaseException as error:
            if not isinstance(error, Exception):
                self._fail(type(error).__qualname__, None)
                self.span.end()
            raise
        finally:
            otel_context.detach(token)

    def end(self, record: AttemptRecord,
            stop_reason: typing.Optional[StopReason],
            decision: Decision) -> None:
        """Set what the attempt came to and end the span.

        :param record: the attempt's record, with its status or exception
        :param stop_reason: why the call stops after this attempt, or
            :data:`None` when a retry follows
        :param decision: the policy's answer, for the delay of that retry

        """
        span = self.span
        if span.is_recording():
            status = record.status
            if status is not None:
                span.set_attribute('http.response.status_code', status)
                if status >= 400:
                    self._fail(str(status), None)
                elif stop_reason == StopReason.TOO_MANY_REDIRECTS:
                    self._fail(TOO_MANY_REDIRECTS, None)
            elif record.exception is not None:
                self._fail(type(record.exception).__qualname__,
                           str(record.exception) or None)
            if stop_reason is None:
                span.set_attribute('sprockets.retry.delay', decision.delay)
                if decision.delay_reason is not None:
                    span.set_attribute('sprockets.retry.delay_reason',
                                       str(decision.delay_reason))
            else:
                span.set_attribute('sprockets.stop_reason', str(stop_reason))
        span.end()

    def resent(self, record: AttemptRecord) -> None:
        """The transport sent the attempt's request again by itself after
        the send `record` (see ``DelayReason.TRANSPORT_RESEND``): an event
        on this span, whose ``http.request.resend_count`` counts it."""
        span = self.span
        if span.is_recording():
            span.add_event('sprockets.transport_resend', {
                'error.type': type(record.exception).__qualname__,
                'exception.message': str(record.exception)})
            span.set_attribute('http.request.resend_count', record.number)

    def _fail(self, error_type: str,
              description: typing.Optional[str]) -> None:
        self.span.set_attribute('error.type', error_type)
        self.span.set_status(trace.Status(trace.StatusCode.ERROR,
                                          description))


def attempt_span(owner: typing.Any, method: str, url: str, attempt: int,
                 request: httpclient.HTTPRequest) -> NoSpan:
    """Start the span of attempt number `attempt` and inject its trace
    context into a copy of `request`'s headers.

    The tracer comes from ``owner.TRACER_PROVIDER`` when it is set, else
    from the global tracer provider.  Returns :data:`NO_SPAN` when
    OpenTelemetry is not installed, or when the span records nothing and
    has no trace context to propagate (the API without an SDK, outside any
    trace).

    """
    if not ENABLED:
        return NO_SPAN
    provider = owner.TRACER_PROVIDER
    if provider is None and _nothing_to_trace():
        return NO_SPAN  # not even a span object to throw away
    tracer = _tracer(provider)
    full, host, port = _target(url)
    known = method in KNOWN_METHODS
    attributes: typing.Dict[str, typing.Any] = {
        'http.request.method': method if known else '_OTHER',
        'url.full': full,
    }
    if host:
        attributes['server.address'] = host
        attributes['server.port'] = port
    if not known:
        attributes['http.request.method_original'] = method
    if attempt > 1:
        attributes['http.request.resend_count'] = attempt - 1
    span = tracer.start_span(method if known else 'HTTP',
                             kind=trace.SpanKind.CLIENT,
                             attributes=attributes)
    if not span.is_recording() and not span.get_span_context().is_valid:
        return NO_SPAN
    carrier: typing.Dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    if carrier:
        current = request.headers
        headers = (current.copy() if isinstance(current, httputil.HTTPHeaders)
                   else httputil.HTTPHeaders(current))
        for name, value in carrier.items():
            headers[name] = value
        request.headers = headers
    return AttemptSpan(span)


def redirected(status: int, url: str) -> None:
    """Record a redirect hop (`status`, to `url`) on the current attempt's
    span, when there is one and it records."""
    if not ENABLED:
        return
    span = typing.cast('typing.Optional[trace.Span]',
                       otel_context.get_value(_ATTEMPT_KEY))
    if span is not None and span.is_recording():
        span.add_event(REDIRECT_EVENT, {'http.response.status_code': status,
                                        'url.full': url_full(url)})


def url_full(url: str) -> str:
    """Return `url` as the ``url.full`` attribute: user information
    replaced by ``REDACTED:REDACTED`` (``REDACTED`` for a user name alone)
    and the values of the query arguments ``AWSAccessKeyId``,
    ``Signature``, ``sig`` and ``X-Goog-Signature`` by ``REDACTED``, as the
    semantic conventions ask."""
    return _target(url)[0]


@functools.lru_cache(maxsize=1024)
def _target(url: str) -> typing.Tuple[str, str, int]:
    """Return ``(url.full, server.address, server.port)`` for `url`; the
    address is empty for a URL that cannot be parsed."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:  # never sent: the engine records why
        user, at, rest = url.partition('@')
        if at and '://' in user:
            url = f'{user.partition("://")[0]}://{REDACTED}@{rest}'
        return url, '', 0
    host = parts.hostname or ''
    if port is None:
        port = 443 if parts.scheme.lower() == 'https' else 80
    netloc, query = parts.netloc, parts.query
    if '@' in netloc:
        userinfo, _, hostport = netloc.rpartition('@')
        secret = f'{REDACTED}:{REDACTED}' if ':' in userinfo else REDACTED
        netloc = f'{secret}@{hostport}'
    if query:
        query = '&'.join(
            f'{field.partition("=")[0]}={REDACTED}'
            if field.partition('=')[0] in _SECRET_QUERY_KEYS else field
            for field in query.split('&'))
    if netloc == parts.netloc and query == parts.query:
        return url, host, port
    return urllib.parse.urlunsplit(
        parts._replace(netloc=netloc, query=query)), host, port


def _nothing_to_trace() -> bool:
    """Whether a span would record nothing and propagate nothing: no
    tracer provider is set (the API without an SDK), and no trace is
    current."""
    return (isinstance(trace.get_tracer_provider(),
                       (trace.ProxyTracerProvider, trace.NoOpTracerProvider))
            and not trace.get_current_span().get_span_context().is_valid)


def _tracer(provider: typing.Any) -> typing.Any:
    """Return the package's tracer from `provider`, or from the global
    provider when `provider` is :data:`None`."""
    global _global_tracer, _last_tracer
    if provider is None:
        if _global_tracer is None:
            # a ProxyTracer until the application sets a provider: it
            # follows the provider set later
            _global_tracer = trace.get_tracer(TRACER_NAME, __version__)
        return _global_tracer
    last_provider, tracer = _last_tracer
    if last_provider is not provider:
        tracer = trace.get_tracer(TRACER_NAME, __version__,
                                  tracer_provider=provider)
        _last_tracer = (provider, tracer)
    return tracer
