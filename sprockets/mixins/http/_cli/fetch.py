"""From checked arguments to a response: the :class:`Request`, and the
fetch through :class:`CLIClient`, the mixin with the timeline drawn from
its hooks.  There is no retry loop here: the package's own runs.

"""
from __future__ import annotations

import argparse
import dataclasses
import typing

from tornado import httpclient, httputil

from sprockets.mixins.http import _content, _transports
from sprockets.mixins.http._cli.args import (
    UsageError,
    parse_header,
    parse_json,
    read_data,
)
from sprockets.mixins.http._cli.render import OutputError, reason
from sprockets.mixins.http._cli.timeline import Timeline
from sprockets.mixins.http._mixin import HTTPClientMixin
from sprockets.mixins.http._response import AttemptRecord, HTTPResponse

_FORM = 'application/x-www-form-urlencoded'
_STANDARD_METHODS = frozenset(
    {'GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'})
# the package's names for the values of these options, in its messages
_OPTION_NAMES = {'max_http_attempts': '--max-attempts',
                 'max_attempts': '--max-attempts',
                 'retry_timeout': '--retry-timeout',
                 'deadline': '--deadline', 'request_timeout': '--timeout'}


@dataclasses.dataclass
class Request:
    """One fetch, ready for :meth:`HTTPClientMixin.http_fetch`."""
    url: str
    method: str = 'GET'
    headers: typing.List[typing.Tuple[str, str]] = dataclasses.field(
        default_factory=list)
    body: typing.Any = None
    content_type: str = str(_content.CONTENT_TYPE_MSGPACK)
    options: typing.Dict[str, typing.Any] = dataclasses.field(
        default_factory=dict)

    def fetch_arguments(self) -> typing.Dict[str, typing.Any]:
        """Return the keyword arguments for ``http_fetch``."""
        headers = httputil.HTTPHeaders()
        for name, value in self.headers:
            try:
                headers.add(name, value)
            except httputil.HTTPInputError as error:
                raise UsageError(f'invalid header {name!r}: {error}') from None
        arguments: typing.Dict[str, typing.Any] = {
            'method': self.method, 'request_headers': headers,
            'body': self.body, 'content_type': self.content_type,
            'allow_nonstandard_methods':
                self.method not in _STANDARD_METHODS}
        arguments.update(self.options)
        return arguments


def build_request(args: argparse.Namespace,
                  stdin: typing.BinaryIO) -> Request:
    """Turn parsed arguments into a :class:`Request`.

    :raises UsageError: for a bad header, unreadable data or bad JSON

    """
    request = Request(args.url)
    request.headers = [parse_header(value) for value in args.header]
    _add_body(request, args, stdin)
    if args.method:
        request.method = args.method.upper()
    elif request.body is not None:
        request.method = 'POST'
    if request.body is not None and request.method in ('GET', 'HEAD'):
        raise UsageError(f'a {request.method} request cannot have a body '
                         '(--json, --data): use -X POST, PUT or PATCH')
    options = request.options
    options['validate_cert'] = not args.insecure
    options['follow_redirects'] = args.follow_redirects
    for option, argument in (('max_http_attempts', args.max_attempts),
                             ('retry_timeout', args.retry_timeout),
                             ('deadline', args.deadline),
                             ('request_timeout', args.timeout)):
        if argument is not None:
            options[option] = argument
    return request


def _add_body(request: Request, args: argparse.Namespace,
              stdin: typing.BinaryIO) -> None:
    """Set the body and the content type of ``--json`` or ``--data``."""
    if args.json is not None:
        document = parse_json(read_data(args.json, stdin))
        dump = _content.dump_json
        request.content_type = str(_content.CONTENT_TYPE_JSON)
        if args.msgpack:
            dump = _content.dump_msgpack
            request.content_type = str(_content.CONTENT_TYPE_MSGPACK)
        try:
            request.body = (document if isinstance(document, (dict, list))
                            else dump(document))
        except (TypeError, ValueError, OverflowError) as error:
            raise UsageError(reason(error)) from None
    elif args.data is not None:
        request.content_type = _FORM
        request.body = read_data(args.data, stdin)


class CLIClient(HTTPClientMixin):
    """The mixin as the command line uses it: the timeline is drawn from
    the engine's :meth:`_http_req_on_attempt` and :meth:`_http_req_sleep`
    hooks, and error bodies are printed whole."""

    simplify_error_response = False

    def __init__(self, timeline: Timeline) -> None:
        super().__init__()
        self.timeline = timeline
        #: the error of a timeline line that could not be written (a
        #: :exc:`BrokenPipeError` or an :exc:`OutputError`): the engine
        #: logs what a hook raises, so it is kept for later
        self.write_error: typing.Optional[Exception] = None

    def _http_req_on_attempt(self, response: HTTPResponse,
                             record: AttemptRecord) -> None:
        try:
            self.timeline.attempt(record)
        except (BrokenPipeError, OutputError) as error:
            self.write_error = error

    async def _http_req_sleep(self, seconds: float) -> None:
        if self.write_error is not None:  # nobody sees it: stop now
            raise self.write_error
        await self.timeline.wait(seconds, super()._http_req_sleep)


async def perform(request: Request, timeline: Timeline) -> HTTPResponse:
    """Fetch `request` with :class:`CLIClient` and write the stop line.

    :raises UsageError: when the package rejects the request (its
        :exc:`ValueError` or :exc:`TypeError`, raised before anything is
        sent)
    :raises BrokenPipeError: when the timeline's stream was closed
    :raises OutputError: when it could not be written

    """
    client = CLIClient(timeline)
    try:
        response = await client.http_fetch(request.url,
                                           **request.fetch_arguments())
    except (ValueError, TypeError, RecursionError) as error:
        message = ' '.join(str(error).split())
        for field, option in _OPTION_NAMES.items():
            if message.startswith(f'{field} '):
                message = option + message[len(field):]
        raise UsageError(message) from None
    if client.write_error is not None:
        raise client.write_error
    timeline.stop(response)
    return response


def close_clients() -> None:
    """Close the AsyncHTTPClient instances the engine sent with."""
    try:
        client = _transports.async_http_client()
    except ValueError:  # a bad HTTP_MAX_CLIENTS, already reported
        client = httpclient.AsyncHTTPClient()
    client.close()
