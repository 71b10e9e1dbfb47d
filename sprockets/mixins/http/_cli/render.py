"""What the server sent, shown: the status line, the headers and the body,
with the control characters a terminal would obey escaped, and the
writing of it, where a failed write becomes :class:`OutputError`.

The other modules of the command line write through :func:`writing` and
escape through :func:`escape_controls` too.

"""
from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import datetime
import json
import logging
import re
import typing

import msgpack
from tornado import httpclient

from sprockets.mixins.http import _content
from sprockets.mixins.http._response import HTTPResponse

#: What a terminal obeys: the C0 controls but tab, DEL, and the C1
#: controls (U+0080 to U+009F; U+009B is the 8-bit CSI), escaped in what
#: the server sent before it is shown, and refused in a URL.
CONTROL = re.compile(r'[\x00-\x08\x0a-\x1f\x7f-\x9f]')
# the same in text shown as lines: LF and CR LF stay, a lone CR does not
_CONTROL_IN_LINES = re.compile(
    r'\r(?!\n)|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]')
# what json.dumps(ensure_ascii=False) leaves as it is but a terminal obeys
_CONTROL_IN_JSON = re.compile(r'[\x7f-\x9f]')
_TEXT_SUBTYPES = frozenset({
    'xml', 'javascript', 'ecmascript', 'x-www-form-urlencoded', 'yaml',
    'x-yaml', 'graphql', 'sql', 'x-sh', 'csv'})
_TEXT_SUFFIXES = frozenset({'xml', 'json', 'yaml'})


class OutputError(Exception):
    """stdout, stderr or the ``-o`` file could not be written (other than
    a closed pipe); its message is one line."""


# -- escaping -----------------------------------------------------------------

def escape_controls(text: str, *, keep_lines: bool = False) -> str:
    """Return `text` with every character a terminal would obey written as
    ``\\xNN``: the C0 controls but tab, DEL and the C1 controls (U+0080 to
    U+009F; U+009B is the 8-bit CSI that starts an escape sequence).

    :param keep_lines: LF and CR LF stay too (a text body's line ends);
        a lone CR, which would let a line overwrite what was shown, does
        not

    """
    pattern = _CONTROL_IN_LINES if keep_lines else CONTROL
    return pattern.sub(lambda match: f'\\x{ord(match.group()):02x}', text)


def _escape_json(text: str) -> str:
    """Return the JSON `text` with DEL and the C1 controls (which can only
    be in its strings) written as ``\\u`` escapes: the same document."""
    return _CONTROL_IN_JSON.sub(
        lambda match: f'\\u{ord(match.group()):04x}', text)


class EscapingFormatter(logging.Formatter):
    """The log lines of ``-v``, with what the server sent (a ``Warning``
    header) escaped as :func:`escape_controls` does."""

    def format(self, record: logging.LogRecord) -> str:
        return escape_controls(super().format(record), keep_lines=True)


def reason(error: BaseException) -> str:
    """Return the message of `error`, or its class name when it has none."""
    return ' '.join(str(error).split()) or type(error).__name__


# -- the body -----------------------------------------------------------------

def to_jsonable(value: typing.Any) -> typing.Any:
    """Return `value` with what JSON cannot show made showable.

    bytes become ``{"$base64": "..."}`` (a bytes map key becomes the string
    ``"$base64:..."``), a msgpack timestamp an ISO 8601 string, a msgpack
    extension ``{"$ext": code, "$base64": "..."}``, and any other value
    JSON cannot encode its ``repr``.

    """
    if isinstance(value, dict):
        return {_json_key(key): to_jsonable(item)
                for key, item in value.items()}
    if isinstance(value, msgpack.ExtType):  # a namedtuple: before tuple
        return {'$ext': value.code, '$base64': _b64(value.data)}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {'$base64': _b64(bytes(value))}
    if isinstance(value, msgpack.Timestamp):
        return value.to_datetime().isoformat()
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def _json_key(key: typing.Any) -> typing.Any:
    if key is None or isinstance(key, (str, int, float, bool)):
        return key
    if isinstance(key, bytes):
        return f'$base64:{_b64(key)}'
    return repr(key)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode('ascii')


@dataclasses.dataclass
class Rendered:
    """How to show a body: as `text` (ending in a newline), or as raw
    `data` that is binary; `note` is a line for stderr."""
    text: typing.Optional[str] = None
    data: typing.Optional[bytes] = None
    note: typing.Optional[str] = None


def render_body(response: HTTPResponse) -> Rendered:
    """Decide how to show the final response's body.

    JSON and msgpack that decode are pretty-printed as JSON; ``text/*``,
    any type with a ``charset`` and the usual textual types are decoded
    with their charset (UTF-8 by default); a body without a Content-Type
    is text when it is UTF-8 without NUL bytes; anything else is binary.

    """
    raw = response.raw
    data = (raw.body or b'') if raw is not None else b''
    if not data:
        return Rendered()
    content_type = raw.headers.get('Content-Type') if raw else None
    codec = _content.codec_for(content_type)
    note = None
    if codec in (_content.JSON, _content.MSGPACK):
        text, note = _pretty_printed(response, codec)
        if text is not None:
            return Rendered(text=text)
        if codec == _content.MSGPACK:
            return Rendered(data=data, note=note)
    parsed = _content.parse_content_type(content_type)
    charset = parsed.parameters.get('charset') if parsed else None
    if parsed is None:
        textual = b'\0' not in data and _decodes(data, 'utf-8')
    else:
        subtype = parsed.content_subtype.lower()
        suffix = (getattr(parsed, 'content_suffix', None) or '').lower()
        textual = (parsed.content_type.lower() == 'text'
                   or charset is not None or subtype in _TEXT_SUBTYPES
                   or suffix in _TEXT_SUFFIXES or codec == _content.JSON)
    if not textual:
        return Rendered(data=data, note=note)
    return _decoded(data, charset, note)


