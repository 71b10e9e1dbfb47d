"""The retry policy as tables: backoff, Retry-After, decide(), budget.

Everything here is pure: no event loop, no clock, no sleeping.
"""
from __future__ import annotations

import calendar
import dataclasses
import math
import random
import time
import typing

import pytest

from sprockets.mixins.http import _retry
from sprockets.mixins.http._retry import (
    DelayReason,
    Failure,
    RetryBudget,
    RetryPolicy,
    StopReason,
)

Decision = _retry.Decision


def fixed(value: float) -> typing.Callable[[], float]:
    """Return a `random` source that always answers `value`."""
    return lambda: value


# -- backoff -----------------------------------------------------------------

@pytest.mark.parametrize('retry, expected', [
    (1, 3.0), (2, 6.0), (3, 12.0), (4, 24.0), (5, 30.0), (6, 30.0),
    (100, 30.0), (5000, 30.0),
])
def test_backoff_without_jitter(retry: int, expected: float) -> None:
    """jitter=None is the 2.x schedule 3, 6, 12 ... capped at max_delay."""
    policy = RetryPolicy(jitter=None)
    assert policy.backoff(retry) == expected


@pytest.mark.parametrize('retry_timeout, max_delay, retry, expected', [
    (0.5, 30.0, 1, 0.5), (0.5, 30.0, 4, 4.0), (1.0, 5.0, 4, 5.0),
    (0.0, 30.0, 3, 0.0), (3.0, 0.0, 1, 0.0),
])
def test_backoff_base_and_cap(retry_timeout: float, max_delay: float,
                              retry: int, expected: float) -> None:
    """retry_timeout is the base and max_delay the cap of the backoff."""
    policy = RetryPolicy(jitter=None, retry_timeout=retry_timeout,
                         max_delay=max_delay)
    assert policy.backoff(retry) == expected


@pytest.mark.parametrize('retry, random, expected', [
    (1, 0.0, 0.0), (1, 0.5, 1.5), (1, 0.999, 2.997),
    (2, 0.5, 3.0), (3, 0.999, 11.988),
    (6, 0.0, 0.0), (6, 0.5, 15.0), (6, 0.999, 29.97),
])
def test_backoff_full_jitter(retry: int, random: float,
                             expected: float) -> None:
    """Full jitter is uniform in [0, min(max_delay, base * 2 ** n)]."""
    policy = RetryPolicy(jitter='full', random=fixed(random))
    assert policy.backoff(retry) == pytest.approx(expected)


def test_full_jitter_is_the_default() -> None:
    """A policy built with no arguments jitters fully."""
    policy = RetryPolicy(random=fixed(0.25))
    assert policy.jitter == 'full'
    assert policy.backoff(2) == pytest.approx(1.5)


@pytest.mark.parametrize('retry, random, expected', [
    (1, 0.0, 1.5), (1, 0.5, 2.25), (1, 0.999, 2.9985),
    (3, 0.0, 6.0), (6, 0.0, 15.0), (6, 0.999, 29.985),
])
def test_backoff_equal_jitter(retry: int, random: float,
                              expected: float) -> None:
    """Equal jitter is half the backoff plus a uniform share of the rest."""
    policy = RetryPolicy(jitter='equal', random=fixed(random))
    assert policy.backoff(retry) == pytest.approx(expected)


@pytest.mark.parametrize('previous, random, expected', [
    (None, 0.0, 3.0), (None, 0.5, 6.0), (None, 0.999, 8.994),
    (10.0, 0.0, 3.0), (10.0, 0.5, 16.5), (20.0, 0.5, 30.0),
    (1.0, 0.5, 3.0),
])
def test_backoff_decorrelated_jitter(previous: typing.Optional[float],
                                     random: float,
                                     expected: float) -> None:
    """Decorrelated jitter is min(cap, uniform(base, 3 * previous))."""
    policy = RetryPolicy(jitter='decorrelated', random=fixed(random))
    assert policy.backoff(2, previous) == pytest.approx(expected)


@pytest.mark.parametrize('retry', [0, -1])
def test_backoff_refuses_retry_below_one(retry: int) -> None:
    """Retry numbers start at 1: anything lower is a programming error."""
    with pytest.raises(ValueError, match='retry must be at least 1'):
        RetryPolicy().backoff(retry)


