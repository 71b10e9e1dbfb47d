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
    'StreamDecoder',
    'accept_encoding',
    'decompress',
    'to_undo',
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
# input first fed to each gzip member or zstd frame, doubled at each step
# up to _STEP: what a decompressor copies when a member ends is bounded by
# the step, so a body of many small members stays linear
_FIRST_STEP = 64
# the most a zstd frame expands one input byte: a 4-byte RLE block holds
# up to 128 KiB
_ZSTD_RATIO = 32 * 1024


class DecompressionError(ValueError):
    """A body's Content-Encoding could not be undone: it is corrupt,
    truncated, larger than the limit once decompressed, or in a coding
    this installation cannot decode.

    When the engine meets one, the attempt failed: it is recorded in
    :attr:`HTTPResponse.exceptions <sprockets.mixins.http.HTTPResponse>`
    with :attr:`response` set, never returned as an answer whose body is
    still compressed.  A :attr:`truncated` body may have been cut by the
    transport and is retried as a broken connection is (an idempotent
    request only); any other (corrupt, too large, a coding whose extra is
    missing) would come again the same and is not retried.

    .. versionadded:: 3.0

    """

    def __init__(self, message: str, *, truncated: bool = False) -> None:
        super().__init__(message)
        #: The body ended before its coding did.
        self.truncated = truncated
        #: The tornado response whose body this is, as it arrived (still
        #: compressed), when the engine raised it; :data:`None` otherwise.
        self.response: typing.Any = None


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


def to_undo(fields: typing.Sequence[str]) -> typing.Optional[str]:
    """The ``Content-Encoding`` header `fields` as one value, or
    :data:`None` when they leave nothing to undo (none, or
    ``identity``)."""
    encoding = ','.join(fields)
    if not encoding or encoding.strip().lower() == 'identity':
        return None
    return encoding


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


#: What each optional coding needs: its package, and the extra to install.
_EXTRAS = {'br': ('brotli package (1.2 or newer)', 'brotli'),
           'zstd': ('zstandard package', 'zstd')}


def _missing(coding: str) -> DecompressionError:
    """The error of a body in `coding` whose extra is not installed."""
    package, extra = _EXTRAS[coding]
    return DecompressionError(
        f'a {coding} body needs the {package}: install '
        f'sprockets.mixins.http[{extra}]')


def _too_large(coding: str, limit: int) -> DecompressionError:
    return DecompressionError(
        f'the {coding} body decompresses to more than {limit} bytes')


def _zlib(data: bytes, limit: int, wbits: int, coding: str,
          members: bool) -> bytes:
    """Inflate `data`; with `members`, concatenated gzip members too.

    Linear in the size of `data`, however many members it holds: the input
    is read through a :class:`memoryview` at an offset, and each member is
    fed steps that start at :data:`_FIRST_STEP` bytes and double up to
    :data:`_STEP`, so that what zlib copies when a member ends (its
    ``unused_data``, the rest of the step) is at most about twice the
    member's own size, never the rest of the body.

    """
    view = memoryview(data)
    total = len(view)
    offset = size = 0
    output: typing.List[bytes] = []
    while True:
        inflater = zlib.decompressobj(wbits)
        step = _FIRST_STEP
        while offset < total and not inflater.eof:
            fed = view[offset:offset + step]
            chunk = inflater.decompress(fed, limit - size + 1)
            size += len(chunk)
            if size > limit:
                raise _too_large(coding, limit)
            output.append(chunk)
            # input not consumed: past the member's end (unused_data), or
            # held back by the output limit (unconsumed_tail)
            offset += (len(fed) - len(inflater.unused_data)
                       - len(inflater.unconsumed_tail))
            step = min(step * 2, _STEP)
        if not inflater.eof:
            raise DecompressionError(f'truncated {coding} body',
                                     truncated=True)
        if not (members and offset < total):
            break
    if offset < total:
        raise DecompressionError(
            f'{total - offset} bytes of trailing data after the {coding} '
            'body')
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
        raise _missing('br')
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
            raise DecompressionError('truncated br body', truncated=True)


