"""The standalone :class:`Client`: the mixin's engine behind a base URL.

:class:`Client` is an :class:`~sprockets.mixins.http.HTTPClientMixin`, so a
request goes through the same policy, budget, hooks and logging as
:meth:`~sprockets.mixins.http.HTTPClientMixin.http_fetch`; it only adds a
base URL, client-wide headers and fetch defaults, and its own
:class:`tornado.httpclient.AsyncHTTPClient` that :meth:`Client.close`
releases.

"""
from __future__ import annotations

import inspect
import re
import types
import typing
import urllib.parse
import weakref

from tornado import httpclient, httputil, ioloop

from sprockets.mixins.http import _checks, _request, _transports, _urls
from sprockets.mixins.http._mixin import HTTPClientMixin
from sprockets.mixins.http._response import HTTPResponse
from sprockets.mixins.http._retry import RetryPolicy

__all__ = ['Client', 'close_all']

# every Client that is not closed yet, for close_all()
_open_clients: weakref.WeakSet[Client] = weakref.WeakSet()

# a path that starts with a scheme and ``//`` is an absolute URL
_ABSOLUTE = re.compile(r'^[A-Za-z][A-Za-z0-9+.-]*://')

# the http_fetch arguments a Client passes by name, with their defaults
_FETCH_DEFAULTS: typing.Dict[str, typing.Any] = {
    name: parameter.default
    for name, parameter in inspect.signature(
        HTTPClientMixin.http_fetch).parameters.items()
    if parameter.default is not inspect.Parameter.empty
    and name not in ('method', 'request_headers', 'body', 'params')}

# what Client.request takes itself, or refuses in a fetch default
_RESERVED = frozenset({'url', 'method', 'path', 'headers', 'body', 'params',
                       'request_headers'})

# the keyword arguments of tornado's HTTPRequest that http_fetch passes on
_REQUEST_OPTIONS = frozenset(
    name for name in inspect.signature(
        httpclient.HTTPRequest.__init__).parameters
    if name != 'self') - _RESERVED


