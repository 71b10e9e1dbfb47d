"""The timeline: one line per attempt, a countdown on a terminal while the
client waits to retry, and the stop line.

The lines are drawn from the :class:`~sprockets.mixins.http._response.
AttemptRecord` of each attempt, in which the engine already decided the
delay and its reason: nothing here decides anything.

"""
from __future__ import annotations

import time
import typing

from sprockets.mixins.http._cli.render import escape_controls, isatty, writing
from sprockets.mixins.http._response import AttemptRecord, HTTPResponse

#: How often the countdown line is rewritten on a terminal, in seconds.
COUNTDOWN_TICK = 0.1


def describe_outcome(record: AttemptRecord) -> str:
    """Return the status, or the exception's class and message."""
    if record.status is not None:
        return str(record.status)
    error = record.exception
    message = escape_controls(' '.join(str(error).split()))
    name = type(error).__name__
    return f'{name} ({message})' if message else name


def attempt_line(record: AttemptRecord) -> str:
    """Return the timeline line for one attempt, e.g.
    ``attempt 1: 503 in 0.004 s -> retrying in 1.27 s (backoff)``."""
    line = (f'attempt {record.number}: {describe_outcome(record)} in '
            f'{record.duration:.3f} s')
    if record.delay_reason is not None:
        reason = ('Retry-After' if record.delay_reason == 'retry-after'
                  else record.delay_reason)
        line += f' -> retrying in {record.delay:.2f} s ({reason})'
    return line


def stop_line(stop_reason: typing.Optional[str], attempts: int,
              duration: float, status: typing.Optional[int],
              last_status: typing.Optional[int] = None) -> str:
    """Return the timeline's last line, e.g.
    ``stop: success after 3 attempts in 2.285 s (final status 200)``.

    `status` is the final attempt's; when it got no response,
    `last_status` is the status of the last attempt that got one, if any:
    ``(last status 503; the final attempt got no response)``.

    """
    if status is not None:
        final = f'final status {status}'
    elif last_status is not None:
        final = (f'last status {last_status}; the final attempt got no '
                 'response')
    else:
        final = 'no response'
    plural = '' if attempts == 1 else 's'
    return (f'stop: {stop_reason} after {attempts} attempt{plural} in '
            f'{duration:.3f} s ({final})')


def last_status(response: HTTPResponse) -> typing.Optional[int]:
    """Return the status of the last attempt that got a response, or
    :data:`None` when none did."""
    for record in reversed(response.records):
        if record.status is not None:
            return record.status
    return None


class Timeline:
    """Writes one line per attempt to `stream`.

    On a terminal, the wait before a retry is a live countdown: the line is
    rewritten with ``\\r`` every :data:`COUNTDOWN_TICK` seconds and ends as
    the same line a non-terminal gets.

    :param stream: where the lines go
    :param tty: whether `stream` is a terminal; :data:`None` asks it
    :param clock: the monotonic clock the countdown reads

    """

    def __init__(self, stream: typing.TextIO, *,
                 tty: typing.Optional[bool] = None,
                 clock: typing.Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.tty = isatty(stream) if tty is None else tty
        self.clock = clock
        self._pending: typing.Optional[str] = None

    def write(self, line: str) -> None:
        """Write a whole line (after any countdown in progress).

        :raises OutputError: when the stream cannot be written
        :raises BrokenPipeError: when nobody reads it any more

        """
        with writing(self.stream):
            self._finish_pending()
            self.stream.write(line + '\n')
            self.stream.flush()

    def attempt(self, record: AttemptRecord) -> None:
        """Show what one attempt did and what follows it."""
        line = attempt_line(record)
        if self.tty and record.delay_reason is not None:
            with writing(self.stream):
                self._finish_pending()
                self._pending = line
                self.stream.write(line)
                self.stream.flush()
        else:
            self.write(line)

    async def wait(self, seconds: float,
                   sleep: typing.Callable[[float], typing.Awaitable[None]]
                   ) -> None:
        """Sleep `seconds` with `sleep`; on a terminal, in ticks with a
        countdown."""
        if self._pending is None:
            await sleep(seconds)
            return
        line = self._pending
        end = self.clock() + seconds
        width = 0
        while True:
            left = end - self.clock()
            if left <= 0:
                break
            text = f'{line}: {left:.1f} s left'
            width = max(width, len(text))
            with writing(self.stream):
                self.stream.write('\r' + text.ljust(width))
                self.stream.flush()
            await sleep(min(COUNTDOWN_TICK, left))
        self._pending = None
        with writing(self.stream):
            self.stream.write('\r' + line.ljust(width) + '\n')
            self.stream.flush()

    def stop(self, response: HTTPResponse) -> None:
        """Write the last line: the stop reason and the total duration."""
        records = response.records
        status = records[-1].status if records else None
        reason = (str(response.stop_reason) if response.stop_reason
                  is not None else None)
        self.write(stop_line(reason, len(records), response.duration,
                             status, last_status(response)))

    def _finish_pending(self) -> None:
        if self._pending is not None:
            self.stream.write('\n')
            self._pending = None
