"""The replies of a :class:`~sprockets.mixins.http.testing.FakeUpstream`:
:meth:`Reply.build` checks the arguments of every reply (status, body,
headers, delay, reset), encodes the body by its Content-Type and completes
the headers, for :meth:`~FakeUpstream.reply`,
:meth:`~FakeUpstream.disconnect`, :meth:`~FakeUpstream.set_default` and
the default 404 alike.

Pure: no I/O.

"""
from __future__ import annotations

import dataclasses
import re
import typing

from sprockets.mixins.http import _checks, _content

HeadersArg = typing.Union[typing.Mapping[str, str],
                          typing.Iterable[typing.Tuple[str, str]], None]

Pairs = typing.Tuple[typing.Tuple[str, str], ...]

_NO_BODY_STATUSES = frozenset({204, 304})

#: The status a connection reset is kept with; it is never sent.
RESET_STATUS = 599

# RFC 9110 section 8.6: Content-Length = 1*DIGIT
_DIGITS = re.compile(r'[0-9]+')


@dataclasses.dataclass(frozen=True)
class Reply:
    """A scripted answer; ``disconnect`` answers with a connection reset.

    Make one with :meth:`build`, which checks what the fields hold.

    """
    status: int
    body: bytes = b''
    headers: Pairs = ()
    delay: float = 0.0
    disconnect: bool = False

    @classmethod
    def build(cls, status: int, body: typing.Any = None, *,
              content_type: typing.Optional[str] = None,
              headers: HeadersArg = None, delay: float = 0.0,
              head: bool = False, disconnect: bool = False) -> Reply:
        """Check the arguments of a reply and return it, its body encoded
        and a Content-Type added for it when `headers` have none.

        :param head: the reply answers HEAD only: without a body, its
            Content-Length may name any length, as a 304's may
        :param disconnect: reset the connection, after `delay`, instead
            of answering
        :raises ValueError: as :meth:`FakeUpstream.reply` raises for the
            status, body, headers and delay
        :raises TypeError: as :meth:`FakeUpstream.reply` raises

        """
        _check_status(status)
        if body is not None and status in _NO_BODY_STATUSES:
            raise ValueError(f'a {status} response cannot have a body')
        pairs = _header_pairs(headers)
        if content_type is None:
            content_type = _header(pairs, 'content-type')
        else:
            content_type = _checks.header_value(
                'Content-Type', content_type, what='reply header')
        encoded, body_type = _encode(body, content_type)
        _check_content_length(pairs, encoded, any_length=body is None and (
            head or status == 304))
        if body_type and _header(pairs, 'content-type') is None:
            pairs = (('Content-Type', body_type), *pairs)
        return cls(status, encoded, pairs, _check_delay(delay), disconnect)

    @classmethod
    def not_found(cls, method: str, path: str) -> Reply:
        """The reply to a request that finds nothing queued and no
        default set: a 404 whose JSON ``message`` names the request."""
        return cls.build(404, {
            'message': f'FakeUpstream: no reply queued for {method} {path}'})

    def header(self, name: str) -> typing.Optional[str]:
        """The value of the first header `name` (any case), or
        :data:`None`."""
        return _header(self.headers, name)

    def __str__(self) -> str:
        answer = 'connection reset' if self.disconnect else str(self.status)
        delay = f' after {self.delay} s' if self.delay else ''
        return answer + delay


def _check_status(status: int) -> None:
    if isinstance(status, int) and not isinstance(status, bool) and (
            100 <= status < 200):
        raise ValueError(
            f'status {status} is informational: a 1xx cannot be the '
            'final answer to a request; use a status from 200 to 599')
    if (isinstance(status, bool) or not isinstance(status, int)
            or not 200 <= status <= 599):
        raise ValueError(
            f'status must be an int from 200 to 599, got {status!r}')


def _header(pairs: Pairs, name: str) -> typing.Optional[str]:
    """The value of the first of `pairs` named `name`, which is lower
    case, or :data:`None`."""
    return next((value for key, value in pairs if key.lower() == name),
                None)


def _encode(body: typing.Any, content_type: typing.Optional[str]
            ) -> typing.Tuple[bytes, typing.Optional[str]]:
    """Return the encoded body and its Content-Type: text (a :class:`str`
    body, JSON) in the charset the Content-Type names, as the mixin encodes
    a request body."""
    if body is None:
        return b'', content_type
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body), content_type or 'application/octet-stream'
    if isinstance(body, str):
        content_type = content_type or 'text/plain'
        return _encode_text(body, content_type), content_type
    content_type = content_type or 'application/json'
    encoded = _content.serialize(body, content_type)
    if isinstance(encoded, str):  # JSON text
        encoded = _encode_text(encoded, content_type)
    return encoded, content_type


def _encode_text(text: str, content_type: str) -> bytes:
    encoded = _content.encode_body(text, content_type)
    assert encoded is not None  # a str is always encoded
    return encoded


def _check_content_length(pairs: Pairs, body: bytes, *,
                          any_length: bool) -> None:
    """Refuse a Content-Length that is not a length, or, unless
    `any_length`, not the length of `body`."""
    for name, value in pairs:
        if name.lower() != 'content-length':
            continue
        length = value.strip(' \t')
        if not _DIGITS.fullmatch(length):
            raise ValueError(f'Content-Length must be a number of bytes, '
                             f'got {value!r}')
        if not any_length and int(length) != len(body):
            raise ValueError(
                f'Content-Length {length} contradicts the body, which is '
                f'{len(body)} bytes: leave the header out (it is computed), '
                'or use serve() with a handler of your own to send a '
                'wrong one')


def _header_pairs(headers: HeadersArg) -> Pairs:
    """Return the reply headers as checked ``(name, value)`` pairs."""
    if headers is None:
        return ()
    if isinstance(headers, typing.Mapping):
        return tuple(_checks.header_pairs(headers, what='reply header',
                                          argument='headers'))
    if isinstance(headers, (str, bytes)) or not isinstance(
            headers, typing.Iterable):
        raise TypeError('headers must be a mapping or (name, value) pairs, '
                        f'got {type(headers).__name__}')
    pairs = []
    for item in headers:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError('headers must be a mapping or (name, value) '
                            'pairs, got an item that is not a pair')
        name, value = item
        name = _checks.header_name(name, what='reply header')
        pairs.append((name, _checks.header_value(name, value,
                                                 what='reply header')))
    return tuple(pairs)


def _check_delay(delay: float) -> float:
    if (isinstance(delay, bool) or not isinstance(delay, (int, float))
            or not delay >= 0):
        raise ValueError(f'delay must be a number of seconds >= 0, '
                         f'got {delay!r}')
    return float(delay)
