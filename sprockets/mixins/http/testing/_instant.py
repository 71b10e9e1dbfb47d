"""Instant retries: :func:`instant_retries`, :class:`InstantRetriesMixin`
and the one switch every active block shares.

While instant retries are on, the mixin class's sleep hook records the
delay and returns at once, and its budget hook gives each call that would
draw from :data:`~sprockets.mixins.http.DEFAULT_BUDGET` a fresh budget.

"""
from __future__ import annotations

import contextlib
import functools
import threading
import typing

from sprockets.mixins.http import _retry
from sprockets.mixins.http._mixin import HTTPClientMixin


class _Switch:
    """What every active :func:`instant_retries` block shares: the delay
    lists of the blocks, in the order they were entered, and the hooks the
    first of them replaced, put back when the last one exits (in whatever
    order the blocks exit)."""

    _HOOKS = ('_http_req_sleep', '_http_req_retry_budget')

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: typing.List[typing.List[float]] = []
        self._saved: typing.Dict[str, typing.Any] = {}

    def enter(self, delays: typing.List[float]) -> None:
        with self._lock:
            if not self._active:
                self._saved = {name: HTTPClientMixin.__dict__[name]
                               for name in self._HOOKS}
                HTTPClientMixin._http_req_sleep = _instant_sleep  # type: ignore[method-assign]
                HTTPClientMixin._http_req_retry_budget = _isolated_budget  # type: ignore[method-assign]
            self._active.append(delays)

    def exit(self, delays: typing.List[float]) -> None:
        with self._lock:
            self._active = [active for active in self._active
                            if active is not delays]
            if not self._active:
                for name, hook in self._saved.items():
                    setattr(HTTPClientMixin, name, hook)
                self._saved = {}

    def record(self, seconds: float) -> None:
        with self._lock:
            active = list(self._active)
        for delays in active:
            delays.append(seconds)

    def replaced(self, name: str) -> typing.Any:
        """The hook `name` that was installed before the first block."""
        with self._lock:
            return self._saved.get(name, _REAL_HOOKS[name])


_REAL_HOOKS = {name: HTTPClientMixin.__dict__[name] for name in _Switch._HOOKS}
_SWITCH = _Switch()


async def _instant_sleep(self: HTTPClientMixin, seconds: float) -> None:
    """The sleep while instant retries are on: record, do not wait."""
    _SWITCH.record(seconds)


def _isolated_budget(self: HTTPClientMixin, policy: _retry.RetryPolicy
                     ) -> typing.Optional[_retry.RetryBudget]:
    """The budget hook while instant retries are on: a call whose policy
    draws from the process-wide budget draws from a fresh one instead."""
    budget: typing.Optional[_retry.RetryBudget] = _SWITCH.replaced(
        '_http_req_retry_budget')(self, policy)
    if budget is _retry.DEFAULT_BUDGET:
        return _retry.RetryBudget(
            ttl=budget.ttl, min_retries_per_sec=budget.min_retries_per_sec,
            percent_can_retry=budget.percent_can_retry)
    return budget


@contextlib.contextmanager
def instant_retries() -> typing.Iterator[typing.List[float]]:
    """Make retry sleeps instant while recording the delays asked for, and
    give every call a retry budget of its own.

    For the duration of the block, for every mixin user and
    :class:`~sprockets.mixins.http.Client`:

    - :meth:`~sprockets.mixins.http.HTTPClientMixin._http_req_sleep`
      returns at once; the list the block yields receives the delay of
      every retry, in seconds, in order;
    - :meth:`~sprockets.mixins.http.HTTPClientMixin._http_req_retry_budget`
      gives each call whose policy uses the process-wide
      :data:`~sprockets.mixins.http.DEFAULT_BUDGET` (the default, or
      ``budget=DEFAULT_BUDGET``) a fresh
      :class:`~sprockets.mixins.http.RetryBudget` with the same
      parameters, so a test never finds the budget drained by the tests
      before it, and nothing is deposited into or drawn from
      :data:`~sprockets.mixins.http.DEFAULT_BUDGET`.  A policy given a
      :class:`~sprockets.mixins.http.RetryBudget` of its own keeps it
      (test the budget with one), and ``budget=None`` still means none.

    Classes that override either hook themselves are left alone.

    Blocks may be nested or overlap, and exit in any order: while any
    block is active, sleeps are instant and every delay is appended to
    the list of every active block; the real hooks are put back when the
    last active block exits.

    .. code-block:: python

       with testing.instant_retries() as delays:
           response = await handler.http_fetch(url)
       assert len(delays) == 2

    .. versionadded:: 3.0

    """
    delays: typing.List[float] = []
    _SWITCH.enter(delays)
    try:
        yield delays
    finally:
        _SWITCH.exit(delays)


if typing.TYPE_CHECKING:  # pragma: no cover
    import unittest

    _TestCase = unittest.TestCase
else:
    _TestCase = object


class InstantRetriesMixin(_TestCase):
    """A ``unittest.TestCase`` mixin: :func:`instant_retries` for
    every test, with the delays in :attr:`retry_delays`.

    Put it before or after the test case class; either way instant
    retries start before any ``setUp`` of the test case runs and end
    after its cleanups:

    .. code-block:: python

       class MyTest(testing.InstantRetriesMixin,
                    tornado.testing.AsyncHTTPTestCase):
           ...

    ``unittest.TestCase`` does not call ``super().setUp()``, so a
    mixin after it would never be reached: every subclass's ``setUp`` is
    wrapped, when the class is created, to start instant retries first
    (once per test, however many wrapped ``setUp`` run).

    .. versionadded:: 3.0

    """

    #: The delay of every retry of the running test, in seconds, in order.
    retry_delays: typing.List[float]

    def __init_subclass__(cls, **kwargs: typing.Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get('setUp')

        def setUp(self: InstantRetriesMixin) -> None:
            self._start_instant_retries()
            if own is not None:
                own(self)
            else:
                super(cls, self).setUp()

        if own is not None:
            functools.update_wrapper(setUp, own)
        else:
            setUp.__qualname__ = f'{cls.__qualname__}.setUp'
        cls.setUp = setUp  # type: ignore[method-assign]

    def setUp(self) -> None:
        """Start :func:`instant_retries` for the test; it ends in a
        cleanup."""
        self._start_instant_retries()
        parent = getattr(super(), 'setUp', None)
        if parent is not None:
            parent()

    def _start_instant_retries(self) -> None:
        if self.__dict__.get('_instant_retries') is not None:
            return  # started by another wrapped setUp of this test
        block = instant_retries()
        self.retry_delays = block.__enter__()
        self._instant_retries: typing.Optional[
            typing.ContextManager[typing.List[float]]] = block
        self.addCleanup(self._stop_instant_retries)

    def _stop_instant_retries(self) -> None:
        block, self._instant_retries = self._instant_retries, None
        if block is not None:
            block.__exit__(None, None, None)
