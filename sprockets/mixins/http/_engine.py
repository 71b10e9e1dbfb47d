"""The retry loop shared by :class:`~sprockets.mixins.http.HTTPClientMixin`
and :class:`~sprockets.mixins.http.Client`.

:func:`run` only asks: build the attempt, send it, ask the policy (then
the gates) what follows, sleep.  Every decision is
:class:`~sprockets.mixins.http._retry.RetryPolicy`'s; how tornado reports
what happened is :mod:`._attempt`'s and :mod:`._transports`'; who watches
is :mod:`._observe`'s.

"""
from __future__ import annotations

import typing

from tornado import httpclient, httputil

from sprockets.mixins.http import (
    _attempt,
    _call,
    _checks,
    _observe,
    _response,
    _retry,
    _transports,
    _urls,
)

__all__ = ['run']

Body = typing.Union[bytes, str, None]


async def run(owner: _call.Owner, call: _call.Call,
              response: _response.HTTPResponse,
              client: typing.Optional[httpclient.AsyncHTTPClient] = None
              ) -> _response.HTTPResponse:
    """Send `call` until the policy says stop, recording into `response`."""
    policy, clock = call.policy, _call.clock_of(owner)
    started = clock()
    key = _urls.upstream(call.url)
    gates = _gates(owner, policy)
    for gate in gates:
        gate.record(key, started)
    deadline = policy.deadline_for(call.deadline)
    observer = _observe.observers_for(owner, call, response)
    client = client or _transports.async_http_client()
    transport = _transports.for_client(client)
    idempotent = policy.is_idempotent(call.method, call.headers)
    # a transport may resend on a dead kept-alive connection only what the
    # policy would send again itself
    may_resend = idempotent or policy.retry_non_idempotent
    url, headers, body = call.url, call.headers, call.body
    streams = call.options.get('streaming_callback') is not None
    previous_delay: typing.Optional[float] = None
    attempt = 0
    while True:
        attempt += 1
        begun = clock()
        if not policy.may_start(begun - started, deadline):
            stop: typing.Optional[_retry.StopReason] = (
                _retry.StopReason.DEADLINE)  # a sleep overshot it
            break
        sender = _attempt.Attempt(
            call, attempt, url, headers, body,
            _timeouts(call, deadline, begun - started), transport,
            _time_left(clock, started, deadline), may_resend=may_resend,
            is_final=_final_status(
                policy, call, attempt, idempotent, clock, started,
                deadline, previous_delay) if streams else None)
        record = response.start_attempt(attempt, begun - started)
        observer.attempt_started(record, url, headers, sender.request)
        outcome = await sender.send(client, observer,
                                    owner.MAX_DECOMPRESSED_SIZE, response,
                                    record)
        ended = clock()
        record.duration = ended - begun
        for failure in sender.inflight.resends:
            # sent again by the transport itself: an attempt of its own
            observer.transport_resent(
                response.record_resend(record, failure))
            attempt += 1
        decision = policy.decide(
            attempt=attempt, method=call.method, idempotent=idempotent,
            request_timeout=call.request_timeout or None,
            elapsed=ended - started, deadline=deadline,
            previous_delay=previous_delay, **outcome._asdict())
        relay = sender.relay
        if (relay is not None and relay.live and decision.retry
                and outcome.status is not None):
            # the body went out to the caller as it came: the decision made
            # at its headers stands (a second one draws its own backoff and
            # reads the clock again)
            decision = _retry.Decision(relay.final)
        stop = decision.stop_reason or _refusal(gates, key, ended)
        if stop is None:
            record.delay = previous_delay = decision.delay
            record.delay_reason = str(decision.delay_reason)
        elif outcome.status is not None:
            # the body kept back while a retry was possible is the answer
            stop = await sender.deliver_withheld(response, record,
                                                 outcome) or stop
        observer.attempt_ended(record, stop, decision)
        if stop is not None:
            break
        await owner._http_req_sleep(decision.delay)
        url, headers, body = _modified_for_retry(owner, response, attempt,
                                                 url, headers, body)
    response.finish(stop)
    observer.call_completed(response)
    return response


def _gates(owner: _call.Owner,
           policy: _retry.RetryPolicy) -> typing.Tuple[_retry.Gate, ...]:
    """The gates a retry of this call must pass: the budget the owner
    picks (the policy's by default), then the policy's other gates."""
    budget = owner._http_req_retry_budget(policy)
    return ((budget,) if budget is not None else ()) + policy.gates


