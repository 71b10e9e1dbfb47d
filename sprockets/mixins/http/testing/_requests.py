"""The requests a :class:`~sprockets.mixins.http.testing.FakeUpstream`
receives: :class:`RecordedRequest`, how a request is recorded, and what
a reply can be queued for: a method token, a path a request line can
carry.

Both sides of the match, the path a reply is queued for and the path a
request arrives with, go through :func:`quote_non_ascii`, so that a reply
queued for ``/café`` answers ``/caf%C3%A9``.

"""
from __future__ import annotations

import dataclasses
import re
import typing
import urllib.parse

from tornado import httputil

from sprockets.mixins.http import _content

# an HTTP method is a token (RFC 9110, section 9.1)
METHOD = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

# what a request line cannot carry as it is: controls and space
UNSENDABLE = re.compile(r'[\x00-\x20\x7f]')


@dataclasses.dataclass
class RecordedRequest:
    """One request that reached a :class:`FakeUpstream`.

    .. versionadded:: 3.0

    """
    #: The request method, upper case.
    method: str
    #: The path as sent, without the query string and without the mount
    #: prefix (see :meth:`FakeUpstream.handlers`).
    path: str
    #: The query arguments, each name with the list of its values.
    query: typing.Dict[str, typing.List[str]]
    #: The request headers.
    headers: httputil.HTTPHeaders
    #: The request body as received.
    raw_body: bytes
    #: The body decoded by its Content-Type: JSON and msgpack are decoded,
    #: anything else (or a body that does not decode) is :attr:`raw_body`;
    #: :data:`None` for an empty JSON or msgpack body.
    body: typing.Any

    def __repr__(self) -> str:
        return f'<RecordedRequest {self.method} {self.path}>'


def record(request: httputil.HTTPServerRequest,
           path: str) -> RecordedRequest:
    """Return the record of `request`, received for `path`."""
    raw = request.body or b''
    content_type = request.headers.get('Content-Type')
    try:
        body = _content.deserialize(raw, content_type)
    except (ValueError, LookupError):
        body = raw
    return RecordedRequest(
        method=(request.method or '').upper(), path=path,
        query=urllib.parse.parse_qs(request.query, keep_blank_values=True),
        headers=request.headers.copy(), raw_body=raw, body=body)


def quote_non_ascii(path: bytes) -> str:
    """Percent-encode the bytes of `path` that are not ASCII."""
    return ''.join(chr(byte) if byte < 0x80 else f'%{byte:02X}'
                   for byte in path)

