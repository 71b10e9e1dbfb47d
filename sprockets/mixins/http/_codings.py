"""Content codings: undoing a response's Content-Encoding.

gzip (and deflate) always, ``br`` with the ``brotli`` extra, ``zstd`` with
the ``zstd`` extra; :data:`ACCEPT_ENCODING` advertises exactly those.
Pure functions with no I/O and no tornado import.

"""
from __future__ import annotations

import importlib
import typing
import zlib

__all__ = [
    'ACCEPT_ENCODING',
    'MAX_DECOMPRESSED_SIZE',
    'DecompressionError',
    'accept_encoding',
    'decompress',
]


def _optional(name: str) -> typing.Any:
    """Return the module `name`, or :data:`None` when it does not
    import."""
    try:
        return importlib.import_module(name)
    except ImportError:  # pragma: no cover - the test extra installs both
        return None


# the extras; decompress() and accept_encoding() look these up when they
# run, so a test may set them to None.  brotli 1.2 added the bounded
# output that decompression needs: an older brotli counts as missing.
brotli = _optional('brotli')
if brotli is not None and not hasattr(brotli.Decompressor,
                                      'can_accept_more_data'):
    brotli = None  # pragma: no cover
zstandard = _optional('zstandard')

#: The most bytes :func:`decompress` produces from one body, per coding:
#: 100 MiB, tornado's default ``max_body_size`` for a body received as it
#: is, so that a compressed body cannot grow past what an uncompressed one
#: may be.
MAX_DECOMPRESSED_SIZE = 100 * 1024 * 1024

# input fed to a decompressor at a time: output is checked against the
# limit between steps (zstd and zlib cannot bound one call's output)
_STEP = 64 * 1024
# the most a zstd frame expands one input byte: a 4-byte RLE block holds
# up to 128 KiB
_ZSTD_RATIO = 32 * 1024


class DecompressionError(ValueError):
    """A body's Content-Encoding could not be undone: it is corrupt,
    truncated, larger than the limit once decompressed, or in a coding
    this installation cannot decode.

    .. versionadded:: 3.0

    """


def accept_encoding() -> str:
    """Return the ``Accept-Encoding`` value for what :func:`decompress`
    can decode here: ``gzip``, plus ``br`` when :mod:`brotli` (1.2 or
    newer) imports and ``zstd`` when :mod:`zstandard` imports."""
    codings = ['gzip']
    if brotli is not None:
        codings.append('br')
    if zstandard is not None:
        codings.append('zstd')
    return ', '.join(codings)


#: :func:`accept_encoding` as computed when the package was imported.
ACCEPT_ENCODING = accept_encoding()


def decompress(data: bytes, content_encoding: typing.Optional[str],
               limit: int = MAX_DECOMPRESSED_SIZE) -> bytes:
    """Undo the content codings of a response body.

    `content_encoding` is the ``Content-Encoding`` header value: codings
    in the order they were applied, comma-separated, so they are undone
    last first.  ``gzip`` (and its alias ``x-gzip``) and ``deflate`` are
    always decoded, ``br`` with the ``brotli`` extra and ``zstd`` with the
    ``zstd`` extra; ``identity``, an absent header and an empty body give
    `data` unchanged.  Coding names are compared without regard to case.

    :param data: the body as received
    :param content_encoding: the Content-Encoding header value, or
        :data:`None`
    :param limit: the most bytes any one coding may decompress to
    :raises DecompressionError: for a corrupt or truncated body, one that
        decompresses to more than `limit` bytes, or a coding this
        installation cannot decode (the message names the extra to
        install)

    """
    if not data or not content_encoding:
        return data
    codings = [coding.strip().lower()
               for coding in content_encoding.split(',')]
    for coding in reversed(codings):
        if coding in ('', 'identity'):
            continue
        decoder = _DECODERS.get(coding)
        if decoder is None:
            raise DecompressionError(
                f'unsupported Content-Encoding {coding!r}')
        try:
            data = decoder(data, limit)
        except DecompressionError:
            raise
        except Exception as error:  # zlib.error, brotli.error, ZstdError
            raise DecompressionError(
                f'invalid {coding} body: {error}') from error
    return data


def _too_large(coding: str, limit: int) -> DecompressionError:
    return DecompressionError(
        f'the {coding} body decompresses to more than {limit} bytes')


def _zlib(data: bytes, limit: int, wbits: int, coding: str,
          members: bool) -> bytes:
    """Inflate `data`; with `members`, concatenated gzip members too."""
    output: typing.List[bytes] = []
    size = 0
    while True:
        inflater = zlib.decompressobj(wbits)
        pending = data
        while pending and not inflater.eof:
            chunk = inflater.decompress(pending, limit - size + 1)
            size += len(chunk)
            if size > limit:
                raise _too_large(coding, limit)
            output.append(chunk)
            pending = inflater.unconsumed_tail
        if not inflater.eof:
            raise DecompressionError(f'truncated {coding} body')
        data = inflater.unused_data
        if not (members and data):
            break
    if data:
        raise DecompressionError(
            f'{len(data)} bytes of trailing data after the {coding} body')
    return b''.join(output)


def _gunzip(data: bytes, limit: int) -> bytes:
    return _zlib(data, limit, 16 + zlib.MAX_WBITS, 'gzip', members=True)


def _inflate(data: bytes, limit: int) -> bytes:
    # RFC 9110's deflate is the zlib format; some servers send raw deflate
    zlib_header = (len(data) >= 2 and data[0] & 0x0F == 8
                   and data[0] >> 4 <= 7
                   and (data[0] << 8 | data[1]) % 31 == 0)
    wbits = zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS
    return _zlib(data, limit, wbits, 'deflate', members=False)


def _unbrotli(data: bytes, limit: int) -> bytes:
    if brotli is None:
        raise DecompressionError(
            'a br body needs the brotli package (1.2 or newer): install '
            'sprockets.mixins.http[brotli]')
    decompressor = brotli.Decompressor()
    chunk = decompressor.process(data, output_buffer_limit=_STEP)
    output: typing.List[bytes] = []
    size = 0
    while True:
        size += len(chunk)
        if size > limit:
            raise _too_large('br', limit)
        output.append(chunk)
        if decompressor.is_finished():
            return b''.join(output)
        chunk = decompressor.process(b'', output_buffer_limit=_STEP)
        if not chunk and decompressor.can_accept_more_data():
            raise DecompressionError('truncated br body')


def _unzstd(data: bytes, limit: int) -> bytes:
    if zstandard is None:
        raise DecompressionError(
            'a zstd body needs the zstandard package: install '
            'sprockets.mixins.http[zstd]')
    output: typing.List[bytes] = []
    size = 0
    view = memoryview(data)
    while view:  # one decompressobj per frame
        decompressor = zstandard.ZstdDecompressor().decompressobj()
        while view and not decompressor.eof:
            # no single call may overshoot the limit by more than a step
            step = max(256, min(_STEP, (limit - size) // _ZSTD_RATIO))
            chunk = decompressor.decompress(view[:step].tobytes())
            view = view[step:]
            size += len(chunk)
            if size > limit:
                raise _too_large('zstd', limit)
            output.append(chunk)
        if not decompressor.eof:
            raise DecompressionError('truncated zstd body')
        unused = decompressor.unused_data
        if unused:
            view = memoryview(unused + view.tobytes())
    return b''.join(output)


_DECODERS: typing.Dict[str, typing.Callable[[bytes, int], bytes]] = {
    'gzip': _gunzip,
    'x-gzip': _gunzip,
    'deflate': _inflate,
    'br': _unbrotli,
    'zstd': _unzstd,
}
