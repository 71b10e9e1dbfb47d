"""Nothing is sent twice without a record of it (SPEC §6): a request that
may not be repeated is never resent by a transport behind the engine's
back."""
from __future__ import annotations

import asyncio
import typing

from tornado import testing

from sprockets.mixins import http
from tests import support

TRIALS = 5


class DroppingServer:
    """A raw HTTP/1.1 server on 127.0.0.1: answers every request with
    keep-alive, except request number `drop` (2 unless told), which it
    reads fully and closes the connection of without answering."""

    def __init__(self, drop: typing.Optional[int] = 2) -> None:
        self.drop = drop
        self.methods: typing.List[str] = []
        self.connections = 0
        self.server: typing.Optional[asyncio.AbstractServer] = None
        self.open: typing.Dict[asyncio.StreamWriter,
                               asyncio.Future[typing.Any]] = {}

    async def start(self) -> str:
        self.server = await asyncio.start_server(
            self.serve, '127.0.0.1', 0)
        port = self.server.sockets[0].getsockname()[1]
        return f'http://127.0.0.1:{port}/'

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.open):
            writer.close()  # the reader sees the end, the task ends
        if self.open:
            await asyncio.wait_for(
                asyncio.gather(*self.open.values()), 5)
        await self.server.wait_closed()

    async def serve(self, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.open[writer] = task
        try:
            while True:
                head = await reader.readuntil(b'\r\n\r\n')
                lines = head.decode('latin-1').split('\r\n')
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(':')
                    if name.strip().lower() == 'content-length':
                        length = int(value.strip())
                if length:
                    await reader.readexactly(length)
                self.methods.append(lines[0].split(' ', 1)[0])
                if len(self.methods) == self.drop:
                    break  # read it all, then close without a word
                writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n'
                             b'Connection: keep-alive\r\n\r\nok')
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open.pop(writer, None)
            writer.close()


@support.on_every_client('TestResends')
class ResendCases(support.ServerTestCase):
    __test__ = False

    async def trial(self, policy: http.RetryPolicy,
                    headers: typing.Optional[typing.Dict[str, str]] = None,
                    drop: typing.Optional[int] = 2
                    ) -> typing.Tuple[DroppingServer, typing.Any]:
        """A GET (which leaves a keep-alive connection to reuse), then a
        POST."""
        server = DroppingServer(drop)
        url = await server.start()
        try:
            client = support.RecordingClient()
            warm = await asyncio.wait_for(
                client.http_fetch(url, request_timeout=5), 10)
            self.assertTrue(warm.ok, warm.exceptions)
            response = await asyncio.wait_for(client.http_fetch(
                url, method='POST', body=b'x', request_timeout=5,
                request_headers=headers, retry_policy=policy), 10)
        finally:
            await server.stop()
        return server, response

    @testing.gen_test(timeout=60)
    async def test_a_post_is_never_resent_behind_the_engines_back(
            self) -> None:
        """A POST whose connection dies after the server read it arrives
        once, as the one attempt recorded (curl resent it on a new
        connection when it reused a keep-alive one)."""
        duplicates = 0
        for _ in range(TRIALS):
            server, response = await self.trial(http.RetryPolicy())
            posts = server.methods.count('POST')
            self.assertEqual(response.attempts, 1)
            self.assertFalse(response.ok)
            duplicates += posts - response.attempts
        self.assertEqual(duplicates, 0)

    @testing.gen_test(timeout=60)
    async def test_only_a_request_that_may_not_be_repeated_connects_afresh(
            self) -> None:
        """A POST that may be resent (an Idempotency-Key, or a policy that
        retries any method) keeps reusing the keep-alive connection."""
        reuses = self.implementation != support.SIMPLE  # simple never reuses
        for policy, headers, connections in [
                (http.RetryPolicy(), None, 2),
                (http.RetryPolicy(), {'Idempotency-Key': 'k-1'},
                 1 if reuses else 2),
                (http.RetryPolicy(retry_non_idempotent=True), None,
                 1 if reuses else 2)]:
            server, response = await self.trial(policy, headers, drop=None)
            self.assertTrue(response.ok, response.exceptions)
            self.assertEqual(server.methods, ['GET', 'POST'])
            self.assertEqual(server.connections, connections,
                             (policy, headers))
