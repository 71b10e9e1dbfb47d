"""Every retry decision, as pure functions of their inputs.

Nothing in this module performs I/O, reads a clock or imports tornado:
:class:`RetryPolicy` answers questions about an attempt that the engine in
:mod:`sprockets.mixins.http._client` has made, and :class:`RetryBudget`
keeps per-upstream counts against times that the engine passes in.  That
keeps the whole policy testable with tables and no event loop.

"""
from __future__ import annotations

import dataclasses
import datetime
import email.utils
import enum
import math
import numbers
import random
import re
import threading
import typing

from sprockets.mixins.http import _checks

__all__ = [
    'DEFAULT_BUDGET',
    'DEFAULT_RETRY_STATUSES',
    'IDEMPOTENT_METHODS',
    'MIN_TIME_LEFT',
    'UNPROCESSED_STATUSES',
    'Decision',
    'Failure',
    'Gate',
    'RetryBudget',
    'RetryPolicy',
    'StopReason',
    'parse_retry_after',
]

#: Statuses retried by default.
DEFAULT_RETRY_STATUSES: typing.FrozenSet[int] = frozenset(
    {408, 423, 429, 500, 502, 503, 504})

#: Statuses that say the server did not act on the request, so that even
#: a non-idempotent request may be sent again.
UNPROCESSED_STATUSES: typing.FrozenSet[int] = frozenset({408, 423, 429, 503})

#: Methods that RFC 9110 (section 9.2.2) defines as idempotent.
IDEMPOTENT_METHODS: typing.FrozenSet[str] = frozenset(
    {'GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE'})

JITTER_MODES = ('full', 'equal', 'decorrelated')

# RFC 9110 delta-seconds is 1*DIGIT; a fraction is tolerated, but not a
# sign ("-5" is not delta-seconds) nor what float() also accepts: "inf",
# "nan", "1e3", "1_000"
_DELTA_SECONDS = re.compile(r'(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)', re.ASCII)


class StopReason(str, enum.Enum):
    """Why :meth:`~sprockets.mixins.http.HTTPClientMixin.http_fetch`
    stopped.  Members compare equal to their string values.

    .. versionadded:: 3.0

    """
    SUCCESS = 'success'
    NOT_RETRYABLE = 'not-retryable'
    DONT_RETRY = 'dont-retry'
    ATTEMPTS_EXHAUSTED = 'attempts-exhausted'
    DEADLINE = 'deadline'
    BUDGET_EXHAUSTED = 'budget-exhausted'
    RETRY_AFTER_TOO_LONG = 'retry-after-too-long'
    UNSAFE_METHOD = 'unsafe-method'
    TOO_MANY_REDIRECTS = 'too-many-redirects'

    def __str__(self) -> str:
        return self.value


class Failure(str, enum.Enum):
    """What kind of transport failure an exception represents.

    .. versionadded:: 3.0

    """
    #: The request was provably never sent: connection refused, connect
    #: timeout, name resolution failure, or a timeout in the client's queue.
    CONNECT = 'connect'
    #: The request timed out after it may have been sent.
    TIMEOUT = 'timeout'
    #: The connection broke after it may have been sent (reset, stream
    #: closed, malformed or oversized response headers).
    CONNECTION = 'connection'
    #: Retrying cannot help: certificate verification failed, the URL is
    #: invalid, or the error is not a transport error at all.
    FATAL = 'fatal'

    def __str__(self) -> str:
        return self.value


class DelayReason(str, enum.Enum):
    """Why the engine sleeps before the next attempt."""
    BACKOFF = 'backoff'
    RETRY_AFTER = 'retry-after'

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass(frozen=True)
class Decision:
    """The answer of :meth:`.RetryPolicy.decide`.

    When :attr:`stop_reason` is ``None`` the engine sleeps :attr:`delay`
    seconds and sends the request again.

    .. versionadded:: 3.0

    """
    stop_reason: typing.Optional[StopReason]
    delay: float = 0.0
    delay_reason: typing.Optional[DelayReason] = None

    @property
    def retry(self) -> bool:
        """:data:`True` when the request should be sent again."""
        return self.stop_reason is None


