"""The one validation layer: every argument a caller hands the package is
checked here, before anything is sent.

Pure functions with no I/O and no tornado import.  Each raises
:exc:`TypeError` for a value of the wrong type and :exc:`ValueError` for a
value of the right type that cannot be used, with a message that names the
argument (or the header) and never echoes a header's value, which may be a
secret.  :mod:`sprockets.mixins.http`'s mixin, :class:`Client`, the command
line, the retry policy and the testing kit all check through these
functions, so that the same input gets the same answer everywhere.

"""
from __future__ import annotations

import math
import numbers
import re
import typing

__all__ = [
    'count',
    'header_name',
    'header_pairs',
    'header_value',
    'method',
    'params',
    'refuse_raise_error',
    'seconds',
    'url',
]

# RFC 9110 section 5.6.2: a token, which is what a field name and a method
# are (sections 5.1 and 9.1)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

# what a field value cannot carry (RFC 9110 section 5.5): the controls but
# HTAB, as tornado refuses them; CR, LF and NUL are the dangerous ones
_BAD_VALUE = re.compile(r'[\x00-\x08\x0a-\x1f\x7f]')

# a request line cannot carry these as they are: controls, space, and
# (for curl, which refuses them) anything outside ASCII
_UNSAFE_IN_URL = re.compile(r'[^\x21-\x7e]')
# the WHATWG URL Standard strips these from both ends of a URL
_URL_EDGES = ''.join(chr(code) for code in range(0x21))

HeaderValue = typing.Union[str, bytes]

#: The most seconds a finite number of seconds may be: about 31 years,
#: which every client's timer (curl counts milliseconds in a C long) and
#: the event loop can hold.
MAX_SECONDS = 1e9


def seconds(name: str, value: typing.Any, *, allow_none: bool = False,
            infinite: bool = False, positive: bool = False
            ) -> typing.Optional[float]:
    """Return `value` as a number of seconds.

    :param name: the argument's name, for the error message
    :param allow_none: :data:`None` is returned as it is
    :param infinite: :data:`math.inf` is accepted (the caller gives it its
        meaning: no limit); otherwise it is refused
    :param positive: ``0`` is refused
    :raises TypeError: for :class:`bool`, a :class:`str` or anything that
        is not a real number
    :raises ValueError: for NaN, a negative number, ``0`` when `positive`,
        more than :data:`MAX_SECONDS` (but infinity), or infinity unless
        `infinite`

    """
    if (type(value) is float or type(value) is int) and (
            0 < value <= MAX_SECONDS or (value == 0 and not positive)):
        return float(value)  # the common case, without the rest
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f'{name} must be a number of seconds, '
                        f'got {value!r}')
    try:
        number = float(value)
    except OverflowError:  # an int of 400 digits
        number = -math.inf if str(value).startswith('-') else math.inf
    if math.isnan(number):
        raise ValueError(f'{name} must be a number of seconds, got NaN')
    if number < 0 or (positive and number == 0):
        relation = 'greater than 0' if positive else '0 or more'
        raise ValueError(f'{name} must be {relation} seconds, '
                         f'got {value!r}')
    if math.isinf(number):
        if not infinite:
            raise ValueError(f'{name} must be a finite number of seconds, '
                             f'got {value!r}')
    elif number > MAX_SECONDS:
        raise ValueError(
            f'{name} must be at most {MAX_SECONDS:.0f} seconds (about 31 '
            f'years), got {value!r}' + (': pass math.inf for no limit'
                                        if infinite else ''))
    return number


def count(name: str, value: typing.Any, *, minimum: int = 1) -> int:
    """Return `value` as a whole number of at least `minimum`.

    :raises TypeError: for :class:`bool` (``True`` is not ``1`` here) and
        anything that is not an integer
    :raises ValueError: for a number below `minimum`

    """
    if type(value) is int and value >= minimum:
        return value  # the common case
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f'{name} must be an int, got {value!r}')
    if value < minimum:
        raise ValueError(f'{name} must be at least {minimum}, '
                         f'got {value!r}')
    return int(value)


