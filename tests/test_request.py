"""build_call as a pure function: from http_fetch's arguments to a Call,
with no server and no event loop."""
from __future__ import annotations

import typing

import pytest

from sprockets.mixins import http
from sprockets.mixins.http import _request

ARGUMENTS: typing.Dict[str, typing.Any] = {
    name: None for name in (
        'request_headers', 'body', 'max_redirects', 'connect_timeout',
        'request_timeout', 'retry_timeout', 'max_http_attempts',
        'auth_username', 'auth_password', 'user_agent', 'dont_retry',
        'retry_policy', 'deadline', 'params')}


def build(owner: typing.Any = None, **changes: typing.Any) -> typing.Any:
    arguments = dict(
        ARGUMENTS, url='http://h/p', method='GET',
        content_type=http.CONTENT_TYPE_MSGPACK, follow_redirects=False,
        validate_cert=True, allow_nonstandard_methods=False, options={})
    arguments.update(changes)
    return _request.build_call(owner or http.HTTPClientMixin(), **arguments)


def test_default_headers() -> None:
    """Accept, Accept-Encoding and User-Agent are added; Content-Type only
    with a body."""
    call = build()
    assert call.headers['Accept'] == 'application/json, application/msgpack'
    assert call.headers['Accept-Encoding'] == 'gzip, br, zstd'
    assert call.headers['User-Agent'] == http.DEFAULT_USER_AGENT
    assert 'Content-Type' not in call.headers
    assert build(method='POST', body={'a': 1}).headers['Content-Type'] == (
        'application/msgpack')


def test_caller_headers_win_and_are_not_changed() -> None:
    """A header the caller gives is kept, and the caller's dict is left as
    it was."""
    given = {'accept': 'text/csv', 'X-Tenant': 'acme'}
    call = build(request_headers=given, user_agent='agent/2')
    assert (call.headers['Accept'], call.headers['X-Tenant'],
            call.headers['User-Agent']) == ('text/csv', 'acme', 'agent/2')
    assert given == {'accept': 'text/csv', 'X-Tenant': 'acme'}


@pytest.mark.parametrize('method, body, expected', [
    ('POST', None, b''), ('PUT', None, b''), ('PATCH', None, b''),
    ('GET', None, None), ('DELETE', None, None),
    ('POST', {'a': 1}, '{"a":1}'), ('POST', 'text', 'text'),
])
def test_body_rules(method: str, body: typing.Any,
                    expected: typing.Any) -> None:
    """POST, PUT and PATCH without a body send an empty one; a JSON body
    is serialized to str."""
    call = build(method=method, body=body, content_type='application/json')
    assert call.body == expected


@pytest.mark.parametrize('method', ['GET', 'HEAD', 'DELETE', 'OPTIONS'])
def test_body_with_a_method_that_takes_none(method: str) -> None:
    """A body with GET, HEAD, DELETE or OPTIONS raises unless
    allow_nonstandard_methods."""
    with pytest.raises(ValueError, match='cannot have a body'):
        build(method=method, body=b'x')
    assert build(method=method, body=b'x',
                 allow_nonstandard_methods=True).body == b'x'


def test_timeouts_and_redirects_from_the_class() -> None:
    """None means the class attribute; 0 and infinity mean no limit."""
    owner = http.HTTPClientMixin()
    owner.DEFAULT_REQUEST_TIMEOUT = 7
    owner.MAX_REDIRECTS = 2
    call = build(owner, connect_timeout=float('inf'))
    assert (call.connect_timeout, call.request_timeout) == (0.0, 7.0)
    assert call.options['max_redirects'] == 2


def test_idempotency_key_added_once() -> None:
    """idempotency_key=True gives a POST one Idempotency-Key; a GET none."""
    policy = http.RetryPolicy(idempotency_key=True)
    post = build(method='POST', retry_policy=policy)
    assert len(post.headers.get_list('Idempotency-Key')) == 1
    assert 'Idempotency-Key' not in build(retry_policy=policy).headers


def test_decompression_is_the_packages_by_default() -> None:
    """The package decompresses (tornado is told not to); with
    decompress_response given, tornado does and only gzip is
    advertised by tornado."""
    call = build()
    assert (call.decompress, call.options['decompress_response']) == (
        True, False)
    tornado = build(options={'decompress_response': True})
    assert not tornado.decompress
    assert 'Accept-Encoding' not in tornado.headers


def test_params_and_url() -> None:
    """params are merged into the query; spaces are percent-encoded."""
    call = build(url='http://h/a b?x=1', params={'y': [1, 2], 'z': None})
    assert call.url == 'http://h/a%20b?x=1&y=1&y=2'
