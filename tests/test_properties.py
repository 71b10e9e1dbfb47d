"""Properties of the pure parts, checked with hypothesis on a fixed seed and
a bounded number of examples: Retry-After, the policy, the budget, the
codecs, decompression and the response's properties."""
from __future__ import annotations

import contextlib
import email.utils
import gzip
import io
import math
import typing
import zlib

import brotli
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from tornado import httpclient, httputil

from sprockets.mixins.http import _codings, _content, _response
from sprockets.mixins.http._retry import (
    DelayReason,
    Failure,
    RetryBudget,
    RetryPolicy,
    parse_retry_after,
)

#: Repeatable and bounded: the same examples on every run.
PROPERTY = settings(max_examples=200, derandomize=True, deadline=None,
                    database=None)
#: The same, for the strategies that are slow to draw (nested values).
SLOW_PROPERTY = settings(PROPERTY, max_examples=75)

#: The largest number of seconds a policy accepts.
MAX_SECONDS = 1e9

seconds = st.floats(min_value=0.0, max_value=MAX_SECONDS)
unit = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


# -- Retry-After -------------------------------------------------------------

http_dates = st.builds(
    lambda when, form: form(when),
    st.floats(min_value=-1e10, max_value=1e11),
    st.sampled_from([
        lambda when: email.utils.formatdate(when, usegmt=True),
        lambda when: email.utils.formatdate(when),
        lambda when: email.utils.formatdate(when).replace(',', ''),
    ]))
retry_after_values = st.one_of(
    st.text(), st.from_regex(r'\s*[0-9]{1,40}(\.[0-9]{0,10})?\s*'),
    http_dates, st.sampled_from(['inf', 'nan', '-5', '1e3', '1_000', '']))


@PROPERTY
@given(retry_after_values, st.floats(min_value=0.0, max_value=4e9))
def test_parse_retry_after_never_raises(value: str, now: float) -> None:
    """Any text gives None or a number of seconds, never NaN or < 0."""
    seconds = parse_retry_after(value, now)
    assert seconds is None or (isinstance(seconds, float)
                               and not math.isnan(seconds) and seconds >= 0)


@PROPERTY
@given(st.from_regex(r'[0-9]{1,400}', fullmatch=True),
       st.floats(min_value=0.0, max_value=4e9))
def test_parse_retry_after_digits_are_their_value(value: str,
                                                  now: float) -> None:
    """Digits only are delta-seconds, whatever the clock says."""
    assert parse_retry_after(f' {value}\t', now) == float(value)


# -- RetryPolicy -------------------------------------------------------------

statuses = st.frozensets(st.integers(min_value=100, max_value=599),
                         max_size=8)
valid_fields = {
    'max_attempts': st.integers(min_value=1, max_value=10)
    | st.integers(min_value=1, max_value=10 ** 6),
    'retry_timeout': seconds,
    'max_delay': seconds,
    'jitter': st.sampled_from(['full', 'equal', 'decorrelated', None]),
    'retry_statuses': statuses,
    'dont_retry': statuses,
    'retry_non_idempotent': st.booleans(),
    'idempotency_key': st.booleans(),
    'retry_after_max': st.none() | seconds | st.just(math.inf),
    'deadline': st.none() | st.floats(min_value=1e-6, max_value=MAX_SECONDS)
    | st.just(math.inf),
    'budget': st.none() | st.builds(RetryBudget),
}


def _policy(fields: typing.Dict[str, typing.Any], r: float) -> RetryPolicy:
    return RetryPolicy(random=lambda: r, **fields)


policies = st.builds(_policy, st.fixed_dictionaries({}, optional=valid_fields),
                     unit)
anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(
        min_value=10 ** 300, max_value=10 ** 400), st.floats(), st.text(),
    st.binary(), st.lists(st.integers(), max_size=3),
    st.frozensets(st.integers(), max_size=3), st.just(object()),
    st.just(math.inf), st.just(-math.inf), st.just(math.nan))


@PROPERTY
@given(st.fixed_dictionaries({}, optional=valid_fields))
def test_policy_valid_fields_construct(fields: typing.Dict[str, typing.Any]
                                       ) -> None:
    """Every combination of valid values constructs a policy."""
    policy = RetryPolicy(**fields)
    assert math.isfinite(policy.max_delay)
    assert policy.replace() == policy


@PROPERTY
@given(st.sampled_from([*sorted(valid_fields), 'gates', 'random']),
       anything)
def test_policy_invalid_fields_raise_type_or_value_error(
        name: str, value: typing.Any) -> None:
    """Any value for any field constructs or raises TypeError or
    ValueError, nothing else; an accepted max_delay is finite."""
    try:
        policy = RetryPolicy(**{name: value})
    except (TypeError, ValueError):
        return
    assert math.isfinite(policy.max_delay)


