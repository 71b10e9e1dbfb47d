"""The response of :meth:`HTTPClientMixin.http_fetch` and its per-attempt
records."""
from __future__ import annotations

import dataclasses
import logging
import time
import typing

from ietfparse import headers as ietf_headers
from tornado import httpclient, httputil

from sprockets.mixins.http import _content, _retry

LOGGER = logging.getLogger('sprockets.mixins.http')

__all__ = ['AttemptRecord', 'HTTPResponse', 'ResponseHeaders']

_UNSET: typing.Any = object()

# the stop reasons of a call that reached no final answer, whatever status
_NO_FINAL_ANSWER = frozenset({_retry.StopReason.TOO_MANY_REDIRECTS,
                              _retry.StopReason.STREAM_INTERRUPTED})


class ResponseHeaders(typing.Dict[str, str]):
    """The final response's headers, as :attr:`HTTPResponse.headers`
    gives them: a plain :class:`dict`, as in 2.x, that also looks names up
    without regard to case and keeps repeated fields apart.

    Its keys are tornado's canonical names (``Content-Type``) and a field
    sent more than once is joined with a comma, exactly as
    ``dict(raw.headers)`` was in 2.x, so that ``json.dumps()``, ``==``
    against a dict and ``isinstance(headers, dict)`` behave as before.  On
    top of that, ``headers['content-type']``, :meth:`get`, ``in``,
    assignment, ``del``, :meth:`pop` and :meth:`setdefault` ignore case
    (``update()`` is dict's own and does not), and :meth:`get_list`
    returns the separate values of a repeated field (``Set-Cookie``).

    It is a copy: writing to it changes neither
    :attr:`HTTPResponse.raw` nor what the next access of
    :attr:`HTTPResponse.headers` returns.

    .. versionadded:: 3.0

    """

    __slots__ = ('_lists',)

    def __init__(self, headers: typing.Optional[httputil.HTTPHeaders] = None
                 ) -> None:
        super().__init__()
        self._lists: typing.Dict[str, typing.List[str]] = {}
        if headers is not None:
            for name, value in headers.get_all():
                self._lists.setdefault(name, []).append(value)
            for name, values in self._lists.items():
                super().__setitem__(name, ','.join(values))

    def __reduce__(self) -> typing.Any:
        # copy and pickle as a plain dict of the current values would
        # lose the separate values: rebuild from them instead
        return (_rebuild_headers, (dict(self), self._lists))

    def _key(self, name: typing.Any) -> typing.Any:
        """The key `name` is stored under, or `name` when none matches."""
        if not isinstance(name, str) or dict.__contains__(self, name):
            return name
        folded = name.lower()
        for key in self:
            if key.lower() == folded:
                return key
        return name

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(self._key(name))

    def __contains__(self, name: object) -> bool:
        return super().__contains__(self._key(name))

    def __setitem__(self, name: str, value: str) -> None:
        super().__setitem__(self._key(name), value)

    def __delitem__(self, name: str) -> None:
        super().__delitem__(self._key(name))

    def get(self, name: str,
            default: typing.Any = None) -> typing.Any:
        """The value of field `name` (any case), or `default`."""
        return super().get(self._key(name), default)

    def pop(self, name: str,
            *default: typing.Any) -> typing.Any:
        """Remove field `name` (any case) and return its value."""
        return super().pop(self._key(name), *default)

    def setdefault(self, name: str,
                   default: typing.Any = None) -> typing.Any:
        """The value of field `name` (any case), set to `default` first
        when it is absent."""
        return super().setdefault(self._key(name), default)

    def get_list(self, name: str) -> typing.List[str]:
        """Every value of field `name` (any case), in order; ``[]`` when
        it is absent.  A value written since the copy was made is one
        value."""
        key = self._key(name)
        if not super().__contains__(key):
            return []
        value = super().__getitem__(key)
        values = self._lists.get(key)
        if values is not None and ','.join(values) == value:
            return list(values)
        return [value]


def _rebuild_headers(values: typing.Dict[str, str],
                     lists: typing.Dict[str, typing.List[str]]
                     ) -> ResponseHeaders:
    headers = ResponseHeaders()
    dict.update(headers, values)
    headers._lists = {name: list(items) for name, items in lists.items()}
    return headers


