"""Nothing is sent twice without a record of it (SPEC §6): a request that
may not be repeated is never resent by a transport behind the engine's
back."""
from __future__ import annotations

import asyncio
import typing

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from tornado import testing

from sprockets.mixins import http
from tests import support

TRIALS = 5


class DroppingServer:
    """A raw HTTP/1.1 server on 127.0.0.1: answers every request with
    keep-alive, except request number `drop` (2 unless told; or each of
    several numbers), which it reads fully and closes the connection of
    without answering."""

    def __init__(self, drop: typing.Union[int, typing.Collection[int],
                                          None] = 2) -> None:
        self.drop = {drop} if isinstance(drop, int) else set(drop or ())
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
                if len(self.methods) in self.drop:
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
                    drop: typing.Union[int, typing.Collection[int],
                                       None] = 2,
                    method: str = 'POST',
                    client: typing.Optional[http.HTTPClientMixin] = None
                    ) -> typing.Tuple[DroppingServer, typing.Any]:
        """A GET (which leaves a keep-alive connection to reuse), then a
        POST (or `method`)."""
        server = DroppingServer(drop)
        url = await server.start()
        try:
            client = client or support.RecordingClient()
            warm = await asyncio.wait_for(
                client.http_fetch(url, request_timeout=5), 10)
            self.assertTrue(warm.ok, warm.exceptions)
            response = await asyncio.wait_for(client.http_fetch(
                url, method=method, body=b'x' if method == 'POST' else None,
                request_timeout=5, request_headers=headers,
                retry_policy=policy), 10)
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

    @testing.gen_test(timeout=60)
    async def test_every_send_of_a_request_is_an_attempt_in_records(
            self) -> None:
        """A GET whose kept-alive connection dies after the server read it
        arrives as often as ``records`` say: libcurl sends it again by
        itself, on a new connection, and that send is an attempt of its
        own, after a record of the dead one (delay reason
        ``transport-resend``, no sleep); the other clients leave the
        retry to the engine."""
        for _ in range(TRIALS):
            client = Watching()
            with self.assertLogs('sprockets.mixins.http', 'WARNING') as logs:
                server, response = await self.trial(
                    http.RetryPolicy(), drop=2, method='GET', client=client)
            self.assertTrue(response.ok, response.exceptions)
            self.assertEqual(server.methods, ['GET'] * 3)
            self.assertEqual(response.attempts, 2)  # the warm GET is apart
            self.assertEqual([record.number for record in response.records],
                             [1, 2])
            dead, answer = response.records
            self.assertIsNotNone(dead.exception)
            self.assertEqual(answer.status, 200)
            self.assertEqual(client.seen, [1, 1, 2])  # every record, once
            if dead.delay_reason == http.DelayReason.TRANSPORT_RESEND:
                self.assertEqual(self.implementation, support.CURL)
                self.assertIsInstance(dead.exception, ConnectionResetError)
                self.assertIn('libcurl sent the request again',
                              str(dead.exception))
                self.assertEqual((dead.delay, client.delays), (0.0, []))
                self.assertIn('sent again at once by the transport',
                              '\n'.join(logs.output))
            else:  # the engine's own retry, after its backoff
                self.assertEqual(dead.delay_reason, http.DelayReason.BACKOFF)
                self.assertEqual(len(client.delays), 1)

    @testing.gen_test(timeout=60)
    async def test_a_resend_by_the_transport_counts_as_an_attempt(
            self) -> None:
        """max_http_attempts bounds every send, the transport's own
        included: with the connection dying under two sends in a row, two
        attempts are all the server sees."""
        server, response = await self.trial(
            http.RetryPolicy(max_attempts=2), drop={2, 3}, method='GET')
        self.assertFalse(response.ok)
        self.assertEqual(server.methods, ['GET'] * 3)
        self.assertEqual(response.attempts, 2)
        self.assertEqual(response.stop_reason,
                         http.StopReason.ATTEMPTS_EXHAUSTED)


    @testing.gen_test(timeout=60)
    async def test_no_resend_after_the_last_attempt(self) -> None:
        """The transport may not send again what max_http_attempts leaves
        no attempt for: with one attempt, a GET whose kept-alive
        connection dies arrives once, and fails with the dead send's
        error (libcurl resent it, unseen, before)."""
        for _ in range(TRIALS):
            server, response = await self.trial(
                http.RetryPolicy(max_attempts=1), drop=2, method='GET')
            self.assertEqual(server.methods, ['GET'] * 2)
            self.assertEqual(response.attempts, 1)
            self.assertFalse(response.ok)
            self.assertEqual(response.stop_reason,
                             http.StopReason.ATTEMPTS_EXHAUSTED)
            if self.implementation == support.CURL:
                self.assertIsInstance(response.exceptions[0],
                                      ConnectionResetError)


    @testing.gen_test(timeout=60)
    async def test_a_resend_by_the_transport_is_an_event_on_its_span(
            self) -> None:
        """The span of an attempt libcurl sent twice has a
        ``sprockets.transport_resend`` event and counts the resend; the
        engine's own retry is a span of its own."""
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        client = support.RecordingClient()
        client.TRACER_PROVIDER = provider  # type: ignore[attr-defined]
        try:
            _, response = await self.trial(
                http.RetryPolicy(), drop=2, method='GET', client=client)
        finally:
            provider.shutdown()
        self.assertTrue(response.ok, response.exceptions)
        spans = exporter.get_finished_spans()[1:]  # the warm GET's apart
        events = [event for span in spans for event in span.events
                  if event.name == 'sprockets.transport_resend']
        resent = (response.records[0].delay_reason
                  == http.DelayReason.TRANSPORT_RESEND)
        self.assertEqual(len(spans), 1 if resent else 2)
        self.assertEqual(len(events), 1 if resent else 0)
        last = spans[-1].attributes or {}
        self.assertEqual(last['http.request.resend_count'], 1)
        if resent:
            attributes = events[0].attributes or {}
            self.assertEqual(attributes['error.type'],
                             'ConnectionResetError')
            self.assertIn('libcurl sent the request again',
                          str(attributes['exception.message']))


class Watching(support.RecordingClient):
    """Records the number of each record its on_attempt hook is given."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: typing.List[int] = []

    def _http_req_on_attempt(self, response: typing.Any,
                             record: typing.Any) -> None:
        self.seen.append(record.number)
