"""The fetch engine shared by :class:`HTTPClientMixin` and :class:`Client`.

:func:`run` is the retry loop: send, record, ask the policy, sleep.  Every
decision is :class:`~sprockets.mixins.http._retry.RetryPolicy`'s; this
module only knows how tornado reports what happened.

"""
from __future__ import annotations

import copy
import inspect
import io
import logging
import time
import typing
import urllib.parse

from tornado import httpclient, httputil

from sprockets.mixins.http import (
    _checks,
    _content,
    _otel,
    _response,
    _retry,
    _transports,
    _urls,
)

if typing.TYPE_CHECKING:  # pragma: no cover
    from sprockets.mixins.http._mixin import HTTPClientMixin

LOGGER = logging.getLogger('sprockets.mixins.http')

_REDIRECTS = frozenset({301, 302, 303, 307, 308})

# stop reasons that mean the upstream answered and nothing went wrong on
# our side: a plain 404 is not worth a WARNING
_ANSWERED = frozenset({_retry.StopReason.SUCCESS,
                       _retry.StopReason.NOT_RETRYABLE,
                       _retry.StopReason.DONT_RETRY})


# the one place the CLI and Client reach the AsyncHTTPClient pool through
async_http_client = _transports.async_http_client
classify = _transports.classify


class Call(typing.NamedTuple):
    """One :meth:`http_fetch` call, ready to send."""
    url: str
    method: str
    headers: httputil.HTTPHeaders
    body: typing.Union[bytes, str, None]
    policy: _retry.RetryPolicy
    deadline: typing.Optional[float]
    connect_timeout: float
    request_timeout: float
    options: typing.Dict[str, typing.Any]
    #: undo the Content-Encoding here (tornado was told not to)
    decompress: bool = False


async def run(owner: HTTPClientMixin, call: Call,
              response: _response.HTTPResponse,
              client: typing.Optional[httpclient.AsyncHTTPClient] = None
              ) -> _response.HTTPResponse:
    """Send `call` until the policy says stop, recording into `response`.

    Each turn of the loop: build the attempt, send it, record what
    happened, ask the policy (then the budget) what follows, and sleep.

    """
    policy = call.policy
    budget = owner._http_req_retry_budget(policy)
    key = _urls.upstream(call.url)
    clock = owner._http_req_clock
    started = clock()
    if budget is not None:
        budget.deposit(key, started)
    headers: typing.MutableMapping[str, str] = call.headers
    url, body = call.url, call.body
    idempotent = policy.is_idempotent(call.method, headers)
    deadline = _shorter(call.deadline, policy.deadline)
    if client is None:
        client = _transports.async_http_client()
    transport = _transports.for_client(client)
    previous_delay: typing.Optional[float] = None
    stop_reason: typing.Optional[_retry.StopReason] = None
    attempt = 0
    while True:
        attempt += 1
        attempt_start = clock()
        timeouts = _timeouts(call, deadline, attempt_start - started)
        if timeouts is None:  # a sleep overshot the deadline
            stop_reason = _retry.StopReason.DEADLINE
            break
        sender = _Attempt(call, attempt, url, headers, body, timeouts,
                          transport, _time_left(clock, started, deadline))
        record = _response.AttemptRecord(attempt, attempt_start - started)
        response.records.append(record)
        if LOGGER.isEnabledFor(logging.DEBUG):
            LOGGER.debug('Attempt %i/%i: %s %s %r', attempt,
                         policy.max_attempts, call.method,
                         _urls.redact_url(url), _urls.redact_headers(headers))
        span = _otel.attempt_span(owner, call.method, url, attempt,
                                  sender.request)
        outcome = await sender.send(client, span, owner, response, record)
        now = clock()
        record.duration = now - attempt_start
        decision = policy.decide(
            attempt=attempt, method=call.method, idempotent=idempotent,
            status=outcome.status, failure=outcome.failure,
            retry_after=outcome.retry_after,
            request_timeout=call.request_timeout or None,
            elapsed=now - started, deadline=deadline,
            previous_delay=previous_delay)
        if outcome.redirect_loop:
            stop_reason = _retry.StopReason.TOO_MANY_REDIRECTS
        elif outcome.deadline_reached:  # between two hops of a redirect
            stop_reason = _retry.StopReason.DEADLINE
        elif outcome.redirect_error is not None:
            # the same Location would come again: the redirect is the answer
            stop_reason = _retry.StopReason.NOT_RETRYABLE
        else:
            stop_reason = decision.stop_reason
        if (stop_reason is None and sender.method_changed and not idempotent
                and not policy.retry_non_idempotent):
            # the redirect says the server acted on the POST: sending it
            # again, whatever the GET that followed got, would repeat it
            stop_reason = _retry.StopReason.UNSAFE_METHOD
        if stop_reason is None and budget is not None and \
                not budget.try_withdraw(key, now):
            stop_reason = _retry.StopReason.BUDGET_EXHAUSTED
        span.end(record, stop_reason, decision)
        if stop_reason is not None:
            if outcome.status is None or stop_reason not in _ANSWERED:
                LOGGER.warning('%s %s failed after %i attempt(s): %s (%s)',
                               call.method, _urls.redact_url(url), attempt,
                               record.outcome, stop_reason)
            _call_hook(owner._http_req_on_attempt, response, record)
            if outcome.status is not None:
                await sender.deliver_chunks()
            break
        record.delay = decision.delay
        record.delay_reason = str(decision.delay_reason)
        if outcome.redirect_error is not None:  # pragma: no cover
            raise AssertionError('an invalid redirect is never retried')
        LOGGER.warning('%s %s attempt %i/%i: %s, retrying in %.3f s (%s)',
                       call.method, _urls.redact_url(url), attempt,
                       policy.max_attempts, record.outcome, decision.delay,
                       decision.delay_reason)
        _call_hook(owner._http_req_on_attempt, response, record)
        previous_delay = decision.delay
        await owner._http_req_sleep(decision.delay)
        url, headers, body = _modified_for_retry(owner, response, attempt,
                                                 url, headers, body)
    response.finish(stop_reason)
    _call_hook(owner._http_req_on_complete, response)
    return response


