"""The 2.x public surface still holds: names, defaults, signature, and the
test patterns 2.x users wrote against the package."""
from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import io
import pathlib
import subprocess
import sys
import typing
from unittest import mock

import pytest
from ietfparse import datastructures
from tornado import httpclient, httputil, testing, web

from sprockets.mixins import http
from sprockets.mixins.http.testing import FakeUpstream, RecordedRequest
from tests import support

PACKAGE_ROOT = pathlib.Path(__file__).resolve().parent.parent

# -- pure: names, metadata, defaults, signature -----------------------------

TWO_X_NAMES = [
    'AVAILABLE_CONTENT_TYPES', 'CONTENT_TYPE_JSON', 'CONTENT_TYPE_MSGPACK',
    'DEFAULT_USER_AGENT', 'HTTPClientMixin', 'HTTPResponse', 'LOGGER',
    '__version__',
]


@pytest.mark.parametrize('name', TWO_X_NAMES)
def test_two_x_name_imports(name: str) -> None:
    """Every public name of 2.x imports from the package and is listed."""
    namespace: typing.Dict[str, typing.Any] = {}
    exec(f'from sprockets.mixins.http import {name}', namespace)
    assert namespace[name] is getattr(http, name)
    assert name in http.__all__


def test_content_type_constants() -> None:
    """The content type constants keep their 2.x values and types."""
    assert isinstance(http.CONTENT_TYPE_JSON, datastructures.ContentType)
    assert str(http.CONTENT_TYPE_JSON) == 'application/json'
    assert str(http.CONTENT_TYPE_MSGPACK) == 'application/msgpack'
    assert http.AVAILABLE_CONTENT_TYPES == [http.CONTENT_TYPE_JSON,
                                            http.CONTENT_TYPE_MSGPACK]


def test_logger_name() -> None:
    """LOGGER is the one package logger, sprockets.mixins.http."""
    assert http.LOGGER.name == 'sprockets.mixins.http'


def test_default_user_agent() -> None:
    """DEFAULT_USER_AGENT is sprockets.mixins.http/<version>."""
    expected = f'sprockets.mixins.http/{http.__version__}'
    assert expected == http.DEFAULT_USER_AGENT


def test_version_matches_metadata() -> None:
    """__version__ is the installed distribution's version."""
    assert http.__version__ == importlib.metadata.version(
        'sprockets.mixins.http')


def _isort_key(name: str) -> typing.Tuple[int, str]:
    """ruff's RUF022 order: CONSTANTS, then Classes, then the rest."""
    if name.isupper():
        return 0, name
    if name[:1].isupper():
        return 1, name
    return 2, name


def test_all_is_sorted() -> None:
    """__all__ is in the isort-style order that ruff enforces, no repeats."""
    assert http.__all__ == sorted(http.__all__, key=_isort_key)
    assert len(set(http.__all__)) == len(http.__all__)


def _is_api(value: typing.Any) -> bool:
    """Whether a module attribute is something defined for users: not a
    module, not the ``annotations`` future flag, not a typing alias."""
    return not (inspect.ismodule(value)
                or type(value).__module__ in ('__future__', 'typing'))


def test_all_is_complete() -> None:
    """Every public class, function and constant of the package is in
    __all__, and every name in __all__ exists."""
    public = {name for name, value in vars(http).items()
              if not name.startswith('_') and _is_api(value)}
    assert public - set(http.__all__) == set()
    assert [name for name in http.__all__ if not hasattr(http, name)] == []


