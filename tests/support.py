"""Shared test support: a real tornado server on 127.0.0.1 and both
AsyncHTTPClient implementations."""
from __future__ import annotations

import typing

from tornado import httpclient, testing, web

from sprockets.mixins import http

SIMPLE = 'tornado.simple_httpclient.SimpleAsyncHTTPClient'
CURL = 'tornado.curl_httpclient.CurlAsyncHTTPClient'


class RecordingClient(http.HTTPClientMixin):
    """A mixin user that records the delays asked for instead of sleeping."""

    def __init__(self, *args: typing.Any, **kwargs: typing.Any) -> None:
        super().__init__(*args, **kwargs)
        self.delays: typing.List[float] = []

    async def _http_req_sleep(self, seconds: float) -> None:
        self.delays.append(seconds)


class VirtualClockClient(RecordingClient):
    """A RecordingClient whose clock only moves when it sleeps, or when a
    test sets :attr:`now`."""

    def __init__(self, *args: typing.Any, **kwargs: typing.Any) -> None:
        super().__init__(*args, **kwargs)
        self.now = 1000.0

    def _http_req_clock(self) -> float:
        return self.now

    async def _http_req_sleep(self, seconds: float) -> None:
        await super()._http_req_sleep(seconds)
        self.now += seconds


class ServerTestCase(testing.AsyncHTTPTestCase):
    """A tornado app on an ephemeral loopback port.

    Subclasses set :attr:`handlers`; a case class runs on both clients by
    being subclassed twice: ``class TestXSimple(XCases)`` and
    ``class TestXCurl(XCases): implementation = CURL``.
    """

    implementation = SIMPLE
    handlers: typing.ClassVar[typing.List[typing.Any]] = []

    def setUp(self) -> None:
        httpclient.AsyncHTTPClient.configure(self.implementation)
        http.DEFAULT_BUDGET.reset()
        super().setUp()

    def tearDown(self) -> None:
        # AsyncHTTPTestCase closes self.http_client, which is the shared
        # AsyncHTTPClient of this IOLoop: the one the mixin sends with
        super().tearDown()
        httpclient.AsyncHTTPClient.configure(None)

    def get_app(self) -> web.Application:
        return web.Application(self.handlers)