def _shorter(first: typing.Optional[float],
             second: typing.Optional[float]) -> typing.Optional[float]:
    """The shorter of two deadlines, either of which may be absent: a
    policy hook's deadline caps the caller's, and the other way round."""
    if first is None:
        return second
    if second is None:
        return first
    return min(first, second)


def _modified_for_retry(
        owner: HTTPClientMixin, response: _response.HTTPResponse,
        attempts: int, url: str, headers: typing.Mapping[str, str],
        body: typing.Union[bytes, str, None]
) -> typing.Tuple[str, httputil.HTTPHeaders, typing.Union[bytes, str, None]]:
    """Ask the owner's ``_http_req_modify_for_retry`` for the next
    attempt, with what 2.x passed it (the 0-based index of the attempt
    about to be sent, a plain dict copy of the headers), and check what
    it returns as the call's own arguments are checked."""
    url, changed, body = owner._http_req_modify_for_retry(
        response, attempts, url, _plain_dict(headers), body)
    repeated = (headers if isinstance(headers, httputil.HTTPHeaders)
                else httputil.HTTPHeaders())
    checked = httputil.HTTPHeaders()
    for name, value in _checks.header_pairs(
            changed, argument='the headers _http_req_modify_for_retry '
            'returned'):
        values = repeated.get_list(name)
        if len(values) > 1 and value == ','.join(values):
            for one in values:  # unchanged: keep the fields apart
                checked.add(name, one)
        else:
            checked.add(name, value)
    if isinstance(body, (dict, list, tuple)):  # serialize it, as 2.x did
        body = owner._http_req_body_serialize(
            body, checked.get('Content-Type'))
    if isinstance(body, (bytearray, memoryview)):
        body = bytes(body)
    if body is not None and not isinstance(body, (bytes, str)):
        raise TypeError('_http_req_modify_for_retry must return the body '
                        f'as bytes, str or None, got {type(body).__name__}')
    return _checks.url(url), checked, body