@pytest.mark.parametrize('value, message', [
    (math.inf, r'^max_delay .*inf never returns.*max_delay=1e9'),
    (10 ** 400, r'^max_delay .*max_delay=1e9'),  # an int that is inf
    (1e308, r'^max_delay must be at most'),
], ids=['inf', 'huge-int', '1e308'])
def test_policy_refuses_an_infinite_max_delay(value: float,
                                              message: str) -> None:
    """A sleep of inf never returns: max_delay=inf is refused, and the
    message names the finite cap to use."""
    with pytest.raises(ValueError, match=message):
        RetryPolicy(max_delay=value)


@PROPERTY
@given(policies, st.one_of(st.integers(min_value=1, max_value=2000),
                           st.integers(min_value=1, max_value=10 ** 30)),
       st.none() | seconds)
def test_backoff_is_finite_for_any_retry(policy: RetryPolicy, retry: int,
                                         previous: typing.Optional[float]
                                         ) -> None:
    """backoff() never returns inf, NaN or more than max_delay, however
    many retries came before (3 * 2 ** 1023 overflows a float)."""
    delay = policy.backoff(retry, previous)
    assert math.isfinite(delay) and 0.0 <= delay <= policy.max_delay


@PROPERTY
@given(
    policy=policies,
    attempt=st.integers(min_value=1, max_value=4)
    | st.integers(min_value=1, max_value=10 ** 6),
    method=st.sampled_from(['GET', 'POST', 'PATCH', 'PUT', 'DELETE']),
    idempotent=st.booleans(),
    outcome=st.sampled_from([408, 423, 429, 500, 502, 503, 504])
    | st.sampled_from(list(Failure))
    | st.integers(min_value=100, max_value=599),
    retry_after=st.none() | st.floats(min_value=0.0, max_value=60.0)
    | seconds | st.just(math.inf),
    request_timeout=st.none() | st.floats(min_value=0.0, max_value=120.0)
    | seconds,
    elapsed=st.floats(min_value=0.0, max_value=60.0) | seconds,
    deadline=st.none() | st.floats(min_value=1e-6, max_value=MAX_SECONDS),
    previous_delay=st.none() | seconds,
    flags=st.just({}) | st.fixed_dictionaries({}, optional={
        'redirect_loop': st.booleans(),
        'redirect_unfollowed': st.booleans(),
        'method_changed': st.booleans(),
        'deadline_reached': st.booleans()}))
def test_decide_never_raises(policy: RetryPolicy, attempt: int, method: str,
                             idempotent: bool,
                             outcome: typing.Union[int, Failure],
                             retry_after: typing.Optional[float],
                             request_timeout: typing.Optional[float],
                             elapsed: float,
                             deadline: typing.Optional[float],
                             previous_delay: typing.Optional[float],
                             flags: typing.Dict[str, bool]) -> None:
    """For valid inputs decide() answers; a retry's delay is finite and
    at least 0, at most max_delay when it is the backoff; no retry once
    max_attempts are made."""
    if previous_delay is not None:
        previous_delay = min(previous_delay, policy.max_delay)
    decision = policy.decide(
        attempt=attempt, method=method, idempotent=idempotent,
        status=outcome if isinstance(outcome, int) else None,
        failure=outcome if isinstance(outcome, Failure) else None,
        retry_after=retry_after, request_timeout=request_timeout,
        elapsed=elapsed, deadline=deadline, previous_delay=previous_delay,
        **flags)
    if not decision.retry:
        assert decision.stop_reason is not None
        return
    assert attempt < policy.max_attempts
    assert math.isfinite(decision.delay) and decision.delay >= 0.0
    if decision.delay_reason is DelayReason.BACKOFF:
        assert decision.delay <= policy.max_delay
    else:
        assert decision.delay == retry_after
    deadline = policy.deadline if deadline is None else deadline
    assert deadline is None or elapsed + decision.delay < deadline


# -- the budget --------------------------------------------------------------

budget_ops = st.lists(
    st.tuples(st.integers(min_value=0, max_value=2),
              st.sampled_from(['deposit', 'withdraw']),
              st.sampled_from([0.0, 0.0, 0.001, 0.1, 0.5, 1.0, 3.0, 12.0])),
    max_size=300)


@PROPERTY
@given(st.floats(min_value=0.5, max_value=20.0),
       st.sampled_from([0.0, 0.1, 1.0, 10.0]),
       st.sampled_from([0.0, 0.2, 0.5, 1.0, 2.0]), budget_ops)