# -- Retry-After -------------------------------------------------------------

#: 2015-10-21 07:27:30 GMT, thirty seconds before the dates below
NOW = calendar.timegm((2015, 10, 21, 7, 27, 30, 0, 0, 0))


@pytest.mark.parametrize('value, expected', [
    ('2', 2.0),
    (' 42 ', 42.0),
    ('1.5', 1.5),
    ('0', 0.0),
    ('.5', 0.5),
    ('Wed, 21 Oct 2015 07:28:00 GMT', 30.0),
    ('Wednesday, 21-Oct-15 07:28:00 GMT', 30.0),
    ('Wed Oct 21 07:28:00 2015', 30.0),
    ('Wed, 21 Oct 2015 07:27:00 GMT', 0.0),
    ('-1', None),  # digits only: a sign is not delta-seconds
    ('-0.5', None),
    ('9' * 400, math.inf),
    ('garbage', None),
    ('', None),
    ('   ', None),
    (None, None),
    ('inf', None),
    ('-inf', None),
    ('nan', None),
    ('1e3', None),
    ('1_000', None),
    ('2 seconds', None),
    ('Wed, 21 Oct 99999 07:28:00 GMT', None),
])
def test_parse_retry_after(value: typing.Optional[str],
                           expected: typing.Optional[float]) -> None:
    """Both RFC 9110 forms parse; a past date means 0; a sign and junk
    are None."""
    assert _retry.parse_retry_after(value, NOW) == expected


@pytest.fixture
def local_time_far_from_utc(
        monkeypatch: pytest.MonkeyPatch) -> typing.Iterator[None]:
    """Run with a local time zone five hours west of GMT."""
    monkeypatch.setenv('TZ', 'EST+05')
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures('local_time_far_from_utc')
@pytest.mark.parametrize('value', [
    'Wed, 21 Oct 2015 07:28:00 -0000',
    'Wed Oct 21 07:28:00 2015',
])
def test_parse_retry_after_zoneless_date_is_gmt(value: str) -> None:
    """A date without a zone is GMT, whatever the local time zone is."""
    assert _retry.parse_retry_after(value, NOW) == 30.0


# -- decide() ----------------------------------------------------------------

RETRY = DelayReason.BACKOFF
AFTER = DelayReason.RETRY_AFTER


def backoff(delay: float) -> Decision:
    return Decision(None, delay, RETRY)


def stop(reason: StopReason) -> Decision:
    return Decision(reason)


