"""Listening on an ephemeral loopback port: :func:`serve` for an
application of the caller's, :func:`listen` for it and for
:class:`~sprockets.mixins.http.testing.FakeUpstream`, and the server they
run, which can close its connections without an event loop.

"""
from __future__ import annotations

import contextlib
import typing

from tornado import httpserver, iostream, netutil, web


class TrackingServer(httpserver.HTTPServer):
    """An HTTPServer that can close its connections without a loop."""

    def initialize(self, *args: typing.Any, **kwargs: typing.Any) -> None:
        super().initialize(*args, **kwargs)
        self._streams: typing.Set[iostream.IOStream] = set()

    def handle_stream(self, stream: iostream.IOStream,
                      address: typing.Tuple[typing.Any, ...]) -> None:
        self._streams = {known for known in self._streams
                         if not known.closed()}
        self._streams.add(stream)
        super().handle_stream(stream, address)

    def close_streams_now(self) -> None:
        """Close the sockets of the open connections, for a server whose
        event loop is closed (IOStream.close needs a loop)."""
        streams, self._streams = self._streams, set()
        for stream in streams:
            if not stream.closed() and stream.socket is not None:
                stream.socket.close()


def listen(app: web.Application) -> typing.Tuple[TrackingServer, str]:
    """Serve `app` on an ephemeral ``127.0.0.1`` port; return the server
    and its base URL."""
    sockets = netutil.bind_sockets(0, '127.0.0.1')
    port = sockets[0].getsockname()[1]
    server = TrackingServer(app)
    server.add_sockets(sockets)
    return server, f'http://127.0.0.1:{port}'


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> typing.AsyncIterator[str]:
    """Serve `app` on an ephemeral ``127.0.0.1`` port for the duration of
    the block, and yield its base URL (``http://127.0.0.1:<port>``, no
    trailing slash).

    .. code-block:: python

       async with testing.serve(make_app()) as url:
           response = await AsyncHTTPClient().fetch(url + '/users/1')

    .. versionadded:: 3.0

    """
    server, url = listen(app)
    try:
        yield url
    finally:
        server.stop()
        await server.close_all_connections()
