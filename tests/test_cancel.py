"""Cancelling a call returns promptly and closes its connection."""
from __future__ import annotations

import asyncio
import gc
import logging
import typing

from tornado import testing, web

from tests import support


class HangingHandler(web.RequestHandler):
    """Never answers; tells the test when a request arrived and when its
    connection closed."""

    async def get(self) -> None:
        self.settings['entered'].set()
        await self.settings['closed'].wait()

    def on_connection_close(self) -> None:
        self.settings['closed'].set()


class ErrorRecords(logging.Handler):
    """Keeps the message of every ERROR record (assertNoLogs is 3.10+)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: typing.List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@support.on_every_client('TestCancel')
class CancelCases(support.CancelTestCase):
    __test__ = False

    def get_app(self) -> web.Application:
        self.entered = asyncio.Event()
        self.closed = asyncio.Event()
        return web.Application([('/hang', HangingHandler)],
                               entered=self.entered, closed=self.closed)

    async def start_and_cancel(self, **kwargs: typing.Any) -> None:
        task = asyncio.ensure_future(support.RecordingClient().http_fetch(
            self.get_url('/hang'), request_timeout=60, **kwargs))
        await asyncio.wait_for(self.entered.wait(), 5)
        task.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await asyncio.wait_for(task, 1)

    @testing.gen_test
    async def test_cancel_closes_the_connection(self) -> None:
        """The upstream sees the connection close long before the 60 s
        request timeout."""
        await self.start_and_cancel()
        await asyncio.wait_for(self.closed.wait(), 5)

    @testing.gen_test
    async def test_cancel_keeps_the_callers_prepare_curl_callback(
            self) -> None:
        """A caller's prepare_curl_callback still runs (curl only), and
        cancelling still closes the connection."""
        handles: typing.List[typing.Any] = []
        await self.start_and_cancel(prepare_curl_callback=handles.append)
        await asyncio.wait_for(self.closed.wait(), 5)
        expected = 1 if self.implementation == support.CURL else 0
        self.assertEqual(len(handles), expected)

    @testing.gen_test
    async def test_cancel_logs_nothing_at_error(self) -> None:
        """The abandoned tornado future is consumed: no 'never retrieved'
        or 'after Future was cancelled' error records."""
        errors = ErrorRecords()
        root = logging.getLogger()
        root.addHandler(errors)
        self.addCleanup(root.removeHandler, errors)
        await self.start_and_cancel()
        await asyncio.wait_for(self.closed.wait(), 5)
        # let tornado finish the aborted request, then collect it
        for _ in range(20):
            await asyncio.sleep(0)
        gc.collect()
        self.assertEqual(errors.messages, [])
