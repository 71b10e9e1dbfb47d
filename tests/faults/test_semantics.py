"""Retry semantics under hostile answers (issue 8 §2), on every
AsyncHTTPClient implementation of :data:`support.IMPLEMENTATIONS`:

* every form of ``Retry-After`` on a 503 and a 429 (SPEC §3): the delay
  asked for and why, or the response returned when it asks too much;
* a redirect loop between two paths ends, bounded (SPEC §4);
* credentials never follow a redirect to another origin (SPEC §4);
* a body that cannot be decoded never raises, on an error status and on a
  retried one (SPEC §4, §2).

Each case runs in its own ``asyncio.run()`` against a
:class:`~sprockets.mixins.http.testing.FakeUpstream` on loopback; retries
go through :class:`support.RecordingClient`, which records the delays
instead of sleeping.  Cases the rest of the suite already runs on every
client are not repeated here: the 429 forms of ``tests/test_engine.py``
(``2``, ``1.5``, an IMF-fixdate ahead and in the past, ``-1``, garbage,
empty, over the request timeout), ``Retry-After: -5`` on a 503
(``tests/test_dropin.py``), undecodable bodies on a 200
(``tests/test_bodies.py``).
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import time
import typing
import urllib.parse

import pytest
from tornado import httpclient, httpserver, netutil, web

from sprockets.mixins import http
from sprockets.mixins.http.testing import FakeUpstream
from tests import support

#: Exact backoff (0.5 s before the first retry: no Retry-After used in
#: these tests asks for that), no budget in the way.
EXACT = http.RetryPolicy(jitter=None, retry_timeout=0.5, budget=None)

#: The bound of every scenario, in seconds: none needs a second.
BOUND = 10.0

Scenario = typing.Callable[[], typing.Awaitable[None]]


def run(scenario: Scenario) -> None:
    """Run `scenario` in a loop of its own, within :data:`BOUND`, then
    close the client it sent with (and its connections)."""

    async def bounded() -> None:
        try:
            await asyncio.wait_for(scenario(), BOUND)
        finally:
            httpclient.AsyncHTTPClient().close()

    asyncio.run(bounded())


def reasons(response: http.HTTPResponse) -> typing.List[typing.Any]:
    """The delay reason of every attempt, in order."""
    return [record.delay_reason for record in response.records]


# -- Retry-After -------------------------------------------------------------

def imf_fixdate(offset: float) -> str:
    """The IMF-fixdate `offset` seconds from now."""
    return email.utils.formatdate(time.time() + offset, usegmt=True)


# English names, whatever the locale (strftime's %A and %b follow it)
DAYS = ('Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday',
        'Sunday')
MONTHS = ('Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep',
          'Oct', 'Nov', 'Dec')


def rfc850_date(offset: float) -> str:
    """The obsolete RFC 850 date `offset` seconds from now:
    ``Sunday, 06-Nov-94 08:49:37 GMT``."""
    t = time.gmtime(time.time() + offset)
    return (f'{DAYS[t.tm_wday]}, {t.tm_mday:02d}-{MONTHS[t.tm_mon - 1]}-'
            f'{t.tm_year % 100:02d} {t.tm_hour:02d}:{t.tm_min:02d}:'
            f'{t.tm_sec:02d} GMT')


def asctime_date(offset: float) -> str:
    """The obsolete asctime() date `offset` seconds from now:
    ``Sun Nov  6 08:49:37 1994``."""
    t = time.gmtime(time.time() + offset)
    return (f'{DAYS[t.tm_wday][:3]} {MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} '
            f'{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {t.tm_year}')


class Wait(typing.NamedTuple):
    """A Retry-After that is honoured: the delay is in [low, high]."""
    low: float
    high: float
    reason: str = 'retry-after'


#: the backoff EXACT falls back on
BACKOFF = Wait(0.5, 0.5, 'backoff')
#: an HTTP-date `n` s ahead: dates have a one-second resolution
AHEAD = Wait(8.0, 10.0)
#: the server asks for more than the policy waits
TOO_LONG = None

#: id: (status, the Retry-After value (made when the case runs), the
#: policy's retry_after_max, what follows)
RETRY_AFTER: typing.Dict[str, typing.Tuple[
        int, typing.Callable[[], str], typing.Optional[float],
        typing.Optional[Wait]]] = {
    '503-delta-seconds': (503, lambda: '3', None, Wait(3.0, 3.0)),
    '503-imf-fixdate': (503, lambda: imf_fixdate(10), None, AHEAD),
    '503-rfc850': (503, lambda: rfc850_date(10), None, AHEAD),
    '503-asctime': (503, lambda: asctime_date(10), None, AHEAD),
    '503-past-imf-fixdate': (503, lambda: imf_fixdate(-3600), None,
                             Wait(0.0, 0.0)),
    '503-past-rfc850': (503, lambda: rfc850_date(-3600), None,
                        Wait(0.0, 0.0)),
    '503-past-asctime': (503, lambda: asctime_date(-3600), None,
                         Wait(0.0, 0.0)),
    '503-garbage': (503, lambda: 'soon', None, BACKOFF),
    # a fraction is tolerated (parse_retry_after's documented rule)
    '503-fraction': (503, lambda: '1.5', None, Wait(1.5, 1.5)),
    '503-empty': (503, lambda: '', None, BACKOFF),
    '503-zero': (503, lambda: '0', None, Wait(0.0, 0.0)),
    # the limit itself is waited: only more than it is too long
    '503-at-retry-after-max': (503, lambda: '2', 2.0, Wait(2.0, 2.0)),
    '503-over-retry-after-max': (503, lambda: '3', 2.0, TOO_LONG),
    '503-date-over-request-timeout': (503, lambda: imf_fixdate(3600),
                                      None, TOO_LONG),
    '429-rfc850': (429, lambda: rfc850_date(10), None, AHEAD),
    '429-asctime': (429, lambda: asctime_date(10), None, AHEAD),
    '429-past-asctime': (429, lambda: asctime_date(-3600), None,
                         Wait(0.0, 0.0)),
    '429-signed': (429, lambda: '-5', None, BACKOFF),
    '429-over-retry-after-max': (429, lambda: '3', 2.0, TOO_LONG),
}


@pytest.mark.parametrize('case', list(RETRY_AFTER))
@pytest.mark.parametrize('implementation', support.every_client())
def test_retry_after_forms(configured: str, case: str) -> None:
    """Each Retry-After form on a 503 and a 429: the delay the client was
    asked to sleep and its reason per attempt, or, above
    retry_after_max, the response returned at once."""
    status, value, limit, expected = RETRY_AFTER[case]
    policy = EXACT.replace(retry_after_max=limit)

    async def scenario() -> None:
        async with FakeUpstream() as upstream:
            sent = value()
            upstream.reply('GET', '/limited', status,
                           {'message': 'later'},
                           headers={'Retry-After': sent})
            upstream.reply('GET', '/limited', 200, {'ok': True})
            client = support.RecordingClient()
            response = await client.http_fetch(
                upstream.url('/limited'), retry_policy=policy)
            if expected is TOO_LONG:
                assert client.delays == []
                assert response.stop_reason == 'retry-after-too-long'
                assert (response.code, response.attempts) == (status, 1)
                assert response.ok is False
                assert response.body == 'later'
                assert response.headers is not None
                assert response.headers['Retry-After'] == sent
                assert reasons(response) == [None]
                upstream.assert_requested('GET', '/limited', times=1)
                return
            assert len(client.delays) == 1, client.delays
            assert expected.low <= client.delays[0] <= expected.high, (
                sent, client.delays)
            assert response.records[0].delay == client.delays[0]
            assert reasons(response) == [expected.reason, None]
            assert response.stop_reason == 'success'
            assert (response.code, response.attempts) == (200, 2)
            assert response.body == {'ok': True}
            upstream.assert_requested('GET', '/limited', times=2)

    run(scenario)


@pytest.mark.parametrize('implementation', support.every_client())
def test_retry_after_is_read_on_every_attempt(configured: str) -> None:
    """Each attempt's own Retry-After decides its delay: 2 s asked, then
    garbage (the backoff of retry 2), then the attempts are exhausted."""

    async def scenario() -> None:
        async with FakeUpstream() as upstream:
            for value in ('2', 'whenever', '1'):
                upstream.reply('GET', '/limited', 503,
                               headers={'Retry-After': value})
            client = support.RecordingClient()
            response = await client.http_fetch(upstream.url('/limited'),
                                               retry_policy=EXACT)
            assert client.delays == [2.0, 1.0]
            assert reasons(response) == ['retry-after', 'backoff', None]
            assert [record.delay for record in response.records] == [
                2.0, 1.0, 0.0]
            assert response.stop_reason == 'attempts-exhausted'
            assert (response.code, response.attempts) == (503, 3)
            upstream.assert_no_pending_replies()

    run(scenario)


# -- redirects ---------------------------------------------------------------

@pytest.mark.parametrize('max_redirects', [5, None, 1, 0])
@pytest.mark.parametrize('implementation', support.every_client())
def test_redirect_loop_between_two_paths(
        configured: str, max_redirects: typing.Optional[int]) -> None:
    """/a -> /b -> /a ... with max_redirects=5 (None: MAX_REDIRECTS, 5;
    1; 0) stops at once with too-many-redirects, not ok, after exactly
    max_redirects + 1 requests, none retried."""
    hops = http.HTTPClientMixin.MAX_REDIRECTS if max_redirects is None \
        else max_redirects

    async def scenario() -> None:
        async with FakeUpstream() as upstream:
            support.always(upstream, '/a', 302, headers={'Location': '/b'},
                           methods=['GET'])
            support.always(upstream, '/b', 302, headers={'Location': '/a'},
                           methods=['GET'])
            client = support.RecordingClient()
            started = time.monotonic()
            response = await client.http_fetch(
                upstream.url('/a'), follow_redirects=True,
                max_redirects=max_redirects, retry_policy=EXACT)
            assert time.monotonic() - started < 5
            assert response.stop_reason == 'too-many-redirects'
            assert response.ok is False
            assert (response.code, response.attempts) == (302, 1)
            assert client.delays == []
            assert len(upstream.requests) == hops + 1
            assert [request.path for request in upstream.requests] == [
                ('/a', '/b')[hop % 2] for hop in range(hops + 1)]

    run(scenario)


#: A first-origin request's secrets: its headers, the arguments of
#: http_fetch, and the userinfo of its URL; the other origin receives
#: none of them.  Basic auth on its own: it is an Authorization too.
CREDENTIALS: typing.Dict[str, typing.Tuple[
        typing.Dict[str, str], typing.Dict[str, typing.Any], str]] = {
    'headers': ({'Authorization': 'Bearer s3cret',
                 'Proxy-Authorization': 'Basic eDp5',
                 'Cookie': 'session=s3cret',
                 'X-Api-Key': 'KEY-s3cret',
                 'X-Client-Secret': 'also-s3cret',
                 'X-Session-Id': 'sid-s3cret'}, {}, ''),
    'basic-auth': ({'Cookie': 'session=s3cret',
                    'X-Api-Key': 'KEY-s3cret'},
                   {'auth_username': 'user', 'auth_password': 's3cret'},
                   ''),
    'url-userinfo': ({'X-Api-Key': 'KEY-s3cret'}, {}, 'user:s3cret@'),
}

#: the Authorization basic auth (or the userinfo) sends
BASIC = 'Basic ' + base64.b64encode(b'user:s3cret').decode('ascii')

SECRET_NAMES = ('Authorization', 'Proxy-Authorization', 'Cookie',
                'X-Api-Key', 'X-Client-Secret', 'X-Session-Id')


@contextlib.asynccontextmanager
async def on_localhost(upstream: FakeUpstream) -> typing.AsyncIterator[int]:
    """Serve `upstream` on every address ``localhost`` names here, on one
    ephemeral port, which it yields."""
    sockets = netutil.bind_sockets(0, 'localhost')
    server = httpserver.HTTPServer(web.Application(upstream.handlers()))
    server.add_sockets(sockets)
    try:
        yield sockets[0].getsockname()[1]
    finally:
        server.stop()
        await server.close_all_connections()


@pytest.mark.parametrize('target', ['other-port', 'same-port'])
@pytest.mark.parametrize('credentials', list(CREDENTIALS))
@pytest.mark.parametrize('implementation', support.every_client())
def test_credentials_stay_with_their_origin(configured: str,
                                            credentials: str,
                                            target: str) -> None:
    """A redirect from 127.0.0.1 to localhost (on another port, or on the
    same server: another origin all the same): the first request carries
    Authorization (or basic auth, from the arguments or the URL), Cookie
    and the key/secret-named headers, the redirected one none of them (an
    ordinary header does go along)."""
    headers, auth, userinfo = CREDENTIALS[credentials]

    async def scenario() -> None:
        async with contextlib.AsyncExitStack() as stack:
            upstream = await stack.enter_async_context(FakeUpstream())
            if target == 'same-port':
                other = upstream
                port = urllib.parse.urlsplit(upstream.url()).port
            else:
                other = FakeUpstream()
                port = await stack.enter_async_context(on_localhost(other))
            support.always(other, '/seen', 200, {'ok': True},
                           methods=['GET'])
            upstream.reply('GET', '/hop', 302, headers={
                'Location': f'http://localhost:{port}/seen'})
            url = upstream.url('/hop').replace('://', f'://{userinfo}', 1)
            response = await support.RecordingClient().http_fetch(
                url, follow_redirects=True,
                request_headers={**headers, 'X-Tenant': 'acme'},
                retry_policy=EXACT, **auth)
            assert response.ok, response.exceptions
            assert response.stop_reason == 'success'
        [first] = upstream.requests_for('GET', '/hop')
        [second] = other.requests_for('GET', '/seen')
        sent = dict(headers)
        if auth or userinfo:
            sent['Authorization'] = BASIC
        assert {name: first.headers.get(name) for name in sent} == sent
        assert first.headers.get('X-Tenant') == 'acme'
        assert {name: second.headers.get(name) for name in SECRET_NAMES} \
            == dict.fromkeys(SECRET_NAMES)
        assert second.headers.get('X-Tenant') == 'acme'
        assert second.headers.get('Host') == f'localhost:{port}'

    run(scenario)


# -- undecodable bodies ------------------------------------------------------

#: id: (Content-Type, a body its codec cannot decode)
UNDECODABLE: typing.Dict[str, typing.Tuple[str, bytes]] = {
    'json': ('application/json', b'{"message": "unterminated'),
    'json-suffix': ('application/problem+json; charset=utf-8',
                    b'{"message": \xff}'),
    'msgpack': ('application/msgpack', b'\xc1\xc1\xc1'),
    'msgpack-truncated': ('application/x-msgpack', b'\x93\x01'),
    'msgpack-extra-data': ('application/vnd.api+msgpack', b'\x01\x02'),
}


@pytest.mark.parametrize('status', [400, 503])
@pytest.mark.parametrize('body', list(UNDECODABLE))
@pytest.mark.parametrize('implementation', support.every_client())
def test_undecodable_error_bodies(configured: str, body: str,
                                  status: int) -> None:
    """An undecodable JSON or msgpack body on a 400 (returned at once)
    or a 503 (retried, then returned): nothing raises, body is the raw
    bytes (simplify_error_response finds no message in them),
    body_error is the codec's ValueError, ok is False."""
    content_type, data = UNDECODABLE[body]

    async def scenario() -> None:
        async with FakeUpstream() as upstream:
            support.always(upstream, '/broken', status, data,
                           content_type=content_type, methods=['GET'])
            client = support.RecordingClient()
            response = await client.http_fetch(upstream.url('/broken'),
                                               retry_policy=EXACT)
            assert response.exceptions == []
            assert response.code == status
            assert response.ok is False
            assert response.body == data
            assert isinstance(response.body, bytes)
            assert isinstance(response.body_error, ValueError)
            assert response.headers is not None
            assert response.headers['Content-Type'] == content_type
            assert response.links == []
            assert repr(response)
            if status == 503:
                assert response.stop_reason == 'attempts-exhausted'
                assert response.attempts == EXACT.max_attempts == 3
                assert client.delays == [0.5, 1.0]
                assert reasons(response) == ['backoff', 'backoff', None]
            else:
                assert response.stop_reason == 'not-retryable'
                assert response.attempts == 1
                assert client.delays == []
            assert len(upstream.requests) == response.attempts

    run(scenario)


@pytest.mark.parametrize('implementation', support.every_client())
def test_undecodable_body_after_retries_is_the_answer(
        configured: str) -> None:
    """503 twice, then a 200 whose JSON does not decode: the 200 is
    returned, ok, its raw bytes as body, and the earlier bodies do not
    leak into it."""

    async def scenario() -> None:
        async with FakeUpstream() as upstream:
            upstream.reply('GET', '/late', 503, b'\xc1',
                           content_type='application/msgpack', times=2)
            upstream.reply('GET', '/late', 200, b'{not json',
                           content_type='application/json')
            client = support.RecordingClient()
            response = await client.http_fetch(upstream.url('/late'),
                                               retry_policy=EXACT)
            assert response.stop_reason == 'success'
            assert (response.code, response.attempts) == (200, 3)
            assert response.ok is True
            assert response.body == b'{not json'
            assert isinstance(response.body_error, ValueError)
            assert [record.status for record in response.records] == [
                503, 503, 200]

    run(scenario)
