"""A raw HTTP server on 127.0.0.1 that misbehaves at the byte level.

:class:`MisbehavingServer` listens on an ephemeral port, reads each
request whole (request line, headers and a ``Content-Length`` body) and
then hands an :class:`Exchange` to the test's script, which answers with
whatever bytes it likes: a reset, a close after the headers, a body
dripped slowly, a status line no parser accepts.  One request per
connection: once the script returns, the connection is closed (a FIN),
unless the script closed or reset it already.

Everything is bounded in time: reading a request, every write, every
wait of a helper, and :meth:`MisbehavingServer.stop`, which aborts every
connection still open and waits (a few seconds at most) for their tasks.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import struct
import time
import typing

#: Seconds the server waits for a whole request, or for one write to go
#: out, before it gives the connection up.
IO_TIMEOUT = 5.0

#: Seconds :meth:`MisbehavingServer.stop` waits for connection tasks.
STOP_TIMEOUT = 5.0

#: Seconds :meth:`Exchange.hold` waits at most, unless told.
HOLD = 10.0

#: The largest request head the server reads.
MAX_HEAD = 64 * 1024

#: What a client that gave up does to the server's reads and writes.
HUNG_UP = (ConnectionError, asyncio.IncompleteReadError)


@dataclasses.dataclass
class Request:
    """One request the server read."""
    #: ``1`` for the first connection the server accepted.
    connection: int
    method: str
    target: str
    version: str
    headers: typing.List[typing.Tuple[str, str]]
    body: bytes

    def header(self, name: str) -> typing.Optional[str]:
        """The first value of header `name` (any case), or :data:`None`."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class Exchange:
    """A request the server read, and the connection to answer it on.

    The helpers end quietly when the client has hung up already (a write
    that fails because the client closed is what a test of a timeout
    expects).
    """

    def __init__(self, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, request: Request) -> None:
        self.reader = reader
        self.writer = writer
        self.request = request
        #: The connection was closed or reset by the script.
        self.closed = False
        #: :func:`time.monotonic` when the client was seen hanging up,
        #: or :data:`None`.
        self.hung_up_at: typing.Optional[float] = None

    @property
    def hung_up(self) -> bool:
        """Whether the client was seen closing its side."""
        return self.hung_up_at is not None

    async def send(self, data: bytes) -> bool:
        """Write `data` as it is; :data:`False` when the client is gone."""
        if self.closed or self.hung_up:
            return False
        try:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), IO_TIMEOUT)
        except HUNG_UP:
            self._saw_hang_up()
            return False
        return True

    async def close(self) -> None:
        """Close the connection: a FIN after what was written."""
        if self.closed:
            return
        self.closed = True
        self.writer.close()
        with contextlib.suppress(*HUNG_UP, asyncio.TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), IO_TIMEOUT)

    async def reset(self) -> None:
        """Reset the connection: ``SO_LINGER`` 0 then close sends an RST,
        and whatever was still buffered is dropped."""
        if self.closed:
            return
        self.closed = True
        sock = self.writer.get_extra_info('socket')
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                            struct.pack('ii', 1, 0))
        self.writer.transport.abort()

    async def drip(self, data: bytes, size: int, interval: float) -> bool:
        """Write `data` `size` bytes at a time, `interval` seconds apart;
        :data:`False` when the client hung up before the end."""
        for start in range(0, len(data), max(size, 1)):
            if start and not await self.hold(interval):
                return False
            if not await self.send(data[start:start + size]):
                return False
        return True

    async def hold(self, seconds: float = HOLD) -> bool:
        """Send nothing for `seconds`, or until the client hangs up
        (whichever is first); :data:`False` when it hung up."""
        deadline = time.monotonic() + seconds
        # every read either returns data (the loop goes on) or ends at
        # the deadline; a misbehaving client cannot keep it going
        # longer, as each turn waits only what is left
        while not self.hung_up:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            try:
                data = await asyncio.wait_for(self.reader.read(65536), left)
            except asyncio.TimeoutError:
                return True
            except HUNG_UP:
                data = b''
            if not data:
                self._saw_hang_up()
        return False

    def _saw_hang_up(self) -> None:
        if self.hung_up_at is None:
            self.hung_up_at = time.monotonic()


#: What a test gives the server: called with each request the server read.
Script = typing.Callable[[Exchange], typing.Awaitable[None]]


def respond(data: bytes, *, then: str = 'close') -> Script:
    """A script that writes `data`, then closes the connection (`then`
    ``'close'``), resets it (``'reset'``) or keeps it open until the
    client hangs up (``'hold'``)."""
    if then not in ('close', 'reset', 'hold'):
        raise ValueError(f'then must be close, reset or hold, not {then!r}')

    async def script(exchange: Exchange) -> None:
        await exchange.send(data)
        if then == 'reset':
            await exchange.reset()
        elif then == 'hold':
            await exchange.hold()
        else:
            await exchange.close()

    return script


def drip(head: bytes, body: bytes, size: int, interval: float) -> Script:
    """A script that writes `head` at once, then `body` `size` bytes each
    `interval` seconds, then closes."""

    async def script(exchange: Exchange) -> None:
        if await exchange.send(head):
            await exchange.drip(body, size, interval)
        await exchange.close()

    return script


