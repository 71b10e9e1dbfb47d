"""From :meth:`~sprockets.mixins.http.HTTPClientMixin.http_fetch`'s
arguments to a ready :class:`~sprockets.mixins.http._call.Call`.

:func:`build_call` checks every argument (through :mod:`._checks`), asks
the owner's hooks for the policy, the default headers and the serialized
body, and settles the timeouts, the redirect limit and who decompresses.
Everything it refuses is refused before anything is sent.

"""
from __future__ import annotations

import math
import typing
import uuid

from ietfparse import datastructures
from tornado import httputil

from sprockets.mixins.http import _call, _checks, _content
from sprockets.mixins.http._content import (
    AVAILABLE_CONTENT_TYPES,
    CONTENT_TYPE_MSGPACK,
)
from sprockets.mixins.http._retry import RetryPolicy

__all__ = ['Builder', 'add_default_headers', 'build_call', 'copy_headers',
           'default_policy']

#: The default ``Accept``: the content types the package decodes.
DEFAULT_ACCEPT = ', '.join(str(value) for value in AVAILABLE_CONTENT_TYPES)
#: The default ``Accept-Encoding``: gzip, plus br and zstd with their
#: extras (what the package can decompress).
DEFAULT_ACCEPT_ENCODING = _content.ACCEPT_ENCODING
_BODY_EXPECTED = frozenset({'POST', 'PUT', 'PATCH'})

ContentTypeArg = typing.Union[str, datastructures.ContentType, None]
Body = typing.Union[bytes, str, None]


class Builder(typing.Protocol):
    """The hooks and class attributes :func:`build_call` uses."""

    DEFAULT_CONNECT_TIMEOUT: float
    DEFAULT_REQUEST_TIMEOUT: float
    MAX_REDIRECTS: int

    def _http_req_retry_policy(
            self, retry_policy: typing.Optional[RetryPolicy],
            max_http_attempts: typing.Optional[int],
            retry_timeout: typing.Optional[float],
            dont_retry: typing.Optional[typing.Iterable[int]],
            deadline: typing.Optional[float]) -> RetryPolicy:
        ...  # pragma: no cover

    def _http_req_apply_default_headers(
            self, request_headers: typing.Optional[typing.Mapping[str, str]],
            content_type: typing.Any, body: typing.Any) -> typing.Any:
        ...  # pragma: no cover

    def _http_req_body_serialize(
            self, body: typing.Any,
            content_type: typing.Optional[str]) -> typing.Union[bytes, str]:
        ...  # pragma: no cover

    def _http_req_correlation_id(self) -> typing.Optional[str]:
        ...  # pragma: no cover

    def _http_req_user_agent(self) -> str:
        ...  # pragma: no cover


def add_default_headers(owner: Builder, headers: httputil.HTTPHeaders,
                        content_type: typing.Any,
                        body: typing.Any) -> httputil.HTTPHeaders:
    """Add to `headers` (the call's own copy) what
    :meth:`~sprockets.mixins.http.HTTPClientMixin._http_req_apply_default_headers`
    documents, each value checked as a request header is, and return it:
    ``Accept``, ``Accept-Encoding``, ``Content-Type`` with a `body`,
    ``Correlation-Id`` and ``User-Agent``, unless `headers` has them."""
    if 'Accept' not in headers:
        headers['Accept'] = DEFAULT_ACCEPT
    if 'Accept-Encoding' not in headers:
        headers['Accept-Encoding'] = DEFAULT_ACCEPT_ENCODING
    if body is not None and 'Content-Type' not in headers:
        headers['Content-Type'] = _checks.header_value(
            'Content-Type', str(content_type), what='content_type')
    if 'Correlation-Id' not in headers:
        correlation_id = owner._http_req_correlation_id()
        if correlation_id:
            headers['Correlation-Id'] = _checks.header_value(
                'Correlation-Id', correlation_id, what='correlation_id')
    if 'User-Agent' not in headers:
        headers['User-Agent'] = _checks.header_value(
            'User-Agent', owner._http_req_user_agent(),
            what='the User-Agent _http_req_user_agent returned')
    return headers


