"""Content types and codecs as tables: codec_for, serialize, deserialize.

Everything here is pure: no event loop and no server.
"""
from __future__ import annotations

import datetime
import decimal
import json
import typing
import uuid

import msgpack
import pytest

from sprockets.mixins.http import _content
from sprockets.mixins.http._content import (
    CONTENT_TYPE_JSON,
    CONTENT_TYPE_MSGPACK,
    UnsupportedContentType,
    codec_for,
    deserialize,
    serialize,
)

JSON = 'application/json'
MSGPACK = 'application/msgpack'
FORM = 'application/x-www-form-urlencoded'


def encode(value: typing.Any, content_type: str) -> bytes:
    """serialize() a dict or list (JSON to str, as 2.x did; the rest to
    bytes), then encode_body() it to what is sent."""
    data = serialize(value, content_type)
    assert isinstance(data, str if codec_for(content_type) == 'json'
                      else bytes)
    encoded = _content.encode_body(data, content_type)
    assert isinstance(encoded, bytes)
    return encoded


# -- codec_for -------------------------------------------------------------

@pytest.mark.parametrize('content_type, expected', [
    ('application/json', 'json'),
    ('application/json; charset=utf-8', 'json'),
    ('APPLICATION/JSON', 'json'),
    ('application/problem+json', 'json'),
    ('application/vnd.x+json;charset=utf-8', 'json'),
    (CONTENT_TYPE_JSON, 'json'),
    ('application/msgpack', 'msgpack'),
    ('application/x-msgpack', 'msgpack'),
    ('application/vnd.x+msgpack', 'msgpack'),
    (CONTENT_TYPE_MSGPACK, 'msgpack'),
    ('application/x-www-form-urlencoded', 'form'),
    ('multipart/form-data', 'multipart'),
    ('multipart/form-data; boundary=abc', 'multipart'),
    ('text/plain', None),
    ('text/json', None),
    ('application/json-seq', None),
    ('image/svg+xml', None),
    ('multipart/mixed', None),
    ('garbage', None),
    ('', None),
    (None, None),
])
def test_codec_for(content_type: typing.Any,
                   expected: typing.Optional[str]) -> None:
    """JSON, msgpack (and their suffixes), form and multipart are known."""
    assert codec_for(content_type) == expected


# -- JSON and msgpack round trips -----------------------------------------

ROUND_TRIPS = [
    {},
    [],
    {'a': 1, 'b': [1, 2.5, None, True, False], 'c': {'d': {'e': 'f'}}},
    ['x', {'nested': [[1], [2, [3]]]}],
    {'unicode': 'caf\u00e9 \u2603 \U0001f600', 'emoji-key-\U0001f600': 1},
    {'big': 2 ** 62, 'negative': -(2 ** 40), 'float': 1e-300},
]


@pytest.mark.parametrize('content_type', [
    JSON, 'application/problem+json', 'application/json; charset=utf-8',
    MSGPACK, 'application/x-msgpack', 'application/vnd.x+msgpack',
])
@pytest.mark.parametrize('value', ROUND_TRIPS)
def test_round_trip(content_type: str, value: typing.Any) -> None:
    """What serialize writes, deserialize reads back unchanged."""
    assert deserialize(encode(value, content_type), content_type) == value


@pytest.mark.parametrize('content_type', [JSON, MSGPACK])
def test_tuple_is_an_array(content_type: str) -> None:
    """A tuple body is sent as an array and comes back as a list."""
    data = encode((1, 'two'), content_type)
    assert deserialize(data, content_type) == [1, 'two']


@pytest.mark.parametrize('content_type, expected', [
    (JSON, '{}'), (MSGPACK, b'\x80'),
])
def test_empty_dict_is_serialized(content_type: str,
                                  expected: typing.Union[str, bytes]) -> None:
    """An empty dict is serialized, not dropped."""
    assert serialize({}, content_type) == expected


