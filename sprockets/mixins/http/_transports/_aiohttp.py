"""The package's own ``AiohttpAsyncHTTPClient``: what its 599s carry,
the fetch of a cancelled attempt to end, and the requests that go on a
connection of their own.

Nothing here imports aiohttp or the client's module: an aiohttp exception
can only exist once aiohttp was imported, and the client is reached
through the methods it documents, so this module costs nothing where the
``aiohttp`` extra is not installed.

"""
from __future__ import annotations

import asyncio
import ssl
import sys
import typing
import zlib

from tornado import httpclient

from sprockets.mixins.http import _transports

__all__ = ['AiohttpTransport', 'FreshConnection']

Failure = _transports.Failure


class AiohttpTransport(_transports.Transport):
    """``sprockets.mixins.http.aiohttp_client.AiohttpAsyncHTTPClient``.

    Its failures are 599s: a timeout is tornado's ``HTTPTimeoutError``
    with ``simple_httpclient``'s messages (classified as simple's are),
    anything else a ``NoResponseError`` whose ``__cause__`` is aiohttp's
    exception, which says what happened: no connection could be made
    (nothing was sent), the connection broke, or the certificate did not
    verify.  A cancelled attempt's fetch is ended through the client's
    ``abort_fetch``: taken out of the queue, or its task cancelled, which
    closes its connection.  A request that may not be sent twice goes on
    a connection of its own, as on curl.  ``max_clients`` is set on the
    shared instance, which takes it at once.

    """

    class_names = (
        'sprockets.mixins.http.aiohttp_client.AiohttpAsyncHTTPClient',)

    def classify(self, error: BaseException) -> typing.Optional[Failure]:
        cause: typing.Optional[BaseException] = error
        if (isinstance(error, httpclient.HTTPClientError)
                and error.code == 599):
            cause = error.__cause__
        if isinstance(cause, zlib.error):
            # a body that cannot be gunzipped: the same body next time
            # (libcurl's CURLE_BAD_CONTENT_ENCODING is classified alike)
            return Failure.FATAL
        aiohttp = sys.modules.get('aiohttp')
        if aiohttp is None or not isinstance(cause, aiohttp.ClientError):
            return None  # not the client's: no aiohttp error can exist
        return _failure(aiohttp, cause)

    def request_options(self, inflight: _transports.Inflight,
                        may_resend: bool = True
                        ) -> typing.Dict[str, typing.Any]:
        # the client reads it from prepare_curl_callback, which it never
        # calls (curl's transport says the same there)
        return {'prepare_curl_callback': FreshConnection(
            not may_resend, inflight.user_prepare)}

    def track(self, client: httpclient.AsyncHTTPClient,
              request: httpclient.HTTPRequest,
              inflight: _transports.Inflight) -> typing.Any:
        abort = getattr(client, 'abort_fetch', None)
        if callable(abort):
            inflight.on_abort(lambda: abort(request))
        return None


class FreshConnection:
    """Stands for ``prepare_curl_callback`` on the requests of the engine:
    tells ``AiohttpAsyncHTTPClient`` whether the request goes on a
    connection of its own (:attr:`fresh_connection`), and calls the
    caller's own callback, should a curl client ever receive it."""

    __slots__ = ('fresh_connection', 'user_prepare')

    def __init__(self, fresh_connection: bool,
                 user_prepare: typing.Optional[
                     typing.Callable[[typing.Any], None]] = None) -> None:
        self.fresh_connection = fresh_connection
        self.user_prepare = user_prepare

    def __call__(self, curl: typing.Any) -> None:
        if self.user_prepare is not None:
            self.user_prepare(curl)

    def __repr__(self) -> str:
        return f'<FreshConnection {self.fresh_connection}>'


def _failure(aiohttp: typing.Any, cause: BaseException) -> Failure:
    """What kind of failure aiohttp's exception `cause` is."""
    if isinstance(cause, aiohttp.ClientConnectorCertificateError):
        return Failure.FATAL  # the same certificate next time
    if isinstance(cause, aiohttp.ClientSSLError) and isinstance(
            getattr(cause, 'os_error', None), ssl.SSLCertVerificationError):
        return Failure.FATAL
    if isinstance(cause, aiohttp.ClientConnectorError):
        # no connection: refused, unreachable, not resolved, or its TLS
        # handshake failed; nothing of the request was sent
        return Failure.CONNECT
    if isinstance(cause, (aiohttp.ConnectionTimeoutError,
                          aiohttp.ClientHttpProxyError)):
        # no connection in time, or the proxy refused the tunnel
        return Failure.CONNECT
    if isinstance(cause, asyncio.TimeoutError):
        return Failure.TIMEOUT
    if isinstance(cause, aiohttp.InvalidURL):
        return Failure.FATAL
    # the connection broke (ServerDisconnectedError, ClientOSError), the
    # body was cut (ClientPayloadError), or the response could not be
    # read: the request may have been acted on
    return Failure.CONNECTION