def _refusal(gates: typing.Sequence[_retry.Gate], key: typing.Hashable,
             now: float) -> typing.Optional[_retry.StopReason]:
    """The stop reason of the first gate that refuses the retry."""
    for gate in gates:
        if not gate.admit(key, now):
            return gate.stop_reason
    return None


def _final_status(policy: _retry.RetryPolicy, call: _call.Call,
                  attempt: int, idempotent: bool,
                  clock: typing.Callable[[], float], started: float,
                  deadline: typing.Optional[float],
                  previous_delay: typing.Optional[float]
                  ) -> _attempt.IsFinal:
    """Return what a streamed attempt asks once its headers are in:
    whether the policy would stop on this status (its body is then the
    answer, handed to the caller as it arrives).  The gates are not asked
    (passing one is a side effect): a retry a gate refuses later has its
    body handed on when the attempt ends.  Each send the transport made
    again by itself (`resent`) took an attempt of its own."""

    def is_final(status: int, headers: httputil.HTTPHeaders,
                 resent: int = 0) -> typing.Optional[_retry.StopReason]:
        return policy.decide(
            attempt=attempt + resent, method=call.method,
            idempotent=idempotent,
            status=status, retry_after=_attempt.retry_after(headers),
            request_timeout=call.request_timeout or None,
            elapsed=clock() - started, deadline=deadline,
            previous_delay=previous_delay).stop_reason

    return is_final


def _time_left(clock: typing.Callable[[], float], started: float,
               deadline: typing.Optional[float]) -> _attempt.TimeLeft:
    """Return a function that says how many seconds are left before the
    deadline (:data:`None`: no deadline), for the hops of a redirect."""
    if deadline is None:
        return lambda: None
    return lambda: deadline - (clock() - started)


def _timeouts(call: _call.Call, deadline: typing.Optional[float],
              elapsed: float) -> typing.Tuple[float, float]:
    """Return the attempt's (connect, request) timeouts, shrunk to the time
    left before the deadline."""
    if deadline is None:
        return call.connect_timeout, call.request_timeout
    left = deadline - elapsed
    return (_attempt.within(call.connect_timeout, left),
            _attempt.within(call.request_timeout, left))


def _modified_for_retry(
        owner: _call.Owner, response: _response.HTTPResponse,
        attempts: int, url: str, headers: typing.Mapping[str, str],
        body: Body) -> typing.Tuple[str, httputil.HTTPHeaders, Body]:
    """Ask the owner's ``_http_req_modify_for_retry`` for the next
    attempt, with what 2.x passed it (the 0-based index of the attempt
    about to be sent, a plain dict copy of the headers), and check what
    it returns as the call's own arguments are checked."""
    url, changed, body = owner._http_req_modify_for_retry(
        response, attempts, url, _plain_dict(headers), body)
    repeated = (headers if isinstance(headers, httputil.HTTPHeaders)
                else httputil.HTTPHeaders())
    checked = httputil.HTTPHeaders()
    for name, value in _checks.header_pairs(
            changed, argument='the headers _http_req_modify_for_retry '
            'returned'):
        values = repeated.get_list(name)
        if len(values) > 1 and value == ','.join(values):
            for one in values:  # unchanged: keep the fields apart
                checked.add(name, one)
        else:
            checked.add(name, value)
    if isinstance(body, (dict, list, tuple)):  # serialize it, as 2.x did
        body = owner._http_req_body_serialize(
            body, checked.get('Content-Type'))
    if isinstance(body, (bytearray, memoryview)):
        body = bytes(body)
    if body is not None and not isinstance(body, (bytes, str)):
        raise TypeError('_http_req_modify_for_retry must return the body '
                        f'as bytes, str or None, got {type(body).__name__}')
    return _checks.url(url), checked, body


def _plain_dict(headers: typing.Mapping[str, str]) -> typing.Dict[str, str]:
    """`headers` as the plain dict 2.x hooks got: one key per name,
    repeated fields joined with a comma (tornado's own value)."""
    if isinstance(headers, httputil.HTTPHeaders):
        return {name: headers[name] for name in headers}
    return dict(headers)