def _plain_dict(headers: typing.Mapping[str, str]) -> typing.Dict[str, str]:
    """`headers` as the plain dict 2.x hooks got: one key per name,
    repeated fields joined with a comma (tornado's own value)."""
    if isinstance(headers, httputil.HTTPHeaders):
        return {name: headers[name] for name in headers}
    return dict(headers)


def _call_hook(hook: typing.Callable[..., None], *args: typing.Any) -> None:
    """Call a metrics hook: its failure is logged, never raised, since
    requests were already sent."""
    try:
        hook(*args)
    except Exception:
        LOGGER.exception('%s failed', getattr(hook, '__name__', hook))


def _time_left(clock: typing.Callable[[], float], started: float,
               deadline: typing.Optional[float]
               ) -> typing.Callable[[], typing.Optional[float]]:
    """Return a function that says how many seconds are left before the
    deadline (:data:`None`: no deadline), for the hops of a redirect."""
    if deadline is None:
        return lambda: None
    return lambda: deadline - (clock() - started)


def _timeouts(call: Call, deadline: typing.Optional[float],
              elapsed: float) -> typing.Optional[typing.Tuple[float, float]]:
    """Return the attempt's (connect, request) timeouts, shrunk to the time
    left before the deadline; :data:`None` when none is left."""
    if deadline is None:
        return call.connect_timeout, call.request_timeout
    left = deadline - elapsed
    if left < 0.001:  # curl counts whole milliseconds, and 0 is no limit
        return None
    # 0 is tornado's "no limit": the deadline is the limit then
    return (min(call.connect_timeout or left, left),
            min(call.request_timeout or left, left))


class _Outcome(typing.NamedTuple):
    """What one attempt produced, for the policy."""
    status: typing.Optional[int] = None
    failure: typing.Optional[_retry.Failure] = None
    retry_after: typing.Optional[float] = None
    redirect_loop: bool = False
    #: why the redirect that is the response was not followed
    redirect_error: typing.Optional[ValueError] = None
    #: the deadline came between two hops of a redirect
    deadline_reached: bool = False


