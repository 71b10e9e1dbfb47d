"""Every retry decision, as pure functions of their inputs.

The values it answers with are :mod:`._reasons`', the budget and the gate
protocol :mod:`._budget`'s; all are re-exported here.

Nothing in this module performs I/O, reads a clock or imports tornado:
:class:`RetryPolicy` answers questions about an attempt that the engine in
:mod:`sprockets.mixins.http._engine` has made, and :class:`RetryBudget`
keeps per-upstream counts against times that the engine passes in.  That
keeps the whole policy testable with tables and no event loop.

"""
from __future__ import annotations

import dataclasses
import datetime
import email.utils
import math
import random
import re
import typing

from sprockets.mixins.http import _checks
from sprockets.mixins.http._budget import DEFAULT_BUDGET, Gate, RetryBudget
from sprockets.mixins.http._reasons import (
    Decision,
    DelayReason,
    Failure,
    StopReason,
)

__all__ = [
    'DEFAULT_BUDGET',
    'DEFAULT_RETRY_STATUSES',
    'IDEMPOTENT_METHODS',
    'MIN_TIME_LEFT',
    'UNPROCESSED_STATUSES',
    'Decision',
    'DelayReason',
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

class _Default:
    """Marks a policy's budget as the process-wide :data:`DEFAULT_BUDGET`."""

    def __repr__(self) -> str:
        return 'DEFAULT_BUDGET'


_DEFAULT = _Default()


# RetryPolicy.replace's answers (bounded: forgotten all at once when full)
_REPLACED: typing.Dict[typing.Hashable, RetryPolicy] = {}
_REPLACED_KEPT = 256


@dataclasses.dataclass(frozen=True, repr=False)
class RetryPolicy:
    """Every decision about sending a request again, as a frozen value.

    :param max_attempts: how many times a request is sent at most,
        the first time included; ``1`` disables retries (``True`` is not
        ``1``: a :class:`bool` is refused)
    :param retry_timeout: the backoff base in seconds: retry number *n*
        waits up to ``retry_timeout * 2 ** (n - 1)`` seconds; finite
    :param max_delay: the cap on the computed backoff, in seconds;
        finite (a sleep of :data:`math.inf` never returns): ``1e9``, the
        largest accepted, is no cap in practice (the 2.x schedule)
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
        if math.isinf(typing.cast(float, _checks.seconds(
                'max_delay', self.max_delay, infinite=True))):
            raise ValueError(
                'max_delay must be a finite number of seconds (a sleep of '
                f'inf never returns), got {self.max_delay!r}: pass '
                'max_delay=1e9 (about 31 years, the largest accepted) for '
                'no cap in practice')
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
        """Return a copy with `changes` applied (validated again).

        The same changes to the same policy give the same copy: the
        answers are kept (a call that passes ``max_http_attempts`` asks
        for one on every call), keyed by the policy, its random source
        (which equality leaves out) and each change's type and value, so
        that ``True`` is never taken for ``1``.

        """
        try:
            key = (self, self.random, tuple(
                (name, type(value), value)
                for name, value in sorted(changes.items())))
            replaced = _REPLACED.get(key)
        except TypeError:  # an unhashable value: validated as it is
            return dataclasses.replace(self, **changes)
        if replaced is None:
            replaced = dataclasses.replace(self, **changes)
            if len(_REPLACED) >= _REPLACED_KEPT:
                _REPLACED.clear()
            _REPLACED[key] = replaced
        return replaced

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
        # 2.0 ** 1024 raises OverflowError; the product may still be inf,
        # but max_delay is finite, so the ceiling always is
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
               deadline_reached: bool = False,
               stream_interrupted: bool = False) -> Decision:
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
        :param stream_interrupted: part of the body reached the caller's
            ``streaming_callback``, then the attempt failed or the
            callback raised (``stream-interrupted``: the caller consumed
            part of a body, so it is never sent again)

        The gates (the budget) are not consulted here: passing one is the
        one side effect of retrying, and the engine does it last.

        """
        if stream_interrupted:
            return Decision(StopReason.STREAM_INTERRUPTED)
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