def _pretty_printed(response: HTTPResponse, codec: str
                    ) -> typing.Tuple[typing.Optional[str],
                                      typing.Optional[str]]:
    """Return the JSON or msgpack body as indented JSON text, ending in a
    newline, or :data:`None` and the note that says why it is shown as
    received instead."""
    try:
        error = response.body_error
        if error is None:
            text = json.dumps(to_jsonable(response.body), indent=2,
                              ensure_ascii=False)
            return _escape_json(text) + '\n', None
        return None, (f'the body is not valid {codec} ({reason(error)}); '
                      'shown as received')
    except RecursionError:
        return None, (f'the {codec} body is nested too deeply to '
                      'pretty-print; shown as received')


def _decoded(data: bytes, charset: typing.Optional[str],
             note: typing.Optional[str]) -> Rendered:
    """Return the text body `data` decoded with `charset` (UTF-8 when it
    is :data:`None` or unknown), ending in a newline."""
    try:
        text = data.decode(charset or 'utf-8', errors='replace')
    except LookupError:
        note = f'unknown charset {charset!r}; decoded as UTF-8'
        text = data.decode('utf-8', errors='replace')
    if not text.endswith('\n'):
        text += '\n'
    return Rendered(text=text, note=note)


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


# -- writing it ---------------------------------------------------------------

def show_response(response: HTTPResponse, args: argparse.Namespace,
                  out: typing.TextIO, notes: typing.TextIO) -> None:
    """Print the headers and body of the last response received as asked
    (the final attempt's, unless it failed in transport).

    The status line and the headers are shown with their control
    characters escaped (:func:`escape_controls`), and so is a text body on
    a terminal, so that a server cannot drive the terminal.

    :raises OutputError: when `out`, `notes` or the ``-o`` file cannot be
        written
    :raises BrokenPipeError: when nobody reads `out` or `notes` any more

    """
    raw = response.raw
    if raw is None:
        return
    with writing(out):
        if args.print_headers:
            _write_head(raw, out)
        if args.no_body:
            out.flush()
        elif args.output is not None:
            write_bytes(raw.body or b'', args.output, out, notes)
        else:
            _write_body(response, raw, out, notes)
            out.flush()


def _write_head(raw: httpclient.HTTPResponse, out: typing.TextIO) -> None:
    """Write the status line and the headers of `raw`, then a blank
    line."""
    out.write(escape_controls(f'{raw.code} {raw.reason}') + '\n')
    for name, value in raw.headers.get_all():
        out.write(escape_controls(f'{name}: {value}') + '\n')
    out.write('\n')


def _write_body(response: HTTPResponse, raw: httpclient.HTTPResponse,
                out: typing.TextIO, notes: typing.TextIO) -> None:
    """Write the body as :func:`render_body` shows it: text escaped on a
    terminal, binary only when `out` is not one."""
    shown = render_body(response)
    if shown.note:
        note(notes, shown.note)
    if shown.text is not None:
        out.write(escape_controls(shown.text, keep_lines=True)
                  if isatty(out) else shown.text)
    elif shown.data is not None:
        if isatty(out):
            kind = raw.headers.get('Content-Type', 'no Content-Type')
            note(notes, f'binary body ({len(shown.data)} bytes, {kind}) '
                        'not shown on a terminal; use -o FILE')
        else:
            write_bytes(shown.data, '-', out, notes)


def note(notes: typing.TextIO, line: str, prefix: str = 'note: ') -> None:
    """Write `line`, escaped, with `prefix` to `notes` (stderr)."""
    with writing(notes):
        notes.write(f'{prefix}{escape_controls(line)}\n')


def write_bytes(data: bytes, path: str, out: typing.TextIO,
                notes: typing.TextIO) -> None:
    """Write `data` as it is to the file `path`, or to `out` when `path`
    is ``-``."""
    if path == '-':
        out.flush()
        buffer = getattr(out, 'buffer', None)
        if buffer is None:  # an in-memory text stream
            out.write(data.decode('utf-8', errors='replace'))
        else:
            buffer.write(data)
            buffer.flush()
        return
    try:
        with open(path, 'wb') as handle:
            handle.write(data)
    except OSError as error:
        raise OutputError(f'cannot write {path!r}: '
                          f'{error.strerror or error}') from None
    note(notes, f'{len(data)} bytes written to {path}', prefix='body: ')


@contextlib.contextmanager
def writing(stream: typing.IO[typing.Any]) -> typing.Iterator[None]:
    """Turn a failed write to `stream` into an :class:`OutputError` that
    names it; a closed pipe stays a :exc:`BrokenPipeError`."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as error:
        raise OutputError(f'cannot write to {_stream_name(stream)}: '
                          f'{error.strerror or error}') from None


def _stream_name(stream: typing.IO[typing.Any]) -> str:
    name = getattr(stream, 'name', None)
    if name in ('<stdout>', '<stderr>'):
        return typing.cast(str, name)[1:-1]
    return 'the output'


def isatty(stream: typing.IO[typing.Any]) -> bool:
    """Whether `stream` is a terminal; :data:`False` when it cannot
    say."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
