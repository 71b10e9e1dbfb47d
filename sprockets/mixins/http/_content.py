"""Content types, request serialization and response decoding.

Pure functions with no I/O and no tornado import.  JSON follows
:class:`sprockets.mixins.mediatype.transcoders.JSONTranscoder` for the
types the standard library cannot encode; msgpack uses the C ``msgpack``
with ``raw=False`` so that strings decode to :class:`str` and binary values
stay :class:`bytes`.

Content codings (decompression) are :mod:`._codings`'; their names are
re-exported here.

"""
from __future__ import annotations

import codecs
import datetime
import decimal
import functools
import json
import mimetypes
import re
import typing
import urllib.parse
import uuid

import msgpack
from ietfparse import datastructures, headers

from sprockets.mixins.http._codings import (
    ACCEPT_ENCODING,
    MAX_DECOMPRESSED_SIZE,
    DecompressionError,
    accept_encoding,
    decompress,
)
from sprockets.mixins.mediatype import transcoders

__all__ = [
    'ACCEPT_ENCODING',
    'AVAILABLE_CONTENT_TYPES',
    'CONTENT_TYPE_JSON',
    'CONTENT_TYPE_MSGPACK',
    'MAX_DECOMPRESSED_SIZE',
    'DecompressionError',
    'UnsupportedContentType',
    'accept_encoding',
    'codec_for',
    'decompress',
    'deserialize',
    'serialize',
]

CONTENT_TYPE_JSON = datastructures.ContentType('application', 'json')
CONTENT_TYPE_MSGPACK = datastructures.ContentType('application', 'msgpack')
AVAILABLE_CONTENT_TYPES = [CONTENT_TYPE_JSON, CONTENT_TYPE_MSGPACK]

JSON = 'json'
MSGPACK = 'msgpack'
FORM = 'form'
MULTIPART = 'multipart'

_MSGPACK_SUBTYPES = frozenset({'msgpack', 'x-msgpack'})

# the transcoder's ``dump_object`` is the JSON ``default`` hook
_JSON_TRANSCODER = transcoders.JSONTranscoder()


class UnsupportedContentType(ValueError):
    """A dict, list or tuple body was given with a content type that this
    package cannot serialize.

    .. versionadded:: 3.0

    """


@functools.lru_cache(maxsize=256)
def _parse(value: str) -> typing.Optional[datastructures.ContentType]:
    try:
        return headers.parse_content_type(value)
    except ValueError:
        return None


def parse_content_type(value: typing.Union[str, datastructures.ContentType,
                                           None]
                       ) -> typing.Optional[datastructures.ContentType]:
    """Return `value` as a ContentType, or :data:`None` when it is absent or
    malformed."""
    if value is None:
        return None
    if isinstance(value, datastructures.ContentType):
        return value
    return _parse(str(value))


def codec_for(content_type: typing.Union[str, datastructures.ContentType,
                                         None]) -> typing.Optional[str]:
    """Return the codec name for `content_type`: ``'json'``, ``'msgpack'``,
    ``'form'``, ``'multipart'`` or :data:`None`.

    ``application/json`` and any ``+json`` suffix are JSON;
    ``application/msgpack``, ``application/x-msgpack`` and any ``+msgpack``
    suffix are msgpack.

    """
    parsed = parse_content_type(content_type)
    if parsed is None:
        return None
    suffix = (getattr(parsed, 'content_suffix', None) or '').lower()
    if suffix in ('json', 'msgpack'):
        return suffix
    main = parsed.content_type.lower()
    sub = parsed.content_subtype.lower()
    if main == 'application':
        if sub == 'json':
            return JSON
        if sub in _MSGPACK_SUBTYPES:
            return MSGPACK
        if sub == 'x-www-form-urlencoded':
            return FORM
    elif main == 'multipart' and sub == 'form-data':
        return MULTIPART
    return None


# -- serialization ----------------------------------------------------------

def _json_default(value: typing.Any) -> typing.Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    try:
        return _JSON_TRANSCODER.dump_object(value)
    except TypeError:
        raise TypeError(f'cannot serialize {type(value).__name__} value '
                        f'{value!r} as JSON') from None


def _msgpack_default(value: typing.Any) -> typing.Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (datetime.datetime, datetime.date,
                          datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, memoryview):
        return value.tobytes()
    if isinstance(value, (set, frozenset)):
        return list(value)
    raise TypeError(f'cannot serialize {type(value).__name__} value '
                    f'{value!r} as msgpack')


_packer_options: typing.Dict[str, typing.Any] = {
    'default': _msgpack_default, 'use_bin_type': True,
    'datetime': False}


def dump_json(value: typing.Any) -> bytes:
    """Serialize `value` as compact UTF-8 JSON."""
    return json_text(value).encode('utf-8')


# charsets that carry every character: JSON text need not escape any
_UNICODE_CHARSETS = frozenset({'utf-8', 'utf-16', 'utf-16-be', 'utf-16-le',
                               'utf-32', 'utf-32-be', 'utf-32-le'})


