"""Fixtures shared by the fault suites."""
from __future__ import annotations

import typing

import pytest
from tornado import httpclient

from sprockets.mixins import http


@pytest.fixture
def configured(implementation: str) -> typing.Iterator[str]:
    """Send with `implementation`, from a fresh retry budget."""
    httpclient.AsyncHTTPClient.configure(implementation)
    http.DEFAULT_BUDGET.reset()
    try:
        yield implementation
    finally:
        httpclient.AsyncHTTPClient.configure(None)
