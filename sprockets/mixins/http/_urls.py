"""URLs and what log lines may show of them: one splitter for the engine,
OpenTelemetry, :class:`~sprockets.mixins.http.Client` and the command
line.

Pure functions with no I/O and no tornado import.

"""
from __future__ import annotations

import functools
import re
import typing
import urllib.parse

__all__ = [
    'REDACTED',
    'SECRET_NAME',
    'redact_headers',
    'redact_url',
    'upstream',
    'url_problem',
]

# names of headers and query arguments whose values are secrets; an
# Idempotency-Key is not one (it only deduplicates)
SECRET_NAME = re.compile(
    r'auth|cookie|(?<!idempotency-)key|token|secret|password|session',
    re.IGNORECASE)
REDACTED = '<redacted>'
_USERINFO = re.compile(r'(?<=://)[^/?#]*@')

def upstream(url: str) -> typing.Tuple[str, str, int]:
    """Return the ``(scheme, host, port)`` a retry budget is kept for."""
    return _inspect_url(url)[0]


def url_problem(url: str) -> typing.Optional[str]:
    """Say what is wrong with `url`, or return :data:`None` when it is a
    usable http or https URL.  Such a URL is never sent nor retried."""
    return _inspect_url(url)[1]


@functools.lru_cache(maxsize=1024)
def _inspect_url(url: str) -> typing.Tuple[typing.Tuple[str, str, int],
                                           typing.Optional[str]]:
    """Parse `url` once for :func:`upstream` and :func:`url_problem`
    (a service calls the same URLs over and over)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as error:  # "http://[::1"
        return ('', url, 0), str(error)
    scheme = parts.scheme.lower()
    host = parts.hostname or ''
    problem: typing.Optional[str] = None
    try:
        port = parts.port
    except ValueError as error:
        port, problem = None, str(error)
    if port is None:
        port = 443 if scheme == 'https' else 80
    if problem is not None:
        pass
    elif scheme not in ('http', 'https'):
        problem = (f'unsupported scheme {parts.scheme!r}' if scheme
                   else 'no scheme')
    elif not host:
        problem = 'no host'
    elif _BAD_HOST.search(_authority(url)):
        # urlsplit drops tabs and line breaks: look at the text itself
        problem = 'white space or control characters in the host'
    return (scheme, host, port), problem


_BAD_HOST = re.compile(r'[\x00-\x20\x7f]')


def _authority(url: str) -> str:
    """The text between ``//`` and the path, query or fragment."""
    rest = url.partition('//')[2]
    end = len(rest)
    for mark in '/?#':
        found = rest.find(mark)
        if found != -1:
            end = min(end, found)
    return rest[:end]


def redact_headers(headers: typing.Mapping[str, str]
                   ) -> typing.Dict[str, str]:
    """Return `headers` fit for a log line: credentials, cookies and
    anything named like a key or token are replaced by ``<redacted>``."""
    get_all = getattr(headers, 'get_all', None)  # tornado's HTTPHeaders
    items: typing.Iterable[typing.Tuple[str, str]] = (
        get_all() if callable(get_all) else headers.items())
    return {name: REDACTED if SECRET_NAME.search(name) else str(value)
            for name, value in items}


def redact_url(url: str) -> str:
    """Return `url` fit for a log line or an error message: its userinfo
    (a user name can be a token too) and the values of query arguments
    named like a key, token or password are replaced by ``<redacted>``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # an invalid URL is still logged, minus userinfo
        return _USERINFO.sub(f'{REDACTED}@', url, count=1)
    if '@' in parts.netloc:
        parts = parts._replace(
            netloc=f'{REDACTED}@{parts.netloc.rpartition("@")[2]}')
    if parts.query and SECRET_NAME.search(parts.query):
        parts = parts._replace(query='&'.join(
            f'{name}={REDACTED}' if SECRET_NAME.search(name) else
            f'{name}{separator}{value}'
            for name, separator, value in (
                item.partition('=') for item in parts.query.split('&'))))
    return urllib.parse.urlunsplit(parts)