def json_text(value: typing.Any, charset: typing.Optional[str] = None
              ) -> str:
    """Serialize `value` as compact JSON text.

    Characters outside ASCII are written as they are for a Unicode
    `charset` (or none), and as ``\\u`` escapes for any other, so that the
    text always encodes in `charset`.

    :raises ValueError: for NaN or an infinity (they are not JSON), or a
        value nested deeper than the encoder goes
    :raises TypeError: for a value that cannot be serialized

    """
    ensure_ascii = charset is not None and _codec_name(
        charset) not in _UNICODE_CHARSETS
    try:
        return json.dumps(value, default=_json_default,
                          separators=(',', ':'), ensure_ascii=ensure_ascii,
                          allow_nan=False)
    except RecursionError:
        raise ValueError('cannot serialize the body as JSON: it is nested '
                         'too deeply') from None
    except ValueError as error:
        if 'Out of range float' in str(error):
            raise ValueError('cannot serialize NaN or an infinity in the '
                             'body: they are not JSON') from None
        raise


def _codec_name(charset: str) -> str:
    """The canonical Python codec name of `charset`.

    :raises ValueError: for a charset Python does not know, or a codec
        that is not a text encoding (``base64``)

    """
    try:
        info = codecs.lookup(charset)
    except LookupError:
        info = None
    # base64, rot13, zlib: codecs Python knows that are not text encodings
    if info is None or not getattr(info, '_is_text_encoding', True):
        raise ValueError(f'unknown charset {charset!r} in the '
                         'Content-Type: the body cannot be encoded in it')
    return info.name


def _codec_name_or_none(charset: str) -> typing.Optional[str]:
    try:
        return codecs.lookup(charset).name
    except LookupError:
        return None


def charset_of(content_type: typing.Union[str, datastructures.ContentType,
                                          None]) -> typing.Optional[str]:
    """The ``charset`` parameter of `content_type`, or :data:`None`."""
    parsed = parse_content_type(content_type)
    if parsed is None:
        return None
    charset: typing.Optional[str] = parsed.parameters.get('charset')
    return charset or None


def encode_body(body: typing.Union[bytes, str, None],
                content_type: typing.Union[str, datastructures.ContentType,
                                           None]
                ) -> typing.Optional[bytes]:
    """Return the bytes to send for a serialized `body`.

    :class:`str` is encoded in the ``charset`` that `content_type` names,
    UTF-8 when it names none (what tornado does with a str body);
    :class:`bytes` and :data:`None` are returned as they are.

    :raises ValueError: for a charset Python does not know, or text that
        the charset cannot encode

    """
    if not isinstance(body, str):
        return body
    charset = charset_of(content_type)
    if charset is None:
        return body.encode('utf-8')
    name = _codec_name(charset)
    try:
        return body.encode(name)
    except UnicodeEncodeError as error:
        raise ValueError(
            f'the body has characters that charset {charset!r} cannot '
            f'encode ({error.reason} at position {error.start}): name '
            'another charset in the Content-Type, or pass bytes') from None


def dump_msgpack(value: typing.Any) -> bytes:
    """Serialize `value` as msgpack; binary values use the bin family.

    :raises ValueError: for a value nested deeper than the packer goes
    :raises TypeError: for a value that cannot be serialized

    """
    try:
        return typing.cast(bytes, msgpack.packb(value, **_packer_options))
    except ValueError as error:
        if 'recursion limit' in str(error):
            raise ValueError('cannot serialize the body as msgpack: it is '
                             'nested too deeply') from None
        raise


def _form_encode(value: typing.Any) -> bytes:
    items = value.items() if isinstance(value, typing.Mapping) else value
    items = list(items)
    for name, field in items:
        # urlencode would write None as "None" and a dict as its keys
        if field is None or isinstance(field, (typing.Mapping, set,
                                               frozenset)):
            raise TypeError(f'cannot form-encode field {name!r}: a '
                            f'{type(field).__name__} value')
    return urllib.parse.urlencode(items, doseq=True).encode('ascii')


def _multipart_encode(fields: typing.Any, boundary: str) -> bytes:
    """Encode `fields` as ``multipart/form-data``, the way Hip's ``fields``
    work: a value is a string or bytes, or a ``(filename, data)`` or
    ``(filename, data, content_type)`` tuple for a file."""
    items = fields.items() if isinstance(fields, typing.Mapping) else fields
    delimiter = f'--{boundary}\r\n'.encode('ascii')
    parts: typing.List[bytes] = []
    for name, value in items:
        disposition = f'form-data; name="{_quote(name, "name", name)}"'
        content_type = None
        if isinstance(value, tuple):
            if len(value) not in (2, 3):
                raise ValueError(
                    f'multipart field {name!r} must be (filename, data) or '
                    f'(filename, data, content_type), got {len(value)} '
                    'items')
            filename, data = value[0], value[1]
            disposition += (
                f'; filename="{_quote(filename, "filename", name)}"')
            content_type = (_quote(value[2], 'content type', name)
                            if len(value) == 3 else
                            mimetypes.guess_type(str(filename))[0]
                            or 'application/octet-stream')
        else:
            data = value
        if isinstance(data, str):
            data = data.encode('utf-8')
        elif isinstance(data, (int, float)) and not isinstance(data, bool):
            data = str(data).encode('ascii')
        elif not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f'multipart field {name!r} must be str, bytes '
                            f'or a file tuple, got {type(data).__name__}')
        header = f'Content-Disposition: {disposition}\r\n'
        if content_type:
            header += f'Content-Type: {content_type}\r\n'
        parts.append(delimiter + header.encode('utf-8') + b'\r\n'
                     + bytes(data) + b'\r\n')
    return b''.join(parts) + f'--{boundary}--\r\n'.encode('ascii')