class _Attempt:
    """One attempt: its tornado request, and what it sends and records."""

    def __init__(self, call: Call, number: int, url: str,
                 headers: typing.MutableMapping[str, str],
                 body: typing.Union[bytes, str, None],
                 timeouts: typing.Tuple[float, float],
                 transport: _transports.Transport,
                 time_left: typing.Callable[[], typing.Optional[float]]
                 = lambda: None) -> None:
        options = call.options
        self.time_left = time_left
        self.deadline_reached = False
        self.inflight = _transports.Inflight(
            options.get('prepare_curl_callback'))
        self.follow = bool(options.get('follow_redirects'))
        self.max_redirects = int(options.get('max_redirects') or 0)
        self.decompress = call.decompress
        self.stream = options.get('streaming_callback')
        self.chunks: typing.Optional[typing.List[bytes]] = None
        #: a redirect turned the request into a GET (303, or 301/302
        #: after a POST): the server acted on what was sent
        self.method_changed = False
        # redirects are followed by _send, not by tornado, so that both
        # clients keep credentials from other origins and report loops
        # alike; the curl handle is kept to abort a cancelled attempt
        options = dict(options, follow_redirects=False, max_redirects=None,
                       **transport.request_options(self.inflight))
        if self.stream is not None and (
                self.follow or number < call.policy.max_attempts):
            # only the returned attempt's body may reach the caller
            self.chunks = []
            options['streaming_callback'] = self.chunks.append
        connect_timeout, request_timeout = timeouts
        self.request = httpclient.HTTPRequest(
            url, method=call.method, headers=httputil.HTTPHeaders(headers),
            body=_content.encode_body(body, headers.get('Content-Type')),
            connect_timeout=connect_timeout,
            request_timeout=request_timeout, **options)
        #: why a redirect was not followed (its Location is unusable)
        self.redirect_error: typing.Optional[ValueError] = None

    async def send(self, client: httpclient.AsyncHTTPClient,
                   span: _otel.NoSpan, owner: HTTPClientMixin,
                   response: _response.HTTPResponse,
                   record: _response.AttemptRecord) -> _Outcome:
        """Send the attempt and record its result or exception; never
        raises for a transport failure."""
        try:
            result, redirect_loop = await span.active(self._send(client))
        except Exception as error:  # recorded, never raised
            response.append_exception(error)
            record.exception = error
            return _Outcome(failure=_transports.classify(error))
        if result.code == 599 and result.error is not None:
            # a response object that is really a transport failure (a
            # patched fetch may return one): no response arrived
            response.append_exception(result.error)
            record.exception = result.error
            return _Outcome(failure=_transports.classify(result.error))
        content_error = (inflate(result, owner.MAX_DECOMPRESSED_SIZE)
                         if self.decompress else None)
        response.append_response(result)
        # the body is still compressed: that is its error
        response._content_error = content_error
        record.status = result.code
        _log_warning_header(result)
        if self.deadline_reached:
            return _Outcome(result.code, deadline_reached=True)
        if self.redirect_error is not None:
            record.redirect_error = self.redirect_error
            LOGGER.warning('Not following the %s redirect of %s %s: %s',
                           result.code, self.request.method,
                           _urls.redact_url(self.request.url),
                           self.redirect_error)
            return _Outcome(result.code, None, None,
                            redirect_error=self.redirect_error)
        return _Outcome(result.code, None, _retry_after(result),
                        redirect_loop)

    async def _send(self, client: httpclient.AsyncHTTPClient
                    ) -> typing.Tuple[httpclient.HTTPResponse, bool]:
        """Send the attempt, following redirects when asked.

        :returns: the final response, and whether it is a redirect that
            exceeded ``max_redirects``
        :raises ValueError: for a URL that cannot be sent (never retried)

        """
        # the headers as the engine built them (and OTel added to): tornado
        # adds its own to the request's (Host, Content-Length), so the
        # next hop of a redirect starts from these instead
        request, headers, hops = (
            self.request, httputil.HTTPHeaders(self.request.headers), 0)
        while True:
            problem = _urls.url_problem(request.url)
            if problem is not None:
                shown = _urls.redact_url(request.url)
                raise ValueError(f'invalid URL {shown!r}: {problem}')
            result = _with_headers(
                await _transports.fetch(client, request, self.inflight))
            if not (self.follow and result.code in _REDIRECTS
                    and 'Location' in result.headers):
                return result, False
            if hops >= self.max_redirects:
                return result, True
            try:
                following, headers = _redirected(request, headers, result)
            except ValueError as error:  # an unusable Location
                self.redirect_error = error
                return result, False
            left = self.time_left()
            if left is not None:
                if left < 0.001:  # see _timeouts
                    self.deadline_reached = True
                    return result, False
                following.connect_timeout = min(
                    following.connect_timeout or left, left)
                following.request_timeout = min(
                    following.request_timeout or left, left)
            hops += 1
            if self.chunks:
                self.chunks.clear()  # a hop's body is not the answer
            self.method_changed |= following.method != request.method
            request = following
            _otel.redirected(result.code, request.url)

    async def deliver_chunks(self) -> None:
        """Hand the buffered body of the returned attempt to the caller's
        streaming_callback."""
        if self.chunks and self.stream is not None:
            await _deliver(self.stream, self.chunks)


def _with_headers(result: httpclient.HTTPResponse
                  ) -> httpclient.HTTPResponse:
    """Give `result` tornado HTTPHeaders when a patched fetch (a 2.x
    test's) built it with a plain dict, which tornado keeps as it is."""
    if not isinstance(result.headers, httputil.HTTPHeaders):
        result.headers = httputil.HTTPHeaders(result.headers or {})
    return result