DECISIONS: typing.List[typing.Tuple[typing.Any, ...]] = [
    # (id, policy changes, method, request headers, outcome, expected)
    ('200 is success', {}, 'GET', {}, {'status': 200},
     stop(StopReason.SUCCESS)),
    ('304 is success', {}, 'GET', {}, {'status': 304},
     stop(StopReason.SUCCESS)),
    ('404 is not retryable', {}, 'GET', {}, {'status': 404},
     stop(StopReason.NOT_RETRYABLE)),
    ('501 is not retryable', {}, 'GET', {}, {'status': 501},
     stop(StopReason.NOT_RETRYABLE)),
    ('dont_retry stops a 503', {'dont_retry': {503}}, 'GET', {},
     {'status': 503}, stop(StopReason.DONT_RETRY)),
    ('dont_retry names a 404', {'dont_retry': {404}}, 'GET', {},
     {'status': 404}, stop(StopReason.DONT_RETRY)),
    ('dont_retry never fails a 200', {'dont_retry': {200}}, 'GET', {},
     {'status': 200}, stop(StopReason.SUCCESS)),
    ('503 is retried', {}, 'GET', {}, {'status': 503}, backoff(3.0)),
    ('502 GET is retried', {}, 'GET', {}, {'status': 502}, backoff(3.0)),
    ('500 PUT is retried', {}, 'PUT', {}, {'status': 500}, backoff(3.0)),
    ('504 DELETE is retried', {}, 'DELETE', {}, {'status': 504},
     backoff(3.0)),
    ('POST 502 is unsafe', {}, 'POST', {}, {'status': 502},
     stop(StopReason.UNSAFE_METHOD)),
    ('POST 500 is unsafe', {}, 'POST', {}, {'status': 500},
     stop(StopReason.UNSAFE_METHOD)),
    ('POST 504 is unsafe', {}, 'POST', {}, {'status': 504},
     stop(StopReason.UNSAFE_METHOD)),
    ('PATCH 502 is unsafe', {}, 'PATCH', {}, {'status': 502},
     stop(StopReason.UNSAFE_METHOD)),
    ('POST 503 is retried', {}, 'POST', {}, {'status': 503},
     backoff(3.0)),
    ('POST 429 is retried', {}, 'POST', {}, {'status': 429},
     backoff(3.0)),
    ('POST 408 is retried', {}, 'POST', {}, {'status': 408},
     backoff(3.0)),
    ('POST 423 is retried', {}, 'POST', {}, {'status': 423},
     backoff(3.0)),
    ('PATCH 429 is retried', {}, 'PATCH', {}, {'status': 429},
     backoff(3.0)),
    ('POST 502 with Idempotency-Key', {}, 'POST',
     {'Idempotency-Key': 'k'}, {'status': 502}, backoff(3.0)),
    ('POST 502 with idempotency-key', {}, 'POST',
     {'idempotency-key': 'k'}, {'status': 502}, backoff(3.0)),
    ('POST 502 retry_non_idempotent', {'retry_non_idempotent': True},
     'POST', {}, {'status': 502}, backoff(3.0)),
    ('connect failure POST', {}, 'POST', {}, {'failure': Failure.CONNECT},
     backoff(3.0)),
    ('timeout POST is unsafe', {}, 'POST', {},
     {'failure': Failure.TIMEOUT}, stop(StopReason.UNSAFE_METHOD)),
    ('timeout GET is retried', {}, 'GET', {}, {'failure': Failure.TIMEOUT},
     backoff(3.0)),
    ('broken connection POST is unsafe', {}, 'POST', {},
     {'failure': Failure.CONNECTION}, stop(StopReason.UNSAFE_METHOD)),
    ('broken connection GET is retried', {}, 'GET', {},
     {'failure': Failure.CONNECTION}, backoff(3.0)),
    ('timeout POST retry_non_idempotent', {'retry_non_idempotent': True},
     'POST', {}, {'failure': Failure.TIMEOUT}, backoff(3.0)),
    ('fatal GET', {}, 'GET', {}, {'failure': Failure.FATAL},
     stop(StopReason.NOT_RETRYABLE)),
    ('fatal POST retry_non_idempotent', {'retry_non_idempotent': True},
     'POST', {}, {'failure': Failure.FATAL},
     stop(StopReason.NOT_RETRYABLE)),
    ('second attempt backs off twice as long', {}, 'GET', {},
     {'status': 503, 'attempt': 2}, backoff(6.0)),
    ('attempts exhausted', {}, 'GET', {}, {'status': 503, 'attempt': 3},
     stop(StopReason.ATTEMPTS_EXHAUSTED)),
    ('one attempt only', {'max_attempts': 1}, 'GET', {}, {'status': 503},
     stop(StopReason.ATTEMPTS_EXHAUSTED)),
    ('exception on the last attempt', {}, 'GET', {},
     {'failure': Failure.CONNECT, 'attempt': 3},
     stop(StopReason.ATTEMPTS_EXHAUSTED)),
    ('retry_statuses lists 404', {'retry_statuses': {404}}, 'GET', {},
     {'status': 404}, backoff(3.0)),
    ('retry_statuses replaces the defaults', {'retry_statuses': {404}},
     'GET', {}, {'status': 503}, stop(StopReason.NOT_RETRYABLE)),
    ('Retry-After is the delay', {}, 'GET', {},
     {'status': 503, 'retry_after': 5.0, 'request_timeout': 20.0},
     Decision(None, 5.0, AFTER)),
    ('Retry-After 0', {}, 'GET', {},
     {'status': 429, 'retry_after': 0.0, 'request_timeout': 20.0},
     Decision(None, 0.0, AFTER)),
    ('Retry-After at retry_after_max', {'retry_after_max': 10.0}, 'GET',
     {}, {'status': 503, 'retry_after': 10.0, 'request_timeout': 20.0},
     Decision(None, 10.0, AFTER)),
    ('Retry-After over retry_after_max', {'retry_after_max': 10.0}, 'GET',
     {}, {'status': 503, 'retry_after': 10.5, 'request_timeout': 20.0},
     stop(StopReason.RETRY_AFTER_TOO_LONG)),
    ('retry_after_max beats request_timeout', {'retry_after_max': 60.0},
     'GET', {}, {'status': 503, 'retry_after': 40.0,
                 'request_timeout': 20.0},
     Decision(None, 40.0, AFTER)),
    ('request_timeout caps Retry-After', {}, 'GET', {},
     {'status': 503, 'retry_after': 20.5, 'request_timeout': 20.0},
     stop(StopReason.RETRY_AFTER_TOO_LONG)),
    ('Retry-After at request_timeout', {}, 'GET', {},
     {'status': 503, 'retry_after': 20.0, 'request_timeout': 20.0},
     Decision(None, 20.0, AFTER)),
    ('no request timeout: max_delay caps Retry-After', {}, 'GET', {},
     {'status': 503, 'retry_after': 3600.0},
     stop(StopReason.RETRY_AFTER_TOO_LONG)),
    ('no request timeout: Retry-After within max_delay', {}, 'GET', {},
     {'status': 503, 'retry_after': 30.0},
     Decision(None, 30.0, AFTER)),
    ('an infinite Retry-After is never waited', {'retry_after_max': math.inf},
     'GET', {}, {'status': 503, 'retry_after': math.inf},
     stop(StopReason.RETRY_AFTER_TOO_LONG)),
    ('retry_after_max inf waits any finite Retry-After',
     {'retry_after_max': math.inf}, 'GET', {},
     {'status': 503, 'retry_after': 3600.0}, Decision(None, 3600.0, AFTER)),
    ('infinite Retry-After', {}, 'GET', {},
     {'status': 503, 'retry_after': math.inf, 'request_timeout': 20.0},
     stop(StopReason.RETRY_AFTER_TOO_LONG)),
    ('Retry-After on a POST 429', {}, 'POST', {},
     {'status': 429, 'retry_after': 2.0, 'request_timeout': 20.0},
     Decision(None, 2.0, AFTER)),
    ('delay would reach the deadline', {'deadline': 4.0}, 'GET', {},
     {'status': 503, 'elapsed': 1.0}, stop(StopReason.DEADLINE)),
    ('delay ends before the deadline', {'deadline': 4.5}, 'GET', {},
     {'status': 503, 'elapsed': 1.0}, backoff(3.0)),
    ('call deadline beats the policy', {'deadline': 100.0}, 'GET', {},
     {'status': 503, 'elapsed': 1.0, 'deadline': 2.0},
     stop(StopReason.DEADLINE)),
    ('Retry-After past the deadline', {}, 'GET', {},
     {'status': 503, 'retry_after': 5.0, 'request_timeout': 20.0,
      'elapsed': 0.5, 'deadline': 5.0}, stop(StopReason.DEADLINE)),
    ('deadline already spent', {}, 'GET', {},
     {'status': 429, 'retry_after': 0.0, 'request_timeout': 20.0,
      'elapsed': 5.0, 'deadline': 5.0}, stop(StopReason.DEADLINE)),
]


