"""The mixin: :class:`HTTPClientMixin`, its class attributes,
:meth:`~HTTPClientMixin.http_fetch` and the ``_http_req_*`` hooks."""
from __future__ import annotations

import inspect
import sys
import time
import typing

from ietfparse import datastructures
from tornado import httpclient, httputil

from sprockets.mixins.http import (
    _call,
    _checks,
    _content,
    _engine,
    _request,
)
from sprockets.mixins.http._content import (
    CONTENT_TYPE_MSGPACK,
)
from sprockets.mixins.http._response import AttemptRecord, HTTPResponse
from sprockets.mixins.http._retry import RetryBudget, RetryPolicy
from sprockets.mixins.http._version import __version__

__all__ = ['DEFAULT_USER_AGENT', 'HTTPClientMixin']

#: The User-Agent sent when neither the application nor a consumer names
#: the service.
DEFAULT_USER_AGENT = f'sprockets.mixins.http/{__version__}'

_ContentTypeArg = typing.Union[str, datastructures.ContentType]


class HTTPClientMixin:
    """Mixin for making HTTP requests with :meth:`http_fetch`.

    Usable in a :class:`tornado.web.RequestHandler`, a consumer, or any
    class: it takes no arguments of its own and passes everything on to the
    next class (``super().__init__(*args, **kwargs)``).

    The upper-case class attributes are the defaults for :meth:`http_fetch`;
    override them on a subclass or on an instance.

    .. versionchanged:: 3.0
       Retries follow a :class:`RetryPolicy`: see :attr:`RETRY_POLICY`.

    """

    #: Seconds to wait for a connection when the call does not say.
    DEFAULT_CONNECT_TIMEOUT: float = 20
    #: Seconds an attempt may take when the call does not say.
    DEFAULT_REQUEST_TIMEOUT: float = 20
    #: The backoff base in seconds when the call does not say.
    DEFAULT_RETRY_TIMEOUT: float = 3
    #: How many times a request is sent at most (attempts, not retries).
    MAX_HTTP_RETRIES: int = 3
    #: How many redirects are followed at most when the call does not say.
    MAX_REDIRECTS: int = 5
    #: The :class:`RetryPolicy` to start from.  :data:`None` builds one from
    #: :attr:`MAX_HTTP_RETRIES` and :attr:`DEFAULT_RETRY_TIMEOUT` with the
    #: other :class:`RetryPolicy` defaults.
    #:
    #: .. versionadded:: 3.0
    RETRY_POLICY: typing.Optional[RetryPolicy] = None
    #: The most bytes a compressed response body may decompress to; a
    #: larger one fails its attempt (see :doc:`compression`).
    #: Tornado's default ``max_body_size`` for an uncompressed body.
    #:
    #: .. versionadded:: 3.0
    MAX_DECOMPRESSED_SIZE: int = _content.MAX_DECOMPRESSED_SIZE
    #: The OpenTelemetry tracer provider for this class's spans;
    #: :data:`None` uses the global one (see :doc:`observability`).
    #:
    #: .. versionadded:: 3.0
    TRACER_PROVIDER: typing.Any = None
    #: For a final status of 400 or more, make :attr:`HTTPResponse.body`
    #: the decoded body's ``message`` when it has one.
    simplify_error_response: bool = True

    def __init__(self, *args: typing.Any, **kwargs: typing.Any) -> None:
        super().__init__(*args, **kwargs)

    async def http_fetch(
            self, url: typing.Any, method: str = 'GET',
            request_headers: typing.Optional[typing.Mapping[str, str]] = None,
            body: typing.Any = None,
            content_type: _ContentTypeArg = CONTENT_TYPE_MSGPACK,
            follow_redirects: bool = False,
            max_redirects: typing.Optional[int] = None,
            connect_timeout: typing.Optional[float] = None,
            request_timeout: typing.Optional[float] = None,
            retry_timeout: typing.Optional[float] = None,
            max_http_attempts: typing.Optional[int] = None,
            auth_username: typing.Optional[str] = None,
            auth_password: typing.Optional[str] = None,
            user_agent: typing.Optional[str] = None,
            validate_cert: bool = True,
            allow_nonstandard_methods: bool = False,
            dont_retry: typing.Optional[typing.Iterable[int]] = None, *,
            retry_policy: typing.Optional[RetryPolicy] = None,
            deadline: typing.Optional[float] = None,
            params: typing.Optional[typing.Mapping[str, typing.Any]] = None,
            **kwargs: typing.Any) -> HTTPResponse:
        """Send a request, retrying what is safe to retry, and return every
        attempt in an :class:`HTTPResponse`.

        An HTTP outcome never raises: connection errors, timeouts and error
        statuses are recorded on the response.  Programming errors raise
        before anything is sent.

        :param url: the URL, or anything whose :func:`str` is one
        :param method: the request method, sent upper-cased; a method
            tornado does not know (``TRACE``, ``PROPFIND``), or a body with
            a method other than POST, PUT and PATCH, needs
            `allow_nonstandard_methods`
        :param request_headers: headers to send; the mapping is copied,
            never changed
        :param body: the request body.  :class:`dict`, :class:`list` and
            :class:`tuple` are serialized by the Content-Type (see
            :meth:`_http_req_body_serialize`); :class:`str` and
            :class:`bytes` are sent as they are; :data:`None` sends no body
            (an empty one for POST, PUT and PATCH)
        :param content_type: the Content-Type of `body`, sent whenever a
            body is given unless `request_headers` has one; :data:`None`
            means :data:`CONTENT_TYPE_MSGPACK`
        :param follow_redirects: follow 3xx responses
        :param max_redirects: how many redirects to follow; :data:`None`
            means :attr:`MAX_REDIRECTS`
        :param connect_timeout: seconds to wait for a connection;
            :data:`None` means :attr:`DEFAULT_CONNECT_TIMEOUT` and ``0``
            means no limit (tornado's meaning)
        :param request_timeout: seconds an attempt may take; :data:`None`
            means :attr:`DEFAULT_REQUEST_TIMEOUT` and ``0`` means no limit
            but the `deadline`
        :param retry_timeout: the backoff base in seconds; :data:`None`
            keeps the policy's (:attr:`DEFAULT_RETRY_TIMEOUT` by default)
        :param max_http_attempts: how many times to send the request at
            most; :data:`None` keeps the policy's (:attr:`MAX_HTTP_RETRIES`
            by default)
        :param auth_username: username for HTTP basic authentication
        :param auth_password: password for HTTP basic authentication
        :param user_agent: the User-Agent; :data:`None` keeps a User-Agent
            in `request_headers`, or else uses :meth:`_http_req_user_agent`
        :param validate_cert: verify the server's TLS certificate
        :param allow_nonstandard_methods: allow methods and bodies that
            tornado otherwise refuses (a body with GET)
        :param dont_retry: statuses never to retry, added to the policy's
        :param retry_policy: the :class:`RetryPolicy` to use in place of
            :attr:`RETRY_POLICY`; `max_http_attempts`, `retry_timeout`,
            `dont_retry` and `deadline` still override its fields
        :param deadline: seconds the whole call may take, retries and sleeps
            included; :data:`None` keeps the policy's
        :param params: query arguments merged into the URL's query string;
            a list or tuple value repeats the argument
        :param kwargs: passed on to :class:`tornado.httpclient.HTTPRequest`
        :raises RuntimeError: when `kwargs` has ``raise_error``
        :raises TypeError: for a body of a type that cannot be sent, or a
            value in it that cannot be serialized
        :raises ValueError: for a dict, list or tuple body with a content
            type that cannot carry it
            (:class:`UnsupportedContentType`), an invalid policy value, or a
            body with GET or HEAD, or a request header that cannot be sent
            (a CR or LF in its value, a name that is not a token)

        .. versionchanged:: 3.0
           Added `retry_policy`, `deadline` and `params`.

        """
        _checks.refuse_raise_error(kwargs)
        return await self._http_req_send(_request.build_call(
            self, url=url, method=method, request_headers=request_headers,
            body=body, content_type=content_type,
            follow_redirects=follow_redirects, max_redirects=max_redirects,
            connect_timeout=connect_timeout, request_timeout=request_timeout,
            retry_timeout=retry_timeout, max_http_attempts=max_http_attempts,
            auth_username=auth_username, auth_password=auth_password,
            user_agent=user_agent, validate_cert=validate_cert,
            allow_nonstandard_methods=allow_nonstandard_methods,
            dont_retry=dont_retry, retry_policy=retry_policy,
            deadline=deadline, params=params, options=kwargs))

    def _http_req_send(
            self, call: _call.Call,
            client: typing.Optional[httpclient.AsyncHTTPClient] = None
    ) -> typing.Awaitable[HTTPResponse]:
        """Send a built call through the engine: the one path of
        :meth:`http_fetch` and :meth:`Client.request
        <sprockets.mixins.http.Client.request>`; returns the engine's
        coroutine (one coroutine layer fewer per call)."""
        response = HTTPResponse(self.simplify_error_response,
                                clock=_call.clock_of(self))
        return _engine.run(self, call, response, client)

    def _http_req_retry_policy(
            self, retry_policy: typing.Optional[RetryPolicy],
            max_http_attempts: typing.Optional[int],
            retry_timeout: typing.Optional[float],
            dont_retry: typing.Optional[typing.Iterable[int]],
            deadline: typing.Optional[float]) -> RetryPolicy:
        """Return the policy for one call: `retry_policy`, else
        :attr:`RETRY_POLICY`, else one built from the class attributes; then
        the call's own arguments applied over it.

        .. versionadded:: 3.0

        """
        policy = retry_policy or self.RETRY_POLICY
        if policy is None:
            policy = _request.default_policy(self.MAX_HTTP_RETRIES,
                                     self.DEFAULT_RETRY_TIMEOUT)
        elif not isinstance(policy, RetryPolicy):
            raise TypeError(
                f'retry_policy must be a RetryPolicy, got {policy!r}')
        changes: typing.Dict[str, typing.Any] = {}
        if max_http_attempts is not None:
            changes['max_attempts'] = _checks.count('max_http_attempts',
                                                    max_http_attempts)
        if retry_timeout is not None:
            changes['retry_timeout'] = _checks.seconds('retry_timeout',
                                                       retry_timeout)
        if dont_retry:
            if isinstance(dont_retry, int):
                dont_retry = [dont_retry]
            changes['dont_retry'] = policy.dont_retry | frozenset(dont_retry)
        if deadline is not None:
            changes['deadline'] = _checks.seconds(
                'deadline', deadline, infinite=True, positive=True)
        return policy.replace(**changes) if changes else policy

    def _http_req_retry_budget(
            self, policy: RetryPolicy) -> typing.Optional[RetryBudget]:
        """Return the :class:`RetryBudget` one call draws its retries
        from, or :data:`None` for no budget.

        The default is the policy's
        :attr:`~RetryPolicy.retry_budget`.  The testing kit's
        :func:`~sprockets.mixins.http.testing.instant_retries` replaces it
        so that tests cannot drain each other's budget.

        .. versionadded:: 3.0

        """
        return policy.retry_budget

    @_call.package_default
    def _http_req_apply_default_headers(
            self, request_headers: typing.Optional[typing.Mapping[str, str]],
            content_type: _ContentTypeArg,
            body: typing.Any) -> httputil.HTTPHeaders:
        """Return the request headers with the defaults added.

        Adds ``Accept``; ``Accept-Encoding`` with the codings the package
        can decompress (``gzip``, plus ``br`` and ``zstd`` when their extras
        are installed; see :doc:`compression`); ``Content-Type`` when there
        is a `body`;
        ``Correlation-Id`` from ``self.correlation_id`` or the handler's
        request; and ``User-Agent`` from :meth:`_http_req_user_agent`.
        A header already in `request_headers` is kept.

        :param request_headers: the headers given to :meth:`http_fetch`
            (a copy; it is not changed)
        :param content_type: the mime type of `body`
        :param body: the request body, not yet serialized
        :returns: a new :class:`tornado.httputil.HTTPHeaders`

        """
        return _request.add_default_headers(
            self, _request.copy_headers(request_headers), content_type, body)

    def _http_req_correlation_id(self) -> typing.Optional[str]:
        """Return ``self.correlation_id`` when truthy, else the
        ``Correlation-Id`` of the request being handled, if any.

        .. versionadded:: 3.0

        """
        correlation_id = getattr(self, 'correlation_id', None)
        if isinstance(correlation_id, (bytes, bytearray)):
            return bytes(correlation_id).decode('latin-1')
        if correlation_id:
            return str(correlation_id)
        request = getattr(self, 'request', None)
        request_headers = getattr(request, 'headers', None)
        if request_headers is not None:
            value = request_headers.get('Correlation-Id')
            if value:
                return str(value)
        return None

    def _http_req_body_serialize(
            self, body: typing.Any,
            content_type: typing.Optional[str]) -> typing.Union[bytes, str]:
        """Return `body` ready to send.

        :class:`dict`, :class:`list` and :class:`tuple` are serialized by
        `content_type`: JSON for ``application/json`` and ``+json``;
        msgpack for ``application/msgpack``, ``application/x-msgpack`` and
        ``+msgpack``; form-encoded for
        ``application/x-www-form-urlencoded``; ``multipart/form-data``
        with fields and ``(filename, data[, content_type])`` files.
        UUID, datetime, date, Decimal and bytes values are encoded as
        :mod:`sprockets.mixins.mediatype`'s JSON transcoder does (Decimal
        as a string); msgpack keeps bytes binary.  :class:`str` and
        :class:`bytes` are returned as they are.

        :param body: the request body
        :param content_type: the request's Content-Type
        :raises TypeError: for any other body type, or a value that cannot
            be serialized (the message names the type)
        :raises UnsupportedContentType: for a dict, list or tuple with a
            content type that cannot carry it

        """
        return _content.serialize(body, content_type)

    def _http_req_user_agent(self) -> str:
        """Return the User-Agent to send.

        ``service/version`` from the application's ``settings`` when both
        are set; else a rejected consumer's
        ``_process.consumer_name/consumer_version``; else
        :data:`DEFAULT_USER_AGENT`.

        """
        settings = getattr(self, 'settings', None)
        try:
            if settings is not None:
                return f"{settings['service']}/{settings['version']}"
        except (KeyError, TypeError):
            pass
        process = getattr(self, '_process', None)
        name = getattr(process, 'consumer_name', None)
        version = getattr(process, 'consumer_version', None)
        if name and version:
            return f'{name}/{version}'
        return DEFAULT_USER_AGENT

    def _http_req_modify_for_retry(
            self, response: HTTPResponse, attempt: int, url: str,
            headers: typing.Dict[str, str], body: typing.Any
    ) -> typing.Tuple[str, typing.Mapping[str, str], typing.Any]:
        """Change the request before it is sent again.

        The default sets ``X-Retry-Attempt`` to ``attempt + 1``, the number
        of the attempt about to be sent, as 2.x did.  Override it for
        protocols with one-time values such as an OAuth 1 nonce.  What it
        returns is checked as the call's own arguments are (a header value
        with a line break raises :exc:`ValueError` before the retry is
        sent).

        :param response: the response so far, with every attempt
        :param attempt: the 0-based index of the attempt about to be sent:
            ``1`` before the first retry, as 2.x passed it
        :param url: the request URL
        :param headers: the request headers, a plain :class:`dict` that is
            the package's own copy (the caller's mapping is never changed)
        :param body: the request body as :meth:`_http_req_body_serialize`
            returned it (a :class:`str` for JSON, as in 2.x)
        :returns: the URL, headers and body for the next attempt

        """
        headers['X-Retry-Attempt'] = str(attempt + 1)
        return url, headers, body

    async def _http_req_sleep(self, seconds: float) -> None:
        """Wait `seconds` before the next attempt.

        The default awaits ``sprockets.mixins.http.asyncio.sleep``, looked
        up when it runs, so that a test may patch the module's
        ``asyncio``.  Override it to record delays or to sleep on another
        clock.

        .. versionadded:: 3.0

        """
        # looked up when it runs, through the package's own attribute:
        # 2.x test suites patch sprockets.mixins.http.asyncio
        package = sys.modules[__name__.rpartition('.')[0]]
        result = package.asyncio.sleep(seconds)
        if inspect.isawaitable(result):
            await result

    @_call.package_default
    def _http_req_clock(self) -> float:
        """Return the monotonic time that durations and deadlines use.

        .. versionadded:: 3.0

        """
        return time.monotonic()

    @_call.package_default
    def _http_req_on_attempt(self, response: HTTPResponse,
                             record: AttemptRecord) -> None:
        """Called after each attempt with its :class:`AttemptRecord`, once
        the engine knows what follows it; a seam for metrics.

        .. versionadded:: 3.0

        """

    @_call.package_default
    def _http_req_on_complete(self, response: HTTPResponse) -> None:
        """Called once when :meth:`http_fetch` is about to return; a seam
        for metrics.

        .. versionadded:: 3.0

        """
