"""The pytest plugin of :mod:`sprockets.mixins.http`: the
``instant_retries`` and ``fake_upstream`` fixtures.

Registered through the ``pytest11`` entry point, so a test suite needs no
``conftest.py`` to use them; see :mod:`sprockets.mixins.http.testing`.

pytest imports the plugins of its entry points before pytest-cov starts
measuring, so this module lives outside the ``sprockets.mixins.http``
package (importing anything in it runs the package's ``__init__``) and
imports :mod:`sprockets.mixins.http.testing` only when a fixture runs:
``pytest --cov`` then measures the package's module-level code too.

.. versionadded:: 3.0

"""
from __future__ import annotations

import typing

import pytest

if typing.TYPE_CHECKING:  # pragma: no cover
    from sprockets.mixins.http.testing import FakeUpstream


@pytest.fixture(name='instant_retries')
def _instant_retries_fixture() -> typing.Iterator[typing.List[float]]:
    """Make retry sleeps instant for the test; the value is the list of
    the delays asked for, in seconds, in order."""
    from sprockets.mixins.http import testing

    with testing.instant_retries() as delays:
        yield delays


@pytest.fixture(name='fake_upstream')
def _fake_upstream_fixture() -> typing.Iterator[FakeUpstream]:
    """A fresh :class:`~sprockets.mixins.http.testing.FakeUpstream`, not
    started: start it in the test's event loop with ``async with
    fake_upstream:``.  One still running when the test ends is stopped:
    its port and connections are closed."""
    from sprockets.mixins.http import testing

    upstream = testing.FakeUpstream()
    yield upstream
    upstream._stop_now()