@pytest.mark.parametrize(
    'changes, method, headers, outcome, expected',
    [row[1:] for row in DECISIONS], ids=[row[0] for row in DECISIONS])
def test_decide(changes: typing.Dict[str, typing.Any], method: str,
                headers: typing.Dict[str, str],
                outcome: typing.Dict[str, typing.Any],
                expected: Decision) -> None:
    """decide() answers every outcome as SPEC section 3 says."""
    policy = RetryPolicy(jitter=None, budget=None).replace(**changes)
    outcome.setdefault('attempt', 1)
    decision = policy.decide(
        method=method, idempotent=policy.is_idempotent(method, headers),
        **outcome)
    assert decision == expected
    assert decision.retry is (expected.stop_reason is None)


def test_decide_uses_the_previous_delay() -> None:
    """Decorrelated jitter is fed the delay before the previous retry."""
    policy = RetryPolicy(jitter='decorrelated', random=fixed(0.5))
    decision = policy.decide(attempt=2, method='GET', idempotent=True,
                             status=503, previous_delay=10.0)
    assert decision == Decision(None, 16.5, RETRY)


def test_decide_needs_an_outcome() -> None:
    """Neither a status nor a failure is a programming error."""
    with pytest.raises(ValueError, match='status or a failure'):
        RetryPolicy().decide(attempt=1, method='GET', idempotent=True)