def method(value: typing.Any) -> str:
    """Return the request method `value`, upper-cased.

    :raises TypeError: when `value` is not a :class:`str`
    :raises ValueError: when it is not an RFC 9110 token (a space, a CR
        or LF, an empty string), which could split the request line

    """
    if not isinstance(value, str):
        raise TypeError(f'method must be a str, got {value!r}')
    if not _TOKEN.fullmatch(value):
        raise ValueError(f'method must be an HTTP method token (letters, '
                         f'digits and !#$%&\'*+.^_`|~-), got {value!r}')
    return value.upper()


def header_name(name: typing.Any, *, what: str = 'header') -> str:
    """Return the field name `name`.

    :raises TypeError: when `name` is not a :class:`str`
    :raises ValueError: when it is not a token (empty, a space, a colon, a
        control character)

    """
    if type(name) is str and name in _TOKENS_SEEN:
        return name
    if not isinstance(name, str):
        raise TypeError(f'{what} names must be str, got {name!r}')
    if not _TOKEN.fullmatch(name):
        raise ValueError(f'{what} name {name!r} is not a token: a field '
                         'name has no spaces, colons or control characters')
    if len(_TOKENS_SEEN) < _TOKENS_KEPT:
        _TOKENS_SEEN.add(str(name))
    return name


# the field names found to be tokens: a service sends the same few again
# and again (bounded: names made of data are checked every time)
_TOKENS_SEEN: typing.Set[str] = set()
_TOKENS_KEPT = 512


def header_value(name: str, value: typing.Any, *,
                 what: str = 'header') -> str:
    """Return the value of field `name` as the text that is sent.

    :class:`bytes` are decoded as Latin-1 (what HTTP/1.1 carries), as 2.x
    sent them.  Spaces and tabs at either end are removed: they are not
    part of a field value (RFC 9110 section 5.5), a recipient drops them,
    and tornado refuses to send them.  The message of an error names the
    header and never shows its value.

    :raises TypeError: for :data:`None` or any value that is neither
        :class:`str` nor :class:`bytes`
    :raises ValueError: for a control character other than a tab (CR, LF,
        NUL …), or a character Latin-1 cannot encode

    """
    if type(value) is str and value.isascii() and value.isprintable():
        # printable ASCII: no control character to refuse, nothing Latin-1
        # cannot encode (a tab is not printable: it takes the long way)
        return value.strip(' ')
    if isinstance(value, str):
        text = value
    elif isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode('latin-1')
    else:
        raise TypeError(f'{what} {name!r} must be str or bytes, got '
                        f'{type(value).__name__}')
    if _BAD_VALUE.search(text):
        raise ValueError(f'{what} {name!r} has a control character (CR, '
                         'LF, NUL …) in its value: a value is one line')
    text = text.strip(' \t')
    if not text.isascii():
        try:
            text.encode('latin-1')
        except UnicodeEncodeError:
            raise ValueError(
                f'{what} {name!r} has a character Latin-1 cannot encode in '
                'its value: encode it (RFC 8187, or percent-encoding) or '
                'pass bytes') from None
    return text


def header_pairs(headers: typing.Any, *, what: str = 'request header',
                 argument: str = 'request_headers'
                 ) -> typing.List[typing.Tuple[str, str]]:
    """Return the ``(name, value)`` pairs of a headers mapping, each
    checked by :func:`header_name` and :func:`header_value`.

    Repeated fields of an object with ``get_all()`` (tornado's
    :class:`~tornado.httputil.HTTPHeaders`) stay apart.

    :param argument: the argument's name, for the error of a non-mapping
    :raises TypeError: when `headers` is not a mapping, and as
        :func:`header_name` and :func:`header_value` raise
    :raises ValueError: as :func:`header_name` and :func:`header_value`
        raise

    """
    if not isinstance(headers, typing.Mapping):
        raise TypeError(f'{argument} must be a mapping, got '
                        f'{type(headers).__name__}')
    get_all = getattr(headers, 'get_all', None)
    items = get_all() if callable(get_all) else headers.items()
    return [(header_name(name, what=what),
             header_value(name, value, what=what))
            for name, value in items]


