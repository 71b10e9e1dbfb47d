"""What watches a call: log lines, OpenTelemetry spans and the metrics
hooks, three :class:`Observer`\\ s behind one protocol.

The engine tells its :class:`Observers` when an attempt starts, while it
is sent, when a redirect is followed, when the attempt ends (with what
the policy decided) and when the call completes; it wires nothing by hand.
A new kind of observation (metrics of its own, an audit log) is one more
:class:`Observer` in :func:`observers_for`.

"""
from __future__ import annotations

import logging
import typing

from tornado import httpclient

from sprockets.mixins.http import _call, _otel, _response, _retry, _urls

__all__ = ['Observer', 'Observers', 'observers_for']

LOGGER = logging.getLogger('sprockets.mixins.http')

T = typing.TypeVar('T')

# stop reasons that mean the upstream answered and nothing went wrong on
# our side: a plain 404 is not worth a WARNING
_ANSWERED = frozenset({_retry.StopReason.SUCCESS,
                       _retry.StopReason.NOT_RETRYABLE,
                       _retry.StopReason.DONT_RETRY})


class Observer:
    """Told what happens to one call; every method does nothing here."""

    def attempt_started(self, record: _response.AttemptRecord, url: str,
                        headers: typing.Mapping[str, str],
                        request: httpclient.HTTPRequest) -> None:
        """Attempt `record` is about to send `request` (its headers may
        still be added to: `headers` are the engine's own)."""

    def sending(self, awaitable: typing.Awaitable[T]
                ) -> typing.Awaitable[T]:
        """Wrap the send of the current attempt."""
        return awaitable

    def redirected(self, status: int, url: str) -> None:
        """The current attempt follows a `status` redirect to `url`."""

    def transport_resent(self, record: _response.AttemptRecord) -> None:
        """The transport sent the current attempt's request again by
        itself after the send `record` (an attempt of its own, before the
        current one) met ``record.exception``."""

    def attempt_ended(self, record: _response.AttemptRecord,
                      stop_reason: typing.Optional[_retry.StopReason],
                      decision: _retry.Decision) -> None:
        """Attempt `record` ended; the call stops for `stop_reason`, or
        retries after ``record.delay`` when it is :data:`None`."""

    def call_completed(self, response: _response.HTTPResponse) -> None:
        """The call is about to return `response`."""


class LogObserver(Observer):
    """A DEBUG line per attempt, a WARNING per retry and per failed call,
    secrets redacted."""

    def __init__(self, call: _call.Call) -> None:
        self.call = call

    def attempt_started(self, record: _response.AttemptRecord, url: str,
                        headers: typing.Mapping[str, str],
                        request: httpclient.HTTPRequest) -> None:
        self.url = url
        if LOGGER.isEnabledFor(logging.DEBUG):
            LOGGER.debug('Attempt %i/%i: %s %s %r', record.number,
                         self.call.policy.max_attempts, self.call.method,
                         _urls.redact_url(url), _urls.redact_headers(headers))

    def transport_resent(self, record: _response.AttemptRecord) -> None:
        LOGGER.warning('%s %s attempt %i/%i: %s, sent again at once by the '
                       'transport (%s)', self.call.method,
                       _urls.redact_url(self.url), record.number,
                       self.call.policy.max_attempts, record.outcome,
                       record.delay_reason)

    def attempt_ended(self, record: _response.AttemptRecord,
                      stop_reason: typing.Optional[_retry.StopReason],
                      decision: _retry.Decision) -> None:
        if stop_reason is None:
            LOGGER.warning('%s %s attempt %i/%i: %s, retrying in %.3f s (%s)',
                           self.call.method, _urls.redact_url(self.url),
                           record.number, self.call.policy.max_attempts,
                           record.outcome, decision.delay,
                           decision.delay_reason)
        elif record.status is None or stop_reason not in _ANSWERED:
            LOGGER.warning('%s %s failed after %i attempt(s): %s (%s)',
                           self.call.method, _urls.redact_url(self.url),
                           record.number, record.outcome, stop_reason)


