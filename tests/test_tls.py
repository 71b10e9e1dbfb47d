"""_tls: one SSL context per TLS configuration, the one simple_httpclient
would make, shared by every request of that configuration."""
from __future__ import annotations

import os
import pathlib
import shutil
import ssl
import types
import typing

import pytest
from tornado import (
    httpclient,
    httpserver,
    log,
    simple_httpclient,
    testing,
    web,
)

from sprockets.mixins import http
from sprockets.mixins.http import _tls

TLS = pathlib.Path(__file__).resolve().parent / 'tls'
CERT, KEY = str(TLS / 'cert.pem'), str(TLS / 'key.pem')
URL = 'https://127.0.0.1/'
SYSTEM_BUNDLE = ssl.get_default_verify_paths().cafile


@pytest.fixture(autouse=True)
def fresh_cache() -> typing.Iterator[None]:
    _tls.clear()
    yield
    _tls.clear()


@pytest.fixture
def files(tmp_path: pathlib.Path) -> types.SimpleNamespace:
    """Two copies of the test certificate and of its key, at paths of
    their own: the same bytes, two configurations."""
    names = {}
    for name, source in (('ca_a', CERT), ('ca_b', CERT), ('cert_a', CERT),
                         ('cert_b', CERT), ('key_a', KEY), ('key_b', KEY)):
        path = tmp_path / f'{name}.pem'
        shutil.copyfile(source, path)
        names[name] = str(path)
    return types.SimpleNamespace(**names)


def tornados(url: str, **options: typing.Any) -> ssl.SSLContext:
    """The context simple_httpclient itself makes for a request."""
    request = httpclient.HTTPRequest(url, **options)
    proxy = httpclient._RequestProxy(
        request, dict(httpclient.HTTPRequest._DEFAULTS))
    made = simple_httpclient._HTTPConnection._get_ssl_options(
        types.SimpleNamespace(request=proxy),  # type: ignore[arg-type]
        'https')
    assert isinstance(made, ssl.SSLContext)
    return made


@pytest.mark.parametrize('url, options, defaults', [
    ('http://127.0.0.1/', {'validate_cert': False}, None),
    ('HTTP://127.0.0.1/', {'ca_certs': CERT}, None),
    (URL, {}, None),
    (URL, {'validate_cert': True, 'ca_certs': None}, None),
    (URL, {'validate_cert': False, 'ssl_options': {'certfile': CERT}},
     None),
    (URL, {'validate_cert': False},
     {'validate_cert': True, 'ssl_options': ssl.create_default_context()}),
    (URL, {'validate_cert': None}, {'validate_cert': True}),
    (URL, {'ca_certs': '/nonexistent/ca.pem'}, None),
    (URL, {'client_cert': '/nonexistent/cert.pem'}, None),
])
def test_no_context(url: str, options: typing.Dict[str, typing.Any],
                    defaults: typing.Optional[typing.Dict[str, typing.Any]]
                    ) -> None:
    """No context for plain http, a caller's (or a client default's)
    ssl_options, the default configuration (tornado shares one already),
    or a file that cannot be read (tornado reports it as ever)."""
    assert _tls.ssl_options(url, options, defaults) is None


def test_same_configuration_shares_one_context(
        files: types.SimpleNamespace) -> None:
    """Every request of one configuration gets the same context, whatever
    the host, and an absent option reads as None."""
    for options in ({'validate_cert': False},
                    {'ca_certs': files.ca_a},
                    {'validate_cert': False, 'client_cert': files.cert_a,
                     'client_key': files.key_a}):
        first = _tls.ssl_options(URL, options)
        assert first is not None
        assert _tls.ssl_options('https://localhost:8443/x', dict(
            options, ssl_options=None)) is first


