"""No growth under load: with ``HTTP_MAX_CLIENTS=2`` kept saturated, the
connections alive, the open file descriptors and the resident memory stay
flat on every client, instead of growing with every request sent."""
from __future__ import annotations

import asyncio
import gc
import os
import pathlib
import time
import typing

import pytest
from tornado import (
    httpclient,
    httpserver,
    ioloop,
    iostream,
    simple_httpclient,
    testing,
    web,
)

from sprockets.mixins import http
from sprockets.mixins.http import _transports
from sprockets.mixins.http._transports import _curl
from tests import support

PROC = pathlib.Path('/proc/self')

MAX_CLIENTS = 2
#: far more callers than connections: the client's queue never drains
CALLERS = 50
#: seconds the load lasts, and how many times it is measured meanwhile
LOAD = 2.0
SAMPLES = 8
#: the handler answers this late, so that both connections stay busy
ANSWER_DELAY = 0.005
#: the most calls one caller makes, whatever the clock says
CALLS_PER_CALLER = 2000
#: both ends of each connection live in this process, and a connection
#: may be closing while the next one opens
FDS_ALLOWED = 2 * (MAX_CLIENTS + 2)
#: resident memory the run may gain between its first and last sample: a
#: request kept alive with its closed stream cost some 4 KiB, 1.2 MiB over
#: the run on simple_httpclient; a flat run gains about 100 KiB
RSS_GROWTH_ALLOWED = 512 * 1024


class BusyHandler(web.RequestHandler):
    async def get(self) -> None:
        await asyncio.sleep(ANSWER_DELAY)
        self.write('ok')


class Sample(typing.NamedTuple):
    #: simple_httpclient's connection objects alive
    connections: int
    #: the client's ends of streams alive
    streams: int
    fds: int
    rss: int


def sample(server_port: int) -> Sample:
    """What is alive now: the connection objects, the client streams (a
    closed one counts: nothing should keep it any more; an open one whose
    local port is the server's is the server's end), the open fds and the
    resident memory."""
    gc.collect()
    connections = streams = 0
    for thing in gc.get_objects():
        if isinstance(thing, simple_httpclient._HTTPConnection):
            connections += 1
        elif isinstance(thing, iostream.IOStream):
            sock = thing.socket
            if sock is None or sock.getsockname()[1] != server_port:
                streams += 1
    return Sample(connections, streams, open_fds(), resident_bytes())


def open_fds() -> int:
    return len(os.listdir(PROC / 'fd'))


def resident_bytes() -> int:
    pages = int((PROC / 'statm').read_text().split()[1])
    return pages * os.sysconf('SC_PAGE_SIZE')


async def saturate() -> typing.Tuple[int, typing.List[bool],
                                     typing.List[Sample]]:
    """Keep CALLERS calls going for LOAD seconds through one mixin; return
    the fds open before, whether each call was answered 200, and the
    samples taken."""
    sock, port = testing.bind_unused_port()
    server = httpserver.HTTPServer(web.Application([('/', BusyHandler)]))
    server.add_sockets([sock])
    url = f'http://127.0.0.1:{port}/'
    mixin = http.HTTPClientMixin()
    _transports.async_http_client()  # libcurl's own descriptors: before
    before = open_fds()
    answered: typing.List[bool] = []
    stop_at = time.monotonic() + LOAD + 1

    async def caller() -> None:
        for _ in range(CALLS_PER_CALLER):
            if time.monotonic() >= stop_at:
                return
            response = await mixin.http_fetch(url)
            answered.append(response.ok)

    callers = [asyncio.ensure_future(caller()) for _ in range(CALLERS)]
    samples = []
    try:
        for _ in range(SAMPLES):
            await asyncio.sleep(LOAD / SAMPLES)
            samples.append(sample(port))
    finally:
        stop_at = 0
        await asyncio.wait_for(asyncio.gather(*callers), 10)
        for client in _curl.SIZED.clients.pop(ioloop.IOLoop.current(),
                                               {}).values():
            client.close()
        server.stop()
        await server.close_all_connections()
    return before, answered, samples


@pytest.mark.skipif(not PROC.joinpath('statm').is_file(),
                    reason='needs /proc/self')
@pytest.mark.parametrize('implementation', support.every_client())
def test_saturated_client_stays_flat(
        implementation: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """2 connections kept busy by 50 callers: 2 alive, flat fds and RSS."""
    httpclient.AsyncHTTPClient.configure(implementation)
    monkeypatch.setenv('HTTP_MAX_CLIENTS', str(MAX_CLIENTS))
    try:
        before, answered, samples = asyncio.run(saturate())
    finally:
        httpclient.AsyncHTTPClient.configure(None)
    assert all(answered)
    assert len(answered) > 2 * CALLERS  # many more calls than connections
    for taken in samples:
        assert taken.connections <= MAX_CLIENTS + 2, samples
        assert taken.streams <= MAX_CLIENTS + 2, samples
        assert taken.fds <= before + FDS_ALLOWED, samples
    assert samples[-1].rss - samples[0].rss < RSS_GROWTH_ALLOWED, samples
