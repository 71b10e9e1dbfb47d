"""One attempt over tornado objects: its request, the hops of a redirect,
the streamed body, decompression, and what the response says of retrying
(``Retry-After``) and of itself (``Warning``)."""
from __future__ import annotations

import asyncio
import io
import logging
import time
import typing

from tornado import httpclient, httputil

from sprockets.mixins.http import (
    _call,
    _codings,
    _content,
    _redirects,
    _response,
    _retry,
    _streaming,
    _transports,
    _urls,
)

if typing.TYPE_CHECKING:  # pragma: no cover
    from sprockets.mixins.http import _observe

__all__ = ['Attempt', 'Outcome', 'content_failure', 'inflate']

LOGGER = logging.getLogger('sprockets.mixins.http')

TimeLeft = typing.Callable[[], typing.Optional[float]]

#: Why a response of this status and these headers, on an attempt whose
#: request the transport already sent again this many times by itself, is
#: final (see :data:`._streaming.IsFinal`): the engine's question.
IsFinal = typing.Callable[[int, httputil.HTTPHeaders, int],
                          typing.Optional[_retry.StopReason]]


class Outcome(typing.NamedTuple):
    """What one attempt produced: the questions
    :meth:`~sprockets.mixins.http.RetryPolicy.decide` is asked."""
    status: typing.Optional[int] = None
    failure: typing.Optional[_retry.Failure] = None
    retry_after: typing.Optional[float] = None
    #: the response is a redirect past ``max_redirects``
    redirect_loop: bool = False
    #: the response is a redirect whose Location cannot be followed
    redirect_unfollowed: bool = False
    #: a redirect turned the request into a GET: the server acted on it
    method_changed: bool = False
    #: the deadline came between two hops of a redirect
    deadline_reached: bool = False
    #: part of the body reached the streaming_callback, then the attempt
    #: failed (or the callback raised): never sent again
    stream_interrupted: bool = False