class SpanObserver(Observer):
    """One OpenTelemetry CLIENT span per attempt (see :mod:`._otel`)."""

    def __init__(self, owner: _call.Owner, call: _call.Call) -> None:
        self.owner, self.call = owner, call
        self.span: _otel.NoSpan = _otel.NO_SPAN

    def attempt_started(self, record: _response.AttemptRecord, url: str,
                        headers: typing.Mapping[str, str],
                        request: httpclient.HTTPRequest) -> None:
        self.span = _otel.attempt_span(self.owner, self.call.method, url,
                                       record.number, request)

    def sending(self, awaitable: typing.Awaitable[T]
                ) -> typing.Awaitable[T]:
        return self.span.active(awaitable)

    def redirected(self, status: int, url: str) -> None:
        _otel.redirected(status, url)

    def transport_resent(self, record: _response.AttemptRecord) -> None:
        self.span.resent(record)

    def attempt_ended(self, record: _response.AttemptRecord,
                      stop_reason: typing.Optional[_retry.StopReason],
                      decision: _retry.Decision) -> None:
        self.span.end(record, stop_reason, decision)


class HooksObserver(Observer):
    """The owner's metrics hooks, ``_http_req_on_attempt`` and
    ``_http_req_on_complete``; a hook that raises is logged, never
    raised, since requests were already sent."""

    def __init__(self, owner: _call.Owner,
                 response: _response.HTTPResponse) -> None:
        self.owner, self.response = owner, response

    def transport_resent(self, record: _response.AttemptRecord) -> None:
        _call_hook(self.owner._http_req_on_attempt, self.response, record)

    def attempt_ended(self, record: _response.AttemptRecord,
                      stop_reason: typing.Optional[_retry.StopReason],
                      decision: _retry.Decision) -> None:
        _call_hook(self.owner._http_req_on_attempt, self.response, record)

    def call_completed(self, response: _response.HTTPResponse) -> None:
        _call_hook(self.owner._http_req_on_complete, response)


class Observers(Observer):
    """Several observers as one, told in order."""

    def __init__(self, *observers: Observer) -> None:
        self.observers = observers

    def attempt_started(self, record: _response.AttemptRecord, url: str,
                        headers: typing.Mapping[str, str],
                        request: httpclient.HTTPRequest) -> None:
        for observer in self.observers:
            observer.attempt_started(record, url, headers, request)

    def sending(self, awaitable: typing.Awaitable[T]
                ) -> typing.Awaitable[T]:
        for observer in self.observers:
            awaitable = observer.sending(awaitable)
        return awaitable

    def redirected(self, status: int, url: str) -> None:
        for observer in self.observers:
            observer.redirected(status, url)

    def transport_resent(self, record: _response.AttemptRecord) -> None:
        for observer in self.observers:
            observer.transport_resent(record)

    def attempt_ended(self, record: _response.AttemptRecord,
                      stop_reason: typing.Optional[_retry.StopReason],
                      decision: _retry.Decision) -> None:
        for observer in self.observers:
            observer.attempt_ended(record, stop_reason, decision)

    def call_completed(self, response: _response.HTTPResponse) -> None:
        for observer in self.observers:
            observer.call_completed(response)


def observers_for(owner: _call.Owner, call: _call.Call,
                  response: _response.HTTPResponse) -> Observers:
    """The observers of one call, in the order they are told: the span
    (so that it ends with the outcome even if a hook raises), the log
    lines, the metrics hooks."""
    if (_call.is_package_default(owner._http_req_on_attempt)
            and _call.is_package_default(owner._http_req_on_complete)):
        # the package's own hooks, which do nothing: nobody to tell
        return Observers(SpanObserver(owner, call), LogObserver(call))
    return Observers(SpanObserver(owner, call), LogObserver(call),
                     HooksObserver(owner, response))



def _call_hook(hook: typing.Callable[..., None], *args: typing.Any) -> None:
    try:
        hook(*args)
    except Exception:
        LOGGER.exception('%s failed', getattr(hook, '__name__', hook))
