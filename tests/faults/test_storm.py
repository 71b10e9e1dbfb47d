"""Load and cancellation (issue 8 §2, SPEC §6), on every AsyncHTTPClient
implementation of :data:`support.IMPLEMENTATIONS`:

* 500 concurrent calls against an upstream that fails half of the
  requests all end, bounded, each with a stop reason, and every request
  the upstream saw is an attempt of one of them;
* a call cancelled while it waits to retry, or while its attempt is in
  flight (on a connection of its own or a kept-alive one), ends
  promptly, sends nothing more, and leaves no file descriptor open once
  the server and the client are closed;
* 100 calls cancelled at once, asleep, in flight or queued, send nothing
  more and give their slots back;
* cancelling a call on the second hop of a redirect touches no other
  call's connection.

Each case runs in its own ``asyncio.run()`` against a tornado application
served on loopback by :func:`sprockets.mixins.http.testing.serve`.
"""
from __future__ import annotations

import asyncio
import collections
import os
import pathlib
import random
import time
import typing

import pytest
from tornado import httpclient, ioloop, web

from sprockets.mixins import http
from sprockets.mixins.http import testing as testing_kit
from sprockets.mixins.http._transports import _curl
from tests import support

FDS = pathlib.Path('/proc/self/fd')

#: The calls of the storm, and the share of requests that fail.
CALLS = 500
FAILING = 0.5
SEED = 20240101

#: A cancelled call must end within this many seconds.
PROMPT = 1.0

#: How long a wrongly sent request after a cancel is given to show.
SETTLE = 0.3


@pytest.fixture
def cancellable(configured: str) -> str:
    """`configured`, for a test that cancels calls (every client can)."""
    return configured


def close_client() -> None:
    """Close the shared AsyncHTTPClient of the running loop, the one the
    mixin sends with, and with it its connections."""
    httpclient.AsyncHTTPClient().close()


def open_descriptors() -> int:
    return len(os.listdir(FDS))


# -- the storm ---------------------------------------------------------------

class FlakyHandler(web.RequestHandler):
    """Answers 503 to a seeded random half of the requests, 200 to the
    rest, and counts them."""

    def get(self) -> None:
        state = self.settings['state']
        state.requests += 1
        if state.random.random() < FAILING:
            self.set_status(503)
            self.finish({'message': 'overloaded'})
        else:
            self.finish({'ok': True})


class Counter:
    def __init__(self) -> None:
        self.requests = 0
        self.random = random.Random(SEED)


def quiet(handler: web.RequestHandler) -> None:
    """Keep the storm's requests out of the access log."""


@pytest.mark.parametrize('implementation', support.every_client())
def test_storm_of_concurrent_calls(configured: str) -> None:
    """500 concurrent GETs (max_http_attempts=3, the default budget)
    against a server failing half at random with 503 all return within
    30 s, each with a stop reason that fits its attempts and status; the
    requests the server saw are the sum of the attempts, and every retry
    slept once."""
    counter = Counter()

    async def scenario() -> None:
        app = web.Application([('/flaky', FlakyHandler)], state=counter,
                              log_function=quiet)
        async with testing_kit.serve(app) as url:
            client = support.RecordingClient()
            calls = [client.http_fetch(f'{url}/flaky', max_http_attempts=3)
                     for _ in range(CALLS)]
            responses = await asyncio.wait_for(asyncio.gather(*calls), 30)
        close_client()

        assert len(responses) == CALLS
        reasons = collections.Counter(str(r.stop_reason) for r in responses)
        for response in responses:
            assert response.stop_reason is not None
            assert response.exceptions == [], response.exceptions
            assert 1 <= response.attempts <= 3
            if response.stop_reason == 'success':
                assert (response.code, response.ok) == (200, True)
            elif response.stop_reason == 'attempts-exhausted':
                assert (response.code, response.attempts) == (503, 3)
            else:  # the budget keeps a failing upstream from tripling
                assert response.stop_reason == 'budget-exhausted', reasons
                assert response.code == 503
        attempts = sum(response.attempts for response in responses)
        assert counter.requests == attempts
        assert len(client.delays) == attempts - CALLS
        assert reasons['success'] > CALLS // 2, reasons

    started = time.monotonic()
    asyncio.run(scenario())
    assert time.monotonic() - started < 30


# -- cancellation ------------------------------------------------------------

class State:
    """What the handlers below saw; made inside the loop that serves."""

    def __init__(self) -> None:
        self.arrived = 0
        self.arrival = asyncio.Event()
        self.closed = asyncio.Event()
        self.release = asyncio.Event()


class UnavailableHandler(web.RequestHandler):
    """Always 503: the call sleeps before its retry."""

    def get(self) -> None:
        state = self.settings['state']
        state.arrived += 1
        state.arrival.set()
        self.set_status(503)
        self.finish()


class HangingHandler(web.RequestHandler):
    """Does not answer until the test releases it; tells the test when
    its connection closed."""

    async def get(self) -> None:
        state = self.settings['state']
        state.arrived += 1
        state.arrival.set()
        await state.release.wait()
        self.finish('late')

    def on_connection_close(self) -> None:
        self.settings['state'].closed.set()


