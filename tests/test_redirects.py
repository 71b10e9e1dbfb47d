"""Redirects, URLs and methods: loops end, credentials stay at home."""
from __future__ import annotations

import typing

from tornado import httpserver, testing, web

from sprockets.mixins import http
from sprockets.mixins.http.testing import FakeUpstream
from tests import support

SECRET_HEADERS = ('Authorization', 'Proxy-Authorization', 'Cookie')


def secret_headers(
        upstream: FakeUpstream) -> typing.List[typing.Dict[str, typing.Any]]:
    """The secret headers of each request `upstream` received at /seen."""
    return [{name: request.headers.get(name) for name in SECRET_HEADERS}
            for request in upstream.requests_for('GET', '/seen')]


def origin() -> FakeUpstream:
    """An upstream whose /seen answers 200."""
    upstream = FakeUpstream()
    upstream.reply('GET', '/seen', 200, {'ok': True}, times=support.ALWAYS)
    return upstream


@support.on_every_client('TestRedirects')
class RedirectCases(support.ServerTestCase):
    __test__ = False

    def setUp(self) -> None:
        super().setUp()
        # a second server on another port: another origin
        self.other = origin()
        sock, port = testing.bind_unused_port()
        self.other_server = httpserver.HTTPServer(
            web.Application(self.other.handlers()))
        self.other_server.add_sockets([sock])
        self.other_url = f'http://127.0.0.1:{port}/seen'

    def tearDown(self) -> None:
        self.other_server.stop()
        super().tearDown()

    def get_app(self) -> web.Application:
        self.upstream = origin()
        # a redirect loop: 302 to itself, as often as it is asked
        self.upstream.reply('GET', '/loop', 302,
                            headers={'Location': '/loop'},
                            times=support.ALWAYS)
        return web.Application(self.upstream.handlers())

    @property
    def seen(self) -> typing.List[typing.Dict[str, typing.Any]]:
        """The secret headers this origin's /seen received."""
        return secret_headers(self.upstream)

    @property
    def other_seen(self) -> typing.List[typing.Dict[str, typing.Any]]:
        """The secret headers the other origin's /seen received."""
        return secret_headers(self.other)

    def hop_to(self, target: str) -> None:
        """Make /hop answer a 302 to `target`."""
        self.upstream.reply('GET', '/hop', 302, headers={'Location': target})

    @testing.gen_test
    async def test_loop_ends_with_too_many_redirects(self) -> None:
        """A redirect loop stops after one attempt, not ok."""
        response = await support.RecordingClient().http_fetch(
            self.get_url('/loop'), follow_redirects=True, max_redirects=3)
        self.assertEqual(response.stop_reason, 'too-many-redirects')
        self.assertFalse(response.ok)
        self.assertEqual(len(response), 1)

    @testing.gen_test
    async def test_same_origin_redirect_is_followed(self) -> None:
        """A redirect to the same origin keeps the credentials."""
        self.hop_to('/seen')
        response = await support.RecordingClient().http_fetch(
            self.get_url('/hop'), follow_redirects=True,
            request_headers={'Authorization': 'Bearer s3cret'})
        self.assertTrue(response.ok)
        self.assertEqual(response.stop_reason, 'success')
        self.assertEqual(self.seen[0]['Authorization'], 'Bearer s3cret')

    @testing.gen_test
    async def test_credentials_not_sent_to_another_origin(self) -> None:
        """Authorization, Proxy-Authorization and Cookie stay behind."""
        self.hop_to(self.other_url)
        response = await support.RecordingClient().http_fetch(
            self.get_url('/hop'), follow_redirects=True,
            request_headers={'Authorization': 'Bearer s3cret',
                             'Proxy-Authorization': 'Basic eDp5',
                             'Cookie': 'session=s3cret'})
        self.assertTrue(response.ok)
        self.assertEqual(self.other_seen, [dict.fromkeys(SECRET_HEADERS)])

    @testing.gen_test
    async def test_basic_auth_not_sent_to_another_origin(self) -> None:
        """auth_username/auth_password are not replayed to another host."""
        self.hop_to(self.other_url)
        response = await support.RecordingClient().http_fetch(
            self.get_url('/hop'), follow_redirects=True,
            auth_username='user', auth_password='s3cret')
        self.assertTrue(response.ok)
        self.assertIsNone(self.other_seen[0]['Authorization'])

    @testing.gen_test
    async def test_redirect_not_followed_by_default(self) -> None:
        """follow_redirects defaults to False: the 302 is the answer."""
        self.hop_to('/seen')
        response = await support.RecordingClient().http_fetch(
            self.get_url('/hop'))
        self.assertEqual(response.code, 302)
        self.assertTrue(response.ok)
        self.assertEqual(response.stop_reason, 'success')
        self.assertEqual(self.seen, [])

    @testing.gen_test
    async def test_invalid_urls_are_recorded_not_retried(self) -> None:
        """An unusable URL gives one recorded ValueError, never a retry."""
        for url, problem in [('http://', 'no host'),
                             ('ftp://host/', "unsupported scheme 'ftp'"),
                             ('http://exa mple.com/', 'white space'),
                             ('localhost/path', 'no scheme'),
                             ('http://[::1/', 'Invalid IPv6 URL')]:
            with self.subTest(url=url):
                client = support.RecordingClient()
                response = await client.http_fetch(url)
                self.assertEqual(response.stop_reason, 'not-retryable')
                self.assertEqual(response.code, 599)
                self.assertEqual(len(response.exceptions), 1)
                self.assertIsInstance(response.exceptions[0], ValueError)
                self.assertIn(problem, str(response.exceptions[0]))
                self.assertEqual(client.delays, [])

    @testing.gen_test
    async def test_invalid_url_password_not_in_error(self) -> None:
        """The recorded error of a bad URL does not carry its password."""
        response = await http.HTTPClientMixin().http_fetch(
            'htp://user:s3cret@host/')
        self.assertNotIn('s3cret', str(response.exceptions[0]))


class MethodHandler(web.RequestHandler):
    """Echoes the method as sent: FakeUpstream matches and records methods
    upper-cased, so it cannot tell 'put' from 'PUT'."""

    SUPPORTED_METHODS = ('GET', 'PUT')

    def put(self) -> None:
        self.write({'method': self.request.method})


@support.on_every_client('TestMethod')
class MethodCases(support.ServerTestCase):
    __test__ = False
    handlers: typing.ClassVar[typing.List[typing.Any]] = [
        ('/method', MethodHandler)]

    @testing.gen_test
    async def test_lower_case_method_is_sent_upper_cased(self) -> None:
        """method='put' is sent as PUT instead of failing in tornado."""
        response = await support.RecordingClient().http_fetch(
            self.get_url('/method'), method='put', body={'a': 1},
            content_type='application/json')
        self.assertEqual(response.body, {'method': 'PUT'})