class Attempt:
    """One attempt: its tornado request, and what it sends and records.

    Redirects are followed here, hop by hop, not by tornado, so that both
    clients keep credentials from other origins and report loops alike.

    """

    def __init__(self, call: _call.Call, number: int, url: str,
                 headers: typing.Mapping[str, str],
                 body: typing.Union[bytes, str, None],
                 timeouts: typing.Tuple[float, float],
                 transport: _transports.Transport,
                 time_left: TimeLeft = lambda: None, *,
                 may_resend: bool = True,
                 is_final: typing.Optional[IsFinal] = None
                 ) -> None:
        options = call.options
        self.time_left = time_left
        self.inflight = _transports.Inflight(
            options.get('prepare_curl_callback'),
            call.policy.max_attempts - number)
        self.follow = bool(options.get('follow_redirects'))
        self.max_redirects = int(options.get('max_redirects') or 0)
        self.decompress = call.decompress
        stream = options.get('streaming_callback')
        self.method_changed = self.deadline_reached = False
        #: why a redirect was not followed (its Location is unusable)
        self.redirect_error: typing.Optional[ValueError] = None
        options = dict(options, follow_redirects=False, max_redirects=None,
                       **transport.request_options(self.inflight,
                                                   may_resend))
        #: what stands for the caller's streaming_callback
        self.relay: typing.Optional[_streaming.Relay] = None
        if stream is not None:
            self.relay = _streaming.Relay(
                stream, options.get('header_callback'),
                self._body_is_answer(is_final or _always_final),
                self.inflight.abort, self._cancelled, self.decompress)
            options['streaming_callback'] = self.relay.chunk
            options['header_callback'] = self.relay.header_line
        connect_timeout, request_timeout = timeouts
        self.request = httpclient.HTTPRequest(
            # the engine's own headers: it never changes them, and tornado's
            # fetch copies them before a client adds its own (Host)
            url, method=call.method, headers=_as_headers(headers),
            body=_content.encode_body(body, headers.get('Content-Type')),
            connect_timeout=connect_timeout,
            request_timeout=request_timeout, **options)

    async def send(self, client: httpclient.AsyncHTTPClient,
                   observer: _observe.Observer, decompress_limit: int,
                   response: _response.HTTPResponse,
                   record: _response.AttemptRecord) -> Outcome:
        """Send the attempt and record its result or exception on
        `response` (through `record`); never raises for a transport
        failure.

        A response whose body the package cannot decompress (corrupt,
        truncated, larger than `decompress_limit` once decompressed, or
        in a coding whose extra is not installed) is a failed attempt,
        not an answer: the record's ``exception`` is the
        ``DecompressionError`` (its ``response`` the tornado response as
        it arrived), its ``status`` and ``response`` stay :data:`None`,
        and it is retried as :func:`content_failure` says.  The body of a
        redirect that ends the attempt (too many redirects, a Location
        that cannot be followed) is not the answer: that redirect stays
        the response, with the error in its record's ``content_error``.

        """
        relay = self.relay
        error: typing.Optional[BaseException] = None
        answered: typing.Optional[httpclient.HTTPResponse] = None
        try:
            result, redirect_loop = await observer.sending(
                self._send(client, observer))
        except asyncio.CancelledError:
            if relay is not None:
                relay.cancel()
            raise
        except Exception as raised:  # recorded, never raised
            error = raised
        else:
            answered = result
            if result.code == 599 and result.error is not None:
                # a response object that is really a transport failure (a
                # patched fetch may return one): no response arrived
                error = result.error
        if error is not None and self.inflight.refused is not None:
            # the transport was refused a resend and ended the attempt:
            # what failed is the send before (not the transport's "aborted")
            error = self.inflight.refused
        if relay is not None:
            if error is None:
                relay.end_of_body()
            await relay.finished(self._callback_limit())
            record.streamed = relay.streamed
            if relay.content_error is not None:
                return self._undecodable(response, record, answered,
                                         relay.content_error)
            if relay.error is not None:
                return self._callback_failed(response, record, relay.error)
        if error is not None:
            response.record_exception(record, error)
            # a body the caller consumed part of is never sent again
            return Outcome(failure=_transports.classify(error),
                           stream_interrupted=bool(record.streamed))
        log_warning_header(result)
        # a streamed body was decompressed as it was handed on (one kept
        # back is when it is: its header is moved then)
        content_error = (inflate(result, decompress_limit)
                         if self.decompress and (relay is None or relay.live)
                         else None)
        if (content_error is not None and not redirect_loop
                and self.redirect_error is None):
            # an answer whose body cannot be undone is no answer: a
            # failed attempt (see content_failure)
            content_error.response = result
            response.record_exception(record, content_error)
            return Outcome(failure=content_failure(content_error))
        # a redirect that is the response: its body is not the answer, and
        # one still compressed is the body's error
        response.record_response(record, result, content_error)
        if self.redirect_error is not None:
            record.redirect_error = self.redirect_error
            LOGGER.warning('Not following the %s redirect of %s %s: %s',
                           result.code, self.request.method,
                           _urls.redact_url(self.request.url),
                           self.redirect_error)
        return Outcome(
            result.code, None,
            None if self.redirect_error or self.deadline_reached
            else retry_after(result.headers), redirect_loop,
            self.redirect_error is not None, self.method_changed,
            self.deadline_reached)

    async def _send(self, client: httpclient.AsyncHTTPClient,
                    observer: _observe.Observer
                    ) -> typing.Tuple[httpclient.HTTPResponse, bool]:
        """Send the attempt, following redirects when asked.

        :returns: the final response, and whether it is a redirect that
            exceeded ``max_redirects``
        :raises ValueError: for a URL that cannot be sent (never retried)

        """
        # the headers as the engine built them (and OTel added to): the
        # client adds its own (Host, Content-Length) to the copy tornado's
        # fetch makes, so the next hop of a redirect starts from these
        request, headers, hops = self.request, self.request.headers, 0
        while True:
            problem = _urls.url_problem(request.url)
            if problem is not None:
                shown = _urls.redact_url(request.url)
                raise ValueError(f'invalid URL {shown!r}: {problem}')
            result = with_headers(
                await _transports.fetch(client, request, self.inflight))
            if not (self.follow and result.code in _redirects.REDIRECTS
                    and 'Location' in result.headers):
                return result, False
            if hops >= self.max_redirects:
                return result, True
            following = self._next_hop(request, headers, result)
            if following is None:
                return result, False
            request, headers = following
            hops += 1
            if self.relay is not None:
                self.relay.withheld.clear()  # a hop's body is not the answer
            observer.redirected(result.code, request.url)

    def _next_hop(self, request: httpclient.HTTPRequest,
                  headers: httputil.HTTPHeaders,
                  result: httpclient.HTTPResponse
                  ) -> typing.Optional[typing.Tuple[httpclient.HTTPRequest,
                                                    httputil.HTTPHeaders]]:
        """The next hop's request and headers, with the time left before
        the deadline as its timeouts; :data:`None` when the redirect is
        not followed (an unusable Location, or no time left)."""
        try:
            following, headers = _redirects.next_hop(request, headers,
                                                     result)
        except ValueError as error:  # an unusable Location
            self.redirect_error = error
            return None
        left = self.time_left()
        if left is not None:
            if left < _retry.MIN_TIME_LEFT:
                self.deadline_reached = True
                return None
            following.connect_timeout = within(following.connect_timeout,
                                               left)
            following.request_timeout = within(following.request_timeout,
                                               left)
        self.method_changed |= following.method != request.method
        return following, headers

    def _cancelled(self) -> bool:
        """Whether the caller cancelled this attempt (a callback that
        raised aborts it too, but the relay knows that already)."""
        relay = self.relay
        return self.inflight.cancelled and (relay is None
                                            or relay.error is None)

    def _body_is_answer(self, is_final: IsFinal) -> _streaming.IsFinal:
        """`is_final`, but a redirect this attempt follows is never the
        answer (nor one past ``max_redirects``: its body is kept back,
        and handed on only when the call returns it)."""

        def body_is_answer(status: int, headers: httputil.HTTPHeaders
                           ) -> typing.Optional[_retry.StopReason]:
            if (self.follow and status in _redirects.REDIRECTS
                    and 'Location' in headers):
                return None
            # a resend by the transport took an attempt of its own
            return is_final(status, headers, len(self.inflight.resends))

        return body_is_answer

    def _undecodable(self, response: _response.HTTPResponse,
                     record: _response.AttemptRecord,
                     result: typing.Optional[httpclient.HTTPResponse],
                     error: _content.DecompressionError) -> Outcome:
        """The streamed body could not be decompressed: a failed attempt,
        as a body that cannot be decompressed is without streaming (its
        response, when one arrived, in the error's ``response``), never
        sent again once part of it reached the caller."""
        if result is not None and result.code != 599:
            error.response = result
        response.record_exception(record, error)
        return Outcome(failure=content_failure(error),
                       stream_interrupted=bool(record.streamed))

    def _callback_failed(self, response: _response.HTTPResponse,
                         record: _response.AttemptRecord,
                         error: BaseException) -> Outcome:
        """The caller's streaming_callback raised: the attempt ends with
        its exception, and the call with it (never retried, whatever
        ``max_http_attempts``)."""
        LOGGER.warning('The streaming_callback of %s %s raised %s: the call '
                       'stops', self.request.method,
                       _urls.redact_url(self.request.url),
                       type(error).__name__, exc_info=error)
        response.record_exception(record, error)
        return Outcome(failure=_retry.Failure.FATAL, stream_interrupted=True)

    async def deliver_withheld(self, response: _response.HTTPResponse,
                               record: _response.AttemptRecord,
                               outcome: Outcome
                               ) -> typing.Optional[_retry.StopReason]:
        """Hand the body kept back to the caller's streaming_callback, now
        that the attempt (`record`, which got a response) is the one
        returned; return :attr:`~_retry.StopReason.STREAM_INTERRUPTED`
        when the call must stop for it instead of its own reason.

        A callback that raised is the attempt's exception, and the call
        stops for it.  A body that cannot be decompressed, of which
        nothing reached the callback, is what it is without streaming: a
        redirect that is the response (too many redirects, a Location that
        cannot be followed) keeps the error in ``content_error``, any
        other response has it as its exception; the call stops for its
        own reason.

        """
        relay = self.relay
        if relay is None:
            return None
        error = await relay.deliver_withheld(self._callback_limit())
        record.streamed = relay.streamed
        if error is None:
            if self.decompress and record.response is not None:
                inflate(record.response)  # its Content-Encoding was undone
            return None
        content_error = relay.content_error
        if content_error is not None and error is content_error and (
                not relay.streamed):
            if outcome.redirect_loop or outcome.redirect_unfollowed:
                record.content_error = content_error
            else:
                response.record_exception(record, content_error)
            return None
        response.record_exception(record, error)
        return _retry.StopReason.STREAM_INTERRUPTED

    def _callback_limit(self) -> typing.Optional[float]:
        """How long the caller's coroutine callbacks may still run once
        the body is in: the time left before the deadline, else the
        request timeout (:data:`None`: no limit)."""
        left = self.time_left()
        if left is not None:
            return max(left, 0.0)
        return self.request.request_timeout or None