class OkHandler(web.RequestHandler):
    def get(self) -> None:
        self.finish('ok')


class StuckSleeper(http.HTTPClientMixin):
    """A mixin user whose sleep before a retry never ends by itself."""

    def __init__(self) -> None:
        super().__init__()
        self.delays: typing.List[float] = []
        self.sleeping = asyncio.Event()

    async def _http_req_sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.sleeping.set()
        await asyncio.Event().wait()  # never set


async def warm_up() -> int:
    """Make one call through the mixin, close its server and the client,
    and return the number of open descriptors: what is opened once per
    process (and per loop) is opened by then."""
    app = web.Application([('/ok', OkHandler)])
    async with testing_kit.serve(app) as url:
        response = await http.HTTPClientMixin().http_fetch(f'{url}/ok')
        assert response.ok, response.exceptions
    close_client()
    return open_descriptors()


async def cancel(task: asyncio.Future[typing.Any]) -> None:
    """Cancel `task` and check that it ends, cancelled, within
    :data:`PROMPT`."""
    task.cancel()
    started = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, PROMPT)
    assert time.monotonic() - started < PROMPT
    assert task.cancelled()


@pytest.mark.skipif(not FDS.is_dir(), reason='needs /proc/self/fd')
@pytest.mark.parametrize('implementation', support.every_client())
def test_cancel_while_waiting_to_retry(cancellable: str) -> None:
    """A call cancelled in its sleep after a 503 ends at once, never
    sends its retry, and leaves the descriptors as they were."""

    async def scenario() -> None:
        before = await warm_up()
        state = State()
        app = web.Application([('/unavailable', UnavailableHandler)],
                              state=state)
        async with testing_kit.serve(app) as url:
            client = StuckSleeper()
            task = asyncio.ensure_future(client.http_fetch(
                f'{url}/unavailable', max_http_attempts=3))
            await asyncio.wait_for(client.sleeping.wait(), 5)
            await cancel(task)
            await asyncio.sleep(SETTLE)  # let a wrongly sent retry arrive
            assert state.arrived == 1
            assert len(client.delays) == 1
        close_client()
        assert open_descriptors() <= before

    asyncio.run(asyncio.wait_for(scenario(), 20))


@pytest.mark.skipif(not FDS.is_dir(), reason='needs /proc/self/fd')
@pytest.mark.parametrize('implementation', support.every_client())
def test_cancel_while_in_flight(cancellable: str) -> None:
    """A call cancelled while the server holds its request (on a
    connection of its own) ends at once, has its connection closed, is
    not retried, and leaves the descriptors as they were."""
    run_cancel_in_flight(reuse=False)


@pytest.mark.skipif(not FDS.is_dir(), reason='needs /proc/self/fd')
@pytest.mark.parametrize('implementation', support.every_client())
def test_cancel_while_in_flight_on_a_kept_alive_connection(
        cancellable: str) -> None:
    """The same, when the call's request went on the kept-alive connection
    of an earlier call (max_attempts=1: nothing may resend it): the
    server sees the request once, never again after the cancel."""
    run_cancel_in_flight(reuse=True)


def run_cancel_in_flight(reuse: bool) -> None:
    """Cancel a GET the server holds; with `reuse`, an earlier call to
    the same server leaves a kept-alive connection (curl keeps one) for
    it."""

    async def scenario() -> None:
        before = await warm_up()
        state = State()
        app = web.Application([('/hang', HangingHandler),
                               ('/ok', OkHandler)], state=state)
        async with testing_kit.serve(app) as url:
            client = support.RecordingClient()
            if reuse:
                earlier = await client.http_fetch(f'{url}/ok')
                assert earlier.ok, earlier.exceptions
            task = asyncio.ensure_future(client.http_fetch(
                f'{url}/hang', max_http_attempts=1 if reuse else 3,
                request_timeout=60))
            await asyncio.wait_for(state.arrival.wait(), 5)
            await cancel(task)
            await asyncio.wait_for(state.closed.wait(), PROMPT)
            await asyncio.sleep(SETTLE)  # let a wrongly sent request arrive
            assert state.arrived == 1
            assert client.delays == []
            state.release.set()  # the handler ends before the server
        close_client()
        assert open_descriptors() <= before

    asyncio.run(asyncio.wait_for(scenario(), 20))


class CountingSleeper(StuckSleeper):
    """A :class:`StuckSleeper` that counts the calls asleep."""

    def __init__(self) -> None:
        super().__init__()
        self.asleep = 0

    async def _http_req_sleep(self, seconds: float) -> None:
        self.asleep += 1
        await super()._http_req_sleep(seconds)