def test_client_defaults_are_read_as_tornado_reads_them(
        files: types.SimpleNamespace) -> None:
    """An option the request leaves at None is the client's default."""
    defaults = dict(httpclient.HTTPRequest._DEFAULTS, validate_cert=False,
                    ca_certs=files.ca_a)
    made = _tls.ssl_options(URL, {'validate_cert': None}, defaults)
    assert made is _tls.ssl_options(URL, {'validate_cert': False,
                                          'ca_certs': files.ca_a})
    assert made is not _tls.ssl_options(URL, {'validate_cert': False})


def test_different_configurations_never_share(
        files: types.SimpleNamespace) -> None:
    """Verify on or off, each CA file, each client certificate and each
    key: every configuration has a context of its own."""
    configurations: typing.List[typing.Dict[str, typing.Any]] = [
        {'validate_cert': False},
        {'validate_cert': True, 'ca_certs': files.ca_a},
        {'validate_cert': False, 'ca_certs': files.ca_a},
        {'validate_cert': True, 'ca_certs': files.ca_b},
        {'validate_cert': True, 'client_cert': files.cert_a,
         'client_key': files.key_a},
        {'validate_cert': False, 'client_cert': files.cert_a,
         'client_key': files.key_a},
        {'validate_cert': True, 'client_cert': files.cert_b,
         'client_key': files.key_a},
        {'validate_cert': True, 'client_cert': files.cert_a,
         'client_key': files.key_b},
        {'validate_cert': True, 'ca_certs': files.ca_a,
         'client_cert': files.cert_a, 'client_key': files.key_a},
    ]
    contexts = [_tls.ssl_options(URL, options) for options in configurations]
    assert all(context is not None for context in contexts)
    assert len({id(context) for context in contexts}) == len(configurations)
    # and asking again gives each its own back
    assert [_tls.ssl_options(URL, options)
            for options in configurations] == contexts


@pytest.mark.parametrize('options', [
    {'validate_cert': False},
    {'validate_cert': True, 'ca_certs': CERT},
    {'validate_cert': False, 'ca_certs': CERT},
    {'validate_cert': True, 'client_cert': CERT, 'client_key': KEY},
])
def test_the_context_tornado_makes(options: typing.Dict[str, typing.Any]
                                   ) -> None:
    """The context is configured as simple_httpclient's own: protocol,
    verification, hostname check, options and the CA certificates
    loaded."""
    made, expected = _tls.ssl_options(URL, options), tornados(URL, **options)
    assert made is not None
    for attribute in ('protocol', 'verify_mode', 'check_hostname',
                      'options', 'verify_flags', 'minimum_version',
                      'maximum_version'):
        assert getattr(made, attribute) == getattr(expected, attribute), \
            attribute
    assert made.get_ca_certs() == expected.get_ca_certs()
    assert made.cert_store_stats() == expected.cert_store_stats()


def test_a_rotated_ca_file_is_loaded_again(tmp_path: pathlib.Path) -> None:
    """A CA file replaced (or only touched) gives a new context, loaded
    from the new file."""
    if SYSTEM_BUNDLE is None:
        pytest.skip('no system CA bundle to start from')
    ca = tmp_path / 'ca.pem'
    shutil.copyfile(SYSTEM_BUNDLE, ca)
    options = {'ca_certs': str(ca)}
    before = _tls.ssl_options(URL, options)
    assert before is not None
    subjects = [cert['subject'] for cert in before.get_ca_certs()]
    assert ((('commonName', '127.0.0.1'),),) not in subjects

    replacement = tmp_path / 'new.pem'
    shutil.copyfile(CERT, replacement)
    os.replace(replacement, ca)
    after = _tls.ssl_options(URL, options)
    assert after is not None and after is not before
    assert [cert['subject'] for cert in after.get_ca_certs()] == [
        ((('commonName', '127.0.0.1'),),)]
    assert _tls.ssl_options(URL, options) is after

    stat = ca.stat()
    os.utime(ca, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))
    assert _tls.ssl_options(URL, options) not in (before, after)


