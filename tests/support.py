"""Shared test support: a real tornado server on 127.0.0.1 and one
registry of the AsyncHTTPClient implementations the integration tests run
on."""
from __future__ import annotations

import asyncio
import sys
import typing
import unittest
import urllib.parse

import pytest
from tornado import httpclient, testing, util, web

from sprockets.mixins import http
from sprockets.mixins.http import testing as testing_kit

SIMPLE = 'tornado.simple_httpclient.SimpleAsyncHTTPClient'
CURL = 'tornado.curl_httpclient.CurlAsyncHTTPClient'
AIOHTTP = 'sprockets.mixins.http.aiohttp_client.AiohttpAsyncHTTPClient'

#: Every AsyncHTTPClient implementation the integration tests run on, by
#: the suffix of its test classes (``TestMixinSimple``, ``TestMixinCurl``):
#: adding a transport to the suite is one entry here.
IMPLEMENTATIONS: typing.Dict[str, str] = {
    'Simple': SIMPLE,
    'Curl': CURL,
    'Aiohttp': AIOHTTP,
}

#: ``times=`` for a FakeUpstream reply that stands for "always": more
#: requests than any one test sends.
ALWAYS = 100

#: ``delay=`` for a FakeUpstream reply that never comes: longer than any
#: request timeout of the suite (the upstream's ``stop()`` ends it).
NEVER = 60.0

#: The methods :func:`always` and :func:`flaky` answer by default.
METHODS = ('GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS')

Cases = typing.TypeVar('Cases', bound=type)


def unavailable(implementation: str) -> typing.Optional[str]:
    """Why `implementation` cannot run here (its module, or a library it
    needs such as pycurl, does not import), or :data:`None`."""
    try:
        util.import_object(implementation)
    except ImportError as error:
        return f'{implementation} cannot be imported: {error}'
    return None


def run_in_a_loop(implementation: str,
                  scenario: typing.Callable[[], typing.Awaitable[None]], *,
                  timeout: float = 20.0, **configuration: typing.Any) -> None:
    """Run ``scenario()`` in an event loop of its own, with
    `implementation` configured (with `configuration`, ``max_clients``
    say) and the default budget reset, bounded by `timeout` seconds; the
    loop's shared client is closed at the end, as ``AsyncHTTPTestCase``
    does, and the configuration undone."""

    async def bounded() -> None:
        try:
            await asyncio.wait_for(scenario(), timeout)
        finally:
            httpclient.AsyncHTTPClient().close()

    httpclient.AsyncHTTPClient.configure(implementation, **configuration)
    http.DEFAULT_BUDGET.reset()
    try:
        asyncio.run(bounded())
    finally:
        httpclient.AsyncHTTPClient.configure(None)


def on_every_client(prefix: str) -> typing.Callable[[Cases], Cases]:
    """Class decorator: run a case class on every entry of
    :data:`IMPLEMENTATIONS`.

    ``@on_every_client('TestMixin')`` on ``class MixinCases(ServerTestCase)``
    defines ``TestMixinSimple`` and ``TestMixinCurl`` in the decorated
    class's module, each with its ``implementation`` set and ``__test__ =
    True``; an implementation that does not import is skipped, with the
    reason.  The case class itself is returned unchanged (keep its
    ``__test__ = False``), so another module may subclass it, and the
    generated classes may be subclassed further like hand-written ones.
    """

    def define(cases: Cases) -> Cases:
        namespace = vars(sys.modules[cases.__module__])
        for suffix, implementation in IMPLEMENTATIONS.items():
            name = f'{prefix}{suffix}'
            if name in namespace:
                raise TypeError(f'{cases.__module__} already defines {name}')
            per_client = type(cases)(name, (cases,), {
                '__module__': cases.__module__,
                '__qualname__': name,
                '__doc__': cases.__doc__,
                '__test__': True,
                'implementation': implementation,
            })
            reason = unavailable(implementation)
            if reason is not None:
                per_client = unittest.skip(reason)(per_client)
            namespace[name] = per_client
        return cases

    return define


def every_client() -> typing.List[typing.Any]:
    """:data:`IMPLEMENTATIONS` as ``pytest.mark.parametrize`` values (the
    class names, so test ids are unchanged), an implementation that does
    not import skipped with the reason."""
    params = []
    for implementation in IMPLEMENTATIONS.values():
        reason = unavailable(implementation)
        marks = [] if reason is None else [pytest.mark.skip(reason=reason)]
        params.append(pytest.param(implementation, marks=marks))
    return params


def always(upstream: testing_kit.FakeUpstream, path: str, status: int = 200,
           body: typing.Any = None, *,
           methods: typing.Iterable[str] = METHODS,
           **options: typing.Any) -> None:
    """Make `upstream` answer every request to `path` (by any of
    `methods`) with `status` and `body`; `options` as for
    :meth:`~testing_kit.FakeUpstream.reply`."""
    for method in methods:
        upstream.reply(method, path, status, body, times=ALWAYS, **options)


def flaky(upstream: testing_kit.FakeUpstream, path: str,
          body: typing.Any = None, *, failures: int = 2, status: int = 503,
          failure_body: typing.Any = None,
          methods: typing.Iterable[str] = METHODS,
          **options: typing.Any) -> None:
    """Make `upstream` answer `status` (with `failure_body`) to the first
    `failures` requests to `path` of each of `methods`, then 200 with
    `body` and `options` (as for :meth:`~testing_kit.FakeUpstream.reply`)
    to every one after that."""
    for method in methods:
        upstream.reply(method, path, status, failure_body, times=failures)
    always(upstream, path, 200, body, methods=methods, **options)


def uri(request: testing_kit.RecordedRequest) -> str:
    """The path and query of `request`, as its request line had them."""
    query = urllib.parse.urlencode(request.query, doseq=True)
    return f'{request.path}?{query}' if query else request.path


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

    Subclasses set :attr:`handlers` (or override :meth:`get_app`); a case
    class runs on every client by being decorated with
    :func:`on_every_client`.  :attr:`implementation` is the one to send
    with, :data:`SIMPLE` unless a per-client subclass sets it.
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



class CancelTestCase(ServerTestCase):
    """A :class:`ServerTestCase` whose tests cancel calls in flight (every
    client can: curl's transfer is ended through its multi handle, which
    needs nothing of pycurl's version)."""