def test_json_is_compact_utf8() -> None:
    """JSON is written compactly, non-ASCII text as it is, and sent as
    UTF-8."""
    text = serialize({'a': ['caf\u00e9']}, JSON)
    assert text == '{"a":["caf\u00e9"]}'
    assert _content.encode_body(text, JSON) == text.encode()


def test_msgpack_keeps_binary_values_binary() -> None:
    """bytes go out in the bin family and come back as bytes, not str."""
    value = {'blob': b'\x00\xff\xfe binary', 'text': 'caf\u00e9'}
    data = encode(value, MSGPACK)
    assert msgpack.unpackb(data, raw=True) == {
        b'blob': b'\x00\xff\xfe binary', b'text': 'caf\u00e9'.encode()}
    decoded = deserialize(data, MSGPACK)
    assert decoded == value
    assert isinstance(decoded['blob'], bytes)
    assert isinstance(decoded['text'], str)


def test_msgpack_decodes_binary_that_is_not_utf8() -> None:
    """A body with invalid UTF-8 in a bin value decodes (2.x crashed)."""
    data = msgpack.packb({'key': b'\xc3\x28'}, use_bin_type=True)
    assert deserialize(data, MSGPACK) == {'key': b'\xc3\x28'}


def test_msgpack_integer_keys() -> None:
    """Maps keyed by integers decode."""
    data = msgpack.packb({1: 'one', 2: 'two'})
    assert deserialize(data, MSGPACK) == {1: 'one', 2: 'two'}


SPECIAL = {
    'uuid': uuid.UUID('12345678-1234-5678-1234-567812345678'),
    'datetime': datetime.datetime(2020, 1, 2, 3, 4, 5,
                                  tzinfo=datetime.timezone.utc),
    'date': datetime.date(2020, 1, 2),
    'decimal': decimal.Decimal('1.10'),
}


@pytest.mark.parametrize('name, expected', [
    ('uuid', '12345678-1234-5678-1234-567812345678'),
    ('datetime', '2020-01-02T03:04:05+00:00'),
    ('date', '2020-01-02'),
    ('decimal', '1.10'),
])
@pytest.mark.parametrize('content_type', [JSON, MSGPACK])
def test_special_values(content_type: str, name: str,
                        expected: str) -> None:
    """UUID, datetime, date and Decimal are encoded as strings."""
    data = encode({name: SPECIAL[name]}, content_type)
    assert deserialize(data, content_type) == {name: expected}


def test_json_bytes_are_base64() -> None:
    """bytes in a JSON body are base64, as mediatype's transcoder does."""
    assert json.loads(serialize({'b': b'\x00\xff'}, JSON)) == {'b': 'AP8='}


def test_msgpack_sets_are_arrays() -> None:
    """A set nested in a msgpack body is an array, as mediatype's is."""
    data = encode({'s': {3}}, MSGPACK)
    assert deserialize(data, MSGPACK) == {'s': [3]}


# -- deserialize -------------------------------------------------------------

@pytest.mark.parametrize('body, content_type, expected', [
    ('{"n": "caf\u00e9"}'.encode('latin-1'),
     'application/json; charset=latin-1', {'n': 'caf\u00e9'}),
    ('{"n": "caf\u00e9"}'.encode('latin-1'),
     'application/json; charset=ISO-8859-1', {'n': 'caf\u00e9'}),
    ('{"n": "caf\u00e9"}'.encode('utf-16'),
     'application/json; charset=utf-16', {'n': 'caf\u00e9'}),
    ('{"n": "caf\u00e9"}'.encode(),
     'application/vnd.x+json; charset=utf-8', {'n': 'caf\u00e9'}),
    ('{"n": "caf\u00e9"}'.encode(), JSON, {'n': 'caf\u00e9'}),
    (b'"text"', JSON, 'text'),
    (b'null', JSON, None),
    (b'', JSON, None),
    (b'', MSGPACK, None),
    (b'\xc0', MSGPACK, None),
    (b'plain text', 'text/plain', b'plain text'),
    (b'<html/>', 'text/html; charset=utf-8', b'<html/>'),
    (b'\x00\x01', 'application/octet-stream', b'\x00\x01'),
    (b'{"a": 1}', None, b'{"a": 1}'),
    (b'{"a": 1}', 'garbage', b'{"a": 1}'),
])
def test_deserialize(body: bytes, content_type: typing.Optional[str],
                     expected: typing.Any) -> None:
    """Bodies decode by Content-Type and charset; others stay bytes."""
    assert deserialize(body, content_type) == expected


