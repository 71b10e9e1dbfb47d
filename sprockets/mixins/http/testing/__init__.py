"""Helpers for testing code that uses :mod:`sprockets.mixins.http`.

- :class:`FakeUpstream`: a scripted upstream server that answers with the
  replies you queue and records every request, on an ephemeral loopback
  port or mounted into your own application;
- :func:`instant_retries`, :class:`InstantRetriesMixin` and the
  ``instant_retries`` pytest fixture: retry sleeps return at once and the
  delays asked for are recorded;
- :func:`serve`: run a :class:`tornado.web.Application` on an ephemeral
  loopback port, for tests that do not use
  :class:`tornado.testing.AsyncHTTPTestCase`.

The ``instant_retries`` and ``fake_upstream`` pytest fixtures come with the
package's pytest plugin, ``sprockets.mixins.http_pytest_plugin``, which the
``pytest11`` entry point registers: they need no ``conftest.py``.  pytest
itself is optional.

This module is the testing kit's public face: it re-exports the public
names of the modules that hold them, ``_instant`` (instant retries),
``_upstream`` (the fake upstream, with its ``_replies``, ``_requests``
and ``_handler``) and ``_serve`` (listening on a loopback port).

.. versionadded:: 3.0

"""
from __future__ import annotations

from sprockets.mixins.http.testing._instant import (
    InstantRetriesMixin,
    instant_retries,
)
from sprockets.mixins.http.testing._replies import (
    HeadersArg as HeadersArg,  # a typing alias, not API: as testing.py had
)
from sprockets.mixins.http.testing._requests import RecordedRequest
from sprockets.mixins.http.testing._serve import serve
from sprockets.mixins.http.testing._upstream import FakeUpstream

try:
    import pytest
except ImportError:  # pragma: no cover - pytest is optional
    pytest = None  # type: ignore[assignment]

__all__ = [
    'FakeUpstream',
    'InstantRetriesMixin',
    'RecordedRequest',
    'instant_retries',
    'serve',
]

if pytest is not None:
    # The fixtures live in sprockets.mixins.http_pytest_plugin, the module
    # the pytest11 entry point names: it imports nothing of this package
    # until a fixture runs, so pytest-cov measures the package's import.
    # They are imported here too, so that ``-p sprockets.mixins.http.testing``
    # and ``pytest_plugins = ['sprockets.mixins.http.testing']`` still work.
    from sprockets.mixins.http_pytest_plugin import (  # noqa: F401
        _fake_upstream_fixture,
        _instant_retries_fixture,
    )
