"""Redirects, URLs and methods: loops end, credentials stay at home."""
from __future__ import annotations

import typing

from tornado import httpserver, testing, web

from sprockets.mixins import http
from tests import support

SECRET_HEADERS = ('Authorization', 'Proxy-Authorization', 'Cookie')


class LoopHandler(web.RequestHandler):
    def get(self) -> None:
        self.redirect('/loop')


class HopHandler(web.RequestHandler):
    def get(self) -> None:
        self.redirect(self.application.settings['target'])


class SeenHandler(web.RequestHandler):
    """Records the headers it saw and answers 200."""

    def get(self) -> None:
        self.application.settings['seen'].append(
            {name: self.request.headers.get(name)
             for name in SECRET_HEADERS})
        self.write({'ok': True})


class RedirectCases(support.ServerTestCase):
    __test__ = False

    def setUp(self) -> None:
        super().setUp()
        # a second server on another port: another origin
        self.other_seen: typing.List[typing.Dict[str, typing.Any]] = []
        sock, port = testing.bind_unused_port()
        self.other = httpserver.HTTPServer(web.Application(
            [('/seen', SeenHandler)], seen=self.other_seen))
        self.other.add_sockets([sock])
        self.other_url = f'http://127.0.0.1:{port}/seen'

    def tearDown(self) -> None:
        self.other.stop()
        super().tearDown()

    def get_app(self) -> web.Application:
        self.seen: typing.List[typing.Dict[str, typing.Any]] = []
        return web.Application(
            [('/loop', LoopHandler), ('/hop', HopHandler),
             ('/seen', SeenHandler)],
            seen=self.seen, target='/seen')

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
        response = await support.RecordingClient().http_fetch(
            self.get_url('/hop'), follow_redirects=True,
            request_headers={'Authorization': 'Bearer s3cret'})
        self.assertTrue(response.ok)
        self.assertEqual(response.stop_reason, 'success')
        self.assertEqual(self.seen[0]['Authorization'], 'Bearer s3cret')

    @testing.gen_test
    async def test_credentials_not_sent_to_another_origin(self) -> None:
        """Authorization, Proxy-Authorization and Cookie stay behind."""
        self._app.settings['target'] = self.other_url
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
        self._app.settings['target'] = self.other_url
        response = await support.RecordingClient().http_fetch(
            self.get_url('/hop'), follow_redirects=True,
            auth_username='user', auth_password='s3cret')
        self.assertTrue(response.ok)
        self.assertIsNone(self.other_seen[0]['Authorization'])

    @testing.gen_test
    async def test_redirect_not_followed_by_default(self) -> None:
        """follow_redirects defaults to False: the 302 is the answer."""
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


class TestRedirectsSimple(RedirectCases):
    __test__ = True


class TestRedirectsCurl(RedirectCases):
    __test__ = True
    implementation = support.CURL


class MethodHandler(web.RequestHandler):
    SUPPORTED_METHODS = ('GET', 'PUT')

    def put(self) -> None:
        self.write({'method': self.request.method})


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


class TestMethodSimple(MethodCases):
    __test__ = True


class TestMethodCurl(MethodCases):
    __test__ = True
    implementation = support.CURL