async def reset(exchange: Exchange) -> None:
    """Reset the connection before any byte of a response."""
    await exchange.reset()


async def close(exchange: Exchange) -> None:
    """Close the connection before any byte of a response."""
    await exchange.close()


async def silence(exchange: Exchange) -> None:
    """Send nothing until the client hangs up (:data:`HOLD` at most)."""
    await exchange.hold()


#: The scripts a server may be given by name.
FAULTS: typing.Dict[str, Script] = {
    'reset': reset,
    'close': close,
    'silence': silence,
}


def response(status: str = '200 OK', body: bytes = b'', *,
             headers: typing.Sequence[str] = (),
             length: typing.Optional[int] = None,
             version: str = 'HTTP/1.1') -> bytes:
    """The bytes of a response: `headers` as written (``'Name: value'``),
    then ``Content-Length`` (`length`, or the size of `body`; ``-1``
    leaves it out) and ``Connection: close``."""
    lines = [f'{version} {status}', *headers]
    size = len(body) if length is None else length
    if size >= 0:
        lines.append(f'Content-Length: {size}')
    lines.append('Connection: close')
    return ('\r\n'.join(lines) + '\r\n\r\n').encode('latin-1') + body


def refused_url() -> str:
    """A URL on 127.0.0.1 nothing listens on: a port bound, then closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    return f'http://127.0.0.1:{port}/'


class MisbehavingServer:
    """Run `script` (an :data:`Script`, or the name of one of
    :data:`FAULTS`) for each request read; count the connections and the
    requests.  ``async with MisbehavingServer(script) as url:`` starts and
    stops it."""

    def __init__(self, script: typing.Union[Script, str]) -> None:
        self.script: Script = (FAULTS[script] if isinstance(script, str)
                               else script)
        #: Connections accepted.
        self.connections = 0
        #: Every request read whole, in order.
        self.requests: typing.List[Request] = []
        #: Every exchange the script was run on, in order.
        self.exchanges: typing.List[Exchange] = []
        #: Exceptions a script raised (other than a client hanging up).
        self.errors: typing.List[BaseException] = []
        self.url = ''
        self._server: typing.Optional[asyncio.AbstractServer] = None
        self._tasks: typing.Dict[asyncio.Task[typing.Any],
                                 asyncio.StreamWriter] = {}

    @property
    def methods(self) -> typing.List[str]:
        """The method of every request read, in order."""
        return [request.method for request in self.requests]

    async def start(self) -> str:
        """Listen on an ephemeral port of 127.0.0.1; return the base URL."""
        self._server = await asyncio.start_server(
            self._serve, '127.0.0.1', 0, limit=MAX_HEAD)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f'http://127.0.0.1:{port}/'
        return self.url

    async def settle(self, timeout: float = 2.0) -> bool:
        """Wait `timeout` seconds at most for every connection to end by
        itself (the client hung up, or the script closed it); whether
        they all did."""
        tasks = list(self._tasks)
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        return not pending

    async def stop(self) -> None:
        """Stop listening, abort every connection still open and wait for
        their tasks (:data:`STOP_TIMEOUT` at most, then cancel them)."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        for writer in self._tasks.values():
            writer.transport.abort()
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=STOP_TIMEOUT)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), STOP_TIMEOUT)

    async def __aenter__(self) -> str:
        return await self.start()

    async def __aexit__(self, kind: typing.Optional[type],
                        error: typing.Optional[BaseException],
                        traceback: typing.Any) -> None:
        await self.stop()
        if kind is None and self.errors:
            raise AssertionError(
                f'the server script failed: {self.errors!r}')

    async def _serve(self, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        task = asyncio.current_task()
        assert task is not None
        self._tasks[task] = writer
        try:
            try:
                request = await asyncio.wait_for(
                    read_request(reader, number), IO_TIMEOUT)
            except (asyncio.TimeoutError, asyncio.LimitOverrunError,
                    ValueError):
                return  # no request this server can read came in time
            if request is None:
                return
            self.requests.append(request)
            exchange = Exchange(reader, writer, request)
            self.exchanges.append(exchange)
            await self.script(exchange)
        except HUNG_UP:
            pass  # the client gave up: what a test of a fault expects
        except Exception as error:  # a bug of the script: the test says so
            self.errors.append(error)
        finally:
            self._tasks.pop(task, None)
            writer.close()


async def read_request(reader: asyncio.StreamReader,
                       connection: int) -> typing.Optional[Request]:
    """Read one request (its head, and a body of ``Content-Length``
    bytes); :data:`None` when the client closes before a request.
    Raises :exc:`ValueError` for what is not an HTTP request."""
    try:
        head = await reader.readuntil(b'\r\n\r\n')
    except asyncio.IncompleteReadError as error:
        if not error.partial:
            return None
        raise
    first, *lines = head[:-4].decode('latin-1').split('\r\n')
    method, target, version = first.split(' ')
    headers = []
    for line in lines:
        name, colon, value = line.partition(':')
        if not colon:
            raise ValueError(f'not a header line: {line!r}')
        headers.append((name.strip(), value.strip()))
    request = Request(connection, method, target, version, headers, b'')
    length = request.header('Content-Length')
    if length:
        request.body = await reader.readexactly(int(length))
    return request
