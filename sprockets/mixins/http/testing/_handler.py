"""The :class:`tornado.web.RequestHandler` of a
:class:`~sprockets.mixins.http.testing.FakeUpstream`: it records each
request and answers it with the upstream's next reply, after the reply's
delay, or resets the connection.

"""
from __future__ import annotations

import asyncio
import socket
import struct
import typing

from tornado import iostream, web

from sprockets.mixins.http.testing import _requests

if typing.TYPE_CHECKING:  # pragma: no cover
    from sprockets.mixins.http.testing._replies import Reply
    from sprockets.mixins.http.testing._upstream import FakeUpstream


class _AnyMethod(typing.Tuple[str, ...]):
    """SUPPORTED_METHODS that holds every method token."""

    def __contains__(self, method: object) -> bool:
        return isinstance(method, str) and bool(
            _requests.METHOD.match(method))


class UpstreamHandler(web.RequestHandler):
    """Answers every request, whatever its method, with the upstream's
    next reply: the answer is given in :meth:`prepare`, which finishes the
    request, so that no per-method handler method is needed."""

    SUPPORTED_METHODS = _AnyMethod(('GET', 'HEAD', 'POST', 'DELETE',
                                    'PATCH', 'PUT', 'OPTIONS'))

    def initialize(self, upstream: FakeUpstream, prefix: str) -> None:
        self.upstream = upstream
        self.prefix = prefix
        self.gone = False
        self.waiter: typing.Optional[asyncio.Future[bool]] = None

    async def prepare(self) -> None:
        if await self._answer():
            self.finish()

    async def _answer(self) -> bool:
        """Answer the request; :data:`False` when the connection was
        closed instead."""
        request = self.request
        # tornado decodes the request line as latin-1: back to the bytes
        path = _requests.quote_non_ascii(
            request.path[len(self.prefix):].encode('latin-1'))
        self.upstream.requests.append(_requests.record(request, path))
        reply = self.upstream._next_reply((request.method or 'GET').upper(),
                                          path)
        if (reply.delay and await self._wait(reply.delay)) or self.gone:
            # the client went away, or the upstream stopped, while waiting
            self.detach().close()
            return False
        if reply.disconnect:
            _reset(self.detach())
            return False
        self._write(reply)
        return True

    def _write(self, reply: Reply) -> None:
        """Write the status, the headers and the body of `reply`."""
        self.set_status(reply.status)
        self.clear_header('Content-Type')
        for name, value in reply.headers:
            self.add_header(name, value)
        if self.request.method == 'HEAD':
            # the length a GET would get, without the body
            if reply.body and reply.header('content-length') is None:
                self.set_header('Content-Length', len(reply.body))
        elif reply.body:
            self.write(reply.body)

    async def _wait(self, delay: float) -> bool:
        """Wait `delay` seconds; :data:`True` when cut short."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self.waiter = waiter
        handle = loop.call_later(delay, resolve, waiter, False)
        self.upstream._waiters.add(waiter)
        try:
            return await waiter
        finally:
            handle.cancel()
            self.upstream._waiters.discard(waiter)

    def on_connection_close(self) -> None:
        self.gone = True
        if self.waiter is not None:
            resolve(self.waiter, True)


def _reset(stream: iostream.IOStream) -> None:
    """Close `stream` with a TCP reset rather than a FIN."""
    if stream.socket is not None:  # None: the client left first
        # SO_LINGER with a zero timeout: close() sends a reset
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 struct.pack('ii', 1, 0))
    stream.close()


def resolve(waiter: asyncio.Future[bool], value: bool) -> None:
    """Give `waiter` its result `value`, unless it has one."""
    if not waiter.done():
        waiter.set_result(value)