# a part's header lines cannot carry these: they would end the line
_LINE_BREAKING = re.compile(r'[\x00\r\n]')


def _quote(value: typing.Any, what: str, field: typing.Any) -> str:
    """Return `value` fit for a quoted part header parameter.

    :raises ValueError: for a CR, LF or NUL, which would inject header
        lines into the part

    """
    text = str(value)
    if _LINE_BREAKING.search(text):
        raise ValueError(f'multipart field {str(field)[:40]!r}: its {what} '
                         'has a CR, LF or NUL character')
    return text.replace('\\', '\\\\').replace('"', '\\"')


def serialize(body: typing.Any,
              content_type: typing.Union[str, datastructures.ContentType,
                                         None]) -> typing.Union[bytes, str]:
    """Return `body` ready to send as `content_type`.

    :class:`str` and :class:`bytes` (and :class:`bytearray`,
    :class:`memoryview`) are sent as they are.  A :class:`dict`,
    :class:`list` or :class:`tuple` is serialized by the content type:
    JSON (to :class:`str`, as 2.x did; :func:`encode_body` encodes it in
    the ``charset`` the content type names), msgpack, form-encoded, or
    multipart (which needs a ``boundary`` parameter).

    :raises UnsupportedContentType: for a dict, list or tuple with a content
        type that cannot carry it
    :raises TypeError: for a body of any other type, or a value inside it
        that cannot be serialized
    :raises ValueError: for NaN or an infinity in a JSON body, a body
        nested deeper than its codec goes, an unknown charset, or a CR,
        LF or NUL in a multipart name, filename or content type

    """
    if isinstance(body, (bytes, str)):
        return body
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    if not isinstance(body, (dict, list, tuple)):
        raise TypeError(
            f'cannot send a {type(body).__name__} body: pass dict, list, '
            'tuple, str or bytes')
    codec = codec_for(content_type)
    if codec == JSON:
        return json_text(body, charset_of(content_type))
    if codec == MSGPACK:
        return dump_msgpack(body)
    if codec == FORM:
        return _form_encode(body)
    if codec == MULTIPART:
        # a boundary is case-sensitive: parse without lowercasing values
        try:
            parsed = headers.parse_content_type(
                str(content_type), normalize_parameter_values=False)
        except ValueError:  # pragma: no cover - codec_for parsed it
            parsed = None
        boundary = parsed.parameters.get('boundary') if parsed else None
        if not boundary:
            raise UnsupportedContentType(
                'multipart/form-data needs a boundary parameter')
        return _multipart_encode(body, boundary)
    raise UnsupportedContentType(
        f'cannot serialize a {type(body).__name__} body as {content_type}: '
        'use a JSON, msgpack, form or multipart content type, or pass '
        'str or bytes')


# -- deserialization ---------------------------------------------------------

def _load_msgpack(data: bytes) -> typing.Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False,
                           timestamp=0)


def deserialize(body: bytes, content_type: typing.Optional[str]
                ) -> typing.Any:
    """Decode a response `body` by its `content_type` header value.

    JSON text is decoded with the ``charset`` parameter (UTF-8 when
    absent, a byte order mark ignored); msgpack with ``raw=False``.  Any
    other content type returns `body` unchanged.  An empty JSON or msgpack
    body decodes to :data:`None`.

    :raises ValueError: when the body cannot be decoded (this includes
        :exc:`UnicodeDecodeError`, :exc:`json.JSONDecodeError` and msgpack's
        errors, whatever their base classes)
    :raises LookupError: for an unknown charset

    """
    codec = codec_for(content_type)
    if codec == JSON:
        if not body:
            return None
        parsed = parse_content_type(content_type)
        charset = (parsed.parameters.get('charset') if parsed else None)
        if charset is None or _codec_name_or_none(charset) == 'utf-8':
            charset = 'utf-8-sig'  # RFC 8259 section 8.1: ignore a BOM
        text = body.decode(charset)
        try:
            return json.loads(text)
        except RecursionError:  # nested deeper than the interpreter goes
            raise ValueError('invalid JSON body: nested too deeply') from None
    if codec == MSGPACK:
        if not body:
            return None
        try:
            return _load_msgpack(body)
        except ValueError:
            raise
        except Exception as error:  # msgpack's ExtraData, FormatError, ...
            raise ValueError(f'invalid msgpack body: {error}') from error
    return body