def _always_final(status: int, headers: httputil.HTTPHeaders,
                  resent: int = 0) -> typing.Optional[_retry.StopReason]:
    """Without the engine's question, every response is the answer."""
    return _retry.StopReason.NOT_RETRYABLE


def within(timeout: typing.Optional[float], left: float) -> float:
    """`timeout` shrunk to the `left` seconds before the deadline; ``0``
    (and :data:`None`) is tornado's "no limit": the deadline is the limit
    then."""
    return min(timeout or left, left)


def _as_headers(headers: typing.Mapping[str, str]) -> httputil.HTTPHeaders:
    if isinstance(headers, httputil.HTTPHeaders):
        return headers
    return httputil.HTTPHeaders(headers)


def with_headers(result: httpclient.HTTPResponse) -> httpclient.HTTPResponse:
    """Give `result` tornado HTTPHeaders when a patched fetch (a 2.x
    test's) built it with a plain dict, which tornado keeps as it is."""
    if not isinstance(result.headers, httputil.HTTPHeaders):
        result.headers = httputil.HTTPHeaders(result.headers or {})
    return result


def inflate(result: httpclient.HTTPResponse,
            limit: int = _content.MAX_DECOMPRESSED_SIZE
            ) -> typing.Optional[_content.DecompressionError]:
    """Undo `result`'s Content-Encoding in place, as tornado's own
    decompression does: :attr:`raw.body <tornado.httpclient.HTTPResponse.body>`
    becomes the decompressed bytes and the header moves to
    ``X-Consumed-Content-Encoding``.

    :param limit: the most bytes the body may decompress to
    :returns: :data:`None`, or the error of a body that could not be
        decompressed (corrupt, too large, or in a coding whose extra is
        missing), which is then left as it arrived

    """
    encoding = _codings.to_undo(result.headers.get_list('Content-Encoding'))
    if encoding is None or result.buffer is None:
        return None
    try:
        data = _content.decompress(result.buffer.getvalue(), encoding,
                                   limit)
    except _content.DecompressionError as error:
        LOGGER.debug('Could not decompress the %s response body '
                     '(Content-Encoding %s): %s', result.code, encoding,
                     error)
        return error
    result.buffer = io.BytesIO(data)
    del result.headers['Content-Encoding']
    result.headers['X-Consumed-Content-Encoding'] = encoding
    return None


