"""The next hop of a redirect: where it goes, which method and body it
keeps, and which headers never cross to another origin."""
from __future__ import annotations

import copy
import typing
import urllib.parse

from tornado import httpclient, httputil

from sprockets.mixins.http import _checks, _urls

__all__ = ['REDIRECTS', 'next_hop']

#: The statuses whose ``Location`` is followed.
REDIRECTS = frozenset({301, 302, 303, 307, 308})

# a body-less GET carries none of these
_BODY_HEADERS = ('Content-Type', 'Content-Length', 'Content-Encoding',
                 'Transfer-Encoding')


def next_hop(request: httpclient.HTTPRequest,
             headers: httputil.HTTPHeaders,
             result: httpclient.HTTPResponse
             ) -> typing.Tuple[httpclient.HTTPRequest, httputil.HTTPHeaders]:
    """Return the request for the next hop of a redirect, and the headers
    it was built from.

    303 (and 301 or 302 after a POST) turns into a body-less GET, as
    browsers and tornado do.  The next hop starts from `headers`, the ones
    the engine built for the attempt, not from the ones tornado filled in
    (``Host``, ``Content-Length``), so that it carries its own ``Host``.
    Credentials are dropped when the target is another origin: basic-auth,
    ``Host``, and every header that log lines redact (Authorization,
    Proxy-Authorization, Cookie, and names with auth, key, token, secret,
    password or session in them).

    :raises ValueError: when the ``Location`` is not a usable http(s) URL

    """
    target = _target(request.url, result.headers['Location'].strip())
    following = copy.copy(request)
    following.url = target
    headers = httputil.HTTPHeaders(headers)
    if (result.code == 303 and request.method != 'HEAD') or (
            result.code in (301, 302) and request.method == 'POST'):
        following.method = 'GET'
        following.body = None  # type: ignore[assignment]
        for name in _BODY_HEADERS:
            headers.pop(name, None)
    if _urls.upstream(following.url) != _urls.upstream(request.url):
        for name in [name for name in headers
                     if _urls.SECRET_NAME.search(name) or name == 'Host']:
            del headers[name]
        following.auth_username = following.auth_password = None
        following.auth_mode = None
    following.headers = httputil.HTTPHeaders(headers)
    return following, headers


def _target(base: str, location: str) -> str:
    """The absolute URL `location` points to from `base`, sendable.

    :raises ValueError: for an empty Location, one without a host where
        it names one (``//``, ``http://``: urljoin would fall back to
        `base`'s own host), or one that is not a usable http(s) URL

    """
    shown = _urls.redact_url(location)
    if not location:
        raise ValueError('the Location is empty')
    try:
        reference = urllib.parse.urlsplit(location)
        target = urllib.parse.urljoin(base, location)
    except ValueError as error:  # "http://[::1"
        raise ValueError(f'the Location {shown!r} is not a URL: '
                         f'{error}') from None
    if (reference.scheme or location.startswith('//')) and not (
            reference.hostname):
        raise ValueError(f'the Location {shown!r} has no host')
    target = _checks.url(target)
    problem = _urls.url_problem(target)
    if problem is not None:
        raise ValueError(f'the Location {shown!r} is not a usable http(s) '
                         f'URL: {problem}')
    return target