# -- is_idempotent -----------------------------------------------------------

@pytest.mark.parametrize('method, headers, expected', [
    ('GET', {}, True),
    ('HEAD', {}, True),
    ('OPTIONS', {}, True),
    ('PUT', {}, True),
    ('DELETE', {}, True),
    ('TRACE', {}, True),
    ('get', {}, True),
    ('POST', {}, False),
    ('PATCH', {}, False),
    ('CONNECT', {}, False),
    ('POST', {'Idempotency-Key': 'a'}, True),
    ('POST', {'idempotency-key': 'a'}, True),
    ('POST', {'IDEMPOTENCY-KEY': 'a'}, True),
    ('patch', {'iDempotency-kEy': 'a'}, True),
    ('POST', {'X-Idempotency-Key': 'a'}, False),
    ('POST', {'Idempotency': 'a'}, False),
])
def test_is_idempotent(method: str, headers: typing.Dict[str, str],
                       expected: bool) -> None:
    """Idempotent methods, or an Idempotency-Key in any case, are safe."""
    assert RetryPolicy().is_idempotent(method, headers) is expected


# -- RetryPolicy as a value --------------------------------------------------

@pytest.mark.parametrize('changes, error, field', [
    ({'max_attempts': 0}, ValueError, 'max_attempts'),
    ({'max_attempts': -1}, ValueError, 'max_attempts'),
    ({'max_attempts': 1.5}, TypeError, 'max_attempts'),
    ({'max_attempts': True}, TypeError, 'max_attempts'),
    ({'max_attempts': '3'}, TypeError, 'max_attempts'),
    ({'retry_timeout': -1}, ValueError, 'retry_timeout'),
    ({'retry_timeout': '3'}, TypeError, 'retry_timeout'),
    ({'retry_timeout': math.nan}, ValueError, 'retry_timeout'),
    ({'max_delay': -0.1}, ValueError, 'max_delay'),
    ({'jitter': 'bogus'}, ValueError, 'jitter'),
    ({'jitter': True}, ValueError, 'jitter'),
    ({'retry_statuses': 'abc'}, TypeError, 'retry_statuses'),
    ({'retry_statuses': 503}, TypeError, 'retry_statuses'),
    ({'retry_statuses': None}, TypeError, 'retry_statuses'),
    ({'retry_statuses': {'503'}}, TypeError, 'retry_statuses'),
    ({'dont_retry': [True]}, TypeError, 'dont_retry'),
    ({'retry_non_idempotent': 'yes'}, TypeError, 'retry_non_idempotent'),
    ({'idempotency_key': 1}, TypeError, 'idempotency_key'),
    ({'retry_after_max': -5}, ValueError, 'retry_after_max'),
    ({'deadline': 0}, ValueError, 'deadline'),
    ({'deadline': -1.0}, ValueError, 'deadline'),
    ({'deadline': '10'}, TypeError, 'deadline'),
    ({'budget': 'default'}, TypeError, 'budget'),
    ({'budget': 10}, TypeError, 'budget'),
    ({'random': 0.5}, TypeError, 'random'),
])
def test_policy_validation(changes: typing.Dict[str, typing.Any],
                           error: typing.Type[Exception],
                           field: str) -> None:
    """An invalid value raises at construction, naming the field."""
    with pytest.raises(error, match=rf'^{field} must'):
        RetryPolicy(**changes)


@pytest.mark.parametrize('changes', [
    {'max_attempts': 1}, {'retry_timeout': 0}, {'max_delay': 0},
    {'jitter': None}, {'jitter': 'equal'}, {'jitter': 'decorrelated'},
    {'retry_statuses': []}, {'retry_statuses': (503,)},
    {'retry_after_max': 0}, {'retry_after_max': None},
    {'deadline': 0.001}, {'budget': None}, {'budget': RetryBudget()},
])
def test_policy_accepts_edge_values(
        changes: typing.Dict[str, typing.Any]) -> None:
    """Boundary values that make sense are accepted and stored."""
    policy = RetryPolicy(**changes)
    for name, value in changes.items():
        if name == 'retry_statuses':
            value = frozenset(value)
        assert getattr(policy, name) == value


