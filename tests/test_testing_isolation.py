"""The testing kit keeps tests apart: a retry budget of their own under
instant retries, overlapping instant_retries() blocks, InstantRetriesMixin
in either position, and a FakeUpstream that refuses an event loop it
cannot serve."""
from __future__ import annotations

import asyncio
import pathlib
import random
import socket
import subprocess
import sys
import textwrap
import threading
import typing
import unittest

import pytest
import tornado.testing
from tornado import web

from sprockets.mixins import http
from sprockets.mixins.http import testing

#: more retries than DEFAULT_BUDGET's reserve allows one upstream: 80
#: calls of "503, 503, 200" withdraw 160 retries and deposit 16
CALLS = 80

ORIGINAL_SLEEP = http.HTTPClientMixin.__dict__['_http_req_sleep']
ORIGINAL_BUDGET = http.HTTPClientMixin.__dict__['_http_req_retry_budget']


def hooks() -> typing.Tuple[typing.Any, typing.Any]:
    """The sleep and the budget hook installed on the mixin class now."""
    return (http.HTTPClientMixin.__dict__['_http_req_sleep'],
            http.HTTPClientMixin.__dict__['_http_req_retry_budget'])


def instant() -> bool:
    """Whether both hooks of instant retries are installed."""
    sleep, budget = hooks()
    return sleep is not ORIGINAL_SLEEP and budget is not ORIGINAL_BUDGET


def sleep_now(seconds: float) -> None:
    """Ask the mixin for a sleep, which must be the instant one: the
    assertion comes first, so that a broken switch never sleeps."""
    assert instant(), 'the real sleep is installed'
    asyncio.run(http.HTTPClientMixin()._http_req_sleep(seconds))


def flaky(upstream: testing.FakeUpstream, path: str) -> None:
    upstream.reply('GET', path, 503, times=2)
    upstream.reply('GET', path, 200)


# -- 1. the retry budget ------------------------------------------------------

def test_each_block_draws_from_a_budget_of_its_own() -> None:
    """80 identical '503, 503, 200' calls to one upstream, each in its own
    instant_retries() block, all get their three attempts."""
    async def scenario() -> typing.List[typing.Tuple[int, str]]:
        outcomes = []
        async with testing.FakeUpstream() as upstream:
            for _ in range(CALLS):
                flaky(upstream, '/flaky')
                with testing.instant_retries() as delays:
                    response = await http.HTTPClientMixin().http_fetch(
                        upstream.url('/flaky'))
                assert len(delays) == len(response.records) - 1
                outcomes.append((len(response.records),
                                 str(response.stop_reason)))
        return outcomes

    outcomes = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert outcomes == [(3, 'success')] * CALLS