def parse_retry_after(value: typing.Optional[str],
                      now: float) -> typing.Optional[float]:
    """Return the seconds a ``Retry-After`` value asks to wait.

    :param value: the header value, in either RFC 9110 form:
        delta-seconds (digits; a fraction is tolerated) or an HTTP-date
        (IMF-fixdate, RFC 850 or asctime, always read as GMT)
    :param now: the current wall-clock time as a POSIX timestamp; an
        HTTP-date is interpreted relative to it
    :returns: the delay in seconds, ``0.0`` for a date in the past,
        :data:`math.inf` for a number too large for a float, or
        :data:`None` when the value is absent or cannot be parsed (a sign,
        as in ``-5``, ``inf``, ``nan`` and exponents are not
        delta-seconds)

    .. versionchanged:: 3.0
       A signed number (``-5``) is no longer read as ``0``: it is not
       delta-seconds, and the backoff is used as for any garbage.

    .. versionadded:: 3.0

    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if _DELTA_SECONDS.fullmatch(value):
        seconds = float(value)  # digits only: never NaN or negative
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:  # pragma: no cover - Python < 3.10 returned None
            return None
        if when.tzinfo is None:
            # an HTTP-date is always GMT; "-0000" and asctime() forms
            # parse without a zone and must not be read as local time
            when = when.replace(tzinfo=datetime.timezone.utc)
        seconds = when.timestamp() - now
    if math.isinf(seconds):
        return math.inf if seconds > 0 else 0.0
    return max(0.0, seconds)


#: The least time left before a deadline in which an attempt or a redirect
#: hop is started, in seconds.
MIN_TIME_LEFT = 0.001

# Finagle keeps its budget in integer units of 1/1000 of a retry, so that
# sums of 0.2 never drift: 60 deposits are 12 retries, not 11.999...
_SCALE = 1000


# how many upstreams a budget keeps before it forgets the idle ones
_SWEEP_AT = 256


class _Window:
    """A sum of integers over a sliding window, kept in slices."""

    __slots__ = ('_count', '_per_second', '_slices')

    def __init__(self, width: float, slices: int) -> None:
        self._count = slices
        # slices per second: multiplying by it keeps whole-second times on
        # slice edges (100 // 0.2 is 499.0 in floating point)
        self._per_second = slices / width
        # slice index -> amount
        self._slices: typing.Dict[int, int] = {}

    def _expire(self, now: float) -> int:
        index = math.floor(now * self._per_second)
        oldest = index - self._count + 1
        for key in [k for k in self._slices if k < oldest]:
            del self._slices[key]
        return index

    def add(self, now: float, amount: int) -> None:
        index = self._expire(now)
        self._slices[index] = self._slices.get(index, 0) + amount

    def total(self, now: float) -> int:
        self._expire(now)
        return sum(self._slices.values())

    def empty(self, now: float) -> bool:
        """Say whether everything in the window has expired."""
        self._expire(now)
        return not self._slices


def _check_number(name: str, value: typing.Optional[float], *,
                  minimum: float = 0.0, allow_none: bool = False,
                  exclusive: bool = False) -> None:
    """The budget's own numbers: :func:`_checks.seconds`'s rule (TypeError
    for a wrong type, ValueError for NaN or a number out of range)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f'{name} must be a number, got {value!r}')
    if math.isnan(value):
        raise ValueError(f'{name} must be a number, got NaN')
    if value < minimum or (exclusive and value == minimum):
        relation = 'greater than' if exclusive else 'at least'
        raise ValueError(f'{name} must be {relation} {minimum}, '
                         f'got {value!r}')


class Gate(typing.Protocol):
    """What the engine asks of a per-upstream gate on retries: a retry
    budget, and later a circuit breaker or client-side throttling.

    The engine calls :meth:`record` once per call, before the first
    attempt, and :meth:`admit` before each retry, once the policy has
    decided to retry; a gate that refuses stops the call with its
    :attr:`stop_reason`.  A new gate is a class with these three members
    and an entry in :attr:`RetryPolicy.gates`: the loop does not change.

    .. versionadded:: 3.0

    """

    #: Why the call stops when :meth:`admit` refuses.
    stop_reason: StopReason

    def record(self, upstream: typing.Hashable, now: float) -> None:
        """A call to `upstream` starts at `now` (monotonic seconds)."""

    def admit(self, upstream: typing.Hashable, now: float) -> bool:
        """Whether a retry to `upstream` may be sent at `now`."""