def test_a_rotated_client_certificate_is_loaded_again(
        files: types.SimpleNamespace) -> None:
    """A client certificate or key touched gives a new context."""
    options = {'client_cert': files.cert_a, 'client_key': files.key_a}
    before = _tls.ssl_options(URL, options)
    for path in (files.cert_a, files.key_a):
        stat = os.stat(path)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))
        after = _tls.ssl_options(URL, options)
        assert after is not None and after is not before
        before = after


def test_a_changed_system_store_is_a_new_configuration(
        monkeypatch: pytest.MonkeyPatch, files: types.SimpleNamespace
        ) -> None:
    """With verification on and no ca_certs, the system store named by
    SSL_CERT_FILE is part of the configuration; with verification off it
    is not (nothing is verified against it)."""
    options = {'client_cert': files.cert_a, 'client_key': files.key_a}
    insecure = dict(options, validate_cert=False)
    system = _tls.ssl_options(URL, options)
    unverified = _tls.ssl_options(URL, insecure)
    monkeypatch.setenv('SSL_CERT_FILE', files.ca_a)
    own = _tls.ssl_options(URL, options)
    assert own is not None and own is not system
    assert [cert['subject'] for cert in own.get_ca_certs()] == [
        ((('commonName', '127.0.0.1'),),)]
    assert _tls.ssl_options(URL, insecure) is unverified


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch,
                              tmp_path: pathlib.Path) -> None:
    """At most MAX_CONTEXTS are kept; the least recently used goes
    first."""
    monkeypatch.setattr(_tls, 'MAX_CONTEXTS', 2)
    paths = []
    for index in range(3):
        path = tmp_path / f'ca{index}.pem'
        shutil.copyfile(CERT, path)
        paths.append({'ca_certs': str(path)})
    first = _tls.ssl_options(URL, paths[0])
    second = _tls.ssl_options(URL, paths[1])
    assert _tls.ssl_options(URL, paths[0]) is first  # now the most recent
    _tls.ssl_options(URL, paths[2])  # evicts the second
    assert len(_tls._contexts) == 2
    assert _tls.ssl_options(URL, paths[0]) is first
    assert _tls.ssl_options(URL, paths[1]) is not second


class Hello(web.RequestHandler):
    def get(self) -> None:
        self.write('hello')