def test_budget_never_lends_more_than_it_holds(
        ttl: float, per_second: float, percent: float,
        ops: typing.List[typing.Tuple[int, str, float]]) -> None:
    """A withdrawal succeeds exactly when a whole retry is there and
    never leaves the balance negative; while nothing has expired the
    balance is never negative; and the retries withdrawn within any span
    shorter than the window never exceed the deposits of that window plus
    the reserve."""
    budget = RetryBudget(ttl, per_second, percent)
    deposit, reserve = round(percent * 1000), round(per_second * ttl * 1000)
    now = 0.0
    first: typing.Dict[int, float] = {}
    deposits: typing.Dict[int, typing.List[float]] = {0: [], 1: [], 2: []}
    withdrawals: typing.Dict[int, typing.List[float]] = {0: [], 1: [], 2: []}
    for key, op, step in ops:
        now += step
        first.setdefault(key, now)
        if op == 'deposit':
            budget.deposit(key, now)
            deposits[key].append(now)
        else:
            before = budget.balance(key, now)
            taken = budget.try_withdraw(key, now)
            assert taken == (before >= 1.0)
            if taken:
                withdrawals[key].append(now)
                assert budget.balance(key, now) >= 0.0
        if now - first[key] < 0.85 * ttl:  # nothing of key's has expired
            assert budget.balance(key, now) >= 0.0
    for key, times in withdrawals.items():
        for last, end in enumerate(times):
            window = sum(1 for t in deposits[key]
                         if end - 1.05 * ttl <= t <= end)
            span = sum(1 for t in times[:last + 1] if end - t < 0.85 * ttl)
            assert span * 1000 <= window * deposit + reserve


# -- the codecs --------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2 ** 63,
                                            max_value=2 ** 64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=10)
json_bodies = st.lists(json_values, max_size=5) | st.dictionaries(
    st.text(), json_values, max_size=5)


@SLOW_PROPERTY
@given(json_bodies, st.sampled_from([
    'application/json', 'application/json; charset=utf-8',
    'application/json; charset=UTF-16', 'application/json; charset=latin-1',
    'application/problem+json', 'application/json; charset=us-ascii']))
def test_json_round_trips(body: typing.Any, content_type: str) -> None:
    """A JSON value serialized and encoded comes back equal."""
    text = _content.serialize(body, content_type)
    data = _content.encode_body(text, content_type)
    assert isinstance(data, bytes)
    assert _content.deserialize(data, content_type) == body


@SLOW_PROPERTY
@given(json_bodies, st.sampled_from([
    'application/msgpack', 'application/x-msgpack',
    'application/vnd.example+msgpack']))
def test_msgpack_round_trips(body: typing.Any, content_type: str) -> None:
    """A JSON value serialized as msgpack comes back equal."""
    data = _content.serialize(body, content_type)
    assert isinstance(data, bytes)
    assert _content.deserialize(data, content_type) == body


content_types = st.one_of(st.none(), st.text(max_size=40), st.sampled_from([
    'application/json', 'application/json; charset=utf-16',
    'application/json; charset=bogus', 'application/json; charset=',
    'application/json; charset=latin-1', 'application/msgpack',
    'application/x-msgpack', 'application/ld+json', 'text/plain',
    'application/json;;', 'application/; charset=utf-8', ';', '/']))


@PROPERTY
@given(st.binary(max_size=200), content_types)
def test_deserialize_raises_only_value_or_lookup_error(
        data: bytes, content_type: typing.Optional[str]) -> None:
    """Arbitrary bytes decode or raise ValueError or LookupError."""
    with contextlib.suppress(ValueError, LookupError):
        _content.deserialize(data, content_type)


def _compressed(data: bytes) -> typing.List[bytes]:
    deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    raw = deflate.compress(data) + deflate.flush()
    return [gzip.compress(data), zlib.compress(data), raw]


bodies = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda data, which, cut: _compressed(data)[which][:cut],
              st.binary(max_size=3000), st.integers(0, 2),
              st.integers(0, 400)),
    st.builds(lambda data, which, junk: _compressed(data)[which] + junk,
              st.binary(max_size=300), st.integers(0, 2),
              st.binary(max_size=20)))
encodings = st.one_of(st.text(max_size=20), st.sampled_from([
    'gzip', 'x-gzip', 'deflate', 'br', 'zstd', 'identity', 'GZIP',
    'gzip, gzip', 'deflate, gzip', 'br, zstd', 'gzip,', ',', 'compress']))


@PROPERTY
@given(bodies, encodings, st.sampled_from([0, 1, 100, 10 ** 6]))
def test_decompress_raises_only_decompression_error(
        data: bytes, encoding: str, limit: int) -> None:
    """Arbitrary bytes in any coding decompress or raise
    DecompressionError, within the limit."""
    try:
        out = _codings.decompress(data, encoding, limit)
    except _codings.DecompressionError:
        return
    assert isinstance(out, bytes)
    assert out == data or len(out) <= limit


# -- HTTPResponse over arbitrary tornado responses ---------------------------