class Client(HTTPClientMixin):
    """An HTTP client with a base URL, for code that is not a request
    handler: consumers, scripts, background tasks.

    It is an :class:`HTTPClientMixin` with the same engine: the same
    :class:`RetryPolicy` and :class:`RetryBudget`, the same ``_http_req_*``
    hooks (override them on a subclass), the same log lines and the same
    :class:`HTTPResponse`.  An HTTP outcome never raises.

    .. code-block:: python

       async with http.Client('http://users.internal/api/',
                              headers={'Authorization': token},
                              request_timeout=5) as users:
           response = await users.get('users/1', params={'full': 'true'})

    **Paths** are always relative to `base_url`'s path, with or without a
    leading slash: ``Client('http://h/api')`` sends both ``'users/1'`` and
    ``'/users/1'`` to ``http://h/api/users/1`` (a base URL without a
    trailing slash behaves as if it had one).  See :meth:`url`.

    **Headers** given to a call are merged over the client's headers,
    names compared without regard to case; a call header set to
    :data:`None` removes the client's header for that call.

    **Fetch defaults** are any keyword argument of
    :meth:`HTTPClientMixin.http_fetch` (``content_type``,
    ``request_timeout``, ``max_http_attempts``, ``deadline`` …) or of
    :class:`tornado.httpclient.HTTPRequest`; a call's own keyword arguments
    override them.

    **Closing**: a client sends with its own
    :class:`~tornado.httpclient.AsyncHTTPClient` (one per IOLoop, created on
    first use, sized by ``HTTP_MAX_CLIENTS`` like the mixin's; the one of
    an event loop that was closed, as ``asyncio.run()`` closes its loop,
    is closed and dropped the next time the client sends).
    :meth:`close` releases it, ``async with`` closes the client on the way
    out, and :func:`close_all` closes every open client at application
    shutdown.  A closed client raises :exc:`RuntimeError` when used,
    :meth:`~HTTPClientMixin.http_fetch` included.

    :param base_url: an ``http`` or ``https`` URL with a host, and without
        a query or fragment
    :param headers: headers sent with every request; the mapping is
        copied, never changed
    :param retry_policy: the :class:`RetryPolicy` for every request, set
        as this client's :attr:`~HTTPClientMixin.RETRY_POLICY`;
        :data:`None` builds one from the class attributes, as the mixin
        does
    :param fetch_defaults: default keyword arguments for every request
    :raises ValueError: for a `base_url` that is not an absolute http(s)
        URL, or that has a query or fragment, or for a header name or
        value HTTP cannot carry (a space in a name, a line break or a
        non-Latin-1 character in a value), naming the header
    :raises TypeError: for `headers` that is not a mapping, a header
        name that is not a :class:`str`, a header value that is neither
        :class:`str` nor :class:`bytes` (bytes are sent as their Latin-1
        text; :data:`None` removes a client header for one call), a
        `retry_policy` that is not a
        :class:`RetryPolicy`, or a fetch default that neither
        :meth:`~HTTPClientMixin.http_fetch` nor
        :class:`~tornado.httpclient.HTTPRequest` takes
    :raises RuntimeError: for a ``raise_error`` fetch default

    .. versionadded:: 3.0

    """

    def __init__(
            self, base_url: typing.Any,
            headers: typing.Optional[
                typing.Mapping[str, typing.Optional[str]]] = None,
            retry_policy: typing.Optional[RetryPolicy] = None,
            **fetch_defaults: typing.Any) -> None:
        super().__init__()
        self._base = _parse_base_url(str(base_url))
        self._base_url = urllib.parse.urlunsplit(self._base)
        self._origin = _urls.upstream(self._base_url)
        self._headers = _merge_headers(httputil.HTTPHeaders(), headers)
        if retry_policy is not None:
            if not isinstance(retry_policy, RetryPolicy):
                raise TypeError('retry_policy must be a RetryPolicy, got '
                                f'{retry_policy!r}')
            self.RETRY_POLICY = retry_policy
        _check_fetch_kwargs(fetch_defaults)
        self._fetch_defaults = dict(fetch_defaults)
        self._http_clients: weakref.WeakKeyDictionary[
            ioloop.IOLoop, httpclient.AsyncHTTPClient,
        ] = weakref.WeakKeyDictionary()
        self._in_flight = 0
        self._closed = False
        _open_clients.add(self)

    def __repr__(self) -> str:
        state = 'closed' if self._closed else 'open'
        return (f'<{type(self).__name__} '
                f'{_urls.redact_url(self._base_url)} {state}>')

    async def __aenter__(self) -> Client:
        self._check_open()
        return self

    async def __aexit__(
            self, exc_type: typing.Optional[typing.Type[BaseException]],
            exc: typing.Optional[BaseException],
            traceback: typing.Optional[types.TracebackType]) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        """The base URL, always with a trailing slash."""
        return self._base_url

    @property
    def headers(self) -> httputil.HTTPHeaders:
        """A copy of the headers sent with every request."""
        return self._headers.copy()

    @property
    def closed(self) -> bool:
        """:data:`True` once :meth:`close` was called."""
        return self._closed

    def url(self, path: str = '') -> str:
        """Return the absolute URL that `path` is sent to.

        A relative path, with or without a leading slash, is appended to
        :attr:`base_url`'s path: with a base URL of ``http://h/api/``,
        ``'users/1'`` and ``'/users/1'`` are both
        ``http://h/api/users/1``, and ``''`` is the base URL itself.  The
        path is used as given: a query string in it is kept, nothing is
        quoted, and dot segments are left to the server.

        An absolute URL (a scheme followed by ``//``, or ``//`` alone for
        the base URL's scheme) is allowed only on the base URL's origin
        (scheme, host and port), and is used as it is: the client's headers
        may carry credentials, and they are never sent to another host by
        accident.

        :raises ValueError: for an absolute URL on another origin
        :raises TypeError: when `path` is not a :class:`str`

        """
        if not isinstance(path, str):
            raise TypeError(f'path must be a str, got {type(path).__name__}')
        absolute = path
        if path.startswith('//'):
            absolute = f'{self._base.scheme}:{path}'
        elif not _ABSOLUTE.match(path):
            return self._base_url + path.lstrip('/')
        if _urls.upstream(absolute) != self._origin:
            raise ValueError(
                f'{_urls.redact_url(absolute)} is not on the origin of '
                f'{_urls.redact_url(self._base_url)}: a Client only sends '
                'to its own origin; use another Client for another host')
        return absolute

    async def request(
            self, method: str, path: str = '', *,
            params: typing.Optional[typing.Mapping[str, typing.Any]] = None,
            body: typing.Any = None,
            headers: typing.Optional[
                typing.Mapping[str, typing.Optional[str]]] = None,
            **fetch_kwargs: typing.Any) -> HTTPResponse:
        """Send `method` to :meth:`url` (`path`) and return every attempt.

        :param method: the request method, sent in upper case
        :param path: the path relative to :attr:`base_url` (see :meth:`url`)
        :param params: query arguments merged into the URL's query string;
            a list or tuple value repeats the argument
        :param body: the request body, serialized as
            :meth:`HTTPClientMixin.http_fetch` does by ``content_type``
        :param headers: headers for this call, merged over the client's
            (:data:`None` as a value removes the client's header); the
            mapping is copied, never changed
        :param fetch_kwargs: keyword arguments of
            :meth:`HTTPClientMixin.http_fetch` or
            :class:`tornado.httpclient.HTTPRequest`, over the client's
            fetch defaults
        :raises RuntimeError: when the client is closed, or for
            ``raise_error``
        :raises ValueError: for a `path` on another origin, for a header
            name or value HTTP cannot carry (naming the header), and as
            :meth:`HTTPClientMixin.http_fetch` raises
        :raises TypeError: for an unknown keyword argument, and as
            :meth:`HTTPClientMixin.http_fetch` raises

        """
        self._check_open()
        url = self.url(path)
        _check_fetch_kwargs(fetch_kwargs)
        options = {**self._fetch_defaults, **fetch_kwargs}
        named = {name: options.pop(name, default)
                 for name, default in _FETCH_DEFAULTS.items()}
        call = _request.build_call(
            self, url=url, method=method,
            request_headers=_merge_headers(self._headers, headers),
            body=body, params=params, options=options, **named)
        http_client = self._http_client()
        self._in_flight += 1
        try:
            return await self._http_req_send(call, http_client)
        finally:
            self._in_flight -= 1
            if self._closed and not self._in_flight:
                self._release()

    async def http_fetch(self, url: typing.Any, *args: typing.Any,
                         **kwargs: typing.Any) -> HTTPResponse:
        """:meth:`HTTPClientMixin.http_fetch`, unchanged, once the client
        is checked to be open: `url` is sent as it is, without the base
        URL, the client's headers or its fetch defaults, with the
        mixin's shared :class:`~tornado.httpclient.AsyncHTTPClient`.

        :raises RuntimeError: when the client is closed

        """
        self._check_open()
        return await super().http_fetch(url, *args, **kwargs)

    async def get(self, path: str = '', **kwargs: typing.Any
                  ) -> HTTPResponse:
        """Send a GET; `kwargs` as for :meth:`request`."""
        return await self.request('GET', path, **kwargs)

    async def post(self, path: str = '', **kwargs: typing.Any
                   ) -> HTTPResponse:
        """Send a POST; `kwargs` as for :meth:`request`."""
        return await self.request('POST', path, **kwargs)

    async def put(self, path: str = '', **kwargs: typing.Any
                  ) -> HTTPResponse:
        """Send a PUT; `kwargs` as for :meth:`request`."""
        return await self.request('PUT', path, **kwargs)

    async def patch(self, path: str = '', **kwargs: typing.Any
                    ) -> HTTPResponse:
        """Send a PATCH; `kwargs` as for :meth:`request`."""
        return await self.request('PATCH', path, **kwargs)

    async def delete(self, path: str = '', **kwargs: typing.Any
                     ) -> HTTPResponse:
        """Send a DELETE; `kwargs` as for :meth:`request`."""
        return await self.request('DELETE', path, **kwargs)

    def close(self) -> None:
        """Close the client: it refuses new requests from now on.

        Calls already in flight finish, retries included; the client's
        :class:`~tornado.httpclient.AsyncHTTPClient` is closed when the last
        of them returns, or at once when there is none.  Closing a closed
        client does nothing.

        """
        if self._closed:
            return
        self._closed = True
        _open_clients.discard(self)
        if not self._in_flight:
            self._release()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f'{self!r} is closed: create a new Client')

    def _http_client(self) -> httpclient.AsyncHTTPClient:
        """Return this client's AsyncHTTPClient for the current IOLoop,
        after closing the ones of closed loops: each refers to its IOLoop,
        so the weak keys alone would never let them go."""
        loop = ioloop.IOLoop.current()
        for closed in [known for known in self._http_clients
                       if known is not loop and _transports.is_closed(known)]:
            self._http_clients.pop(closed).close()
        client = self._http_clients.get(loop)
        if client is None:
            max_clients = _transports.max_clients_from_environment()
            kwargs = {} if max_clients is None else {
                'max_clients': max_clients}
            client = httpclient.AsyncHTTPClient(force_instance=True,
                                                **kwargs)
            self._http_clients[loop] = client
        return client

    def _release(self) -> None:
        clients = list(self._http_clients.values())
        self._http_clients.clear()
        for client in clients:
            client.close()