def content_failure(error: _content.DecompressionError) -> _retry.Failure:
    """What kind of failure an answer whose body could not be
    decompressed is.

    A truncated body is :attr:`~_retry.Failure.CONNECTION`: a transport
    (or a proxy) may have cut it, so an idempotent request is sent again
    as after a broken connection.  Anything else (a corrupt body, one too
    large once decompressed, a coding whose extra is not installed) is
    :attr:`~_retry.Failure.FATAL`: the same body would come again, as
    libcurl's own ``CURLE_BAD_CONTENT_ENCODING`` is classified.

    """
    return (_retry.Failure.CONNECTION if error.truncated
            else _retry.Failure.FATAL)


def retry_after(headers: httputil.HTTPHeaders) -> typing.Optional[float]:
    """``Retry-After`` in `headers`, in seconds, or :data:`None`."""
    values = headers.get_list('Retry-After')  # no KeyError when absent
    if not values:
        return None
    value = ','.join(values)
    seconds = _retry.parse_retry_after(value, time.time())
    if seconds is None:
        LOGGER.debug('Ignoring an unparseable Retry-After: %r', value)
    return seconds


# a response may carry thousands of Warning fields: one line, this many
_WARNINGS_SHOWN = 10
_WARNING_TEXT_MAX = 1000


def log_warning_header(result: httpclient.HTTPResponse) -> None:
    """Log the response's Warning fields as one WARNING line, capped."""
    values = result.headers.get_list('Warning')
    if not values:
        return
    shown = '; '.join(values[:_WARNINGS_SHOWN])
    if len(shown) > _WARNING_TEXT_MAX:
        shown = shown[:_WARNING_TEXT_MAX] + '...'
    more = len(values) - _WARNINGS_SHOWN
    LOGGER.warning('Warning header from %s: %s%s',
                   _urls.redact_url(result.effective_url or ''), shown,
                   f' (and {more} more)' if more > 0 else '')