class RetryBudget:
    """A per-upstream retry budget with Finagle's ``RetryBudget`` semantics.

    Every request deposits ``percent_can_retry`` of a retry; every retry
    withdraws one.  Deposits and withdrawals expire after ``ttl`` seconds
    (kept in ten slices of ``ttl / 10``, so an entry counts for between
    nine and ten tenths of ``ttl``).  On top of the deposits, a reserve of
    ``min_retries_per_sec * ttl`` retries is always available, so that a
    quiet upstream still gets a burst of retries while a fleet of callers
    cannot multiply the load on an upstream that fails every request.

    Upstreams are keyed by ``(scheme, host, port)``; one whose window has
    expired whole is forgotten, so memory is bounded by the upstreams
    called within ``ttl``.  All methods take the current monotonic time as
    an argument; the budget never reads a clock.
    Amounts are kept in integer thousandths of a retry, as Finagle does.

    :param ttl: seconds a deposit or withdrawal counts for
    :param min_retries_per_sec: the reserve, in retries per second of
        ``ttl``; ``0`` means no reserve
    :param percent_can_retry: the fraction of a retry each request earns,
        from ``0.0`` to ``1000.0`` as in Finagle

    .. versionadded:: 3.0

    """

    def __init__(self, ttl: float = 10.0, min_retries_per_sec: float = 10.0,
                 percent_can_retry: float = 0.2) -> None:
        _check_number('ttl', ttl, exclusive=True)
        _check_number('min_retries_per_sec', min_retries_per_sec)
        _check_number('percent_can_retry', percent_can_retry)
        if math.isinf(ttl) or math.isinf(min_retries_per_sec):
            raise ValueError('ttl and min_retries_per_sec must be finite, '
                             f'got {ttl!r} and {min_retries_per_sec!r}')
        if percent_can_retry > 1000.0:
            raise ValueError('percent_can_retry must be from 0.0 to 1000.0, '
                             f'got {percent_can_retry!r}')
        self.ttl = float(ttl)
        self.min_retries_per_sec = float(min_retries_per_sec)
        self.percent_can_retry = float(percent_can_retry)
        self._deposit = round(self.percent_can_retry * _SCALE)
        self._reserve = round(self.min_retries_per_sec * self.ttl * _SCALE)
        self._windows: typing.Dict[typing.Hashable, _Window] = {}
        # forget idle upstreams once this many are kept (see _window)
        self._sweep_at = _SWEEP_AT
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(ttl={self.ttl!r}, '
                f'min_retries_per_sec={self.min_retries_per_sec!r}, '
                f'percent_can_retry={self.percent_can_retry!r})')

    def _window(self, upstream: typing.Hashable, now: float) -> _Window:
        window = self._windows.get(upstream)
        if window is None:
            if len(self._windows) >= self._sweep_at:
                self._sweep(now)
            window = self._windows[upstream] = _Window(self.ttl, 10)
        return window

    def _sweep(self, now: float) -> None:
        """Forget the upstreams whose window has expired whole, so that a
        process calling many hosts keeps only the recent ones."""
        for key in [key for key, window in self._windows.items()
                    if window.empty(now)]:
            del self._windows[key]
        self._sweep_at = max(_SWEEP_AT, 2 * len(self._windows))

    def deposit(self, upstream: typing.Hashable, now: float) -> None:
        """Record one request to `upstream` at `now`."""
        if self._deposit:
            with self._lock:
                self._window(upstream, now).add(now, self._deposit)

    def balance(self, upstream: typing.Hashable, now: float) -> float:
        """Return how many retries `upstream` may have at `now`."""
        with self._lock:
            window = self._windows.get(upstream)
            earned = window.total(now) if window is not None else 0
        return (earned + self._reserve) / _SCALE

    def try_withdraw(self, upstream: typing.Hashable, now: float) -> bool:
        """Take one retry for `upstream`, or return :data:`False`."""
        with self._lock:
            window = self._window(upstream, now)
            if window.total(now) + self._reserve < _SCALE:
                return False
            window.add(now, -_SCALE)
            return True

    #: The :class:`Gate` answer when the budget is empty.
    stop_reason = StopReason.BUDGET_EXHAUSTED

    def record(self, upstream: typing.Hashable, now: float) -> None:
        """:class:`Gate`: :meth:`deposit`."""
        self.deposit(upstream, now)

    def admit(self, upstream: typing.Hashable, now: float) -> bool:
        """:class:`Gate`: :meth:`try_withdraw`."""
        return self.try_withdraw(upstream, now)

    def reset(self) -> None:
        """Forget every deposit and withdrawal."""
        with self._lock:
            self._windows.clear()


#: The process-wide budget that policies use unless told otherwise.
#:
#: .. versionadded:: 3.0
DEFAULT_BUDGET = RetryBudget()


