"""The retry budget's memory is bounded by the upstreams seen within its
window, whatever came before: a burst of distinct upstreams followed by
traffic to a few known ones only must not keep the burst's windows."""
from __future__ import annotations

import pytest

from sprockets.mixins.http import RetryBudget

KNOWN = [('http', f'known-{n}.example', 80) for n in range(3)]


def burst(budget: RetryBudget, count: int, now: float) -> None:
    """Deposit once for `count` distinct upstreams at `now`."""
    for host in range(count):
        budget.deposit(('http', f'h{host}.example', 80), now)


def test_burst_of_distinct_upstreams_is_forgotten_on_time() -> None:
    """100,000 distinct upstreams at t=0, then only three known ones from
    ttl + 1 on: the burst's windows go, the known ones' balances stay
    right."""
    budget = RetryBudget()
    burst(budget, 100_000, 0.0)
    assert len(budget._windows) == 100_000
    step = 0.05
    for tick in range(400):  # 20 s of traffic to the known upstreams
        now = budget.ttl + 1 + tick * step
        for key in KNOWN:
            budget.deposit(key, now)
            if tick % 10 == 0:
                assert budget.try_withdraw(key, now)
    assert len(budget._windows) <= len(KNOWN)
    # in its last window (slices 21 to 30 s), each known upstream saw 200
    # deposits (40 retries) and 20 retries, on top of the reserve of 100
    now = budget.ttl + 1 + 399 * step
    for key in KNOWN:
        assert budget.balance(key, now) == pytest.approx(100 + 40 - 20)


def test_sweep_on_time_runs_at_most_once_per_ttl() -> None:
    """Calls within one ttl of the last sweep do not sweep again: the
    cost is amortized, not one walk over every upstream per call."""
    budget = RetryBudget()
    burst(budget, 1_000, 0.0)
    sweeps = []
    original = budget._sweep

    def counting(now: float) -> None:
        sweeps.append(now)
        original(now)

    budget._sweep = counting  # type: ignore[method-assign]
    for tick in range(1_000):
        budget.deposit(KNOWN[0], 11.0 + tick * 0.01)  # 10 s of calls
    assert len(sweeps) == 1
    assert len(budget._windows) == 1


def test_balance_also_sweeps_on_time() -> None:
    """A process that only reads balances for its known upstreams still
    forgets the others."""
    budget = RetryBudget()
    burst(budget, 1_000, 0.0)
    budget.deposit(KNOWN[0], 10.5)
    assert budget.balance(KNOWN[0], 11.0) == pytest.approx(100.2)
    assert len(budget._windows) == 1


def test_live_windows_survive_the_time_sweep() -> None:
    """The sweep on time forgets only windows that have expired whole:
    an upstream exhausted 9 s ago is still exhausted."""
    budget = RetryBudget()
    key = ('http', 'exhausted.example', 80)
    burst(budget, 10, 0.0)  # the first call: the next sweep is at 10 s
    while budget.try_withdraw(key, 1.0):
        pass
    budget.deposit(KNOWN[0], 10.0)  # sweeps: the burst goes, key stays
    assert set(budget._windows) == {key, KNOWN[0]}
    assert not budget.try_withdraw(key, 10.0)