def url(value: typing.Any) -> str:
    """Return `value` as the URL to send.

    Anything whose :func:`str` is a URL is accepted (a :class:`str`, a
    ``yarl.URL``, a ``furl``).  Like the WHATWG URL Standard, spaces and
    control characters are stripped from both ends, and those left inside
    the path, query or fragment are percent-encoded (a space is ``%20``),
    so that they can never split the request line; so are characters
    outside ASCII, as UTF-8 (``/café`` is sent as ``/caf%C3%A9``), which
    every client can then send alike.  What else is wrong with the URL (a
    missing host, another scheme, a space in the host) is for the engine
    to record.

    :raises TypeError: for :data:`None`, :class:`bytes` (decode them
        first) and objects whose :func:`str` is not a URL (no ``__str__``
        of their own)

    """
    if isinstance(value, str):
        text = str(value)
    elif value is None or isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f'url must be a str, got {type(value).__name__}'
                        + (' (decode it first)' if value is not None
                           else ''))
    elif not _has_own_str(type(value)):
        raise TypeError(f'url must be a str or have a __str__ that gives '
                        f'one, got {type(value).__name__}')
    else:
        text = str(value)
    if not _UNSAFE_IN_URL.search(text):
        return text
    text = text.strip(_URL_EDGES)
    scheme, separator, rest = text.partition('://')
    if not separator:
        return _percent_encode_unsafe(text)
    # the authority (userinfo, host, port) ends at the first / ? or #;
    # what is wrong there is reported by the engine, not rewritten
    end = len(rest)
    for mark in '/?#':
        found = rest.find(mark)
        if found != -1:
            end = min(end, found)
    return (f'{scheme}://{rest[:end]}'
            f'{_percent_encode_unsafe(rest[end:])}')


def _has_own_str(cls: type) -> bool:
    """Whether str() of an instance of `cls` is more than object's
    ``<Foo object at 0x…>``."""
    own: object = cls.__str__
    shown: object = cls.__repr__
    return own is not object.__str__ or shown is not object.__repr__


def _percent_encode_unsafe(text: str) -> str:
    return _UNSAFE_IN_URL.sub(_percent_encoded, text)


def _percent_encoded(match: typing.Match[str]) -> str:
    return ''.join(f'%{byte:02X}' for byte in match.group().encode(
        'utf-8', 'surrogatepass'))


def params(value: typing.Any) -> typing.List[typing.Tuple[str, typing.Any]]:
    """Return query arguments as ``(name, value)`` pairs.

    `value` is a mapping or a sequence of ``(name, value)`` pairs.  A
    :data:`None` value is dropped (as ``requests`` does); a :class:`list`
    or :class:`tuple` value repeats the argument once per item (a
    :data:`None` item is dropped too).

    :raises TypeError: for anything else, a name that is not a
        :class:`str`, a pair that is not a pair, or a value that is a
        mapping, a set or a list inside a list (it would be sent as its
        Python repr)

    """
    if isinstance(value, typing.Mapping):
        items: typing.Iterable[typing.Any] = value.items()
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise TypeError('params must be a mapping or a sequence of (name, '
                        f'value) pairs, got {type(value).__name__}')
    pairs: typing.List[typing.Tuple[str, typing.Any]] = []
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError('params must be a mapping or a sequence of '
                            f'(name, value) pairs, got the item {item!r}')
        name, argument = item
        if not isinstance(name, str):
            raise TypeError(f'params names must be str, got {name!r}')
        values = (argument if isinstance(argument, (list, tuple))
                  else (argument,))
        for one in values:
            if isinstance(one, (typing.Mapping, set, frozenset, list,
                                tuple)):
                raise TypeError(
                    f'params value of {name!r} cannot be a '
                    f'{type(one).__name__}: use str, numbers, or a list of '
                    'them to repeat the name')
            if one is not None:
                pairs.append((name, one))
    return pairs


def refuse_raise_error(options: typing.Mapping[str, typing.Any],
                       who: str = 'http_fetch') -> None:
    """Raise :exc:`RuntimeError` when `options` has ``raise_error``: an
    HTTP outcome never raises, so the option cannot be honoured."""
    if 'raise_error' in options:
        raise RuntimeError(
            f'raise_error is not supported: {who} never raises for an HTTP '
            'outcome, inspect HTTPResponse.ok instead')