header_values = st.one_of(
    st.text(max_size=60), content_types.filter(lambda v: v is not None),
    st.sampled_from([
        '<http://h/next>; rel="next"', '<a>; rel=next, <b>; rel=prev',
        '<>', '<http://h/>; rel', '<http://h/>; =x', '<http://h/', '; ;',
        '<http://h/>; title*=UTF-8\'\'%E2%82%AC', '<x>; rel="unterminated']))


@SLOW_PROPERTY
@given(code=st.integers(min_value=100, max_value=599),
       content_type=st.none() | header_values,
       links=st.lists(header_values, max_size=3),
       body=st.one_of(st.binary(max_size=200), st.builds(
           lambda v: _content.dump_msgpack(v), json_bodies), st.builds(
           lambda v: _content.dump_json(v), json_bodies)),
       simplify=st.booleans(),
       content_error=st.booleans())
def test_response_properties_never_raise(
        code: int, content_type: typing.Optional[str],
        links: typing.List[str], body: bytes, simplify: bool,
        content_error: bool) -> None:
    """No property of HTTPResponse raises, whatever the tornado response
    carries."""
    headers = httputil.HTTPHeaders()
    for name, value in [('Content-Type', content_type),
                        *(('Link', link) for link in links)]:
        if value is not None:
            # tornado never hands over a value it refuses here
            with contextlib.suppress(httputil.HTTPInputError):
                headers.add(name, value.strip())
    raw = httpclient.HTTPResponse(httpclient.HTTPRequest('http://h/'), code,
                                  headers=headers, buffer=io.BytesIO(body))
    response = _response.HTTPResponse(simplify, clock=lambda: 0.0)
    record = response.start_attempt(1, 0.0)
    response.record_response(
        record, raw,
        _codings.DecompressionError('corrupt') if content_error else None)
    response.finish('success')
    assert response.code == code
    assert response.ok == (200 <= code < 400)
    error = response.body_error
    assert error is None or isinstance(error, (ValueError, LookupError))
    if error is not None or not body:
        assert response.body == (body or None)
    else:
        response.body  # noqa: B018 - decoding is the property
    response_headers = response.headers
    assert response_headers is not None
    response_headers.get_list('Link')
    response_headers.get('content-type')
    assert isinstance(response.links, list)
    repr(response)
    assert response.attempts == 1 and response.history == [raw]


# -- StreamDecoder: decompress(), chunk by chunk ------------------------------


def _all_codings(data: bytes) -> typing.List[typing.Tuple[str, bytes]]:
    gzipped, zlib_format, raw = _compressed(data)
    half = len(data) // 2
    return [
        ('gzip', gzipped),
        ('gzip', gzip.compress(data[:half]) + gzip.compress(data[half:])),
        ('deflate', zlib_format), ('deflate', raw),
        ('br', brotli.compress(data)),
        ('zstd', zstandard.ZstdCompressor().compress(data)
         + zstandard.ZstdCompressor().compress(data[:half])),
        ('gzip, br', brotli.compress(gzip.compress(data))),
        ('identity', data),
    ]


streamed_bodies = st.builds(
    lambda data, which, cut, junk: (
        _all_codings(data)[which][0],
        _all_codings(data)[which][1][:cut] + junk),
    st.binary(max_size=2000), st.integers(0, 7), st.integers(0, 3000),
    st.one_of(st.just(b''), st.binary(max_size=8)))


def _streamed(encoding: str, data: bytes,
              cuts: typing.List[int]) -> bytes:
    """`data` fed to a StreamDecoder in the chunks `cuts` make."""
    decoder = _codings.StreamDecoder(encoding)
    out: typing.List[bytes] = []
    start = 0
    for cut in [*sorted(cut % (len(data) + 1) for cut in cuts), len(data)]:
        out.extend(decoder.feed(data[start:cut]))
        start = max(start, cut)
    out.extend(decoder.end())
    assert all(out), 'no empty pieces'
    return b''.join(out)


@PROPERTY
@given(streamed_bodies, st.lists(st.integers(0, 4000), max_size=12))
def test_a_streamed_body_decompresses_as_a_whole_one_does(
        body: typing.Tuple[str, bytes], cuts: typing.List[int]) -> None:
    """However the body is cut into chunks, StreamDecoder gives what
    decompress() gives, or fails as it does (truncated or not; of stacked
    codings, the inner one may see a cut outer one's garbage first)."""
    encoding, data = body
    try:
        expected: typing.Union[bytes, bool] = _codings.decompress(
            data, encoding, 10 ** 9)
    except _codings.DecompressionError as error:
        expected = error.truncated
    try:
        got: typing.Union[bytes, bool] = _streamed(encoding, data, cuts)
    except _codings.DecompressionError as error:
        got = error.truncated
    if isinstance(expected, bool) and ',' in encoding:
        assert isinstance(got, bool)
    else:
        assert got == expected