@dataclasses.dataclass
class AttemptRecord:
    """What happened on one attempt, kept in :attr:`HTTPResponse.records`.

    .. versionadded:: 3.0

    """
    #: ``1`` for the first attempt.
    number: int
    #: Seconds from the start of the call to the start of this attempt.
    started: float
    #: Seconds the attempt took.
    duration: float = 0.0
    #: The response status, or :data:`None` when the attempt raised.
    status: typing.Optional[int] = None
    #: The exception the attempt raised, or :data:`None`.
    exception: typing.Optional[BaseException] = None
    #: Seconds slept after this attempt before the next one.
    delay: float = 0.0
    #: Why the engine slept: ``'backoff'`` or ``'retry-after'``, or
    #: :data:`None` when it did not; ``'transport-resend'`` when the
    #: transport sent the request again by itself, at once, after this
    #: attempt's send met :attr:`exception` (libcurl does on a reused
    #: kept-alive connection that closes before any of the response
    #: arrives): the next record is that send.
    delay_reason: typing.Optional[str] = None
    #: Why a redirect of this attempt was not followed: its ``Location``
    #: is not a usable http(s) URL (the :exc:`ValueError` says what is
    #: wrong).  The redirect is then the attempt's response, and the call
    #: stops with :attr:`StopReason.NOT_RETRYABLE` (the same redirect
    #: would come again).
    #:
    #: .. versionadded:: 3.0
    redirect_error: typing.Optional[ValueError] = None
    #: Bytes of this attempt's body handed to the ``streaming_callback``
    #: (``0`` without one, or while the body was kept back because the
    #: attempt was to be retried).  An attempt with an :attr:`exception`
    #: and bytes streamed broke off after the caller consumed part of its
    #: body: the call stops with :attr:`StopReason.STREAM_INTERRUPTED`.
    #:
    #: .. versionadded:: 3.0
    streamed: int = 0
    #: The tornado response of this attempt, or :data:`None` when it
    #: raised (a body that could not be decompressed included: the
    #: exception's ``response`` is then the tornado response).
    #:
    #: .. versionadded:: 3.0
    response: typing.Optional[httpclient.HTTPResponse] = dataclasses.field(
        default=None, repr=False, compare=False)
    #: Why the response's Content-Encoding could not be undone (it is
    #: still compressed), or :data:`None`.  The engine sets it only for a
    #: redirect that is the attempt's response (too many redirects, a
    #: Location that cannot be followed), whose body is not the answer:
    #: any other response whose body cannot be decompressed is a failed
    #: attempt, with the ``DecompressionError`` as :attr:`exception` and
    #: no :attr:`response` or :attr:`status`.
    #:
    #: .. versionadded:: 3.0
    content_error: typing.Optional[Exception] = dataclasses.field(
        default=None, repr=False, compare=False)

    @property
    def outcome(self) -> str:
        """The status as a string, or the exception's class name."""
        if self.status is not None:
            return str(self.status)
        return type(self.exception).__name__


