"""Cancelling a call affects that call alone (SPEC §6): a request still
queued is never sent, an attempt in flight has its own connection closed
at once, and no other call's connection is touched."""
from __future__ import annotations

import asyncio
import os
import typing
from unittest import mock

from tornado import testing, web

from sprockets.mixins import http
from sprockets.mixins.http import _transports
from sprockets.mixins.http._transports import _curl
from tests import support

ONCE = http.RetryPolicy(max_attempts=1)


class SlowHandler(web.RequestHandler):
    """Counts requests, answers when the test releases them, and tells the
    test when a connection closed."""

    async def handle(self) -> None:
        state = self.settings['state']
        state.arrived.append(self.request.method)
        state.arrival.set()
        await state.release.wait()
        self.finish('ok')

    get = post = handle

    def on_connection_close(self) -> None:
        state = self.settings['state']
        state.closed_count += 1
        state.closed.set()


class State:
    def __init__(self) -> None:
        self.arrived: typing.List[str] = []
        self.arrival = asyncio.Event()
        self.release = asyncio.Event()
        self.closed = asyncio.Event()
        self.closed_count = 0

    async def wait_for_arrivals(self, count: int, timeout: float = 5
                                ) -> None:
        async def wait() -> None:
            while len(self.arrived) < count:
                self.arrival.clear()
                await self.arrival.wait()
        await asyncio.wait_for(wait(), timeout)


@support.on_every_client('TestCancellation')
class CancellationCases(support.CancelTestCase):
    __test__ = False

    def tearDown(self) -> None:
        # the curl instances HTTP_MAX_CLIENTS made for this loop
        for client in _curl.SIZED.clients.pop(self.io_loop, {}).values():
            client.close()
        super().tearDown()

    def get_app(self) -> web.Application:
        self.state = State()
        return web.Application([('/slow', SlowHandler)], state=self.state)

    def max_clients(self, count: int) -> None:
        patch = mock.patch.dict(os.environ, {'HTTP_MAX_CLIENTS': str(count)})
        patch.start()
        self.addCleanup(patch.stop)

    def start(self, method: str = 'GET') -> asyncio.Future[typing.Any]:
        return asyncio.ensure_future(support.RecordingClient().http_fetch(
            self.get_url('/slow'), method=method,
            body=b'x' if method == 'POST' else None,
            request_timeout=30, retry_policy=ONCE))

    async def wait_queued(self, count: int) -> None:
        """Wait (2 s at most) until `count` requests wait in the queue of
        the client the mixin sends with."""
        client = _transports.async_http_client()
        queue = getattr(client, 'queue', None)
        if queue is None:  # curl_httpclient
            queue = client._requests  # type: ignore[attr-defined]
        for _ in range(2000):
            if len(queue) >= count:
                return
            await asyncio.sleep(0.001)
        self.fail(f'{len(queue)} requests queued, expected {count}')

    async def cancel(self, task: asyncio.Future[typing.Any]) -> None:
        task.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await asyncio.wait_for(task, 2)

    @testing.gen_test(timeout=20)
    async def test_cancelling_one_call_leaves_the_others_alone(self) -> None:
        """20 calls over a pool of 10: cancelling one sent call fails none
        of the 19 others (today the queued ones inherit its context and
        their streams are closed with it)."""
        self.max_clients(10)
        tasks = [self.start() for _ in range(20)]
        await self.state.wait_for_arrivals(10)
        await self.cancel(tasks[0])
        await asyncio.sleep(0.1)  # let a wrongly closed stream show
        self.state.release.set()
        responses = await asyncio.wait_for(asyncio.gather(*tasks[1:]), 10)
        failed = [r for r in responses if not r.ok]
        self.assertEqual(len(failed), 0, [
            str(r.exceptions) for r in failed])
        self.assertEqual(len(self.state.arrived), 20)

    @testing.gen_test(timeout=20)
    async def test_a_cancelled_queued_call_is_never_sent(self) -> None:
        """A POST cancelled while it waits for a free slot is taken out of
        the queue: the server never sees it, and the call after it is sent
        in its place."""
        self.max_clients(1)
        first = self.start('GET')
        await self.state.wait_for_arrivals(1)
        queued = self.start('POST')
        last = self.start('GET')
        await self.wait_queued(2)
        await self.cancel(queued)
        self.state.release.set()
        responses = await asyncio.wait_for(asyncio.gather(first, last), 10)
        self.assertTrue(all(r.ok for r in responses),
                        [str(r.exceptions) for r in responses])
        self.assertEqual(self.state.arrived, ['GET', 'GET'])

    @testing.gen_test(timeout=20)
    async def test_a_call_cancelled_after_the_queue_closes_at_once(
            self) -> None:
        """A call that waited in the queue, then was sent, has its own
        connection closed within a second of its cancel."""
        self.max_clients(1)
        first = self.start('GET')
        await self.state.wait_for_arrivals(1)
        second = self.start('GET')
        await self.wait_queued(1)
        self.state.release.set()
        self.assertTrue((await asyncio.wait_for(first, 5)).ok)
        self.state.release.clear()
        await self.state.wait_for_arrivals(2)
        self.state.closed.clear()
        await self.cancel(second)
        await asyncio.wait_for(self.state.closed.wait(), 1)
        self.state.release.set()
