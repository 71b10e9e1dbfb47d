"""What the engine works on: a :class:`Call` built by
:mod:`~sprockets.mixins.http._request`, and the :class:`Owner` whose hooks
it calls (the mixin, or a :class:`~sprockets.mixins.http.Client`).

It lives low, below the engine and the mixin, so that neither the engine
nor an attempt imports the mixin, even to type-check.

"""
from __future__ import annotations

import time
import typing

from tornado import httputil

from sprockets.mixins.http import _response, _retry

__all__ = ['Call', 'Owner']


class Call(typing.NamedTuple):
    """One :meth:`~sprockets.mixins.http.HTTPClientMixin.http_fetch` call,
    ready to send."""
    url: str
    method: str
    headers: httputil.HTTPHeaders
    body: typing.Union[bytes, str, None]
    policy: _retry.RetryPolicy
    #: the caller's own deadline; :meth:`RetryPolicy.deadline_for` gives
    #: the one in effect
    deadline: typing.Optional[float]
    connect_timeout: float
    request_timeout: float
    options: typing.Dict[str, typing.Any]
    #: undo the Content-Encoding here (tornado was told not to)
    decompress: bool = False


class Owner(typing.Protocol):
    """The hooks and attributes of the object a call is made for, as the
    engine, an attempt and the observers use them."""

    MAX_DECOMPRESSED_SIZE: int
    TRACER_PROVIDER: typing.Any

    def _http_req_clock(self) -> float:
        ...  # pragma: no cover

    async def _http_req_sleep(self, seconds: float) -> None:
        ...  # pragma: no cover

    def _http_req_modify_for_retry(
            self, response: _response.HTTPResponse, attempt: int, url: str,
            headers: typing.Dict[str, str], body: typing.Any
    ) -> typing.Tuple[str, typing.Mapping[str, str], typing.Any]:
        ...  # pragma: no cover

    def _http_req_body_serialize(
            self, body: typing.Any,
            content_type: typing.Optional[str]) -> typing.Union[bytes, str]:
        ...  # pragma: no cover

    def _http_req_retry_budget(
            self, policy: _retry.RetryPolicy
    ) -> typing.Optional[_retry.RetryBudget]:
        ...  # pragma: no cover

    def _http_req_on_attempt(self, response: _response.HTTPResponse,
                             record: _response.AttemptRecord) -> None:
        ...  # pragma: no cover

    def _http_req_on_complete(self,
                              response: _response.HTTPResponse) -> None:
        ...  # pragma: no cover


Hook = typing.TypeVar('Hook', bound=typing.Callable[..., typing.Any])

# the attribute package_default sets on a function
_PACKAGE_DEFAULT = '_sprockets_package_default'


def package_default(hook: Hook) -> Hook:
    """Mark `hook` as the package's own implementation of an owner hook,
    so that the engine may do what it does without calling it while a
    subclass has not overridden it (see :func:`is_package_default`)."""
    setattr(hook, _PACKAGE_DEFAULT, True)
    return hook


def is_package_default(hook: typing.Any) -> bool:
    """Whether `hook` (a bound method of an owner) is the package's own,
    not a subclass's override."""
    return getattr(hook, _PACKAGE_DEFAULT, False) is True


def clock_of(owner: Owner) -> typing.Callable[[], float]:
    """The owner's clock: :func:`time.monotonic` itself while its
    ``_http_req_clock`` is the package's (one call fewer each time)."""
    clock = owner._http_req_clock
    return time.monotonic if is_package_default(clock) else clock