@pytest.mark.parametrize('body, content_type', [
    (b'{', JSON),
    (b'{"a": 1} trailing', JSON),
    (b'\xff\xfe{}', JSON),
    ('{"n": "caf\u00e9"}'.encode(), 'application/json; charset=ascii'),
    (b'\xc1', MSGPACK),
    (b'\x92\x01', MSGPACK),
    (b'\x01\x02', MSGPACK),
    (b'\x93\x01', 'application/x-msgpack'),
])
def test_deserialize_errors_are_value_errors(body: bytes,
                                             content_type: str) -> None:
    """Invalid JSON, garbage msgpack and wrong charsets raise ValueError."""
    with pytest.raises(ValueError):
        deserialize(body, content_type)


def test_deserialize_unknown_charset() -> None:
    """An unknown charset raises LookupError."""
    with pytest.raises(LookupError, match='bogus'):
        deserialize(b'{}', 'application/json; charset=bogus')


# -- serialize errors --------------------------------------------------------

@pytest.mark.parametrize('body, content_type, name', [
    ({1, 2}, JSON, 'set'),
    ({1, 2}, MSGPACK, 'set'),
    (object(), JSON, 'object'),
    (5, MSGPACK, 'int'),
    (None, JSON, 'NoneType'),
    ({'a': {1}}, JSON, 'set'),
    ({'a': object()}, JSON, 'object'),
    ({'a': [object()]}, MSGPACK, 'object'),
    ({'a': complex(1, 2)}, JSON, 'complex'),
    ({'a': complex(1, 2)}, MSGPACK, 'complex'),
])
def test_serialize_type_errors(body: typing.Any, content_type: str,
                               name: str) -> None:
    """An unserializable body or value raises TypeError naming the type."""
    with pytest.raises(TypeError, match=rf'\b{name}\b'):
        serialize(body, content_type)


@pytest.mark.parametrize('body, content_type', [
    ({'a': 1}, 'text/plain'),
    ([1], 'text/plain'),
    ((1,), 'application/octet-stream'),
    ({'a': 1}, 'garbage'),
    ({'a': 1}, None),
    ({'a': 1}, 'multipart/form-data'),
])
def test_unsupported_content_type(body: typing.Any,
                                  content_type: typing.Optional[str]
                                  ) -> None:
    """A dict or list with a content type that cannot carry it raises
    UnsupportedContentType, a ValueError."""
    with pytest.raises(UnsupportedContentType) as caught:
        serialize(body, content_type)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize('body, content_type, expected', [
    (b'\x00raw', JSON, b'\x00raw'),
    ('text', 'text/plain', 'text'),
    ('{"a": 1}', JSON, '{"a": 1}'),
    (b'bytes', None, b'bytes'),
    (bytearray(b'array'), 'text/plain', b'array'),
    (memoryview(b'view'), MSGPACK, b'view'),
])
def test_str_and_bytes_are_sent_as_they_are(
        body: typing.Any, content_type: typing.Optional[str],
        expected: typing.Union[str, bytes]) -> None:
    """str and bytes bodies are not serialized again."""
    assert serialize(body, content_type) == expected


# -- forms -------------------------------------------------------------------