class HTTPSTestCase(testing.AsyncHTTPSTestCase):
    """A loopback HTTPS server with the self-signed tests/tls
    certificate, and a second one that requires a client certificate
    signed by it."""

    def setUp(self) -> None:
        _tls.clear()
        super().setUp()
        self.client = simple_httpclient.SimpleAsyncHTTPClient(
            force_instance=True)

    def tearDown(self) -> None:
        self.client.close()
        super().tearDown()
        _tls.clear()

    def get_app(self) -> web.Application:
        return web.Application([('/', Hello)])

    def get_ssl_options(self) -> typing.Dict[str, typing.Any]:
        return {'certfile': CERT, 'keyfile': KEY}

    async def fetch_through(self, url: str, **options: typing.Any
                    ) -> httpclient.HTTPResponse:
        """Fetch `url` with `options`' TLS configuration through the
        shared context."""
        context = _tls.ssl_options(url, options)
        assert context is not None
        return await self.client.fetch(url, raise_error=False,
                                       ssl_options=context, **options)

    @testing.gen_test
    async def test_without_verification(self) -> None:
        """validate_cert=False reaches the self-signed server through the
        shared context, request after request."""
        url = self.get_url('/')
        for _ in range(2):
            response = await self.fetch_through(url, validate_cert=False)
            self.assertEqual((response.code, response.body),
                             (200, b'hello'))

    @testing.gen_test
    async def test_trusting_the_test_ca(self) -> None:
        """ca_certs naming the test certificate verifies the server."""
        response = await self.fetch_through(self.get_url('/'), ca_certs=CERT)
        self.assertEqual(response.code, 200)

    @testing.gen_test
    async def test_verification_fails_without_the_ca(self) -> None:
        """Without the test CA the certificate does not verify, with
        another CA file or with the system store."""
        if SYSTEM_BUNDLE is None:
            self.skipTest('no system CA bundle')
        for options in ({'ca_certs': SYSTEM_BUNDLE},
                        {'client_cert': CERT, 'client_key': KEY}):
            with self.subTest(**options), self.assertRaises(
                    ssl.SSLCertVerificationError), testing.ExpectLog(
                    log.gen_log, 'SSL Error', required=False):
                await self.fetch_through(self.get_url('/'), **options)

    @testing.gen_test
    async def test_client_certificate(self) -> None:
        """The client certificate is presented: a server that requires
        one answers with it and refuses the handshake without it."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(CERT, KEY)
        context.load_verify_locations(CERT)
        context.verify_mode = ssl.CERT_REQUIRED
        sock, port = testing.bind_unused_port()
        server = httpserver.HTTPServer(self.get_app(), ssl_options=context)
        server.add_sockets([sock])
        try:
            url = f'https://127.0.0.1:{port}/'
            with_cert = await self.fetch_through(url, ca_certs=CERT,
                                         client_cert=CERT, client_key=KEY)
            with self.assertRaises(ssl.SSLError), testing.ExpectLog(
                    log.gen_log, '.*PEER_DID_NOT_RETURN_A_CERTIFICATE'):
                await self.fetch_through(url, validate_cert=False)
        finally:
            server.stop()
            await server.close_all_connections()
        self.assertEqual((with_cert.code, with_cert.body), (200, b'hello'))

    @testing.gen_test
    async def test_curl_refuses_any_ssl_options(self) -> None:
        """curl_httpclient takes no ssl_options at all: the shared context
        is for simple_httpclient (and clients that take an SSLContext)."""
        try:
            from tornado import curl_httpclient
        except ImportError:
            self.skipTest('pycurl is not installed')
        url = self.get_url('/')
        curl = curl_httpclient.CurlAsyncHTTPClient(force_instance=True)
        try:
            with self.assertRaisesRegex(ValueError, 'ssl_options'):
                await curl.fetch(url, validate_cert=False, ssl_options=(
                    _tls.ssl_options(url, {'validate_cert': False})))
        finally:
            curl.close()


class MixinHTTPSTestCase(testing.AsyncHTTPSTestCase):
    """Through the mixin: the engine hands simple_httpclient the shared
    context; curl_httpclient keeps doing TLS its own way."""

    def setUp(self) -> None:
        _tls.clear()
        super().setUp()

    def tearDown(self) -> None:
        super().tearDown()
        httpclient.AsyncHTTPClient.configure(None)
        _tls.clear()

    def get_app(self) -> web.Application:
        return web.Application([('/', Hello)])

    def get_ssl_options(self) -> typing.Dict[str, typing.Any]:
        return {'certfile': CERT, 'keyfile': KEY}

    async def two_calls(self) -> typing.List[typing.Any]:
        mixin = http.HTTPClientMixin()
        contexts = []
        for _ in range(2):
            response = await mixin.http_fetch(self.get_url('/'),
                                              validate_cert=False)
            self.assertTrue(response.ok, response.exceptions)
            assert response.raw is not None
            contexts.append(response.raw.request.ssl_options)
        return contexts

    @testing.gen_test
    async def test_simple_calls_share_one_context(self) -> None:
        """Two validate_cert=False calls on simple_httpclient send with the
        same SSLContext (tornado built one per request)."""
        first, second = await self.two_calls()
        self.assertIsInstance(first, ssl.SSLContext)
        self.assertIs(first, second)

    @testing.gen_test
    async def test_curl_gets_no_context(self) -> None:
        """curl_httpclient refuses ssl_options: none is given."""
        try:
            from tornado import curl_httpclient  # noqa: F401
        except ImportError:
            self.skipTest('pycurl is not installed')
        httpclient.AsyncHTTPClient.configure(
            'tornado.curl_httpclient.CurlAsyncHTTPClient')
        self.http_client.close()
        self.http_client = httpclient.AsyncHTTPClient()
        self.assertEqual(await self.two_calls(), [None, None])