def test_policy_is_frozen() -> None:
    """Assigning to a field raises: a policy is never mutated."""
    policy = RetryPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_attempts = 5  # type: ignore[misc]
    assert policy.max_attempts == 3


def test_replace_returns_a_new_policy() -> None:
    """replace() applies changes to a copy and leaves the original alone."""
    policy = RetryPolicy()
    changed = policy.replace(max_attempts=5, jitter=None)
    assert (changed.max_attempts, changed.jitter) == (5, None)
    assert (policy.max_attempts, policy.jitter) == (3, 'full')


def test_replace_validates() -> None:
    """replace() runs the same validation as the constructor."""
    with pytest.raises(ValueError, match=r'^max_attempts must'):
        RetryPolicy().replace(max_attempts=0)


@pytest.mark.parametrize('policy, expected', [
    (RetryPolicy(), 'RetryPolicy()'),
    (RetryPolicy(max_attempts=5, jitter=None),
     'RetryPolicy(max_attempts=5, jitter=None)'),
    (RetryPolicy(dont_retry={404}),
     'RetryPolicy(dont_retry=frozenset({404}))'),
    (RetryPolicy(budget=None), 'RetryPolicy(budget=None)'),
    (RetryPolicy(budget=RetryBudget(ttl=5)),
     'RetryPolicy(budget=RetryBudget(ttl=5.0, min_retries_per_sec=10.0, '
     'percent_can_retry=0.2))'),
    (RetryPolicy(random=fixed(0.5)), 'RetryPolicy()'),
])
def test_policy_repr(policy: RetryPolicy, expected: str) -> None:
    """repr() names only the fields that differ from the defaults."""
    assert repr(policy) == expected


def test_retry_statuses_are_copied() -> None:
    """A set given for retry_statuses is stored as a frozenset copy."""
    statuses = {503}
    policy = RetryPolicy(retry_statuses=statuses)
    statuses.add(404)
    assert isinstance(policy.retry_statuses, frozenset)
    assert policy.retry_statuses == frozenset({503})
    assert not policy.is_retryable_status(404)


def test_policies_compare_by_value() -> None:
    """Equal fields make equal, hashable policies; `random` is ignored."""
    first = RetryPolicy(dont_retry={404}, random=fixed(0.1))
    second = RetryPolicy(dont_retry=frozenset({404}))
    assert first == second
    assert hash(first) == hash(second)
    assert first != RetryPolicy()


def test_policy_budget_choice() -> None:
    """retry_budget is the shared default, None, or the budget given."""
    mine = RetryBudget()
    assert RetryPolicy().retry_budget is _retry.DEFAULT_BUDGET
    assert RetryPolicy(budget=None).retry_budget is None
    assert RetryPolicy(budget=mine).retry_budget is mine


# -- RetryBudget -------------------------------------------------------------

KEY = ('http', 'upstream.example', 80)


def withdraw_all(budget: RetryBudget, now: float,
                 key: typing.Hashable = KEY) -> int:
    """Withdraw until refused; return how many retries were granted."""
    granted = 0
    while budget.try_withdraw(key, now):
        granted += 1
        assert granted <= 10_000, 'the budget never ran out'
    return granted


def test_fresh_budget_allows_the_reserve() -> None:
    """A quiet upstream gets exactly 10/s * 10 s = 100 retries."""
    budget = RetryBudget()
    assert budget.balance(KEY, 0.0) == 100.0
    assert withdraw_all(budget, 0.0) == 100
    assert not budget.try_withdraw(KEY, 0.5)
    assert budget.balance(KEY, 0.5) == 0.0


@pytest.mark.parametrize('deposits, expected', [
    (0, 100), (1, 100), (4, 100), (5, 101), (7, 101), (10, 102),
    (60, 112), (65, 113), (100, 120), (1000, 300),
])
def test_deposits_add_a_fifth_of_a_retry(deposits: int,
                                         expected: int) -> None:
    """Each request adds 0.2 of a retry: 100 + 0.2 * N, never less."""
    budget = RetryBudget()
    for _ in range(deposits):
        budget.deposit(KEY, 0.0)
    assert withdraw_all(budget, 0.0) == expected