def _unzstd(data: bytes, limit: int) -> bytes:
    if zstandard is None:
        raise _missing('zstd')
    output: typing.List[bytes] = []
    view = memoryview(data)
    total = len(view)
    offset = size = 0
    # one decompressobj per frame, from one context (making a context
    # costs more than a small frame's whole decompression)
    context = zstandard.ZstdDecompressor()
    while offset < total:
        decompressor = context.decompressobj()
        first = _FIRST_STEP  # as for gzip members: see _zlib
        while offset < total and not decompressor.eof:
            # no single call may overshoot the limit by more than a step
            step = max(256, min(_STEP, (limit - size) // _ZSTD_RATIO))
            fed = view[offset:offset + min(first, step)]
            first *= 2
            chunk = decompressor.decompress(fed)
            size += len(chunk)
            if size > limit:
                raise _too_large('zstd', limit)
            output.append(chunk)
            offset += len(fed) - len(decompressor.unused_data)
        if not decompressor.eof:
            raise DecompressionError('truncated zstd body',
                                     truncated=True)
    return b''.join(output)


_DECODERS: typing.Dict[str, typing.Callable[[bytes, int], bytes]] = {
    'gzip': _gunzip,
    'x-gzip': _gunzip,
    'deflate': _inflate,
    'br': _unbrotli,
    'zstd': _unzstd,
}


class StreamDecoder:
    """Undoes a ``Content-Encoding`` chunk by chunk, as a streamed body
    arrives: what :func:`decompress` does for a whole body, with the same
    codings, the same errors and the same output.

    Each :meth:`feed` returns the pieces decompressed so far, made as they
    are asked for, none larger than 1 MiB however the body expands (8 MiB
    for zstd, whose decompressor cannot bound one call's output: a byte
    of input may expand to 32 KiB); :meth:`end` says whether the body
    ended where its coding did.  Linear in the body's size, however many
    gzip members or zstd frames it holds.

    :param content_encoding: the Content-Encoding header value
    :raises DecompressionError: for a coding this installation cannot
        decode (the message names the extra to install)

    """

    __slots__ = ('_steps',)

    def __init__(self, content_encoding: str) -> None:
        steps: typing.List[_Step] = []
        for coding in reversed([coding.strip().lower()
                                for coding in content_encoding.split(',')]):
            if coding in ('', 'identity'):
                continue
            step = _STREAMED.get(coding)
            if step is None:
                raise DecompressionError(
                    f'unsupported Content-Encoding {coding!r}')
            steps.append(step(coding))
        self._steps = steps

    def feed(self, data: bytes) -> typing.Iterator[bytes]:
        """Decompress the next `data` of the body: its pieces, in order.

        :raises DecompressionError: for a corrupt body

        """
        return self._through(0, [data], final=False)

    def end(self) -> typing.Iterator[bytes]:
        """The body ended: the pieces still held back, in order.

        :raises DecompressionError: for a body that ended before its
            coding did (``truncated``)

        """
        return self._through(0, [], final=True)

    def _through(self, index: int, pieces: typing.Iterable[bytes],
                 final: bool) -> typing.Iterator[bytes]:
        if index == len(self._steps):
            for piece in pieces:
                if piece:
                    yield piece
            return
        step = self._steps[index]
        decoded = _decoded(step, pieces, final)
        yield from self._through(index + 1, decoded, final)


def _decoded(step: _Step, pieces: typing.Iterable[bytes],
             final: bool) -> typing.Iterator[bytes]:
    try:
        for piece in pieces:
            yield from step.feed(piece)
        if final:
            yield from step.end()
    except DecompressionError:
        raise
    except Exception as error:  # zlib.error, brotli.error, ZstdError
        raise DecompressionError(
            f'invalid {step.coding} body: {error}') from error


# the most one call to a decompressor produces, streamed
_PIECE = 1024 * 1024


class _Step:
    """One coding of a :class:`StreamDecoder`."""

    __slots__ = ('coding', 'fed')

    def __init__(self, coding: str) -> None:
        self.coding = coding
        #: whether any of the body came: an empty body is no truncation
        self.fed = False

    def feed(self, data: bytes) -> typing.Iterator[bytes]:
        raise NotImplementedError  # pragma: no cover

    def end(self) -> typing.Iterator[bytes]:
        raise NotImplementedError  # pragma: no cover

    def truncated(self) -> DecompressionError:
        return DecompressionError(f'truncated {self.coding} body',
                                  truncated=True)


class _ZlibStep(_Step):
    """gzip (members concatenated) and deflate (zlib or raw), fed in steps
    that start small at each member, as :func:`_zlib` is."""

    __slots__ = ('_head', '_inflater', '_members', '_step', '_wbits')

    def __init__(self, coding: str) -> None:
        super().__init__(coding)
        self._members = coding != 'deflate'
        self._wbits: typing.Optional[int] = (
            16 + zlib.MAX_WBITS if self._members else None)
        self._head = b''  # deflate: the bytes that tell zlib from raw
        self._inflater: typing.Any = None
        self._step = _FIRST_STEP

    def feed(self, data: bytes) -> typing.Iterator[bytes]:
        if not data:
            return
        self.fed = True
        if self._wbits is None:  # deflate: zlib format, or raw deflate
            self._head += data
            if len(self._head) < 2:
                return
            data, self._head = self._head, b''
            self._wbits = (zlib.MAX_WBITS if _zlib_header(data)
                           else -zlib.MAX_WBITS)
        view = memoryview(data)
        offset, total = 0, len(view)
        while offset < total:
            inflater = self._inflater
            if inflater is None or inflater.eof:
                if inflater is not None and not self._members:
                    raise DecompressionError(
                        f'{total - offset} bytes of trailing data after '
                        f'the {self.coding} body')
                inflater = self._inflater = zlib.decompressobj(self._wbits)
                self._step = _FIRST_STEP
            fed = view[offset:offset + self._step]
            pending = fed
            while True:
                piece = inflater.decompress(pending, _PIECE)
                if piece:
                    yield piece
                pending = inflater.unconsumed_tail
                if not pending or inflater.eof:
                    break
            offset += len(fed) - len(inflater.unused_data)
            self._step = min(self._step * 2, _STEP)

    def end(self) -> typing.Iterator[bytes]:
        if self._head:  # a deflate body of one byte
            raise self.truncated()
        if self.fed and (self._inflater is None or not self._inflater.eof):
            raise self.truncated()
        return iter(())


def _zlib_header(data: bytes) -> bool:
    """Whether `data` starts with a zlib header (RFC 9110's deflate), not
    raw deflate, which some servers send."""
    return (data[0] & 0x0F == 8 and data[0] >> 4 <= 7
            and (data[0] << 8 | data[1]) % 31 == 0)


class _BrotliStep(_Step):
    __slots__ = ('_decompressor',)

    def __init__(self, coding: str) -> None:
        super().__init__(coding)
        if brotli is None:
            raise _missing('br')
        self._decompressor = brotli.Decompressor()

    def feed(self, data: bytes) -> typing.Iterator[bytes]:
        if not data:
            return
        self.fed = True
        decompressor = self._decompressor
        if decompressor.is_finished():
            raise DecompressionError(
                f'{len(data)} bytes of trailing data after the br body')
        piece = decompressor.process(data, output_buffer_limit=_PIECE)
        if piece:
            yield piece
        yield from self._drain()

    def _drain(self) -> typing.Iterator[bytes]:
        """What the decompressor still holds: brotli may say it can take
        more input while output is pending, so it is asked until it gives
        nothing (as :func:`_unbrotli` does)."""
        decompressor = self._decompressor
        while not decompressor.is_finished():
            piece = decompressor.process(b'', output_buffer_limit=_PIECE)
            if not piece:
                return
            yield piece

    def end(self) -> typing.Iterator[bytes]:
        if not self.fed:
            return
        yield from self._drain()
        if not self._decompressor.is_finished():
            raise self.truncated()


class _ZstdStep(_Step):
    """zstd frames, one decompressobj each, fed in steps small enough that
    no call makes more than about :data:`_PIECE` bytes."""

    __slots__ = ('_context', '_decompressor', '_step')

    def __init__(self, coding: str) -> None:
        super().__init__(coding)
        if zstandard is None:
            raise _missing('zstd')
        self._context = zstandard.ZstdDecompressor()
        self._decompressor: typing.Any = None
        self._step = _FIRST_STEP

    def feed(self, data: bytes) -> typing.Iterator[bytes]:
        if not data:
            return
        self.fed = True
        view = memoryview(data)
        offset, total = 0, len(view)
        most = max(256, _PIECE // _ZSTD_RATIO)
        while offset < total:
            decompressor = self._decompressor
            if decompressor is None or decompressor.eof:
                decompressor = self._decompressor = (
                    self._context.decompressobj())
                self._step = _FIRST_STEP
            fed = view[offset:offset + min(self._step, most)]
            piece = decompressor.decompress(fed)
            if piece:
                yield piece
            offset += len(fed) - len(decompressor.unused_data)
            self._step *= 2

    def end(self) -> typing.Iterator[bytes]:
        if self.fed and (self._decompressor is None
                         or not self._decompressor.eof):
            raise self.truncated()
        return iter(())


_STREAMED: typing.Dict[str, typing.Callable[[str], _Step]] = {
    'gzip': _ZlibStep,
    'x-gzip': _ZlibStep,
    'deflate': _ZlibStep,
    'br': _BrotliStep,
    'zstd': _ZstdStep,
}
