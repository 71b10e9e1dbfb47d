"""The relay between tornado and a caller's ``streaming_callback``.

Only the body of the attempt the call returns may reach the caller, and it
should reach it as it arrives.  The relay stands in for the caller's
callbacks on each attempt's ``HTTPRequest``: it reads the status and the
headers as they come (through ``header_callback``, which both tornado
clients call before the first chunk of a body), asks whether that
response is final (the policy will not retry it), and then either hands
each chunk on at once (*live*) or keeps it back (*withheld*) until the
engine knows whether the attempt is the one returned.

When the package decompresses (``decompress_response`` not given), the
chunks tornado hands over are the body as it arrived, and the relay undoes
its ``Content-Encoding`` as it hands them on (a body kept back stays as it
arrived until it is handed on, so a redirect's or a retried response's is
never decoded): a body that cannot be decoded ends the attempt as a body
that cannot be decompressed does without streaming, with the
``DecompressionError`` in :attr:`Relay.content_error`.

A callback that raises (at once, or in the awaitable it returns) ends the
attempt: the relay keeps the first exception, closes the attempt's
connection, and passes nothing more on.  Awaitables a callback returns
run one after another, in order, on both clients (simple_httpclient
awaits each one before it reads more, curl_httpclient cannot wait, so the
relay's own chain keeps the order).

"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import inspect
import typing

from tornado import httputil

from sprockets.mixins.http import _codings
from sprockets.mixins.http._reasons import StopReason

__all__ = ['IsFinal', 'Relay']

#: Why a response of this status and these headers is final (its body is
#: the answer the caller gets: the policy will not retry it), or
#: :data:`None` when it would be retried.
IsFinal = typing.Callable[[int, httputil.HTTPHeaders],
                          typing.Optional[StopReason]]

Callback = typing.Callable[[bytes], typing.Any]


class Relay:
    """One attempt's stand-in for the caller's ``streaming_callback`` (and
    ``header_callback``, which is still called with every line).

    :param callback: the caller's ``streaming_callback``
    :param header_callback: the caller's ``header_callback``, or
        :data:`None`
    :param is_final: asked once the headers of each response are in
    :param abort: closes the attempt's connection (when the callback
        raises)
    :param gone: whether the attempt was cancelled (its chunks are then
        dropped)
    :param decompress: whether the chunks are to be decompressed (the
        package undoes the Content-Encoding, not tornado)

    """

    __slots__ = ('_abort', '_backlog', '_callback', '_cancelled',
                 '_decoder', '_decompress', '_drained', '_draining',
                 '_encoding', '_gone', '_header_callback', '_headers',
                 '_is_final', '_pending', '_running', '_status',
                 'content_error', 'error', 'final', 'live', 'streamed',
                 'withheld')

    def __init__(self, callback: Callback,
                 header_callback: typing.Optional[
                     typing.Callable[[str], typing.Any]],
                 is_final: IsFinal,
                 abort: typing.Callable[[], None],
                 gone: typing.Optional[typing.Callable[[], bool]] = None,
                 decompress: bool = False) -> None:
        self._callback = callback
        self._header_callback = header_callback
        self._is_final = is_final
        self._abort: typing.Optional[typing.Callable[[], None]] = abort
        self._gone = gone
        self._status: typing.Optional[int] = None
        self._headers = httputil.HTTPHeaders()
        self._pending: typing.Optional[asyncio.Future[None]] = None
        self._running: typing.Deque[typing.Tuple[
            asyncio.Future[None], typing.Awaitable[typing.Any]]] = (
                collections.deque())
        self._cancelled = False
        #: chunks handed on at once: the response is final
        self.live = False
        #: why the response is final, as the policy said when its headers
        #: came: the decision that stands once its body went out live
        self.final: typing.Optional[StopReason] = None
        #: the chunks kept back: of a response that will be retried, or
        #: that came before its headers (curl_httpclient calls the
        #: header_callback late for a short response)
        self.withheld: typing.List[bytes] = []
        #: bytes handed to the callback
        self.streamed = 0
        #: the first exception the callback raised, or the
        #: :attr:`content_error`
        self.error: typing.Optional[BaseException] = None
        self._decompress = decompress
        #: the final response's Content-Encoding, to undo
        self._encoding: typing.Optional[str] = None
        self._decoder: typing.Optional[_codings.StreamDecoder] = None
        #: handing on the pieces of a chunk to a coroutine callback, and
        #: the chunks (None: the end of the body) that wait for it
        self._draining: typing.Optional[asyncio.Future[None]] = None
        self._drained: typing.Optional[asyncio.Future[None]] = None
        self._backlog: typing.Deque[typing.Optional[bytes]] = (
            collections.deque())
        #: why the body handed on could not be decompressed: it ended
        #: the attempt (it is :attr:`error` too)
        self.content_error: typing.Optional[
            _codings.DecompressionError] = None

    def header_line(self, line: str) -> None:
        """tornado's ``header_callback``: the status line, each header line
        and the empty line that ends them, for every response (1xx
        included)."""
        if self.error is not None:
            return
        if self._header_callback is not None:
            try:
                self._header_callback(line)
            except (Exception, asyncio.CancelledError) as error:
                # the caller's (a CancelledError of its own too): ends the
                # call, never raised into tornado
                self._fail(error)
                return
        if line.startswith('HTTP/'):
            # a response starts (a 1xx comes before the final one; each
            # hop of a redirect is a fetch of its own)
            fields = line.split(None, 2)
            self._status = (int(fields[1]) if len(fields) > 1
                            and fields[1].isdigit() else None)
            self._headers = httputil.HTTPHeaders()
        elif line.strip():
            # a line tornado refuses: the client itself says what is wrong
            with contextlib.suppress(httputil.HTTPInputError, ValueError):
                self._headers.parse_line(line)
        elif self._status is not None and self._status >= 200:
            self.final = self._is_final(self._status, self._headers)
            self.live = self.final is not None
            if self._decompress:
                self._encoding = _codings.to_undo(
                    self._headers.get_list('Content-Encoding'))
                self._decoder = None
            if self.live and self.withheld:
                # curl_httpclient hands on the lines of a short response
                # after its body: the body is the answer all the same
                chunks, self.withheld = self.withheld, []
                for chunk in chunks:
                    self.chunk(chunk)

    def chunk(self, chunk: bytes) -> typing.Optional[
            asyncio.Future[None]]:
        """tornado's ``streaming_callback``: hand `chunk` on or keep it
        back; returns what simple_httpclient awaits before it reads more
        (the callback's awaitable, in order after the ones before)."""
        if self.error is not None or self._cancelled:
            return None
        if self._gone is not None and self._gone():
            # the attempt was cancelled: curl_httpclient flushes what it
            # buffered as its transfer is ended, nobody reads it now
            self.cancel()
            return None
        if not self.live:
            self.withheld.append(chunk)
            return None
        if self._encoding is not None:
            return self._decoded(chunk)
        return self._hand_on(chunk)

    def _decoded(self, chunk: bytes) -> typing.Optional[
            asyncio.Future[None]]:
        """Hand on what `chunk` of the body decompresses to, a piece at a
        time: a coroutine callback gets the next piece only once it is
        done with the one before (a chunk of a few KiB may decompress to
        GiB), so what `chunk` still holds, and the chunks that come in the
        meantime (curl_httpclient does not wait), are handed on by
        :meth:`_drain`, in order; returns what simple_httpclient awaits
        before it reads more."""
        if self._draining is not None:
            self._backlog.append(chunk)
            return self._drained
        return self._hand_on_pieces(self._pieces(chunk))

    def end_of_body(self) -> None:
        """The body handed on is complete: hand on what its decompressor
        still held, or fail with a :attr:`content_error` when the body
        ended before its coding did."""
        if (self._encoding is None or self.error is not None
                or self._cancelled or not self.live):
            return
        if self._draining is not None:
            self._backlog.append(None)  # after the chunks before
            return
        self._hand_on_pieces(self._pieces(None))

    def _pieces(self, chunk: typing.Optional[bytes]
                ) -> typing.Iterator[bytes]:
        """What `chunk` decompresses to (:data:`None`: the end of the
        body), piece by piece, as each is asked for; a body that cannot be
        decoded ends the attempt."""
        try:
            if chunk is None:
                decoder, self._decoder = self._decoder, None
                if decoder is not None:
                    yield from decoder.end()
                return
            if self._decoder is None:
                self._decoder = _codings.StreamDecoder(
                    typing.cast(str, self._encoding))
            yield from self._decoder.feed(chunk)
        except _codings.DecompressionError as error:
            self._undecodable(error)

    def _hand_on_pieces(self, pieces: typing.Iterator[bytes]
                        ) -> typing.Optional[asyncio.Future[None]]:
        """Hand on `pieces` until the callback returns an awaitable: the
        rest waits for it (:meth:`_drain`)."""
        for piece in pieces:
            waiter = self._hand_on(piece)
            if self.error is not None:
                return None
            if waiter is not None:
                draining = self._draining = asyncio.ensure_future(
                    self._drain(waiter, pieces))
                # what simple_httpclient awaits: resolved when the drain
                # ends, however (cancelling it never throws into tornado)
                drained = self._drained = draining.get_loop().create_future()
                draining.add_done_callback(
                    functools.partial(_resolve, drained))
                return drained
        return None

    async def _drain(self, waiter: asyncio.Future[None],
                     pieces: typing.Iterator[bytes]) -> None:
        """Await `waiter`, then hand on the rest of `pieces` and of the
        chunks kept in the meantime, each piece once the callback is done
        with the one before."""
        try:
            await waiter
            while self.error is None and not self._cancelled:
                piece = next(pieces, None)
                if piece is None:  # pieces are never empty
                    if not self._backlog:
                        return
                    pieces = self._pieces(self._backlog.popleft())
                    continue
                handed = self._hand_on(piece)
                if handed is not None:
                    await handed
        finally:
            self._draining = None

    def _undecodable(self, error: _codings.DecompressionError) -> None:
        if self.error is None:
            self.content_error = error
            self._fail(error)

    def _hand_on(self, chunk: bytes) -> typing.Optional[
            asyncio.Future[None]]:
        """Hand `chunk` to the caller's callback."""
        if self.error is not None:
            return None
        self.streamed += len(chunk)
        try:
            delivered = self._callback(chunk)
        except (Exception, asyncio.CancelledError) as error:
            # kept, never raised into tornado (a CancelledError the
            # callback raises is its own failure, as in its awaitable)
            self._fail(error)
            return None
        if not inspect.isawaitable(delivered):
            return None
        pending = self._pending = asyncio.ensure_future(
            self._after(self._pending, delivered))
        # what cancel() must stop: a task cancelled before it started never
        # reaches its own clean-up, nor cancels the ones before it
        while self._running and self._running[0][0].done():
            self._running.popleft()
        self._running.append((pending, delivered))
        # what simple_httpclient awaits: resolved when this chunk is done
        # (or dropped), so that cancelling the chain never throws into
        # tornado's reading of the response
        waiter: asyncio.Future[None] = pending.get_loop().create_future()
        pending.add_done_callback(functools.partial(_resolve, waiter))
        return waiter

    async def _after(self, previous: typing.Optional[asyncio.Future[None]],
                     delivered: typing.Awaitable[typing.Any]) -> None:
        try:
            if previous is not None:
                await previous  # never raises but for a cancel
        except asyncio.CancelledError:
            _close_unstarted(delivered)
            raise
        try:
            await delivered
        except asyncio.CancelledError as error:
            if self._cancelled:
                raise  # the relay's own cancel
            self._fail(error)  # the callback's own: it failed
        except Exception as error:
            self._fail(error)

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
            if self._abort is not None:
                self._abort()

    async def finished(self, limit: typing.Optional[float] = None) -> None:
        """The attempt's request is done: wait for the awaitables still
        running, at most `limit` seconds (a callback that takes longer
        fails with :exc:`TimeoutError` and is cancelled); from now on
        nothing closes the attempt's connection (a pooled connection may
        serve another request already)."""
        self._abort = None
        # the pieces still handed on one by one, then what runs last
        running = [future for future in (self._draining, self._pending)
                   if future is not None and not future.done()]
        if not running:
            return
        try:
            _, not_done = await asyncio.wait(running, timeout=limit)
        except asyncio.CancelledError:
            self.cancel()  # the caller is gone: nothing more is handed on
            raise
        if not_done:
            self.cancel()
            self._fail(TimeoutError(
                f'the streaming_callback took longer than {limit:.3f} s, '
                'the time the call had left'))

    def cancel(self) -> None:
        """The attempt was cancelled: stop what the callback still runs
        (the coroutines not started yet are closed)."""
        self._abort = None
        self._cancelled = True
        if self._draining is not None:
            self._draining.cancel()
        while self._running:
            task, delivered = self._running.popleft()
            task.cancel()
            _close_unstarted(delivered)

    async def deliver_withheld(self, limit: typing.Optional[float] = None
                               ) -> typing.Optional[BaseException]:
        """Hand what was kept back to the callback, now that the attempt
        is the one returned, waiting at most `limit` seconds for it; return
        the exception the callback raised (then or before), if any."""
        chunks, self.withheld, self.live = self.withheld, [], True
        for chunk in chunks:
            self.chunk(chunk)
        self.end_of_body()
        await self.finished(limit)
        return self.error


def _close_unstarted(awaitable: typing.Awaitable[typing.Any]) -> None:
    """Close `awaitable` if it is a coroutine that never started, so that
    it is not reported as never awaited."""
    if (inspect.iscoroutine(awaitable)
            and inspect.getcoroutinestate(awaitable) == inspect.CORO_CREATED):
        awaitable.close()


def _resolve(waiter: asyncio.Future[None], _: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