def test_namespace_packages() -> None:
    """sprockets and sprockets.mixins are implicit namespace packages, and
    sprockets.mixins.http imports beside sprockets.mixins.mediatype."""
    assert not (PACKAGE_ROOT / 'sprockets' / '__init__.py').exists()
    assert not (PACKAGE_ROOT / 'sprockets' / 'mixins' / '__init__.py'
                ).exists()
    code = ('import sprockets, sprockets.mixins, sprockets.mixins.http, '
            'sprockets.mixins.mediatype\n'
            'print(sprockets.__file__, sprockets.mixins.__file__, '
            'sprockets.mixins.http.__name__, '
            'sprockets.mixins.mediatype.__name__)')
    result = subprocess.run([sys.executable, '-c', code], check=True,
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == [
        'None', 'None', 'sprockets.mixins.http', 'sprockets.mixins.mediatype']


@pytest.mark.parametrize('name, value', [
    ('DEFAULT_CONNECT_TIMEOUT', 20), ('DEFAULT_REQUEST_TIMEOUT', 20),
    ('DEFAULT_RETRY_TIMEOUT', 3), ('MAX_HTTP_RETRIES', 3),
    ('MAX_REDIRECTS', 5), ('simplify_error_response', True),
])
def test_class_attribute_default(name: str, value: typing.Any) -> None:
    """The 2.x class attributes keep their documented defaults."""
    assert getattr(http.HTTPClientMixin, name) == value


TWO_X_SIGNATURE = [
    ('url', inspect.Parameter.empty), ('method', 'GET'),
    ('request_headers', None), ('body', None),
    ('content_type', http.CONTENT_TYPE_MSGPACK),
    ('follow_redirects', False), ('max_redirects', None),
    ('connect_timeout', None), ('request_timeout', None),
    ('retry_timeout', None), ('max_http_attempts', None),
    ('auth_username', None), ('auth_password', None), ('user_agent', None),
    ('validate_cert', True), ('allow_nonstandard_methods', False),
    ('dont_retry', None),
]


def test_http_fetch_signature() -> None:
    """http_fetch keeps the 2.x parameters, order and defaults; anything
    new is keyword-only, and **kwargs comes last."""
    parameters = list(inspect.signature(
        http.HTTPClientMixin.http_fetch).parameters.values())
    assert parameters[0].name == 'self'
    positional = parameters[1:len(TWO_X_SIGNATURE) + 1]
    assert [(p.name, p.default) for p in positional] == TWO_X_SIGNATURE
    assert {p.kind for p in positional} == {
        inspect.Parameter.POSITIONAL_OR_KEYWORD}
    rest = parameters[len(TWO_X_SIGNATURE) + 1:]
    assert rest[-1].name == 'kwargs'
    assert rest[-1].kind is inspect.Parameter.VAR_KEYWORD
    assert {p.kind for p in rest[:-1]} <= {inspect.Parameter.KEYWORD_ONLY}


def test_constructible_without_arguments() -> None:
    """HTTPClientMixin() needs no arguments and is usable outside a
    handler."""
    client = http.HTTPClientMixin()
    assert client.MAX_HTTP_RETRIES == 3


class Base:
    def __init__(self, first: int, *, second: int) -> None:
        self.received = (first, second)


class Cooperative:
    def __init__(self, *args: typing.Any, **kwargs: typing.Any) -> None:
        self.cooperative = True
        super().__init__(*args, **kwargs)


class MixinFirst(http.HTTPClientMixin, Base):
    pass


class MixinBetween(Cooperative, http.HTTPClientMixin, Base):
    pass


@pytest.mark.parametrize('cls', [MixinFirst, MixinBetween])
def test_cooperative_init(cls: typing.Any) -> None:
    """The mixin passes positional and keyword arguments on to the next
    class in the MRO."""
    instance = cls(1, second=2)
    assert instance.received == (1, 2)


# -- integration: on both clients -------------------------------------------

class RecordingClient(support.RecordingClient):
    """Records delays; the class attributes are changed per test."""


class TwoXClient(http.HTTPClientMixin):
    """A client with 2.x's exact backoff schedule and the default sleep,
    as a 2.x user's test suite would have it."""

    RETRY_POLICY = http.RetryPolicy(jitter=None)


class Address:
    """A URL object that is not a str, as yarl or furl give."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __str__(self) -> str:
        return self.url


@support.on_every_client('TestCompat')
class CompatCases(support.ServerTestCase):
    """2.x behaviour through a real server."""

    __test__ = False  # run through on_every_client

    def get_app(self) -> web.Application:
        self.upstream = FakeUpstream()
        support.always(self.upstream, '/record', 200, {'recorded': True},
                       headers={'X-Recorded': 'yes'})
        support.always(self.upstream, '/unavailable', 503,
                       {'message': 'try later'})
        support.always(self.upstream, '/missing', 404,
                       {'message': 'no such thing', 'code': 'E404'})
        # /hop/1 redirects to /hop/0, and /hop/0 to /record
        support.always(self.upstream, '/hop/1', 302,
                       headers={'Location': '/hop/0'})
        support.always(self.upstream, '/hop/0', 302,
                       headers={'Location': '/record'})
        return web.Application(self.upstream.handlers())

    def received(self, name: str) -> typing.List[RecordedRequest]:
        """The requests that reached /`name` (or below it), in order."""
        return [request for request in self.upstream.requests
                if request.path == f'/{name}'
                or request.path.startswith(f'/{name}/')]

    # class attributes -------------------------------------------------------

    @testing.gen_test
    async def test_max_http_retries_on_class(self) -> None:
        """MAX_HTTP_RETRIES = 2 on a subclass makes 2 attempts."""
        client_class = type('Client', (RecordingClient,),
                            {'MAX_HTTP_RETRIES': 2})
        response = await client_class().http_fetch(
            self.get_url('/unavailable'))
        self.assertEqual(len(self.received('unavailable')), 2)
        self.assertEqual(response.attempts, 2)
        self.assertEqual(response.stop_reason, 'attempts-exhausted')

    @testing.gen_test
    async def test_max_http_retries_on_instance(self) -> None:
        """MAX_HTTP_RETRIES = 1 on an instance makes 1 attempt, and the
        class is left alone."""
        client = RecordingClient()
        client.MAX_HTTP_RETRIES = 1
        response = await client.http_fetch(self.get_url('/unavailable'))
        self.assertEqual(len(self.received('unavailable')), 1)
        self.assertEqual(response.attempts, 1)
        self.assertEqual(RecordingClient.MAX_HTTP_RETRIES, 3)

    @testing.gen_test
    async def test_retry_timeout_on_instance(self) -> None:
        """DEFAULT_RETRY_TIMEOUT on an instance is the backoff base: 0
        gives retries without delay (the default would jitter up to 3 s
        and 6 s)."""
        client = RecordingClient()
        client.DEFAULT_RETRY_TIMEOUT = 0
        await client.http_fetch(self.get_url('/unavailable'))
        self.assertEqual(client.delays, [0.0, 0.0])

    @testing.gen_test
    async def test_timeouts_on_class_and_instance(self) -> None:
        """DEFAULT_CONNECT_TIMEOUT and DEFAULT_REQUEST_TIMEOUT on the class
        and on an instance reach the tornado request; a call argument
        beats both."""
        client_class = type('Client', (RecordingClient,), {
            'DEFAULT_CONNECT_TIMEOUT': 7, 'DEFAULT_REQUEST_TIMEOUT': 8})
        client = client_class()
        sent: typing.List[httpclient.HTTPRequest] = []
        original = httpclient.AsyncHTTPClient.fetch

        def spy(this: httpclient.AsyncHTTPClient,
                request: httpclient.HTTPRequest,
                **kwargs: typing.Any) -> typing.Any:
            sent.append(request)
            return original(this, request, **kwargs)

        with mock.patch.object(httpclient.AsyncHTTPClient, 'fetch', spy):
            await client.http_fetch(self.get_url('/record'))
            client.DEFAULT_CONNECT_TIMEOUT = 5
            client.DEFAULT_REQUEST_TIMEOUT = 6
            await client.http_fetch(self.get_url('/record'))
            await client.http_fetch(self.get_url('/record'),
                                    connect_timeout=1, request_timeout=2)
        self.assertEqual(
            [(r.connect_timeout, r.request_timeout) for r in sent],
            [(7, 8), (5, 6), (1, 2)])
        self.assertEqual(len(self.received('record')), 3)

    @testing.gen_test
    async def test_max_redirects_on_class_and_instance(self) -> None:
        """MAX_REDIRECTS = 1 on the class stops a two-hop chain short of its
        target; 2 on an instance reaches it."""
        client_class = type('Client', (RecordingClient,),
                            {'MAX_REDIRECTS': 1, 'MAX_HTTP_RETRIES': 1})
        short = await client_class().http_fetch(
            self.get_url('/hop/1'), follow_redirects=True)
        self.assertEqual([r.path for r in self.received('hop')],
                         ['/hop/1', '/hop/0'])
        self.assertEqual(self.received('record'), [])
        self.assertNotEqual(short.code, 200)
        client = client_class()
        client.MAX_REDIRECTS = 2
        response = await client.http_fetch(self.get_url('/hop/1'),
                                           follow_redirects=True)
        self.assertEqual(response.code, 200)
        self.assertEqual(len(self.received('hop')), 4)
        self.assertEqual(len(self.received('record')), 1)

    @testing.gen_test
    async def test_simplify_error_response_false_on_class(self) -> None:
        """simplify_error_response = False on the class gives the whole
        error document; the default gives its message."""
        plain = type('Client', (RecordingClient,),
                     {'simplify_error_response': False})
        response = await plain().http_fetch(self.get_url('/missing'))
        self.assertEqual(response.body,
                         {'message': 'no such thing', 'code': 'E404'})
        simplified = await RecordingClient().http_fetch(
            self.get_url('/missing'))
        self.assertEqual(simplified.body, 'no such thing')

    @testing.gen_test
    async def test_simplify_error_response_false_on_instance(self) -> None:
        """simplify_error_response = False on an instance is honoured."""
        client = RecordingClient()
        client.simplify_error_response = False
        response = await client.http_fetch(self.get_url('/missing'))
        self.assertEqual(response.body,
                         {'message': 'no such thing', 'code': 'E404'})

    # arguments ---------------------------------------------------------------

    @testing.gen_test
    async def test_raise_error_is_refused_before_sending(self) -> None:
        """raise_error raises RuntimeError and nothing reaches the
        server."""
        for value in (True, False):
            with self.assertRaisesRegex(RuntimeError, 'raise_error'):
                await RecordingClient().http_fetch(
                    self.get_url('/record'), raise_error=value)
        self.assertEqual(self.received('record'), [])

    @testing.gen_test
    async def test_url_object_with_str(self) -> None:
        """A URL given as any object with __str__ is fetched."""
        response = await RecordingClient().http_fetch(
            Address(self.get_url('/record?from=object')))
        self.assertTrue(response.ok)
        self.assertEqual(support.uri(self.received('record')[0]),
                         '/record?from=object')

    @testing.gen_test
    async def test_extra_kwargs_reach_tornado(self) -> None:
        """Keyword arguments that http_fetch does not name go to tornado:
        header_callback sees the header lines and if_modified_since
        becomes a header."""
        lines: typing.List[str] = []
        response = await RecordingClient().http_fetch(
            self.get_url('/record'), header_callback=lines.append,
            if_modified_since=1700000000.0)
        self.assertTrue(response.ok)
        self.assertIn('X-Recorded: yes\r\n', lines)
        self.assertEqual(
            self.received('record')[0].headers['If-Modified-Since'],
            'Tue, 14 Nov 2023 22:13:20 GMT')

    # 2.x users' test patterns ------------------------------------------------

    @testing.gen_test
    async def test_patch_module_asyncio_with_async_sleep(self) -> None:
        """Patching sprockets.mixins.http.asyncio with an AsyncMock sleep
        skips the real sleeps and sees the 2.x delays."""
        with mock.patch('sprockets.mixins.http.asyncio') as patched:
            patched.sleep = mock.AsyncMock()
            response = await TwoXClient().http_fetch(
                self.get_url('/unavailable'))
        self.assertEqual(response.attempts, 3)
        self.assertEqual(patched.sleep.await_args_list,
                         [mock.call(3.0), mock.call(6.0)])

    @testing.gen_test
    async def test_patch_module_asyncio_with_plain_mock(self) -> None:
        """Patching the module's asyncio with a MagicMock, whose sleep
        returns something that cannot be awaited, also skips the sleeps."""
        with mock.patch.object(http, 'asyncio') as patched:
            response = await TwoXClient().http_fetch(
                self.get_url('/unavailable'))
        self.assertEqual(response.attempts, 3)
        self.assertEqual(patched.sleep.call_args_list,
                         [mock.call(3.0), mock.call(6.0)])

    def _canned(self, request: httpclient.HTTPRequest,
                **kwargs: typing.Any) -> httpclient.HTTPResponse:
        return httpclient.HTTPResponse(
            request, 200, headers=httputil.HTTPHeaders(
                {'Content-Type': 'application/json'}),
            buffer=io.BytesIO(b'{"canned": true}'),
            effective_url=request.url)

    @testing.gen_test
    async def test_patch_fetch_returning_a_future(self) -> None:
        """Patching AsyncHTTPClient.fetch on the class with a mock that
        returns a Future replaces the transport: the server sees
        nothing."""
        built: typing.List[httpclient.HTTPResponse] = []

        def fetch(request: httpclient.HTTPRequest,
                  **kwargs: typing.Any) -> asyncio.Future[typing.Any]:
            future = asyncio.get_running_loop().create_future()
            built.append(self._canned(request))
            future.set_result(built[-1])
            return future

        with mock.patch.object(httpclient.AsyncHTTPClient, 'fetch',
                               side_effect=fetch) as patched:
            response = await RecordingClient().http_fetch(
                self.get_url('/record'))
        self.assertEqual(patched.call_count, 1)
        self.assertEqual(patched.call_args.args[0].url,
                         self.get_url('/record'))
        self.assertEqual(response.body, {'canned': True})
        self.assertIs(response.raw, built[0])
        self.assertEqual(self.received('record'), [])

    @testing.gen_test
    async def test_patch_fetch_with_async_mock(self) -> None:
        """Patching AsyncHTTPClient.fetch with an AsyncMock works the same
        way."""
        with mock.patch.object(httpclient.AsyncHTTPClient, 'fetch',
                               new_callable=mock.AsyncMock,
                               side_effect=self._canned) as patched:
            response = await RecordingClient().http_fetch(
                self.get_url('/record'))
        self.assertEqual(patched.await_count, 1)
        self.assertTrue(response.ok)
        self.assertEqual(response.body, {'canned': True})
        self.assertEqual(self.received('record'), [])