class HTTPResponse:
    """Every attempt of one :meth:`~HTTPClientMixin.http_fetch` call, and
    the final answer.

    No property raises: a response that never arrived gives a
    :attr:`code` of ``599`` and empty or :data:`None` values, and a body
    that cannot be decoded gives its raw bytes (see :attr:`body_error`).

    A response whose Content-Encoding the package could not undo (a
    corrupt, truncated or too large body, or a coding whose extra is not
    installed) is not an answer: its attempt failed, the
    ``DecompressionError`` is in :attr:`exceptions` and it counts in
    ``len()``, but it is not in :attr:`history` nor :attr:`raw`, so that
    :attr:`code`, :attr:`ok` and :attr:`body` describe the last response
    that was usable (``599``, :data:`False` and :data:`None` when there
    is none).

    :param simplify_error_response: for a final status of 400 or more,
        make :attr:`body` the decoded body's ``message`` when it has one
    :param clock: the monotonic clock :attr:`duration` is measured with

    .. versionchanged:: 3.0
       Added :attr:`stop_reason`, :attr:`records`, :attr:`body_error` and
       ``headers.get_list()``; the `clock` parameter.

    """

    def __init__(self, simplify_error_response: bool = True, *,
                 clock: typing.Callable[[], float] = time.monotonic) -> None:
        self._simplify = simplify_error_response
        self._clock = clock
        self._start = clock()
        self._end: typing.Optional[float] = None
        # the last record with a response: the final answer so far
        self._final: typing.Optional[AttemptRecord] = None
        self._body: typing.Any = _UNSET
        self._body_error: typing.Optional[Exception] = None
        self._links: typing.Any = _UNSET
        #: Why the call stopped, one of :class:`StopReason`; :data:`None`
        #: until :meth:`finish` is called.
        self.stop_reason: typing.Optional[_retry.StopReason] = None
        #: One :class:`AttemptRecord` per attempt, in order: the one source
        #: of :attr:`history`, :attr:`exceptions`, :attr:`raw` and
        #: :attr:`code`.
        self.records: typing.List[AttemptRecord] = []

    def __repr__(self) -> str:
        return (f'<{type(self).__name__} code={self.code} '
                f'attempts={len(self)} stop_reason={self.stop_reason}>')

    def __len__(self) -> int:
        """The number of attempts made: responses plus exceptions."""
        return sum(1 for record in self.records
                   if record.response is not None
                   or record.exception is not None)

    def start_attempt(self, number: int, started: float) -> AttemptRecord:
        """Add and return the record of attempt `number`, which starts
        `started` seconds into the call.

        .. versionadded:: 3.0

        """
        record = AttemptRecord(number, started)
        self.records.append(record)
        return record

    def record_response(self, record: AttemptRecord,
                        response: httpclient.HTTPResponse,
                        content_error: typing.Optional[Exception] = None
                        ) -> None:
        """Record that attempt `record` got `response`, whose body could
        not be decompressed when `content_error` is given.

        .. versionadded:: 3.0

        """
        record.response, record.status = response, response.code
        record.content_error = content_error
        self._final = record
        self._body = self._links = _UNSET
        self._body_error = None

    def record_exception(self, record: AttemptRecord,
                         error: BaseException) -> None:
        """Record that attempt `record` raised `error`.

        .. versionadded:: 3.0

        """
        record.exception = error

    def record_resend(self, record: AttemptRecord,
                      error: BaseException) -> AttemptRecord:
        """Record that the transport sent attempt `record`'s request
        again by itself, after its send met `error`: a record of that
        send, with `error` and the delay reason
        :attr:`~DelayReason.TRANSPORT_RESEND`, goes before `record`, which
        becomes the next attempt.  Returns the record added.

        .. versionadded:: 3.0

        """
        resent = AttemptRecord(
            record.number, record.started, exception=error,
            delay_reason=_retry.DelayReason.TRANSPORT_RESEND)
        self.records.insert(self.records.index(record), resent)
        record.number += 1
        return resent

    def append_response(self, response: httpclient.HTTPResponse) -> None:
        """Record a tornado response, as an attempt of its own."""
        self.record_response(self._next_record(), response)

    def append_exception(self, error: BaseException) -> None:
        """Record an exception raised by an attempt, as an attempt of its
        own."""
        self.record_exception(self._next_record(), error)

    def _next_record(self) -> AttemptRecord:
        return self.start_attempt(len(self.records) + 1,
                                  self._clock() - self._start)

    def finish(self, stop_reason: typing.Optional[str] = None) -> None:
        """Stop the duration clock and set :attr:`stop_reason`."""
        self._end = self._clock()
        if stop_reason is not None:
            self.stop_reason = _retry.StopReason(stop_reason)

    @property
    def attempts(self) -> int:
        """The number of attempts: responses plus exceptions."""
        return len(self)

    @property
    def body(self) -> typing.Any:
        """The final response's body, decoded by its Content-Type.

        JSON (``application/json`` and ``+json``) and msgpack
        (``application/msgpack``, ``application/x-msgpack`` and
        ``+msgpack``) are decoded on first access and cached; any other
        content type gives the raw :class:`bytes`.  For a final status of
        400 or more with ``simplify_error_response``, a decoded dict's
        ``message`` is returned in place of the dict.

        :data:`None` when no response arrived or the final body is empty,
        whatever its status and Content-Type (as in 2.x).  A body that
        cannot be decoded gives the raw bytes, and the error is kept in
        :attr:`body_error`; one that cannot be decompressed is no
        response at all (see :attr:`exceptions`).

        .. versionchanged:: 3.0
           A ``gzip``, ``br`` or ``zstd`` body arrives decompressed (see
           :doc:`compression`).

        """
        if self._body is _UNSET:
            self._body = self._decode()
        return self._body

    @property
    def body_error(self) -> typing.Optional[Exception]:
        """The exception raised while decompressing or decoding
        :attr:`body`, or :data:`None`.  Reading it decodes the body if
        needed.

        A body that could not be decoded gives the :exc:`ValueError` or
        :exc:`LookupError` of its codec.  One that could not be
        decompressed (corrupt, truncated, too large, or in a coding whose
        extra is not installed) made its attempt fail instead: the
        ``DecompressionError`` is in :attr:`exceptions`.  Only a redirect
        that ended the call (see :attr:`AttemptRecord.content_error`)
        gives a ``DecompressionError`` here.

        .. versionadded:: 3.0

        """
        if self._body is _UNSET:
            self._body = self._decode()
        return self._body_error

    def _decode(self) -> typing.Any:
        final = self._final
        if final is None or final.response is None:
            return None
        raw = final.response
        data = raw.body or b''
        if not data:  # whatever the status and Content-Type, as in 2.x
            return None
        if final.content_error is not None:  # still compressed
            self._body_error = final.content_error
            return data
        content_type = raw.headers.get('Content-Type')
        try:
            value = _content.deserialize(data, content_type)
        except (ValueError, LookupError) as error:
            self._body_error = error
            LOGGER.debug('Could not decode the %s response body as %s: %s',
                         raw.code, content_type, error)
            return data
        if (self._simplify and raw.code >= 400 and isinstance(value, dict)
                and 'message' in value):
            return value['message']
        return value

    @property
    def code(self) -> int:
        """The final response's status, ``599`` when none arrived."""
        raw = self.raw
        return 599 if raw is None else raw.code

    @property
    def duration(self) -> float:
        """Seconds across every attempt and sleep, on a monotonic clock."""
        end = self._end if self._end is not None else self._clock()
        return end - self._start

    @property
    def exceptions(self) -> typing.List[BaseException]:
        """Every exception the attempts raised, in order."""
        return [record.exception for record in self.records
                if record.exception is not None]

    @property
    def headers(self) -> typing.Optional[ResponseHeaders]:
        """The final response's headers as a new :class:`dict` on every
        access, as in 2.x; :data:`None` when no response arrived.

        The dict is a :class:`ResponseHeaders`: tornado's canonical names
        as keys, repeated fields joined with a comma (2.x's values), and
        on top of that lookups without regard to case and
        ``headers.get_list(name)`` for the separate values of a repeated
        field (``Set-Cookie``).  Writing to it changes nothing else.

        .. versionchanged:: 3.0
           Lookups ignore case and ``get_list()`` was added.

        """
        raw = self.raw
        return None if raw is None else ResponseHeaders(raw.headers)

    @property
    def history(self) -> typing.List[httpclient.HTTPResponse]:
        """Every tornado response received, in order."""
        return [record.response for record in self.records
                if record.response is not None]

    @property
    def links(self) -> typing.Optional[typing.List[typing.Dict[str, str]]]:
        """The final ``Link`` header as a list of dicts, each with a
        ``target`` and the link's parameters.

        ``[]`` when the header is absent or malformed (a malformed header
        is logged at DEBUG); :data:`None` when no response arrived.

        """
        if self.raw is None:
            return None
        if self._links is _UNSET:
            self._links = self._parse_links()
        return typing.cast(typing.List[typing.Dict[str, str]], self._links)

    def _parse_links(self) -> typing.List[typing.Dict[str, str]]:
        raw = self.raw
        values = raw.headers.get_list('Link') if raw is not None else []
        links: typing.List[typing.Dict[str, str]] = []
        try:
            for value in values:
                for link in ietf_headers.parse_link(value, strict=False):
                    entry = {'target': link.target}
                    entry.update(link.parameters)
                    links.append(entry)
        except Exception as error:  # ietfparse raises IndexError too
            LOGGER.debug('Ignoring a malformed Link header: %s', error)
            return []
        return links

    @property
    def ok(self) -> bool:
        """:data:`True` when the final status is 200 to 399 and the request
        reached a final answer: a redirect loop
        (:attr:`StopReason.TOO_MANY_REDIRECTS`) is not one, nor a body
        that broke off while it streamed
        (:attr:`StopReason.STREAM_INTERRUPTED`)."""
        if self.stop_reason in _NO_FINAL_ANSWER:
            return False
        return self.raw is not None and 200 <= self.code < 400

    @property
    def raw(self) -> typing.Optional[httpclient.HTTPResponse]:
        """The final tornado response, or :data:`None`."""
        final = self._final
        return None if final is None else final.response