@pytest.mark.parametrize('now, expected', [
    (0.0, 0), (5.0, 0), (9.999, 0), (10.0, 100), (25.0, 100),
])
def test_withdrawals_expire_after_the_window(now: float,
                                             expected: int) -> None:
    """Retries taken at t=0 count until t=10, then the reserve is back."""
    budget = RetryBudget()
    assert withdraw_all(budget, 0.0) == 100
    assert withdraw_all(budget, now) == expected


@pytest.mark.parametrize('now, expected', [
    (0.0, 2), (9.5, 2), (10.0, 0), (11.0, 0),
])
def test_deposits_expire_after_the_window(now: float,
                                          expected: int) -> None:
    """Deposits made at t=0 count until t=10 and no longer."""
    budget = RetryBudget(min_retries_per_sec=0)
    for _ in range(10):
        budget.deposit(KEY, 0.0)
    assert withdraw_all(budget, now) == expected


def test_window_follows_the_ttl() -> None:
    """With ttl=2 the window is two seconds long."""
    budget = RetryBudget(ttl=2, min_retries_per_sec=1)
    assert withdraw_all(budget, 100.0) == 2
    assert withdraw_all(budget, 101.9) == 0
    assert withdraw_all(budget, 102.0) == 2


def test_small_reserve() -> None:
    """min_retries_per_sec=0.1 over a 10 s window is a reserve of one."""
    budget = RetryBudget(min_retries_per_sec=0.1, ttl=10)
    assert withdraw_all(budget, 0.0) == 1
    for _ in range(5):
        budget.deposit(KEY, 1.0)
    assert withdraw_all(budget, 1.0) == 1


def test_no_reserve_and_no_deposits() -> None:
    """With neither a reserve nor deposits, nothing may be retried."""
    budget = RetryBudget(min_retries_per_sec=0, percent_can_retry=0)
    budget.deposit(KEY, 0.0)
    assert not budget.try_withdraw(KEY, 0.0)


def test_balance() -> None:
    """balance() is deposits minus withdrawals plus the reserve."""
    budget = RetryBudget()
    budget.deposit(KEY, 0.0)
    assert budget.balance(KEY, 0.0) == pytest.approx(100.2)
    assert budget.try_withdraw(KEY, 0.0)
    assert budget.balance(KEY, 0.0) == pytest.approx(99.2)


def test_budgets_are_per_upstream() -> None:
    """An exhausted upstream leaves the others' budgets untouched."""
    budget = RetryBudget()
    assert withdraw_all(budget, 0.0) == 100
    assert withdraw_all(budget, 0.0, ('http', 'other.example', 80)) == 100
    assert withdraw_all(budget, 0.0, ('http', 'upstream.example',
                                      8080)) == 100
    assert withdraw_all(budget, 0.0, ('https', 'upstream.example',
                                      80)) == 100


def test_budget_forgets_idle_upstreams() -> None:
    """A process calling thousands of hosts keeps only the upstreams with
    something left in their window, while an exhausted one stays
    exhausted."""
    budget = RetryBudget()
    assert withdraw_all(budget, 0.0) == 100
    for second in range(60):
        for host in range(100):
            budget.deposit(('http', f'h{second}-{host}', 80), float(second))
    # 6,000 upstreams were seen; at most the last ttl's worth are kept
    assert len(budget._windows) <= 2 * 10 * 100
    assert budget.balance(('http', 'h59-0', 80), 59.0) == 100.2
    fresh = RetryBudget()
    for host in range(300):
        fresh.deposit(('http', f'h{host}', 80), 0.0)
    assert withdraw_all(fresh, 5.0) == 100
    fresh.deposit(('http', 'one-more', 80), 5.0)  # sweeps: all recent
    assert withdraw_all(fresh, 5.0) == 0


def test_budget_reset() -> None:
    """reset() forgets every deposit and withdrawal."""
    budget = RetryBudget()
    assert withdraw_all(budget, 0.0) == 100
    budget.reset()
    assert withdraw_all(budget, 0.0) == 100