def build_call(
        owner: Builder, *, url: typing.Any, method: typing.Any,
        request_headers: typing.Any, body: typing.Any,
        content_type: ContentTypeArg, follow_redirects: bool,
        max_redirects: typing.Optional[int],
        connect_timeout: typing.Optional[float],
        request_timeout: typing.Optional[float],
        retry_timeout: typing.Optional[float],
        max_http_attempts: typing.Optional[int],
        auth_username: typing.Optional[str],
        auth_password: typing.Optional[str],
        user_agent: typing.Optional[str], validate_cert: bool,
        allow_nonstandard_methods: bool,
        dont_retry: typing.Optional[typing.Iterable[int]],
        retry_policy: typing.Optional[RetryPolicy],
        deadline: typing.Optional[float], params: typing.Any,
        options: typing.Dict[str, typing.Any]) -> _call.Call:
    """Check and assemble one call; raises before anything is sent.

    Every argument goes through :mod:`._checks`, the one validation layer,
    so that an odd value is a :exc:`TypeError` or :exc:`ValueError` naming
    it, never a request sent as garbage nor a failure recorded and
    retried.  `options` (tornado's own ``HTTPRequest`` arguments) is the
    call's own dict, completed in place.

    ``body_producer`` is refused with a :exc:`ValueError` before anything
    is sent: a producer writes its body once, to one connection, so it
    could be neither resent on a retry nor given to the serializer and
    the body rules (tornado would send it with the empty body a POST gets
    here, and the server would see no body).  Pass the body as `body`
    (bytes, str, or what the serializer encodes) instead.

    """
    _refuse_body_producer(options)
    url = _url(url, params)
    verb = _checks.method(method)
    _check_method_and_body(verb, body, allow_nonstandard_methods)
    policy = owner._http_req_retry_policy(
        retry_policy, max_http_attempts, retry_timeout, dont_retry, deadline)
    content_type = _content_type(content_type, body)
    hook = owner._http_req_apply_default_headers
    if _call.is_package_default(hook):
        # the package's own hook adds only what add_default_headers adds,
        # checked as it is added: the caller's headers are copied (and
        # checked) once
        headers = add_default_headers(owner, copy_headers(request_headers),
                                      content_type, body)
    else:
        headers = copy_headers(hook(copy_headers(request_headers),
                                    content_type, body))
    if user_agent is not None:
        headers['User-Agent'] = _checks.header_value(
            'User-Agent', user_agent, what='user_agent')
    payload = _payload(owner, verb, body, headers, content_type)
    if policy.idempotency_key and not policy.is_idempotent(verb, headers):
        headers['Idempotency-Key'] = str(uuid.uuid4())
    decompress = _decompression(options, headers, request_headers)
    options.update(
        follow_redirects=follow_redirects,
        max_redirects=_checks.count(
            'max_redirects' if max_redirects is not None else 'MAX_REDIRECTS',
            owner.MAX_REDIRECTS if max_redirects is None else max_redirects,
            minimum=0),
        auth_username=auth_username, auth_password=auth_password,
        validate_cert=validate_cert,
        allow_nonstandard_methods=allow_nonstandard_methods)
    return _call.Call(
        url, verb, headers, payload, policy, _deadline(deadline),
        _timeout('connect_timeout', connect_timeout,
                 'DEFAULT_CONNECT_TIMEOUT', owner.DEFAULT_CONNECT_TIMEOUT),
        _timeout('request_timeout', request_timeout,
                 'DEFAULT_REQUEST_TIMEOUT', owner.DEFAULT_REQUEST_TIMEOUT),
        options, decompress)


def _refuse_body_producer(options: typing.Mapping[str, typing.Any]) -> None:
    """Refuse tornado's ``body_producer``: see :func:`build_call`."""
    if options.get('body_producer') is not None:
        raise ValueError(
            'body_producer is not supported: a produced body cannot be '
            'sent again on a retry; pass the body as body= instead')


def _url(url: typing.Any, params: typing.Any) -> str:
    """The URL to send: checked, with `params` merged into its query."""
    text = _checks.url(url)
    if params is not None:
        pairs = _checks.params(params)
        if pairs:
            text = httputil.url_concat(text, pairs)
    return text


def _content_type(content_type: ContentTypeArg, body: typing.Any) -> str:
    """The content type of the body: checked as a header value, with a
    multipart boundary added when it has none."""
    text = _checks.header_value(
        'Content-Type', str(CONTENT_TYPE_MSGPACK if content_type is None
                            else content_type), what='content_type')
    if (body is not None and _content.codec_for(text) == _content.MULTIPART
            and 'boundary=' not in text.lower()):
        text += f'; boundary={uuid.uuid4().hex}'
    return text


def _payload(owner: Builder, method: str, body: typing.Any,
             headers: httputil.HTTPHeaders, content_type: str) -> Body:
    """The body as the serializer hook returns it (a POST, PUT or PATCH
    without one sends an empty body); raises now for text its charset
    cannot carry."""
    if body is None:
        return b'' if method in _BODY_EXPECTED else None
    payload = _serialized(owner._http_req_body_serialize(
        body, headers.get('Content-Type', content_type)))
    _content.encode_body(payload, headers.get('Content-Type'))
    return payload


