"""tornado's ``curl_httpclient``: libcurl's error numbers, the socket of a
cancelled attempt, and sized instances kept per IOLoop."""
from __future__ import annotations

import re
import typing

from tornado import httpclient

from sprockets.mixins.http import _transports

__all__ = ['CurlTransport']

Failure = _transports.Failure

# libcurl error numbers (CURLE_*) that tornado's CurlError carries
_FATAL = frozenset({
    1,   # UNSUPPORTED_PROTOCOL
    3,   # URL_MALFORMAT
    51,  # PEER_FAILED_VERIFICATION (older libcurl)
    47,  # TOO_MANY_REDIRECTS
    58,  # SSL_CERTPROBLEM: the client certificate is unusable
    60,  # PEER_FAILED_VERIFICATION / SSL_CACERT
    61,  # BAD_CONTENT_ENCODING: the same body would come again
    77,  # SSL_CACERT_BADFILE
    83,  # SSL_ISSUER_ERROR
    90,  # SSL_PINNEDPUBKEYNOTMATCH
    91,  # SSL_INVALIDCERTSTATUS
})
_NOT_SENT = frozenset({
    5,   # COULDNT_RESOLVE_PROXY
    6,   # COULDNT_RESOLVE_HOST
    7,   # COULDNT_CONNECT
})
_TIMEOUT = 28
_ABORTED_BY_CALLBACK = 42
_CONNECT_TIMEOUT = re.compile(r'connect|resolv', re.IGNORECASE)
_UNSUPPORTED_PROTOCOL = 1
# UNSUPPORTED_PROTOCOL is also what libcurl says of a response it cannot
# read ("Received HTTP/0.9 when not allowed", "Unsupported HTTP/1
# subversion in response"): a broken response, as simple_httpclient sees
# it, not a scheme libcurl lacks (the package sends http and https only)
_BAD_RESPONSE = re.compile(r'HTTP/|response', re.IGNORECASE)

#: The instances made for ``HTTP_MAX_CLIENTS``, per IOLoop.
SIZED = _transports.PerLoop()


class CurlTransport(_transports.Transport):
    """``tornado.curl_httpclient.CurlAsyncHTTPClient``.

    Its failures are ``CurlError``\\ s carrying libcurl's error number.  A
    cancelled attempt's transfer is ended as tornado ends a failed one
    (its handle removed from the multi, at any stage, connecting
    included); one still in the client's queue is taken out of it.  A
    request that may not be sent twice goes on a fresh connection, which
    libcurl never resends on.  Its pool of handles cannot be resized, so
    an instance of each ``max_clients`` is kept per IOLoop.

    """

    class_names = ('tornado.curl_httpclient.CurlAsyncHTTPClient',)

    def classify(self, error: BaseException) -> typing.Optional[Failure]:
        errno = getattr(error, 'errno', None)
        if not (isinstance(error, httpclient.HTTPClientError)
                and isinstance(errno, int)
                and type(error).__name__ == 'CurlError'):
            return None
        if errno == _UNSUPPORTED_PROTOCOL and _BAD_RESPONSE.search(
                str(error.message)):
            return Failure.CONNECTION
        if errno in _FATAL:
            return Failure.FATAL
        if errno in _NOT_SENT:
            return Failure.CONNECT
        if errno == _TIMEOUT:
            if _CONNECT_TIMEOUT.search(str(error.message)):
                return Failure.CONNECT
            return Failure.TIMEOUT
        return Failure.CONNECTION

    def request_options(self, inflight: _transports.Inflight,
                        may_resend: bool = True
                        ) -> typing.Dict[str, typing.Any]:
        if may_resend:
            return {}  # the caller's own prepare_curl_callback, if any

        def prepare_curl(curl: typing.Any) -> None:
            _no_resend(curl)
            if inflight.user_prepare is not None:
                inflight.user_prepare(curl)

        return {'prepare_curl_callback': prepare_curl}

    def track(self, client: httpclient.AsyncHTTPClient,
              request: httpclient.HTTPRequest,
              inflight: _transports.Inflight) -> typing.Any:
        inflight.on_abort(lambda: _dequeue(client, request))
        inflight.on_abort(lambda: _abandon(client, request))
        return None

    def sized(self, shared: httpclient.AsyncHTTPClient,
              max_clients: int) -> httpclient.AsyncHTTPClient:
        if len(getattr(shared, '_curls', ())) == max_clients:
            return shared
        return SIZED.get(max_clients)


def _no_resend(handle: typing.Any) -> None:
    """Send the request of `handle` on a connection of its own: libcurl
    silently sends a request again, on a new connection, when a reused
    keep-alive connection dies before any of the response arrived, even
    when the server read it (a POST would arrive twice while the engine
    counts one attempt).  A fresh connection is never resent on."""
    import pycurl  # only with curl_httpclient
    handle.setopt(pycurl.FRESH_CONNECT, 1)


def _dequeue(client: typing.Any, request: httpclient.HTTPRequest) -> None:
    """Take `request` out of `client`'s queue (no curl handle was free for
    it yet), and answer its future (a 599 nobody reads), so it is never
    sent."""
    queue = getattr(client, '_requests', None)
    if queue is None:
        return
    for entry in list(queue):
        queued, callback = entry[0], entry[1]
        if getattr(queued, 'request', queued) is not request:
            continue
        queue.remove(entry)
        client.io_loop.add_callback(callback, httpclient.HTTPResponse(
            queued, 599, error=httpclient.HTTPClientError(
                599, 'Cancelled in request queue')))
        return


def _abandon(client: typing.Any, request: httpclient.HTTPRequest) -> None:
    """End the transfer of `request` on `client`, if it is still running,
    the way tornado ends a failed one: its handle is removed from the
    multi (libcurl drops the transfer and closes its connection, and never
    sends the request again), the request is answered (a 599 nobody
    reads), the handle goes back to the free list and the queue moves on.

    Shutting the socket down instead made libcurl, seeing a reused
    kept-alive connection die before any response, send the request again
    on a new connection, after the call was cancelled and in no record;
    and a transfer still connecting had no socket to shut down.

    """
    free = getattr(client, '_free_list', ())
    for handle in getattr(client, '_curls', ()):
        info = getattr(handle, 'info', None)
        if not isinstance(info, dict) or handle in free:
            # a free handle (tornado leaves the info of one whose setup
            # failed: it is back on the free list, in no transfer)
            continue
        running = info.get('request')
        if getattr(running, 'request', running) is not request:
            continue  # another request's transfer: never touched
        client._finish(handle, _ABORTED_BY_CALLBACK, 'Cancelled')
        client._process_queue()
        return