class _Default:
    """Marks a policy's budget as the process-wide :data:`DEFAULT_BUDGET`."""

    def __repr__(self) -> str:
        return 'DEFAULT_BUDGET'


_DEFAULT = _Default()


@dataclasses.dataclass(frozen=True, repr=False)
class RetryPolicy:
    """Every decision about sending a request again, as a frozen value.

    :param max_attempts: how many times a request is sent at most,
        the first time included; ``1`` disables retries (``True`` is not
        ``1``: a :class:`bool` is refused)
    :param retry_timeout: the backoff base in seconds: retry number *n*
        waits up to ``retry_timeout * 2 ** (n - 1)`` seconds; finite
    :param max_delay: the cap on the computed backoff, in seconds;
        :data:`math.inf` means no cap (the 2.x schedule)
    :param jitter: ``'full'`` sleeps uniformly in ``[0, backoff]``;
        ``'equal'`` sleeps half the backoff plus a uniform share of the
        other half; ``'decorrelated'`` uses AWS's decorrelated jitter,
        ``min(max_delay, uniform(retry_timeout, 3 * previous delay))``;
        :data:`None` sleeps the exact backoff, the 2.x schedule
    :param retry_statuses: response statuses that may be retried; any
        collection of ints, stored as a :class:`frozenset` copy
    :param dont_retry: statuses that are never retried, whatever
        :attr:`retry_statuses` says; stored as a :class:`frozenset` copy.
        ``599`` in it stops retries after a transport failure (no response)
    :param retry_non_idempotent: retry POST, PATCH and other
        non-idempotent methods on any retryable outcome, not only the
        outcomes that prove the request did not take effect
    :param idempotency_key: add a fresh ``Idempotency-Key`` header to
        non-idempotent requests that have none (the same value on every
        attempt), which makes them retryable
    :param retry_after_max: the longest ``Retry-After`` the caller will
        wait, in seconds; a server that asks for longer gets its response
        returned at once.  :data:`None` means the request timeout in effect,
        or :attr:`max_delay` when there is none (a request timeout of 0);
        :data:`math.inf` means any finite wait is accepted; an infinite
        wait never is
    :param deadline: seconds the whole call may take, sleeps included;
        :data:`None` (or :data:`math.inf`, stored as :data:`None`) means
        no deadline

    :param budget: the :class:`RetryBudget` retries are drawn from;
        the default is the process-wide :data:`DEFAULT_BUDGET`, and
        :data:`None` disables the budget
    :param gates: more :class:`Gate`\\ s a retry must pass after the
        budget (a circuit breaker, a throttle), in order; a tuple
    :param random: a function returning a float in ``[0, 1)``, the source of
        jitter; inject a seeded one for repeatable delays

    Build variations with :meth:`replace`; a policy is never mutated.
    Every number of seconds is checked by one rule: :exc:`TypeError` for
    a :class:`bool`, a :class:`str` or anything that is not a number;
    :exc:`ValueError` for NaN, a negative number, and infinity where it
    has no meaning.

    .. versionadded:: 3.0

    """
    max_attempts: int = 3
    retry_timeout: float = 3.0
    max_delay: float = 30.0
    jitter: typing.Optional[str] = 'full'
    retry_statuses: typing.AbstractSet[int] = DEFAULT_RETRY_STATUSES
    dont_retry: typing.AbstractSet[int] = frozenset()
    retry_non_idempotent: bool = False
    idempotency_key: bool = False
    retry_after_max: typing.Optional[float] = None
    deadline: typing.Optional[float] = None
    budget: typing.Any = _DEFAULT
    gates: typing.Tuple[Gate, ...] = ()
    random: typing.Callable[[], float] = dataclasses.field(
        default=random.random, compare=False)

    def __post_init__(self) -> None:
        _checks.count('max_attempts', self.max_attempts)
        _checks.seconds('retry_timeout', self.retry_timeout)
        _checks.seconds('max_delay', self.max_delay, infinite=True)
        _checks.seconds('retry_after_max', self.retry_after_max,
                        allow_none=True, infinite=True)
        deadline = _checks.seconds('deadline', self.deadline,
                                   allow_none=True, infinite=True,
                                   positive=True)
        if deadline is not None and math.isinf(deadline):
            object.__setattr__(self, 'deadline', None)  # no deadline
        if self.jitter not in (*JITTER_MODES, None):
            raise ValueError(
                f'jitter must be one of {", ".join(JITTER_MODES)} or None, '
                f'got {self.jitter!r}')
        for name in ('retry_statuses', 'dont_retry'):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(
                    value, typing.Iterable) or not all(
                    isinstance(code, int) and not isinstance(code, bool)
                    for code in value):
                raise TypeError(f'{name} must be a collection of int '
                                f'statuses, got {value!r}')
            # store an immutable copy: the caller's set is never kept
            object.__setattr__(self, name, frozenset(value))
        for name in ('retry_non_idempotent', 'idempotency_key'):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f'{name} must be True or False, '
                                f'got {getattr(self, name)!r}')
        if not (self.budget is _DEFAULT or self.budget is None
                or isinstance(self.budget, RetryBudget)):
            raise TypeError('budget must be a RetryBudget or None, '
                            f'got {self.budget!r}')
        if not isinstance(self.gates, tuple) or not all(
                callable(getattr(gate, 'admit', None))
                and callable(getattr(gate, 'record', None))
                for gate in self.gates):
            raise TypeError('gates must be a tuple of Gate objects (with '
                            f'record and admit), got {self.gates!r}')
        if not callable(self.random):
            raise TypeError(f'random must be callable, got {self.random!r}')

    def __repr__(self) -> str:
        fields = ', '.join(
            f'{field.name}={getattr(self, field.name)!r}'
            for field in dataclasses.fields(self)
            if field.compare and getattr(self, field.name) != field.default)
        return f'{type(self).__name__}({fields})'

    def replace(self, **changes: typing.Any) -> RetryPolicy:
        """Return a copy with `changes` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def retry_budget(self) -> typing.Optional[RetryBudget]:
        """The :class:`RetryBudget` in use, or :data:`None`."""
        if self.budget is _DEFAULT:
            return DEFAULT_BUDGET
        return typing.cast(typing.Optional[RetryBudget], self.budget)

    # -- questions the engine asks ------------------------------------------

    def backoff(self, retry: int,
                previous: typing.Optional[float] = None) -> float:
        """Return the seconds to wait before retry number `retry`.

        :param retry: ``1`` before the second attempt, ``2`` before the
            third, and so on
        :param previous: the delay before the previous retry, used by
            decorrelated jitter; :data:`None` for the first retry

        """
        if retry < 1:
            raise ValueError(f'retry must be at least 1, got {retry!r}')
        if self.jitter == 'decorrelated':
            low = min(self.retry_timeout, self.max_delay)
            high = max(low, (previous or self.retry_timeout) * 3)
            return min(self.max_delay, low + (high - low) * self.random())
        # 2 ** 1024 overflows a float; the cap is long reached by then
        exponent = min(retry - 1, 1023)
        ceiling = min(self.max_delay, self.retry_timeout * 2.0 ** exponent)
        if self.jitter == 'full':
            return ceiling * self.random()
        if self.jitter == 'equal':
            return ceiling / 2 + ceiling / 2 * self.random()
        return ceiling

    def deadline_for(self, call_deadline: typing.Optional[float]
                     ) -> typing.Optional[float]:
        """The deadline of a call: the shorter of `call_deadline` (the
        caller's) and :attr:`deadline`, either of which may be absent, so
        that a policy hook's deadline caps the caller's and the other way
        round."""
        if call_deadline is None:
            return self.deadline
        if self.deadline is None:
            return call_deadline
        return min(call_deadline, self.deadline)

    def may_start(self, elapsed: float,
                  deadline: typing.Optional[float]) -> bool:
        """Whether an attempt may start `elapsed` seconds into a call
        whose deadline is `deadline`: at least a millisecond must be left
        (curl counts whole milliseconds, and reads 0 as no limit)."""
        return deadline is None or deadline - elapsed >= MIN_TIME_LEFT

    def is_idempotent(self, method: str, headers: typing.Mapping[str, str]
                      ) -> bool:
        """Return :data:`True` when `method` may be sent twice safely:
        an idempotent method, or a request with an ``Idempotency-Key``."""
        return (method.upper() in IDEMPOTENT_METHODS
                or 'Idempotency-Key' in headers
                or any(name.lower() == 'idempotency-key' for name in headers))

    def is_retryable_status(self, status: int) -> bool:
        """Return :data:`True` when a response status may be retried."""
        return status in self.retry_statuses and status not in self.dont_retry

    def decide(self, *, attempt: int, method: str, idempotent: bool,
               status: typing.Optional[int] = None,
               failure: typing.Optional[Failure] = None,
               retry_after: typing.Optional[float] = None,
               request_timeout: typing.Optional[float] = None,
               elapsed: float = 0.0,
               deadline: typing.Optional[float] = None,
               previous_delay: typing.Optional[float] = None,
               redirect_loop: bool = False,
               redirect_unfollowed: bool = False,
               method_changed: bool = False,
               deadline_reached: bool = False) -> Decision:
        """Decide what follows attempt number `attempt`.

        :param attempt: the attempt just made, ``1`` for the first
        :param method: the request method
        :param idempotent: whether the request may be sent twice safely
            (see :meth:`is_idempotent`)
        :param status: the response status, or :data:`None` when the
            attempt raised
        :param failure: the kind of exception the attempt raised, or
            :data:`None` when a response arrived
        :param retry_after: the parsed ``Retry-After`` of the response,
            in seconds, or :data:`None`
        :param request_timeout: the request timeout in effect, the default
            for :attr:`retry_after_max`
        :param elapsed: seconds since the call started
        :param deadline: the call's deadline in seconds; :data:`None` uses
            :attr:`deadline`
        :param previous_delay: the delay before the previous retry
        :param redirect_loop: the response is a redirect past
            ``max_redirects``: stop, ``too-many-redirects``
        :param redirect_unfollowed: the response is a redirect whose
            ``Location`` cannot be followed: it is the answer, and the
            same one would come again (``not-retryable``)
        :param method_changed: a redirect turned the request into a GET
            (303, or 301/302 after a POST): the server acted on what was
            sent, so a non-idempotent request is not sent again
            (``unsafe-method``) unless :attr:`retry_non_idempotent`
        :param deadline_reached: the deadline came between two hops of a
            redirect (``deadline``)

        The gates (the budget) are not consulted here: passing one is the
        one side effect of retrying, and the engine does it last.

        """
        if redirect_loop:
            return Decision(StopReason.TOO_MANY_REDIRECTS)
        if deadline_reached:
            return Decision(StopReason.DEADLINE)
        if redirect_unfollowed:
            return Decision(StopReason.NOT_RETRYABLE)
        decision = self._decide(attempt, idempotent, status, failure,
                                retry_after, request_timeout, elapsed,
                                deadline, previous_delay)
        if (decision.retry and method_changed and not idempotent
                and not self.retry_non_idempotent):
            return Decision(StopReason.UNSAFE_METHOD)
        return decision

    def _decide(self, attempt: int, idempotent: bool,
                status: typing.Optional[int],
                failure: typing.Optional[Failure],
                retry_after: typing.Optional[float],
                request_timeout: typing.Optional[float], elapsed: float,
                deadline: typing.Optional[float],
                previous_delay: typing.Optional[float]) -> Decision:
        """What the status or the failure alone decides."""
        if failure is None:
            if status is None:
                raise ValueError('decide needs a status or a failure')
            if status in self.dont_retry and status >= 400:
                return Decision(StopReason.DONT_RETRY)
            if not self.is_retryable_status(status):
                return Decision(StopReason.SUCCESS if status < 400
                                else StopReason.NOT_RETRYABLE)
            unprocessed = status in UNPROCESSED_STATUSES
        elif failure is Failure.FATAL:
            return Decision(StopReason.NOT_RETRYABLE)
        elif 599 in self.dont_retry:
            # 599 is the code a response that never arrived reports
            return Decision(StopReason.DONT_RETRY)
        else:
            unprocessed = failure is Failure.CONNECT
            retry_after = None
        if not (idempotent or unprocessed or self.retry_non_idempotent):
            return Decision(StopReason.UNSAFE_METHOD)
        if attempt >= self.max_attempts:
            return Decision(StopReason.ATTEMPTS_EXHAUSTED)
        if retry_after is not None:
            limit = (self.retry_after_max if self.retry_after_max is not None
                     else request_timeout if request_timeout is not None
                     else self.max_delay)
            if retry_after > limit or math.isinf(retry_after):
                return Decision(StopReason.RETRY_AFTER_TOO_LONG)
            delay, reason = retry_after, DelayReason.RETRY_AFTER
        else:
            delay = self.backoff(attempt, previous_delay)
            reason = DelayReason.BACKOFF
        deadline = self.deadline if deadline is None else deadline
        if deadline is not None and elapsed + delay >= deadline:
            return Decision(StopReason.DEADLINE)
        return Decision(None, delay, reason)