@pytest.mark.parametrize('body, expected', [
    ({'a': '1', 'b': 'two words'}, b'a=1&b=two+words'),
    ({'list': ['x', 'y']}, b'list=x&list=y'),
    ({'n': 5, 'f': 1.5}, b'n=5&f=1.5'),
    ({'u': 'caf\u00e9', 'sym': 'a&b=c'}, b'u=caf%C3%A9&sym=a%26b%3Dc'),
    ([('a', '1'), ('a', '2')], b'a=1&a=2'),
    ({}, b''),
])
def test_form_encoding(body: typing.Any, expected: bytes) -> None:
    """Form bodies are URL-encoded as UTF-8, repeated keys kept apart."""
    assert serialize(body, FORM) == expected


@pytest.mark.parametrize('body, name', [
    ({'a': {'b': 1}}, 'dict'),
    ({'a': None}, 'NoneType'),
    ({'a': {1}}, 'set'),
])
def test_form_refuses_nested_values(body: typing.Any, name: str) -> None:
    """A form field that is a mapping, set or None raises TypeError."""
    with pytest.raises(TypeError, match=rf"'a': a {name} value"):
        serialize(body, FORM)


MULTIPART = 'multipart/form-data; boundary=XyZ-Boundary'


def part(headers: str, data: bytes) -> bytes:
    return (b'--XyZ-Boundary\r\n' + headers.encode() + b'\r\n\r\n' + data
            + b'\r\n')


@pytest.mark.parametrize('fields, expected', [
    ({'field': 'value'},
     part('Content-Disposition: form-data; name="field"', b'value')),
    ({'text': 'caf\u00e9', 'n': 5},
     part('Content-Disposition: form-data; name="text"', 'caf\u00e9'.encode())
     + part('Content-Disposition: form-data; name="n"', b'5')),
    ({'file': ('a.txt', b'data')},
     part('Content-Disposition: form-data; name="file"; filename="a.txt"'
          '\r\nContent-Type: text/plain', b'data')),
    ({'file': ('blob.unknownext', b'\x00\xff')},
     part('Content-Disposition: form-data; name="file"; '
          'filename="blob.unknownext"\r\n'
          'Content-Type: application/octet-stream', b'\x00\xff')),
    ({'file': ('x.bin', 'text data', 'application/x-thing')},
     part('Content-Disposition: form-data; name="file"; filename="x.bin"'
          '\r\nContent-Type: application/x-thing', b'text data')),
    ([('a', '1'), ('a', '2')],
     part('Content-Disposition: form-data; name="a"', b'1')
     + part('Content-Disposition: form-data; name="a"', b'2')),
    ({'q"uote': ('we"ird.txt', b'')},
     part('Content-Disposition: form-data; name="q\\"uote"; '
          'filename="we\\"ird.txt"\r\nContent-Type: text/plain', b'')),
])
def test_multipart_encoding(fields: typing.Any, expected: bytes) -> None:
    """Fields and (filename, data[, content_type]) files are encoded with
    the boundary of the Content-Type, case preserved."""
    assert serialize(fields, MULTIPART) == expected + b'--XyZ-Boundary--\r\n'


def test_multipart_needs_a_boundary() -> None:
    """multipart/form-data without a boundary cannot be encoded."""
    with pytest.raises(UnsupportedContentType, match='boundary'):
        serialize({'a': 'b'}, 'multipart/form-data')


@pytest.mark.parametrize('value, error, message', [
    (('only-a-name',), ValueError, 'got 1 items'),
    (('a', 'b', 'c', 'd'), ValueError, 'got 4 items'),
    ({'b': 1}, TypeError, 'got dict'),
    (None, TypeError, 'got NoneType'),
    (('a.txt', object()), TypeError, 'got object'),
])
def test_multipart_field_errors(value: typing.Any,
                                error: typing.Type[Exception],
                                message: str) -> None:
    """A multipart field that is not str, bytes or a file tuple raises."""
    with pytest.raises(error, match=message):
        serialize({'field': value}, MULTIPART)


def test_available_content_types() -> None:
    """JSON and msgpack are the types offered, JSON first."""
    assert [str(value) for value in _content.AVAILABLE_CONTENT_TYPES] == [
        'application/json', 'application/msgpack']
