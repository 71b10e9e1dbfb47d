"""The values the policy answers with: why a call stops, what kind of
failure an attempt met, why the engine sleeps, and the decision itself.

.. versionadded:: 3.0

"""
from __future__ import annotations

import dataclasses
import enum
import typing

__all__ = ['Decision', 'DelayReason', 'Failure', 'StopReason']


class StopReason(str, enum.Enum):
    """Why :meth:`~sprockets.mixins.http.HTTPClientMixin.http_fetch`
    stopped.  Members compare equal to their string values.

    .. versionadded:: 3.0

    """
    SUCCESS = 'success'
    NOT_RETRYABLE = 'not-retryable'
    DONT_RETRY = 'dont-retry'
    ATTEMPTS_EXHAUSTED = 'attempts-exhausted'
    DEADLINE = 'deadline'
    BUDGET_EXHAUSTED = 'budget-exhausted'
    RETRY_AFTER_TOO_LONG = 'retry-after-too-long'
    UNSAFE_METHOD = 'unsafe-method'
    TOO_MANY_REDIRECTS = 'too-many-redirects'
    #: Part of the final attempt's body reached the ``streaming_callback``,
    #: then the attempt failed or the callback raised: the caller has
    #: consumed part of a body, so the request is not sent again.
    #:
    #: .. versionadded:: 3.0
    STREAM_INTERRUPTED = 'stream-interrupted'

    def __str__(self) -> str:
        return self.value


class Failure(str, enum.Enum):
    """What kind of transport failure an exception represents.

    .. versionadded:: 3.0

    """
    #: The request was provably never sent: connection refused, connect
    #: timeout, name resolution failure, or a timeout in the client's queue.
    CONNECT = 'connect'
    #: The request timed out after it may have been sent.
    TIMEOUT = 'timeout'
    #: The connection broke after it may have been sent (reset, stream
    #: closed, malformed or oversized response headers).
    CONNECTION = 'connection'
    #: Retrying cannot help: certificate verification failed, the URL is
    #: invalid, or the error is not a transport error at all.
    FATAL = 'fatal'

    def __str__(self) -> str:
        return self.value


class DelayReason(str, enum.Enum):
    """Why the engine sleeps before the next attempt."""
    BACKOFF = 'backoff'
    RETRY_AFTER = 'retry-after'
    #: The engine did not sleep: the transport sent the request again by
    #: itself, at once, on a new connection (libcurl does when a reused
    #: kept-alive connection closes before any of the response arrived).
    #: Only a request that may be repeated is: one that may not goes on a
    #: connection of its own, which is never resent.
    #:
    #: .. versionadded:: 3.0
    TRANSPORT_RESEND = 'transport-resend'

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass(frozen=True)
class Decision:
    """The answer of :meth:`.RetryPolicy.decide`.

    When :attr:`stop_reason` is ``None`` the engine sleeps :attr:`delay`
    seconds and sends the request again.

    .. versionadded:: 3.0

    """
    stop_reason: typing.Optional[StopReason]
    delay: float = 0.0
    delay_reason: typing.Optional[DelayReason] = None

    @property
    def retry(self) -> bool:
        """:data:`True` when the request should be sent again."""
        return self.stop_reason is None
