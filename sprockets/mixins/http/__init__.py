"""HTTP client mixin for Tornado: retries with backoff, JSON and msgpack.

``await self.http_fetch(url)`` from a :class:`tornado.web.RequestHandler`,
a RabbitMQ consumer or any object that mixes in :class:`HTTPClientMixin`
sends a request through :class:`tornado.httpclient.AsyncHTTPClient`,
retries what is safe to retry and returns an :class:`HTTPResponse` that
records every attempt.

This module is the package's public face: it re-exports the public names
of the modules that hold them (see :doc:`design`).

"""
from __future__ import annotations

# 2.x test suites patch ``sprockets.mixins.http.asyncio`` to skip the
# retry sleeps: the mixin's default sleep looks it up here when it runs
import asyncio  # noqa: F401
import logging

from sprockets.mixins.http._client import Client, close_all
from sprockets.mixins.http._content import (
    AVAILABLE_CONTENT_TYPES,
    CONTENT_TYPE_JSON,
    CONTENT_TYPE_MSGPACK,
    UnsupportedContentType,
)
from sprockets.mixins.http._mixin import DEFAULT_USER_AGENT, HTTPClientMixin
from sprockets.mixins.http._response import (
    AttemptRecord,
    HTTPResponse,
    ResponseHeaders,
)
from sprockets.mixins.http._retry import (
    DEFAULT_BUDGET,
    Decision,
    DelayReason,
    Failure,
    Gate,
    RetryBudget,
    RetryPolicy,
    StopReason,
    parse_retry_after,
)
from sprockets.mixins.http._version import __version__

__all__ = [
    'AVAILABLE_CONTENT_TYPES',
    'CONTENT_TYPE_JSON',
    'CONTENT_TYPE_MSGPACK',
    'DEFAULT_BUDGET',
    'DEFAULT_USER_AGENT',
    'LOGGER',
    'AttemptRecord',
    'Client',
    'Decision',
    'DelayReason',
    'Failure',
    'Gate',
    'HTTPClientMixin',
    'HTTPResponse',
    'ResponseHeaders',
    'RetryBudget',
    'RetryPolicy',
    'StopReason',
    'UnsupportedContentType',
    '__version__',
    'close_all',
    'parse_retry_after',
]

#: The package's one logger, ``sprockets.mixins.http``.
LOGGER = logging.getLogger('sprockets.mixins.http')
