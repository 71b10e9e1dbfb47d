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
    libcurl never resends on; any other that libcurl resends is recorded
    as an attempt of its own.  Its pool of handles cannot be resized, so
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
        return {'prepare_curl_callback': _Prepare(inflight, not may_resend)}

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


class _Prepare:
    """The ``prepare_curl_callback`` of one attempt's transfers.

    libcurl silently sends a request again, on a new connection, when a
    reused keep-alive connection dies before any of the response arrived,
    even when the server read it.  A request that may not be sent twice
    (`fresh`) goes on a connection of its own, which libcurl never resends
    on.  Any other may be resent, but never unseen: :class:`_Sends` counts
    the sends of the transfer.  tornado resets each handle once its
    transfer is done, so nothing set here outlives the transfer.  The
    caller's own callback is called last.

    """

    __slots__ = ('fresh', 'inflight')

    def __init__(self, inflight: _transports.Inflight, fresh: bool) -> None:
        self.inflight, self.fresh = inflight, fresh

    def __call__(self, handle: typing.Any) -> None:
        fresh_connect, prereq = _OPTIONS or _options()
        if self.fresh:
            handle.setopt(fresh_connect, 1)
        elif prereq is not None:  # libcurl 7.80, pycurl 7.45 or later
            handle.setopt(prereq, _Sends(self.inflight, handle.info))
        user_prepare = self.inflight.user_prepare
        if user_prepare is not None:
            user_prepare(handle)


class _Sends:
    """libcurl's PREREQFUNCTION for one transfer, called each time libcurl
    is about to send the request.

    A transfer may send several requests: after a 401 that asks for
    digest credentials, after a 417 to ``Expect: 100-continue``, through a
    proxy that asks for credentials; each follows a response.  A send that
    follows none is libcurl's resend of a request whose reused kept-alive
    connection died before any of the response arrived: the attempt's
    :class:`~._transports.Inflight` records it (the engine makes it an
    attempt of its own in ``records``), or, once ``max_http_attempts`` is
    reached, it is refused (the transfer is aborted, and the attempt fails
    with the dead connection's error).

    Whether a response arrived is read from the header fields tornado
    collects for the transfer, which it clears and fills again at each
    response (whatever its status line: ``HTTP/2 401``, one without a
    reason phrase): they are as they were at the send before only if no
    response came in between (two responses of one transfer with the very
    same fields, one after the other, would be taken for none).

    """

    __slots__ = ('fields', 'headers', 'inflight', 'last')

    def __init__(self, inflight: _transports.Inflight,
                 info: typing.Any) -> None:
        self.inflight = inflight
        #: what tornado collects of the transfer's responses
        self.headers: typing.Any = (info.get('headers')
                                    if isinstance(info, dict) else None)
        #: the connection of the last send: (peer, port, local port)
        self.last: typing.Optional[typing.Tuple[str, int, int]] = None
        #: the header fields collected when the last send was made
        self.fields: typing.List[typing.Tuple[str, str]] = []

    def __call__(self, peer: str, local: str, peer_port: int,
                 local_port: int) -> int:
        last, self.last = self.last, (peer, peer_port, local_port)
        headers = self.headers
        if headers is None:
            return _PREREQFUNC_OK  # nothing to tell a resend by
        fields, self.fields = self.fields, list(headers.get_all())
        if last is None or fields != self.fields:
            return _PREREQFUNC_OK  # the first send, or one after a response
        inflight = self.inflight
        if not inflight.may_resend():
            # the connection of the previous send died before any of the
            # response arrived, and the attempts are used up
            inflight.refuse(_dead_connection(*last))
            return _PREREQFUNC_ABORT
        inflight.resent(_dead_connection(
            *last, then='libcurl sent the request again on a new '
            'connection'))
        return _PREREQFUNC_OK


# pycurl's FRESH_CONNECT and PREREQFUNCTION (None where libcurl < 7.80 or
# pycurl < 7.45 lack it: resends are not seen then), once pycurl is used
_OPTIONS: typing.Optional[typing.Tuple[int, typing.Optional[int]]] = None


def _options() -> typing.Tuple[int, typing.Optional[int]]:
    global _OPTIONS
    import pycurl  # only with curl_httpclient
    _OPTIONS = (pycurl.FRESH_CONNECT,
                getattr(pycurl, 'PREREQFUNCTION', None))
    return _OPTIONS


# PREREQFUNCTION's answers (curl.h)
_PREREQFUNC_OK, _PREREQFUNC_ABORT = 0, 1


def _dead_connection(peer: str, port: int, local_port: int,
                     then: str = 'the attempts (max_http_attempts) are '
                     'used up') -> ConnectionResetError:
    return ConnectionResetError(
        f'The kept-alive connection to {peer}:{port} (local port '
        f'{local_port}) closed before any of the response arrived; {then}')


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