@pytest.mark.parametrize('kwargs, error, field', [
    ({'ttl': 0}, ValueError, 'ttl'),
    ({'ttl': -1}, ValueError, 'ttl'),
    ({'ttl': math.inf}, ValueError, 'ttl'),
    ({'ttl': math.nan}, ValueError, 'ttl'),
    ({'ttl': '10'}, TypeError, 'ttl'),
    ({'ttl': True}, TypeError, 'ttl'),
    ({'min_retries_per_sec': -1}, ValueError, 'min_retries_per_sec'),
    ({'min_retries_per_sec': None}, TypeError, 'min_retries_per_sec'),
    ({'percent_can_retry': -0.1}, ValueError, 'percent_can_retry'),
    ({'percent_can_retry': 1000.5}, ValueError, 'percent_can_retry'),
    ({'percent_can_retry': '0.2'}, TypeError, 'percent_can_retry'),
])
def test_budget_validation(kwargs: typing.Dict[str, typing.Any],
                           error: typing.Type[Exception],
                           field: str) -> None:
    """Invalid budget arguments raise, naming the argument."""
    with pytest.raises(error, match=rf'^{field}'):
        RetryBudget(**kwargs)


def test_budget_repr() -> None:
    """repr() shows the three settings."""
    assert repr(RetryBudget(ttl=5, min_retries_per_sec=1,
                            percent_can_retry=0.5)) == (
        'RetryBudget(ttl=5.0, min_retries_per_sec=1.0, '
        'percent_can_retry=0.5)')


# -- enumerations ------------------------------------------------------------

@pytest.mark.parametrize('reason, value', [
    (StopReason.SUCCESS, 'success'),
    (StopReason.NOT_RETRYABLE, 'not-retryable'),
    (StopReason.DONT_RETRY, 'dont-retry'),
    (StopReason.ATTEMPTS_EXHAUSTED, 'attempts-exhausted'),
    (StopReason.DEADLINE, 'deadline'),
    (StopReason.BUDGET_EXHAUSTED, 'budget-exhausted'),
    (StopReason.RETRY_AFTER_TOO_LONG, 'retry-after-too-long'),
    (StopReason.UNSAFE_METHOD, 'unsafe-method'),
    (StopReason.TOO_MANY_REDIRECTS, 'too-many-redirects'),
])
def test_stop_reason_values(reason: StopReason, value: str) -> None:
    """Each StopReason is its SPEC string, in comparisons and str()."""
    assert reason == value
    assert str(reason) == value
    assert StopReason(value) is reason


def test_stop_reasons_are_exactly_the_spec_ones() -> None:
    """No stop reason exists beyond the ones SPEC lists, and the two the
    issues added: a redirect loop, and a streamed body that broke off
    (issue 8)."""
    assert {str(reason) for reason in StopReason} == {
        'success', 'not-retryable', 'dont-retry', 'attempts-exhausted',
        'deadline', 'budget-exhausted', 'retry-after-too-long',
        'unsafe-method', 'too-many-redirects', 'stream-interrupted'}


@pytest.mark.parametrize('reason, value', [
    (DelayReason.BACKOFF, 'backoff'),
    (DelayReason.RETRY_AFTER, 'retry-after'),
])
def test_delay_reason_values(reason: DelayReason, value: str) -> None:
    """The delay reasons recorded on attempts are these strings."""
    assert reason == value
    assert str(reason) == value


def test_replace_keeps_its_answers() -> None:
    """The same changes to the same policy give the same copy (a call that
    passes max_http_attempts asks for one every time); the key keeps the
    random source, which equality leaves out, and each change's type."""
    policy = RetryPolicy()
    assert policy.replace(max_attempts=5) is policy.replace(max_attempts=5)
    assert policy.replace(max_attempts=5) is not policy.replace(
        max_attempts=4)
    seeded = RetryPolicy(random=random.Random(7).random)
    assert seeded == policy
    assert seeded.replace(max_attempts=5).random is seeded.random
    assert policy.replace(max_attempts=5).random is policy.random
    with pytest.raises(TypeError):
        policy.replace(max_attempts=True)  # not the cached 1
    assert policy.replace(max_attempts=1).max_attempts == 1
    with pytest.raises(TypeError):
        policy.replace(max_attempts=True)
    # an unhashable value is validated (and stored as a frozenset) as ever
    assert policy.replace(retry_statuses=[500]).retry_statuses == {500}
