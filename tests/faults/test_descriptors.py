"""Nothing leaks across event loops: a script that calls asyncio.run()
again and again keeps no file descriptor of the loops it closed."""
from __future__ import annotations

import asyncio
import os
import pathlib
import typing

import pytest
from tornado import httpclient, httpserver, testing, web

from sprockets.mixins import http
from tests import support

FDS = pathlib.Path('/proc/self/fd')


class PlainHandler(web.RequestHandler):
    def get(self) -> None:
        self.write('ok')


async def one_call() -> None:
    sock, port = testing.bind_unused_port()
    server = httpserver.HTTPServer(web.Application([('/', PlainHandler)]))
    server.add_sockets([sock])
    try:
        response = await http.HTTPClientMixin().http_fetch(
            f'http://127.0.0.1:{port}/')
        assert response.ok, response.exceptions
    finally:
        server.stop()
        await server.close_all_connections()


@pytest.mark.skipif(not FDS.is_dir(), reason='needs /proc/self/fd')
@pytest.mark.parametrize('implementation', support.every_client())
@pytest.mark.parametrize('max_clients', [None, '3'])
def test_fifty_event_loops_leave_no_descriptors(
        implementation: str, max_clients: typing.Optional[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """50 asyncio.run() calls through the mixin leave the number of open
    file descriptors as it was (curl kept 3 a loop: its connection and
    libcurl's own), with and without HTTP_MAX_CLIENTS."""
    httpclient.AsyncHTTPClient.configure(implementation)
    if max_clients is not None:
        monkeypatch.setenv('HTTP_MAX_CLIENTS', max_clients)
    try:
        asyncio.run(one_call())  # what is opened once per process
        before = len(os.listdir(FDS))
        for _ in range(50):
            asyncio.run(one_call())
        asyncio.run(one_call())  # closes what the last loop left
        after = len(os.listdir(FDS))
    finally:
        httpclient.AsyncHTTPClient.configure(None)
    assert after <= before