async def wait_until(condition: typing.Callable[[], bool],
                     timeout: float = 5.0) -> None:
    """Poll `condition` every millisecond for `timeout` seconds at most."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, 'timed out'
        await asyncio.sleep(0.001)


#: calls asleep before their retry, and calls in flight or queued
ASLEEP = IN_FLIGHT = 50


@pytest.mark.skipif(not FDS.is_dir(), reason='needs /proc/self/fd')
@pytest.mark.parametrize('implementation', support.every_client())
def test_cancelling_a_crowd(cancellable: str) -> None:
    """50 calls asleep before a retry and 50 held by the server or queued
    behind them (max_clients 10), all cancelled: each ends within a
    second, none sends a request after the cancel, the client's slots are
    free again (20 calls then succeed), and no descriptor is left."""

    async def scenario() -> None:
        before = await warm_up()
        state = State()
        app = web.Application([('/unavailable', UnavailableHandler),
                               ('/hang', HangingHandler),
                               ('/ok', OkHandler)], state=state)
        async with testing_kit.serve(app) as url:
            sleeper = CountingSleeper()
            asleep = [asyncio.ensure_future(sleeper.http_fetch(
                f'{url}/unavailable', max_http_attempts=3))
                for _ in range(ASLEEP)]
            await wait_until(lambda: sleeper.asleep == ASLEEP)
            assert state.arrived == ASLEEP
            holder = support.RecordingClient()
            held = [asyncio.ensure_future(holder.http_fetch(
                f'{url}/hang', max_http_attempts=3, request_timeout=60))
                for _ in range(IN_FLIGHT)]
            # the shared client's 10 slots are taken, the rest queued
            await wait_until(lambda: state.arrived == ASLEEP + 10)
            arrived = state.arrived
            tasks = asleep + held
            for task in tasks:  # all at once: none may be sent after this
                task.cancel()
            _, pending = await asyncio.wait(tasks, timeout=PROMPT)
            assert not pending
            assert all(task.cancelled() for task in tasks)
            await asyncio.sleep(SETTLE)  # let a wrongly sent request arrive
            assert state.arrived == arrived
            assert holder.delays == []
            state.release.set()
            responses = await asyncio.wait_for(asyncio.gather(*[
                support.RecordingClient().http_fetch(f'{url}/ok')
                for _ in range(20)]), 5)
            assert all(response.ok for response in responses), [
                response.exceptions for response in responses]
        close_client()
        assert open_descriptors() <= before

    asyncio.run(asyncio.wait_for(scenario(), 20))


class HopHandler(web.RequestHandler):
    """Holds the first hop of a redirect until the test releases it, then
    redirects to ``/hang/a``."""

    async def get(self) -> None:
        state = self.settings['state']
        state.arrived.append('hop')
        await state.released['hop'].wait()
        self.redirect('/hang/a')


class NamedHangingHandler(web.RequestHandler):
    """Records ``/hang/<name>`` and answers it when the test releases
    `name`."""

    async def get(self, name: str) -> None:
        state = self.settings['state']
        state.arrived.append(name)
        await state.released[name].wait()
        self.finish(name)


class Hops:
    """What :class:`HopHandler` and :class:`NamedHangingHandler` saw."""

    def __init__(self) -> None:
        self.arrived: typing.List[str] = []
        self.released = {name: asyncio.Event()
                         for name in ('hop', 'a', 'c', 'd')}


@pytest.mark.parametrize('implementation', support.every_client())
def test_cancel_on_a_redirect_hop_leaves_other_calls_alone(
        cancellable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With 2 slots (HTTP_MAX_CLIENTS=2), call A's first hop ends and its
    slot goes to the queued call C; A's second hop waits for D's slot.
    Cancelling A then closes only what A's second hop opened: C and D
    are answered, once each, without an error."""
    monkeypatch.setenv('HTTP_MAX_CLIENTS', '2')
    hops = Hops()

    async def scenario() -> None:
        app = web.Application([('/hop', HopHandler),
                               (r'/hang/(\w+)', NamedHangingHandler)],
                              state=hops)
        try:
            async with testing_kit.serve(app) as url:
                client = support.RecordingClient()

                def call(path: str) -> asyncio.Future[http.HTTPResponse]:
                    return asyncio.ensure_future(client.http_fetch(
                        f'{url}{path}', follow_redirects=True,
                        request_timeout=10))

                d = call('/hang/d')
                await wait_until(lambda: hops.arrived == ['d'])
                a = call('/hop')
                await wait_until(lambda: hops.arrived == ['d', 'hop'])
                c = call('/hang/c')  # queued: both slots are taken
                hops.released['hop'].set()  # C takes the slot of A's hop
                await wait_until(lambda: 'c' in hops.arrived)
                hops.released['d'].set()  # A's second hop takes D's
                await wait_until(lambda: 'a' in hops.arrived)
                await cancel(a)
                await asyncio.sleep(SETTLE)  # let a wrongly closed one show
                hops.released['c'].set()
                responses = await asyncio.wait_for(asyncio.gather(c, d), 5)
                hops.released['a'].set()
                for response in responses:
                    assert response.ok, response.exceptions
                    assert response.attempts == 1
                assert hops.arrived.count('c') == 1
                assert hops.arrived.count('d') == 1
        finally:
            loop = ioloop.IOLoop.current()
            for sized in _curl.SIZED.clients.pop(loop, {}).values():
                sized.close()
            close_client()

    asyncio.run(asyncio.wait_for(scenario(), 20))