def _redirected(request: httpclient.HTTPRequest,
                headers: httputil.HTTPHeaders,
                result: httpclient.HTTPResponse
                ) -> typing.Tuple[httpclient.HTTPRequest,
                                  httputil.HTTPHeaders]:
    """Return the request for the next hop of a redirect, and the headers
    it was built from.

    303 (and 301 or 302 after a POST) turns into a body-less GET, as
    browsers and tornado do.  The next hop starts from the headers the
    engine built for the attempt, not from the ones tornado filled in
    (``Host``, ``Content-Length``), so that it carries its own ``Host``.
    Credentials are dropped when the target is another origin: basic-auth,
    ``Host``, and every header that log lines redact (Authorization,
    Proxy-Authorization, Cookie, and names with auth, key, token, secret,
    password or session in them).

    :raises ValueError: when the ``Location`` is not a usable http(s) URL

    """
    location = result.headers['Location'].strip()
    shown = _urls.redact_url(location)
    if not location:
        raise ValueError('the Location is empty')
    try:
        reference = urllib.parse.urlsplit(location)
        target = urllib.parse.urljoin(request.url, location)
    except ValueError as error:  # "http://[::1"
        raise ValueError(f'the Location {shown!r} is not a URL: '
                         f'{error}') from None
    if (reference.scheme or location.startswith('//')) and not (
            reference.hostname):
        # urljoin would fall back to the request's own host
        raise ValueError(f'the Location {shown!r} has no host')
    target = _checks.url(target)
    problem = _urls.url_problem(target)
    if problem is not None:
        raise ValueError(f'the Location {shown!r} is not a usable http(s) '
                         f'URL: {problem}')
    following = copy.copy(request)
    following.url = target
    headers = httputil.HTTPHeaders(headers)
    if (result.code == 303 and request.method != 'HEAD') or (
            result.code in (301, 302) and request.method == 'POST'):
        following.method = 'GET'
        following.body = None  # type: ignore[assignment]
        for name in ('Content-Type', 'Content-Length',
                     'Content-Encoding', 'Transfer-Encoding'):
            headers.pop(name, None)
    if _urls.upstream(following.url) != _urls.upstream(request.url):
        for name in [name for name in headers
                     if _urls.SECRET_NAME.search(name) or name == 'Host']:
            del headers[name]
        following.auth_username = following.auth_password = None
        following.auth_mode = None
    following.headers = httputil.HTTPHeaders(headers)
    return following, headers


def inflate(result: httpclient.HTTPResponse,
            limit: int = _content.MAX_DECOMPRESSED_SIZE
            ) -> typing.Optional[ValueError]:
    """Undo `result`'s Content-Encoding in place, as tornado's own
    decompression does: :attr:`raw.body <tornado.httpclient.HTTPResponse.body>`
    becomes the decompressed bytes and the header moves to
    ``X-Consumed-Content-Encoding``.

    :param limit: the most bytes the body may decompress to
    :returns: :data:`None`, or the error of a body that could not be
        decompressed (corrupt, too large, or in a coding whose extra is
        missing), which is then left as it arrived

    """
    encoding = result.headers.get('Content-Encoding')
    if (not encoding or encoding.strip().lower() == 'identity'
            or result.buffer is None):
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


async def _deliver(callback: typing.Callable[[bytes], typing.Any],
                   chunks: typing.List[bytes]) -> None:
    for chunk in chunks:
        result = callback(chunk)
        if inspect.isawaitable(result):
            await result


def _retry_after(result: httpclient.HTTPResponse) -> typing.Optional[float]:
    value = result.headers.get('Retry-After')
    if value is None:
        return None
    seconds = _retry.parse_retry_after(value, time.time())
    if seconds is None:
        LOGGER.debug('Ignoring an unparseable Retry-After: %r', value)
    return seconds


# a response may carry thousands of Warning fields: one line, this many
_WARNINGS_SHOWN = 10
_WARNING_TEXT_MAX = 1000


def _log_warning_header(result: httpclient.HTTPResponse) -> None:
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