def test_mixin_tests_draw_from_budgets_of_their_own() -> None:
    """80 unittest tests with InstantRetriesMixin, run in a shuffled order
    against one upstream, all get their three attempts."""
    loop = asyncio.new_event_loop()
    upstream = testing.FakeUpstream()
    loop.run_until_complete(upstream.start())
    attempts: typing.List[int] = []

    class Case(testing.InstantRetriesMixin, unittest.TestCase):
        def check(self, path: str) -> None:
            flaky(upstream, path)
            response = loop.run_until_complete(asyncio.wait_for(
                http.HTTPClientMixin().http_fetch(upstream.url(path)), 10))
            attempts.append(len(response.records))
            self.assertEqual(len(self.retry_delays), 2)

        def test_users(self) -> None:
            self.check('/users')

        def test_groups(self) -> None:
            self.check('/groups')

    tests = [Case(name) for name in ('test_users', 'test_groups')
             for _ in range(CALLS // 2)]
    random.Random(CALLS).shuffle(tests)
    result = unittest.TestResult()
    try:
        unittest.TestSuite(tests).run(result)
    finally:
        loop.run_until_complete(upstream.stop())
        loop.close()
    assert (result.testsRun, result.errors, result.failures) == (
        CALLS, [], [])
    assert attempts == [3] * CALLS


# 80 tests with the instant_retries fixture against one module-wide
# upstream, in the order given, then again in reverse
FIXTURE_TEST = '''
import asyncio

import pytest

from sprockets.mixins.http import HTTPClientMixin, testing

LOOP = asyncio.new_event_loop()
UPSTREAM = testing.FakeUpstream()


def setup_module():
    LOOP.run_until_complete(UPSTREAM.start())


def teardown_module():
    LOOP.run_until_complete(UPSTREAM.stop())
    LOOP.close()


@pytest.mark.parametrize('run', range(80))
def test_three_attempts(run, instant_retries):
    UPSTREAM.reply('GET', '/flaky', 503, times=2)
    UPSTREAM.reply('GET', '/flaky', 200)
    response = LOOP.run_until_complete(asyncio.wait_for(
        HTTPClientMixin().http_fetch(UPSTREAM.url('/flaky')), 10))
    assert len(response.records) == 3, response.stop_reason
    assert len(instant_retries) == 2
'''


def test_fixture_tests_draw_from_budgets_of_their_own(
        tmp_path: pathlib.Path) -> None:
    """80 pytest tests with the instant_retries fixture against one
    upstream all get their three attempts."""
    (tmp_path / 'test_budget.py').write_text(textwrap.dedent(FIXTURE_TEST))
    result = subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
         '-W', 'error', 'test_budget.py'],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f'{CALLS} passed' in result.stdout


def test_default_budget_is_replaced_per_call() -> None:
    """Under instant retries a policy on the default budget (implicit or
    given as DEFAULT_BUDGET) gets a fresh RetryBudget with the same
    parameters on every call; a budget of the test's own, or None, is
    kept."""
    mixin = http.HTTPClientMixin()
    own = http.RetryBudget(ttl=5, min_retries_per_sec=1)
    policies = [http.RetryPolicy(), http.RetryPolicy(
        budget=http.DEFAULT_BUDGET)]
    with testing.instant_retries():
        fresh = [mixin._http_req_retry_budget(policy)
                 for policy in policies * 2]
        kept = [mixin._http_req_retry_budget(http.RetryPolicy(budget=budget))
                for budget in (own, None)]
    assert kept == [own, None]
    assert len({id(budget) for budget in fresh}) == 4
    for budget in fresh:
        assert isinstance(budget, http.RetryBudget)
        assert budget is not http.DEFAULT_BUDGET
        assert repr(budget) == repr(http.DEFAULT_BUDGET)
    assert mixin._http_req_retry_budget(policies[0]) is http.DEFAULT_BUDGET


def test_a_budget_of_the_tests_own_still_stops_retries() -> None:
    """A policy given its own RetryBudget keeps it under instant retries:
    a budget of one retry stops the second."""
    policy = http.RetryPolicy(budget=http.RetryBudget(
        ttl=10, min_retries_per_sec=0.1))

    async def scenario() -> http.HTTPResponse:
        async with testing.FakeUpstream() as upstream:
            flaky(upstream, '/flaky')
            with testing.instant_retries():
                return await http.HTTPClientMixin().http_fetch(
                    upstream.url('/flaky'), retry_policy=policy)

    response = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert (len(response.records), response.stop_reason) == (
        2, 'budget-exhausted')


# -- 2. overlapping blocks ----------------------------------------------------

@pytest.mark.parametrize('first, last', [(0, 1), (1, 0)])
def test_overlapping_blocks_exit_in_any_order(first: int,
                                              last: int) -> None:
    """Two overlapping instant_retries() blocks, exited in either order,
    keep retries instant until the last one exits, which restores the
    real hooks."""
    blocks = [testing.instant_retries(), testing.instant_retries()]
    delays = [block.__enter__() for block in blocks]
    still_open = list(blocks)
    try:
        still_open.remove(blocks[first])
        blocks[first].__exit__(None, None, None)
        sleep_now(30)
        still_open.remove(blocks[last])
        blocks[last].__exit__(None, None, None)
        assert hooks() == (ORIGINAL_SLEEP, ORIGINAL_BUDGET)
        assert (delays[first], delays[last]) == ([], [30])
    finally:
        for block in still_open:
            block.__exit__(None, None, None)


def test_every_active_block_records_each_delay() -> None:
    """A delay asked for while blocks are nested is recorded in the list
    of every block active at that moment."""
    with testing.instant_retries() as outer:
        sleep_now(1)
        with testing.instant_retries() as inner:
            sleep_now(2)
        sleep_now(3)
    assert (outer, inner) == ([1, 2, 3], [2])
    assert hooks() == (ORIGINAL_SLEEP, ORIGINAL_BUDGET)


# -- 3. InstantRetriesMixin in either position -------------------------------

class InstantRetriesProbe(tornado.testing.AsyncHTTPTestCase):
    """Retries a 503 through a mounted upstream, and records whether
    instant retries were on while its own setUp ran."""
    __test__ = False  # run through the subclasses below

    retry_delays: typing.List[float]

    def get_app(self) -> web.Application:
        self.upstream = testing.FakeUpstream()
        return web.Application(self.upstream.handlers())

    def setUp(self) -> None:
        self.instant_in_setup = instant()
        super().setUp()

    @tornado.testing.gen_test
    async def test_retries_instantly(self) -> None:
        """The retry of a 503 is recorded in self.retry_delays."""
        self.assertTrue(self.instant_in_setup)
        self.assertTrue(instant())  # before retrying: never sleep for real
        self.upstream.reply('GET', '/a', 503)
        self.upstream.reply('GET', '/a', 200)
        response = await http.HTTPClientMixin().http_fetch(self.get_url('/a'))
        self.assertEqual((len(response.records), len(self.retry_delays)),
                         (2, 1))


class TestMixinFirst(testing.InstantRetriesMixin, InstantRetriesProbe):
    __test__ = True


class TestMixinLast(InstantRetriesProbe, testing.InstantRetriesMixin):
    __test__ = True


class TestMixinLastSubclassed(TestMixinLast):
    """A subclass with a setUp of its own that calls super()."""

    def setUp(self) -> None:
        super().setUp()
        self.assertTrue(instant())


class TestMixinAfterPlainTestCase(unittest.TestCase,
                                  testing.InstantRetriesMixin):
    """The mixin after unittest.TestCase, with no setUp of the class's
    own."""

    def test_sleeps_are_instant(self) -> None:
        """A sleep asked for in the test is recorded in retry_delays."""
        sleep_now(30)
        self.assertEqual(self.retry_delays, [30])


def test_mixin_last_restores_the_hooks_after_each_test() -> None:
    """With the mixin after the TestCase base, each test gets its own
    delays and the real hooks are back after it."""
    seen: typing.List[typing.List[float]] = []

    class Case(unittest.TestCase, testing.InstantRetriesMixin):
        def test_one(self) -> None:
            sleep_now(1)
            seen.append(list(self.retry_delays))

        def test_two(self) -> None:
            seen.append(list(self.retry_delays))

    result = unittest.TestResult()
    unittest.defaultTestLoader.loadTestsFromTestCase(Case).run(result)
    assert (result.testsRun, result.errors, result.failures) == (2, [], [])
    assert seen == [[1], []]
    assert hooks() == (ORIGINAL_SLEEP, ORIGINAL_BUDGET)


# -- 4. an upstream is used in the event loop it was started in ---------------

def test_upstream_of_a_closed_loop_refuses_to_be_used() -> None:
    """An upstream started in one asyncio.run() and used in the next raises
    RuntimeError at once, instead of letting the request wait for its
    timeout; stop() there still closes its port."""
    upstream = testing.FakeUpstream()

    async def start() -> str:
        await upstream.start()  # and left running
        return upstream.url()

    port = int(asyncio.run(start()).rsplit(':', 1)[1])
    closed = 'started in an event loop that is closed'

    async def use() -> None:
        with pytest.raises(RuntimeError, match=closed):
            await http.HTTPClientMixin().http_fetch(
                upstream.url('/a'), request_timeout=2)
        with pytest.raises(RuntimeError, match=closed):
            upstream.reply('GET', '/a', 200)
        with pytest.raises(RuntimeError, match=closed):
            await upstream.stop()

    try:
        with pytest.raises(RuntimeError, match=closed):
            upstream.set_default(500)
        asyncio.run(asyncio.wait_for(use(), 10))
    finally:
        upstream._stop_now()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(('127.0.0.1', port), timeout=5).close()
    upstream.assert_no_pending_replies()


def test_upstream_of_an_idle_loop_refuses_another_loop() -> None:
    """An upstream whose loop is open but not running refuses url(),
    reply() and stop() from another running loop, and still serves in its
    own loop."""
    other = 'started in another event loop, which is not running'
    first = asyncio.new_event_loop()
    upstream = testing.FakeUpstream()
    first.run_until_complete(upstream.start())

    async def use() -> None:
        with pytest.raises(RuntimeError, match=other):
            upstream.url('/a')
        with pytest.raises(RuntimeError, match=other):
            upstream.disconnect('GET', '/a')
        with pytest.raises(RuntimeError, match=other):
            await upstream.stop()

    try:
        asyncio.run(asyncio.wait_for(use(), 10))
        upstream.reply('GET', '/a', 200, 'ok')  # no loop runs: allowed
        response = first.run_until_complete(asyncio.wait_for(
            http.HTTPClientMixin().http_fetch(upstream.url('/a')), 10))
    finally:
        first.run_until_complete(upstream.stop())
        first.close()
    assert response.raw.body == b'ok'


def test_upstream_on_a_loop_in_another_thread_serves_this_one() -> None:
    """An upstream whose loop runs in another thread answers requests from
    this thread's loop; its stop() is awaited in its own loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    upstream = testing.FakeUpstream()

    async def use() -> http.HTTPResponse:
        response = await http.HTTPClientMixin().http_fetch(
            upstream.url('/a'))
        with pytest.raises(RuntimeError, match='run_coroutine_threadsafe'):
            await upstream.stop()
        return response

    try:
        asyncio.run_coroutine_threadsafe(upstream.start(), loop).result(10)
        upstream.reply('GET', '/a', 200, 'ok')
        response = asyncio.run(asyncio.wait_for(use(), 10))
        asyncio.run_coroutine_threadsafe(upstream.stop(), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
    assert response.raw.body == b'ok'
