"""Retry budgets, and the :class:`Gate` protocol a retry must pass: pure,
the current time is always an argument.

.. versionadded:: 3.0

"""
from __future__ import annotations

import math
import numbers
import threading
import typing

from sprockets.mixins.http._reasons import StopReason

__all__ = ['DEFAULT_BUDGET', 'Gate', 'RetryBudget']

# Finagle keeps its budget in integer units of 1/1000 of a retry, so that
# sums of 0.2 never drift: 60 deposits are 12 retries, not 11.999...
_SCALE = 1000


# how many upstreams a budget keeps before it forgets the idle ones
_SWEEP_AT = 256


class _Window:
    """A sum of integers over a sliding window, kept in slices."""

    __slots__ = ('_count', '_oldest', '_per_second', '_slices')

    def __init__(self, width: float, slices: int) -> None:
        self._count = slices
        # slices per second: multiplying by it keeps whole-second times on
        # slice edges (100 // 0.2 is 499.0 in floating point)
        self._per_second = slices / width
        # slice index -> amount
        self._slices: typing.Dict[int, int] = {}
        # the oldest slice index kept: while the window has not moved past
        # it, nothing can have expired (the scan is skipped)
        self._oldest: typing.Optional[int] = None

    def _expire(self, now: float) -> int:
        index = math.floor(now * self._per_second)
        oldest = index - self._count + 1
        kept = self._oldest
        if kept is not None and kept >= oldest:
            return index  # the window has not moved past any slice
        for key in [k for k in self._slices if k < oldest]:
            del self._slices[key]
        self._oldest = min(self._slices, default=None)
        return index

    def add(self, now: float, amount: int) -> None:
        index = self._expire(now)
        self._slices[index] = self._slices.get(index, 0) + amount
        if self._oldest is None or index < self._oldest:
            self._oldest = index

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
    expired whole is forgotten (at most ``ttl`` seconds later, and when
    many new upstreams arrive), so memory is bounded by the upstreams
    called within the last two windows, whatever came before.  All
    methods take the current monotonic time as an argument; the budget
    never reads a clock.
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
        # forget idle upstreams once this many are kept (see _window) ...
        self._sweep_at = _SWEEP_AT
        # ... and at the first call after this time (see _tick)
        self._sweep_after = -math.inf
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(ttl={self.ttl!r}, '
                f'min_retries_per_sec={self.min_retries_per_sec!r}, '
                f'percent_can_retry={self.percent_can_retry!r})')

    def _tick(self, now: float) -> None:
        """Sweep if a ttl has passed since the last sweep: a burst of
        distinct upstreams followed by calls to known ones only is
        forgotten too.  One sweep per ttl walks the upstreams touched in
        the two ttls before it, so the cost is amortized O(1) per call."""
        if now >= self._sweep_after:
            self._sweep(now)

    def _window(self, upstream: typing.Hashable, now: float) -> _Window:
        self._tick(now)
        window = self._windows.get(upstream)
        if window is None:
            if len(self._windows) >= self._sweep_at:
                self._sweep(now)
            window = self._windows[upstream] = _Window(self.ttl, 10)
        return window

    def _sweep(self, now: float) -> None:
        """Forget the upstreams whose window has expired whole, so that a
        process calling many hosts keeps only the recent ones."""
        # a new dict: one that only had keys deleted keeps its size
        self._windows = {key: window for key, window in self._windows.items()
                         if not window.empty(now)}
        self._sweep_at = max(_SWEEP_AT, 2 * len(self._windows))
        self._sweep_after = now + self.ttl

    def deposit(self, upstream: typing.Hashable, now: float) -> None:
        """Record one request to `upstream` at `now`."""
        if self._deposit:
            with self._lock:
                self._window(upstream, now).add(now, self._deposit)

    def balance(self, upstream: typing.Hashable, now: float) -> float:
        """Return how many retries `upstream` may have at `now`."""
        with self._lock:
            self._tick(now)
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
            self._sweep_at = _SWEEP_AT
            self._sweep_after = -math.inf


#: The process-wide budget that policies use unless told otherwise.
#:
#: .. versionadded:: 3.0
DEFAULT_BUDGET = RetryBudget()
