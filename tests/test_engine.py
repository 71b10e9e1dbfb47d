"""The retry engine end to end, against a real local server, on both
AsyncHTTPClient implementations.

Delays are recorded by :class:`support.RecordingClient`, never slept; the
only real waits are request timeouts a few tenths of a second long.
"""
from __future__ import annotations

import email.utils
import logging
import random
import time
import typing
import uuid

import pytest
from tornado import testing, web

from sprockets.mixins import http
from sprockets.mixins.http.testing import FakeUpstream
from tests import support

LOGGER_NAME = 'sprockets.mixins.http'


def fixed(value: float) -> typing.Callable[[], float]:
    """Return a jitter source that always answers `value`."""
    return lambda: value


#: The 2.x schedule: exact backoff, no budget in the way.
EXACT = http.RetryPolicy(jitter=None, budget=None)

#: The body of every 200.
OK = {'status': 'ok'}


def http_date(offset: float) -> str:
    """Return the HTTP-date `offset` s from now, for a Retry-After."""
    return email.utils.formatdate(time.time() + offset, usegmt=True)


class HookedClient(support.RecordingClient):
    """Records the metrics hooks' calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: typing.List[typing.Tuple[str, typing.Any]] = []

    def _http_req_on_attempt(self, response: http.HTTPResponse,
                             record: http.AttemptRecord) -> None:
        self.calls.append(('attempt', (record.number, record.status,
                                       record.delay_reason)))

    def _http_req_on_complete(self, response: http.HTTPResponse) -> None:
        self.calls.append(('complete', (len(response),
                                        response.stop_reason)))


def unused_port() -> int:
    """Return a loopback port that nothing listens on."""
    sock, port = testing.bind_unused_port()
    sock.close()
    return port


@support.on_every_client('TestEngine')
class EngineCases(support.ServerTestCase):
    """The engine's behaviours; run once per client by the subclasses."""

    __test__ = False  # run through on_every_client

    def get_app(self) -> web.Application:
        self.upstream = upstream = FakeUpstream()
        support.always(upstream, '/ok', 200, OK)
        for status in (404, 503):
            support.always(upstream, f'/{status}', status,
                           {'message': f'always {status}'})
        # `status` to the first `failures` requests, then 200
        for path, status, failures in [('/flaky-503', 503, 1),
                                       ('/flaky-503-twice', 503, 2),
                                       ('/flaky-502', 502, 1),
                                       ('/flaky-404', 404, 1)]:
            support.flaky(upstream, path, OK, status=status,
                          failures=failures,
                          failure_body={'message': 'try again'})
        # 429 with a Retry-After to the first request, then 200
        for path, retry_after in [('/limited/seconds', '2'),
                                  ('/limited/fraction', '1.5'),
                                  ('/limited/date', http_date(10)),
                                  ('/limited/past-date', http_date(-3600)),
                                  ('/limited/negative', '-1'),
                                  ('/limited/garbage', 'soon, please'),
                                  ('/limited/empty', ''),
                                  ('/limited/too-long', '60')]:
            upstream.reply('GET', path, 429,
                           headers={'Retry-After': retry_after})
            upstream.reply('GET', path, 200, OK, times=support.ALWAYS)
        # held open until the client gives up
        support.always(upstream, '/hang', 200, OK, delay=support.NEVER)
        return web.Application(upstream.handlers())

    def tearDown(self) -> None:
        # end the replies still held open
        self.io_loop.run_sync(self.upstream.stop)
        super().tearDown()

    def hits(self, path: str) -> int:
        """How many requests the server received for `path`."""
        return len(self.upstream.requests_for(path=path))

    def sent_headers(self, name: str) -> typing.List[typing.Optional[str]]:
        """Header `name` of every request the server received."""
        return [request.headers.get(name)
                for request in self.upstream.requests]

    def assert_records(self, response: http.HTTPResponse,
                       expected: typing.List[typing.Tuple[
                           typing.Any, float, typing.Optional[str]]]
                       ) -> None:
        """Compare (status or exception class, delay, reason) per attempt."""
        seen = [(record.number,
                 record.status if record.status is not None
                 else type(record.exception),
                 record.delay, record.delay_reason)
                for record in response.records]
        self.assertEqual(seen, [(number, *row) for number, row
                                in enumerate(expected, 1)])

    # -- Retry-After ---------------------------------------------------------

    @testing.gen_test
    async def test_retry_after_seconds(self) -> None:
        """Retry-After: 2 is slept instead of the backoff."""
        client = support.RecordingClient()
        response = await client.http_fetch(self.get_url('/limited/seconds'),
                                           retry_policy=EXACT)
        self.assertEqual(client.delays, [2.0])
        self.assertEqual(response.code, 200)
        self.assertEqual(response.stop_reason, 'success')
        self.assert_records(response, [(429, 2.0, 'retry-after'),
                                       (200, 0.0, None)])

    @testing.gen_test
    async def test_retry_after_fraction(self) -> None:
        """A fractional Retry-After is tolerated."""
        client = support.RecordingClient()
        response = await client.http_fetch(
            self.get_url('/limited/fraction'), retry_policy=EXACT)
        self.assertEqual(client.delays, [1.5])
        self.assertEqual(response.records[0].delay_reason, 'retry-after')
        self.assertTrue(response.ok)

    @testing.gen_test
    async def test_retry_after_http_date(self) -> None:
        """An HTTP-date ten seconds ahead means a wait of about ten."""
        client = support.RecordingClient()
        response = await client.http_fetch(self.get_url('/limited/date'),
                                           retry_policy=EXACT)
        self.assertEqual(len(client.delays), 1)
        # the date has a one-second resolution
        self.assertGreater(client.delays[0], 8.0)
        self.assertLessEqual(client.delays[0], 10.0)
        self.assertEqual(response.records[0].delay_reason, 'retry-after')
        self.assertTrue(response.ok)

    @testing.gen_test
    async def test_retry_after_past_date(self) -> None:
        """An HTTP-date in the past means retry at once."""
        client = support.RecordingClient()
        response = await client.http_fetch(
            self.get_url('/limited/past-date'), retry_policy=EXACT)
        self.assertEqual(client.delays, [0.0])
        self.assertEqual(response.records[0].delay_reason, 'retry-after')
        self.assertTrue(response.ok)

    @testing.gen_test
    async def test_retry_after_negative(self) -> None:
        """A negative Retry-After is not delta-seconds (RFC 9110: digits
        only): it is ignored and the backoff is used."""
        client = support.RecordingClient()
        response = await client.http_fetch(
            self.get_url('/limited/negative'), retry_policy=EXACT)
        self.assertEqual(client.delays, [3.0])
        self.assertEqual(response.records[0].delay_reason, 'backoff')
        self.assertTrue(response.ok)

    @testing.gen_test
    async def test_retry_after_garbage(self) -> None:
        """An unparseable Retry-After is ignored, once logged at DEBUG."""
        client = support.RecordingClient()
        with self.assertLogs(LOGGER_NAME, logging.DEBUG) as logs:
            response = await client.http_fetch(
                self.get_url('/limited/garbage'), retry_policy=EXACT)
        self.assertEqual(client.delays, [3.0])
        self.assert_records(response, [(429, 3.0, 'backoff'),
                                       (200, 0.0, None)])
        ignored = [(record.levelno, record.getMessage())
                   for record in logs.records
                   if 'Retry-After' in record.getMessage()]
        self.assertEqual(ignored, [
            (logging.DEBUG,
             "Ignoring an unparseable Retry-After: 'soon, please'")])

    @testing.gen_test
    async def test_retry_after_empty(self) -> None:
        """An empty Retry-After is ignored: the backoff is used."""
        client = support.RecordingClient()
        response = await client.http_fetch(self.get_url('/limited/empty'),
                                           retry_policy=EXACT)
        self.assertEqual(client.delays, [3.0])
        self.assertEqual(response.records[0].delay_reason, 'backoff')
        self.assertTrue(response.ok)

    @testing.gen_test
    async def test_retry_after_over_the_cap(self) -> None:
        """A Retry-After over the request timeout returns the 429 now."""
        client = support.RecordingClient()
        response = await client.http_fetch(
            self.get_url('/limited/too-long'), retry_policy=EXACT)
        self.assertEqual(client.delays, [])
        self.assertEqual(response.code, 429)
        self.assertEqual(len(response), 1)
        self.assertEqual(response.stop_reason, 'retry-after-too-long')
        self.assertEqual(response.headers['Retry-After'], '60')
        self.assert_records(response, [(429, 0.0, None)])

    @testing.gen_test
    async def test_retry_after_max_raises_the_cap(self) -> None:
        """retry_after_max lets a caller wait longer than the timeout."""
        client = support.RecordingClient()
        response = await client.http_fetch(
            self.get_url('/limited/too-long'),
            retry_policy=EXACT.replace(retry_after_max=60))
        self.assertEqual(client.delays, [60.0])
        self.assertTrue(response.ok)

    @testing.gen_test
    async def test_request_timeout_is_the_default_cap(self) -> None:
        """With no retry_after_max, the call's request_timeout is the cap."""
        client = support.RecordingClient()
        response = await client.http_fetch(
            self.get_url('/limited/seconds'), request_timeout=1.5,
            retry_policy=EXACT)
        self.assertEqual(client.delays, [])
        self.assertEqual(response.stop_reason, 'retry-after-too-long')

    # -- backoff -------------------------------------------------------------

    @testing.gen_test
    async def test_default_backoff_is_full_jitter(self) -> None:
        """The default policy sleeps uniformly in [0, 3] then [0, 6]."""
        state = random.getstate()
        self.addCleanup(random.setstate, state)  # leave no seed behind
        random.seed(20240101)
        expected = [3.0 * random.random(), 6.0 * random.random()]
        random.seed(20240101)
        client = support.RecordingClient()
        response = await client.http_fetch(self.get_url('/503'))
        self.assertEqual(client.delays, expected)
        for delay, cap in zip(client.delays, (3.0, 6.0)):
            self.assertGreaterEqual(delay, 0.0)
            self.assertLessEqual(delay, cap)
        self.assertEqual(len(response), 3)

    @testing.gen_test
    async def test_full_jitter_scales_the_cap(self) -> None:
        """Full jitter draws a fraction of the exponential cap."""
        client = support.RecordingClient()
        await client.http_fetch(
            self.get_url('/503'),
            retry_policy=http.RetryPolicy(random=fixed(0.5), budget=None))
        self.assertEqual(client.delays, [1.5, 3.0])

    @testing.gen_test
    async def test_no_jitter_is_the_two_x_schedule(self) -> None:
        """jitter=None sleeps exactly 3 then 6 seconds over 3 attempts."""
        client = support.RecordingClient()
        response = await client.http_fetch(self.get_url('/503'),
                                           retry_policy=EXACT)
        self.assertEqual(client.delays, [3.0, 6.0])
        self.assertEqual(response.stop_reason, 'attempts-exhausted')
        self.assert_records(response, [(503, 3.0, 'backoff'),
                                       (503, 6.0, 'backoff'),
                                       (503, 0.0, None)])

    # -- methods -------------------------------------------------------------

    @testing.gen_test
    async def test_post_on_502_is_not_retried(self) -> None:
        """A POST that got a 502 may have taken effect: no retry."""
        client = support.RecordingClient()
        response = await client.http_fetch(
            self.get_url('/flaky-502'), method='POST', body={'a': 1},
            retry_policy=EXACT)
        self.assertEqual(response.code, 502)
        self.assertEqual(len(response), 1)
        self.assertEqual(response.stop_reason, 'unsafe-method')
        self.assertEqual(client.delays, [])

    @testing.gen_test
    async def test_get_on_502_is_retried(self) -> None:
        """A GET that got a 502 is retried."""
        client = support.RecordingClient()
        response = await client.http_fetch(self.get_url('/flaky-502'),
                                           retry_policy=EXACT)
        self.assertEqual(response.code, 200)
        self.assertEqual(len(response), 2)

    @testing.gen_test
    async def test_post_on_503_is_retried(self) -> None:
        """A 503 says the POST was not processed: it is retried."""
        client = support.RecordingClient()
        response = await client.http_fetch(
            self.get_url('/flaky-503'), method='POST', body={'a': 1},
            retry_policy=EXACT)
        self.assertEqual(response.code, 200)
        self.assertEqual(len(response), 2)
        self.assertEqual(client.delays, [3.0])
        self.assertEqual(response.stop_reason, 'success')

    @testing.gen_test
    async def test_post_with_idempotency_key_on_502_is_retried(self) -> None:
        """A POST carrying an Idempotency-Key is retried on a 502."""
        client = support.RecordingClient()
        response = await client.http_fetch(
            self.get_url('/flaky-502'), method='POST', body={'a': 1},
            request_headers={'idempotency-key': 'abc'}, retry_policy=EXACT)
        self.assertEqual(response.code, 200)
        self.assertEqual(len(response), 2)
        self.assertEqual(self.sent_headers('Idempotency-Key'),
                         ['abc', 'abc'])

    @testing.gen_test
    async def test_retry_non_idempotent(self) -> None:
        """retry_non_idempotent=True retries a POST on a 502."""
        client = support.RecordingClient()
        response = await client.http_fetch(
            self.get_url('/flaky-502'), method='POST', body={'a': 1},
            retry_policy=EXACT.replace(retry_non_idempotent=True))
        self.assertEqual(response.code, 200)
        self.assertEqual(len(response), 2)

    @testing.gen_test
    async def test_idempotency_key_is_added_to_post(self) -> None:
        """idempotency_key=True sends one fresh key on every POST attempt."""
        client = support.RecordingClient()
        headers = {'X-Caller': 'me'}
        response = await client.http_fetch(
            self.get_url('/flaky-503-twice'), method='POST', body={'a': 1},
            request_headers=headers,
            retry_policy=EXACT.replace(idempotency_key=True))
        self.assertEqual(len(response), 3)
        keys = self.sent_headers('Idempotency-Key')
        self.assertEqual(len(keys), 3)
        self.assertEqual(len(set(keys)), 1)
        self.assertEqual(str(uuid.UUID(str(keys[0]))), keys[0])
        self.assertEqual(headers, {'X-Caller': 'me'})

    @testing.gen_test
    async def test_idempotency_keys_differ_per_call(self) -> None:
        """Each call gets its own Idempotency-Key."""
        client = support.RecordingClient()
        policy = EXACT.replace(idempotency_key=True)
        for _ in range(2):
            await client.http_fetch(self.get_url('/ok'), method='POST',
                                    body={'a': 1}, retry_policy=policy)
        keys = self.sent_headers('Idempotency-Key')
        self.assertEqual(len(set(keys)), 2)
        self.assertNotIn(None, keys)

    @testing.gen_test
    async def test_idempotency_key_keeps_the_callers(self) -> None:
        """A POST that has an Idempotency-Key keeps it."""
        client = support.RecordingClient()
        await client.http_fetch(
            self.get_url('/ok'), method='POST', body={'a': 1},
            request_headers={'Idempotency-Key': 'mine'},
            retry_policy=EXACT.replace(idempotency_key=True))
        self.assertEqual(self.sent_headers('Idempotency-Key'), ['mine'])

    @testing.gen_test
    async def test_idempotency_key_is_not_added_to_get(self) -> None:
        """A GET is idempotent already and gets no Idempotency-Key."""
        client = support.RecordingClient()
        response = await client.http_fetch(
            self.get_url('/flaky-503'),
            retry_policy=EXACT.replace(idempotency_key=True))
        self.assertEqual(len(response), 2)
        self.assertEqual(self.sent_headers('Idempotency-Key'),
                         [None, None])

    # -- exceptions ----------------------------------------------------------

    @testing.gen_test
    async def test_connection_refused_is_retried_with_backoff(self) -> None:
        """A refused connection is retried after the backoff delays."""
        client = support.RecordingClient()
        response = await client.http_fetch(
            f'http://127.0.0.1:{unused_port()}/', retry_policy=EXACT)
        self.assertEqual(client.delays, [3.0, 6.0])
        self.assertEqual(response.code, 599)
        self.assertFalse(response.ok)
        self.assertEqual(len(response.exceptions), 3)
        self.assertEqual(response.stop_reason, 'attempts-exhausted')
        self.assertEqual([record.delay_reason for record in response.records],
                         ['backoff', 'backoff', None])
        for record in response.records:
            self.assertIsNone(record.status)
            self.assertIsNotNone(record.exception)

    @testing.gen_test
    async def test_connection_refused_post_is_retried(self) -> None:
        """A refused POST never reached the server: it is retried."""
        client = support.RecordingClient()
        response = await client.http_fetch(
            f'http://127.0.0.1:{unused_port()}/', method='POST',
            body={'a': 1}, retry_policy=EXACT.replace(max_attempts=2))
        self.assertEqual(client.delays, [3.0])
        self.assertEqual(len(response), 2)
        self.assertEqual(response.stop_reason, 'attempts-exhausted')

    @testing.gen_test
    async def test_timeout_on_get_is_retried(self) -> None:
        """A GET that timed out is retried after the backoff."""
        client = support.RecordingClient()
        response = await client.http_fetch(
            self.get_url('/hang'), request_timeout=0.2,
            retry_policy=EXACT.replace(max_attempts=2))
        self.assertEqual(client.delays, [3.0])
        self.assertEqual(len(response.exceptions), 2)
        self.assertEqual(self.hits('/hang'), 2)
        self.assertEqual(response.stop_reason, 'attempts-exhausted')
        self.assertEqual(response.code, 599)

    @testing.gen_test
    async def test_timeout_on_post_is_not_retried(self) -> None:
        """A POST that timed out may have taken effect: no retry."""
        client = support.RecordingClient()
        response = await client.http_fetch(
            self.get_url('/hang'), method='POST', body={'a': 1},
            request_timeout=0.2, retry_policy=EXACT)
        self.assertEqual(client.delays, [])
        self.assertEqual(len(response.exceptions), 1)
        self.assertEqual(response.stop_reason, 'unsafe-method')

    # -- deadline ------------------------------------------------------------

    @testing.gen_test
    async def test_deadline_shorter_than_the_delay(self) -> None:
        """A deadline the next delay would cross stops the call at once."""
        client = support.RecordingClient()
        response = await client.http_fetch(self.get_url('/503'),
                                           deadline=2, retry_policy=EXACT)
        self.assertEqual(client.delays, [])
        self.assertEqual(len(response), 1)
        self.assertEqual(response.code, 503)
        self.assertEqual(response.stop_reason, 'deadline')

    @testing.gen_test
    async def test_no_sleep_crosses_the_deadline(self) -> None:
        """Sleeps stop before the deadline; timeouts shrink to what is left.
        """
        client = support.VirtualClockClient()
        response = await client.http_fetch(
            self.get_url('/503'), deadline=10,
            retry_policy=EXACT.replace(max_attempts=5))
        self.assertEqual(client.delays, [3.0, 6.0])
        self.assertEqual(response.stop_reason, 'deadline')
        self.assertEqual(
            [raw.request.request_timeout for raw in response.history],
            [10.0, 7.0, 1.0])
        self.assertEqual(
            [raw.request.connect_timeout for raw in response.history],
            [10.0, 7.0, 1.0])
        self.assertEqual([record.started for record in response.records],
                         [0.0, 3.0, 9.0])

    @testing.gen_test
    async def test_policy_deadline(self) -> None:
        """A deadline on the policy bounds the call too."""
        client = support.VirtualClockClient()
        response = await client.http_fetch(
            self.get_url('/503'), retry_policy=EXACT.replace(
                deadline=5, max_attempts=5))
        self.assertEqual(client.delays, [3.0])
        self.assertEqual(response.stop_reason, 'deadline')

    @testing.gen_test
    async def test_deadline_shrinks_a_real_timeout(self) -> None:
        """With deadline 0.5, a request_timeout of 20 becomes 0.5 s."""
        client = support.RecordingClient()
        started = time.monotonic()
        response = await client.http_fetch(
            self.get_url('/hang'), request_timeout=20, deadline=0.5,
            retry_policy=EXACT)
        elapsed = time.monotonic() - started
        self.assertGreaterEqual(elapsed, 0.4)
        self.assertLess(elapsed, 5.0)
        self.assertEqual(len(response.exceptions), 1)
        self.assertEqual(response.stop_reason, 'deadline')
        self.assertEqual(client.delays, [])

    # -- budget --------------------------------------------------------------

    @testing.gen_test
    async def test_budget_exhaustion_and_recovery(self) -> None:
        """An exhausted budget stops retrying until its window has passed."""
        budget = http.RetryBudget(min_retries_per_sec=0.1, ttl=10)
        policy = http.RetryPolicy(jitter=None, budget=budget)
        client = support.VirtualClockClient()
        url = self.get_url('/503')
        first = await client.http_fetch(url, retry_policy=policy)
        self.assertEqual(len(first), 2)
        self.assertEqual(first.stop_reason, 'budget-exhausted')
        for _ in range(3):
            response = await client.http_fetch(url, retry_policy=policy)
            self.assertEqual(len(response), 1)
            self.assertEqual(response.stop_reason, 'budget-exhausted')
            self.assertEqual(response.code, 503)
        client.now += 10
        recovered = await client.http_fetch(url, retry_policy=policy)
        self.assertEqual(len(recovered), 2)
        self.assertEqual(recovered.stop_reason, 'budget-exhausted')
        self.assertEqual(client.delays, [3.0, 3.0])

    @testing.gen_test
    async def test_budget_deposits_earn_retries(self) -> None:
        """Five calls deposit one retry into an exhausted budget."""
        budget = http.RetryBudget(min_retries_per_sec=0, ttl=10)
        policy = http.RetryPolicy(jitter=None, budget=budget)
        client = support.VirtualClockClient()
        counts = [len(await client.http_fetch(self.get_url('/503'),
                                              retry_policy=policy))
                  for _ in range(5)]
        self.assertEqual(counts, [1, 1, 1, 1, 2])

    @testing.gen_test
    async def test_budget_none_disables_it(self) -> None:
        """budget=None never stops a retry, and spends no shared budget."""
        client = support.VirtualClockClient()
        url = self.get_url('/503')
        for _ in range(5):
            response = await client.http_fetch(url, retry_policy=EXACT)
            self.assertEqual(len(response), 3)
            self.assertEqual(response.stop_reason, 'attempts-exhausted')
        key = ('http', '127.0.0.1', self.get_http_port())
        self.assertEqual(http.DEFAULT_BUDGET.balance(key, client.now), 100.0)

    @testing.gen_test
    async def test_default_budget_is_shared(self) -> None:
        """By default retries are drawn from DEFAULT_BUDGET."""
        client = support.VirtualClockClient()
        response = await client.http_fetch(
            self.get_url('/503'), retry_policy=http.RetryPolicy(jitter=None))
        self.assertEqual(len(response), 3)
        key = ('http', '127.0.0.1', self.get_http_port())
        self.assertEqual(http.DEFAULT_BUDGET.balance(key, client.now),
                         pytest.approx(98.2))

    # -- stop reasons and records --------------------------------------------

    @testing.gen_test
    async def test_success(self) -> None:
        """A 200 on the first attempt stops with success."""
        client = support.RecordingClient()
        response = await client.http_fetch(self.get_url('/ok'))
        self.assertEqual(response.stop_reason, 'success')
        self.assert_records(response, [(200, 0.0, None)])

    @testing.gen_test
    async def test_not_retryable(self) -> None:
        """A 404 is returned at once with not-retryable."""
        client = support.RecordingClient()
        response = await client.http_fetch(self.get_url('/404'))
        self.assertEqual(response.stop_reason, 'not-retryable')
        self.assertEqual(response.body, 'always 404')
        self.assert_records(response, [(404, 0.0, None)])

    @testing.gen_test
    async def test_dont_retry_stops_at_the_first_503(self) -> None:
        """dont_retry={503} returns the first 503 with dont-retry."""
        client = support.RecordingClient()
        response = await client.http_fetch(self.get_url('/503'),
                                           dont_retry={503})
        self.assertEqual(response.stop_reason, 'dont-retry')
        self.assertEqual(len(response), 1)
        self.assertEqual(client.delays, [])

    @testing.gen_test
    async def test_retry_statuses_are_configurable(self) -> None:
        """A 404 listed in retry_statuses is retried."""
        client = support.RecordingClient()
        response = await client.http_fetch(
            self.get_url('/flaky-404'),
            retry_policy=EXACT.replace(retry_statuses={404}))
        self.assertEqual(response.code, 200)
        self.assert_records(response, [(404, 3.0, 'backoff'),
                                       (200, 0.0, None)])

    @testing.gen_test
    async def test_records_mix_exceptions_and_statuses(self) -> None:
        """Records keep the order of attempts, timeouts and responses."""
        client = support.RecordingClient()
        response = await client.http_fetch(self.get_url('/flaky-503-twice'),
                                           retry_policy=EXACT)
        self.assert_records(response, [(503, 3.0, 'backoff'),
                                       (503, 6.0, 'backoff'),
                                       (200, 0.0, None)])
        self.assertEqual([record.exception for record in response.records],
                         [None, None, None])
        for record in response.records:
            self.assertGreaterEqual(record.duration, 0.0)

    # -- where the policy comes from -----------------------------------------

    @testing.gen_test
    async def test_retry_policy_class_attribute(self) -> None:
        """RETRY_POLICY on the class is the policy of every call."""

        class Configured(support.RecordingClient):
            RETRY_POLICY = http.RetryPolicy(max_attempts=2, jitter=None,
                                            retry_timeout=1, budget=None)

        client = Configured()
        response = await client.http_fetch(self.get_url('/503'))
        self.assertEqual(len(response), 2)
        self.assertEqual(client.delays, [1.0])

    @testing.gen_test
    async def test_retry_policy_argument_replaces_the_class_one(self) -> None:
        """retry_policy= wins over RETRY_POLICY."""

        class Configured(support.RecordingClient):
            RETRY_POLICY = http.RetryPolicy(max_attempts=2, budget=None)

        client = Configured()
        response = await client.http_fetch(
            self.get_url('/503'), retry_policy=EXACT.replace(max_attempts=4))
        self.assertEqual(len(response), 4)
        self.assertEqual(client.delays, [3.0, 6.0, 12.0])

    @testing.gen_test
    async def test_class_attributes_build_the_policy(self) -> None:
        """Without a policy, MAX_HTTP_RETRIES and DEFAULT_RETRY_TIMEOUT
        are the attempts and backoff base."""

        class Configured(support.RecordingClient):
            MAX_HTTP_RETRIES = 4
            DEFAULT_RETRY_TIMEOUT = 0.5

        client = Configured()
        response = await client.http_fetch(self.get_url('/503'))
        self.assertEqual(len(response), 4)
        for delay, cap in zip(client.delays, (0.5, 1.0, 2.0)):
            self.assertLessEqual(delay, cap)

    @testing.gen_test
    async def test_call_arguments_override_the_policy(self) -> None:
        """max_http_attempts and retry_timeout override the policy's."""
        client = support.RecordingClient()
        response = await client.http_fetch(
            self.get_url('/503'), max_http_attempts=2, retry_timeout=0.25,
            retry_policy=EXACT.replace(max_attempts=5))
        self.assertEqual(len(response), 2)
        self.assertEqual(client.delays, [0.25])

    @testing.gen_test
    async def test_dont_retry_adds_to_the_policy(self) -> None:
        """dont_retry on the call joins the policy's dont_retry."""
        client = support.RecordingClient()
        policy = EXACT.replace(dont_retry={502})
        response = await client.http_fetch(self.get_url('/503'),
                                           dont_retry=[503],
                                           retry_policy=policy)
        self.assertEqual(response.stop_reason, 'dont-retry')
        self.assertEqual(policy.dont_retry, frozenset({502}))

    @testing.gen_test
    async def test_deadline_argument_overrides_the_policy(self) -> None:
        """deadline= on the call replaces the policy's deadline."""
        client = support.VirtualClockClient()
        response = await client.http_fetch(
            self.get_url('/503'), deadline=2,
            retry_policy=EXACT.replace(deadline=100))
        self.assertEqual(response.stop_reason, 'deadline')
        self.assertEqual(client.delays, [])

    # -- hooks ---------------------------------------------------------------

    @testing.gen_test
    async def test_hooks(self) -> None:
        """on_attempt runs once per attempt, on_complete once per call."""
        client = HookedClient()
        await client.http_fetch(self.get_url('/flaky-503-twice'),
                                retry_policy=EXACT)
        self.assertEqual(client.calls, [
            ('attempt', (1, 503, 'backoff')),
            ('attempt', (2, 503, 'backoff')),
            ('attempt', (3, 200, None)),
            ('complete', (3, 'success')),
        ])

    @testing.gen_test
    async def test_hooks_on_a_single_attempt(self) -> None:
        """A call that stops at once still calls both hooks, once."""
        client = HookedClient()
        await client.http_fetch(self.get_url('/404'))
        self.assertEqual(client.calls, [
            ('attempt', (1, 404, None)),
            ('complete', (1, 'not-retryable')),
        ])