def close_all() -> int:
    """Close every :class:`Client` that is still open.

    Call it when the application shuts down; see :doc:`client` for wiring
    it into tornado's IOLoop and into sprockets.http's on-shutdown
    callbacks.  Calls in flight finish first, as :meth:`Client.close`
    explains.

    :returns: how many clients were closed

    .. versionadded:: 3.0

    """
    clients = list(_open_clients)
    for client in clients:
        client.close()
    return len(clients)


def _parse_base_url(base_url: str) -> urllib.parse.SplitResult:
    shown = _urls.redact_url(base_url)
    problem = _urls.url_problem(base_url)  # what the engine would refuse
    if problem is not None:
        raise ValueError('base_url must be an http or https URL with a '
                         f'host: {problem}, got {shown!r}')
    parts = urllib.parse.urlsplit(base_url)
    if parts.query or parts.fragment or base_url.endswith(('?', '#')):
        raise ValueError('base_url cannot have a query or fragment (pass '
                         f'params= with each request), got {shown!r}')
    path = parts.path if parts.path.endswith('/') else parts.path + '/'
    return parts._replace(path=path)


def _check_fetch_kwargs(kwargs: typing.Mapping[str, typing.Any]) -> None:
    _checks.refuse_raise_error(kwargs, 'a Client')
    unknown = sorted(name for name in kwargs
                     if name not in _FETCH_DEFAULTS
                     and name not in _REQUEST_OPTIONS)
    if unknown:
        raise TypeError(
            f'unexpected keyword argument(s): {", ".join(unknown)} (a '
            'Client takes the keyword arguments of http_fetch and of '
            'tornado.httpclient.HTTPRequest, plus headers, params and '
            'body)')


def _merge_headers(
        base: httputil.HTTPHeaders,
        headers: typing.Optional[typing.Mapping[str, typing.Optional[str]]]
) -> httputil.HTTPHeaders:
    """Return a copy of `base` with `headers` set over it."""
    merged = base.copy()
    if headers is None:
        return merged
    if not isinstance(headers, typing.Mapping):
        raise TypeError('headers must be a mapping, got '
                        f'{type(headers).__name__}')
    items = (headers.get_all() if isinstance(headers, httputil.HTTPHeaders)
             else headers.items())
    replaced: typing.Set[str] = set()
    for name, value in items:
        _checks.header_name(name)
        key = name.lower()
        if key not in replaced:
            replaced.add(key)
            if name in merged:
                del merged[name]
        if value is not None:  # None removes the client's header
            merged.add(name, _checks.header_value(name, value))
    return merged