def _decompression(options: typing.Dict[str, typing.Any],
                   headers: httputil.HTTPHeaders,
                   request_headers: typing.Any) -> bool:
    """Whether the package undoes the Content-Encoding (then tornado is
    told not to); when tornado does, or nothing does, the default
    Accept-Encoding advertises no more than that."""
    if package_decompresses(options):
        # tornado decodes gzip only, and simple_httpclient replaces
        # Accept-Encoding with "gzip": the engine decompresses instead
        options['decompress_response'] = False
        return True
    if (headers.get('Accept-Encoding') == DEFAULT_ACCEPT_ENCODING
            and not any(name.lower() == 'accept-encoding'
                        for name in request_headers or ())):
        del headers['Accept-Encoding']
    return False


_policies: typing.Dict[typing.Tuple[int, float], RetryPolicy] = {}


def default_policy(max_attempts: typing.Any,
                    retry_timeout: typing.Any) -> RetryPolicy:
    """Return the policy built from the class attributes, cached by value
    once they are checked (``True`` is not ``1`` here)."""
    key = (_checks.count('MAX_HTTP_RETRIES', max_attempts),
           typing.cast(float, _checks.seconds('DEFAULT_RETRY_TIMEOUT',
                                              retry_timeout)))
    policy = _policies.get(key)
    if policy is None:
        policy = RetryPolicy(max_attempts=key[0], retry_timeout=key[1])
        if len(_policies) < 64:
            _policies[key] = policy
    return policy


def package_decompresses(options: typing.Mapping[str, typing.Any]) -> bool:
    """Say whether the package, not tornado, undoes the Content-Encoding
    of a call with these tornado `options`: when they name neither
    ``decompress_response`` nor its alias ``use_gzip`` (a body streamed
    to a ``streaming_callback`` included: the package's relay decompresses
    it chunk by chunk)."""
    return (options.get('decompress_response') is None
            and options.get('use_gzip') is None)


def _timeout(name: str, value: typing.Optional[float], attribute: str,
             default: float) -> float:
    """Return the timeout in effect: `value`, else the class attribute's
    `default`.  ``0`` and infinity mean no limit (tornado's ``0``, on both
    clients); anything else :func:`_checks.seconds` refuses raises."""
    if value is None:
        name, value = attribute, default
    seconds = typing.cast(float, _checks.seconds(name, value, infinite=True))
    return 0.0 if math.isinf(seconds) else seconds


# what tornado's clients send without allow_nonstandard_methods
_STANDARD_METHODS = frozenset({'GET', 'HEAD', 'POST', 'PUT', 'DELETE',
                               'PATCH', 'OPTIONS'})


def _check_method_and_body(method: str, body: typing.Any,
                           allow_nonstandard_methods: bool) -> None:
    """Refuse, before sending, what tornado would refuse inside fetch
    (where it would be recorded as a failed attempt): a method it does not
    know, or a body with a method that takes none, unless
    `allow_nonstandard_methods`."""
    if allow_nonstandard_methods:
        return
    if method not in _STANDARD_METHODS:
        raise ValueError(f'tornado sends the method {method} only with '
                         'allow_nonstandard_methods=True')
    if body is not None and method not in _BODY_EXPECTED:
        raise ValueError(f'a {method} request cannot have a body; pass '
                         'allow_nonstandard_methods=True to send one')


def _serialized(payload: typing.Any) -> typing.Union[bytes, str]:
    """Check what `_http_req_body_serialize` returned."""
    if isinstance(payload, (bytes, str)):
        return payload
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    raise TypeError('_http_req_body_serialize must return bytes or str, '
                    f'got {type(payload).__name__}')


def _deadline(value: typing.Optional[float]) -> typing.Optional[float]:
    """Return the call's own deadline; infinity means none."""
    seconds = _checks.seconds('deadline', value, allow_none=True,
                              infinite=True, positive=True)
    return None if seconds is None or math.isinf(seconds) else seconds


def copy_headers(headers: typing.Any) -> httputil.HTTPHeaders:
    """Return a new HTTPHeaders of `headers` (a mapping or None), each
    name and value checked by :func:`_checks.header_pairs` (bytes values
    decoded as Latin-1)."""
    copied = httputil.HTTPHeaders()
    if headers is not None:
        for name, value in _checks.header_pairs(headers):
            copied.add(name, value)
    return copied
