"""Each transport's knowledge, as tables of hand-built exceptions and
clients: what kind of failure an error is, and which transport serves a
client class."""
from __future__ import annotations

import socket
import ssl
import typing

import pytest
from tornado import httpclient, httputil, iostream, simple_httpclient

from sprockets.mixins.http import Failure, _transports
from sprockets.mixins.http._transports import _curl, _simple

curl_httpclient = pytest.importorskip('tornado.curl_httpclient')
CurlError = curl_httpclient.CurlError


def timeout(message: str) -> httpclient.HTTPClientError:
    return simple_httpclient.HTTPTimeoutError(message)


CASES: typing.List[typing.Tuple[str, BaseException, Failure]] = [
    # simple_httpclient: where the timeout struck
    ('simple queue timeout', timeout('Timeout in request queue'),
     Failure.CONNECT),
    ('simple connect timeout', timeout('Timeout while connecting'),
     Failure.CONNECT),
    ('simple resolve timeout', timeout('Timeout while resolving example'),
     Failure.CONNECT),
    ('simple TLS handshake timeout',
     timeout('Timeout during TLS handshake with 127.0.0.1:443'),
     Failure.CONNECT),
    ('simple request timeout', timeout('Timeout during request'),
     Failure.TIMEOUT),
    ('simple stream closed', httpclient.HTTPClientError(599, 'Stream closed'),
     Failure.CONNECTION),
    # curl_httpclient: libcurl's error numbers
    ('curl connect timeout',
     CurlError(28, 'Connection timed out after 1000 milliseconds'),
     Failure.CONNECT),
    ('curl resolve timeout', CurlError(28, 'Resolving timed out after 5 ms'),
     Failure.CONNECT),
    ('curl operation timeout',
     CurlError(28, 'Operation timed out after 20000 milliseconds'),
     Failure.TIMEOUT),
    ('curl refused', CurlError(7, 'Failed to connect'), Failure.CONNECT),
    ('curl unknown host', CurlError(6, 'Could not resolve host'),
     Failure.CONNECT),
    ('curl proxy unknown', CurlError(5, 'Could not resolve proxy'),
     Failure.CONNECT),
    ('curl certificate', CurlError(60, 'SSL certificate problem'),
     Failure.FATAL),
    ('curl unknown scheme', CurlError(1, 'Protocol "ftp" not supported'),
     Failure.FATAL),
    ('curl HTTP/0.9 reply', CurlError(1, 'Received HTTP/0.9 when not '
                                         'allowed'), Failure.CONNECTION),
    ('curl bad version', CurlError(1, 'Unsupported HTTP/1 subversion in '
                                      'response'), Failure.CONNECTION),
    ('curl bad URL', CurlError(3, 'URL using bad/illegal format'),
     Failure.FATAL),
    ('curl bad encoding', CurlError(61, 'Unrecognized content encoding'),
     Failure.FATAL),
    ('curl reset', CurlError(56, 'Recv failure: Connection reset by peer'),
     Failure.CONNECTION),
    ('curl empty reply', CurlError(52, 'Empty reply from server'),
     Failure.CONNECTION),
    # what holds for any client
    ('certificate', ssl.SSLCertVerificationError('unable to get issuer'),
     Failure.FATAL),
    ('refused', ConnectionRefusedError(111, 'Connection refused'),
     Failure.CONNECT),
    ('name resolution', socket.gaierror(-2, 'Name or service not known'),
     Failure.CONNECT),
    ('reset', ConnectionResetError(104, 'Connection reset by peer'),
     Failure.CONNECTION),
    ('timeout', TimeoutError(), Failure.TIMEOUT),
    ('unreadable ca_certs', FileNotFoundError(2, 'No such file'),
     Failure.FATAL),
    ('unreadable key', PermissionError(13, 'Permission denied'),
     Failure.FATAL),
    ('stream closed', iostream.StreamClosedError(), Failure.CONNECTION),
    ('bad headers', httputil.HTTPInputError('Malformed HTTP headers'),
     Failure.CONNECTION),
    ('oversized headers', iostream.UnsatisfiableReadError('too long'),
     Failure.CONNECTION),
    ('a status as an error', httpclient.HTTPClientError(404),
     Failure.FATAL),
    ('a programming error', ValueError('invalid URL'), Failure.FATAL),
    ('anything else', KeyError('unknown method'), Failure.FATAL),
]


@pytest.mark.parametrize('error, expected', [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_classify(error: BaseException, expected: Failure) -> None:
    """Every branch of every transport's classification: was the request
    sent, and is it worth retrying."""
    assert _transports.classify(error) is expected


@pytest.mark.parametrize('error', [
    timeout('Timeout during request'), ConnectionResetError()])
def test_curl_knows_only_curl_errors(error: BaseException) -> None:
    """A transport leaves what is not its own to the others."""
    assert _curl.CurlTransport().classify(error) is None


def test_simple_knows_only_its_timeouts() -> None:
    """simple_httpclient's rules read timeouts only."""
    transport = _simple.SimpleTransport()
    assert transport.classify(CurlError(56, 'reset')) is None
    assert transport.classify(
        httpclient.HTTPClientError(599, 'Stream closed')) is None


class CustomSimple(simple_httpclient.SimpleAsyncHTTPClient):
    """A user's subclass of a registered implementation."""


class Unregistered:
    """An implementation nobody registered."""


@pytest.mark.parametrize('cls, expected', [
    (simple_httpclient.SimpleAsyncHTTPClient, _simple.SimpleTransport),
    (curl_httpclient.CurlAsyncHTTPClient, _curl.CurlTransport),
    (CustomSimple, _simple.SimpleTransport),
    (Unregistered, _transports.Transport),
])
def test_registry_finds_the_transport_of_a_class(
        cls: type, expected: type) -> None:
    """A client's transport is its class's, or its base class's, or the
    generic one."""
    transport = _transports.for_client(object.__new__(cls))
    assert type(transport) is expected


def test_inflight_closes_what_opened_after_the_cancel() -> None:
    """A connection an attempt opens after it was cancelled is closed at
    once; ones opened before, when it is cancelled."""
    closed: typing.List[str] = []
    inflight = _transports.Inflight()
    inflight.on_abort(lambda: closed.append('before'))
    assert closed == []
    inflight.abort()
    inflight.on_abort(lambda: closed.append('after'))
    assert closed == ['before', 'after']
