"""The command line, ``python -m sprockets.mixins.http``.

It fetches one URL through :class:`~sprockets.mixins.http.HTTPClientMixin`
(a small subclass that draws the timeline; the retry loop is the
package's own), prints one line per attempt on stderr and the decoded body
on stdout, and exits with a code a script can test: see :data:`EXIT_OK`
and its siblings.  ``--demo`` runs the same code against an upstream that
it starts inside this process.

.. versionadded:: 3.0

"""
from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import datetime
import io
import json
import logging
import math
import os
import re
import sys
import time
import typing
import urllib.parse
import uuid

import msgpack
from tornado import httpclient, httpserver, httputil, netutil, web

from sprockets.mixins import http
from sprockets.mixins.http import _checks, _content, _engine

PROG = 'python -m sprockets.mixins.http'

#: The final response has a 2xx or 3xx status.
EXIT_OK = 0
#: The final response has an error status (400 or more), or a redirect
#: loop never reached a final answer.
EXIT_ERROR_STATUS = 1
#: The command line is wrong: an unknown option, a bad URL, bad JSON...
EXIT_USAGE = 2
#: No attempt got a response: every attempt failed in transport.  When an
#: earlier attempt got a status and only the last failed in transport, the
#: exit code is :data:`EXIT_ERROR_STATUS`.
EXIT_NO_RESPONSE = 3
#: The output could not be written: stdout, stderr or the ``-o`` file is on
#: a full disk (``> /dev/full``) or cannot be written at all.  A closed pipe
#: is :data:`EXIT_BROKEN_PIPE`.
EXIT_WRITE_ERROR = 4
#: Interrupted with Ctrl-C.
EXIT_INTERRUPTED = 130
#: stdout (or stderr) was closed before the output was written, as in
#: ``... | head -1``: 128 + SIGPIPE, as a shell reports a process killed
#: by SIGPIPE.
EXIT_BROKEN_PIPE = 141

#: The largest ``--timeout``, ``--deadline`` and ``--retry-timeout``
#: accepted, in seconds (about 11.6 days); larger values overflow curl.
MAX_SECONDS = 1_000_000.0

CURL_CLIENT = 'tornado.curl_httpclient.CurlAsyncHTTPClient'

#: How often the countdown line is rewritten on a terminal, in seconds.
COUNTDOWN_TICK = 0.1

_FORM = 'application/x-www-form-urlencoded'
_STANDARD_METHODS = frozenset(
    {'GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'})
# what a terminal obeys: the C0 controls but tab, DEL, and the C1 controls
# (U+0080 to U+009F; U+009B is the 8-bit CSI), escaped in what the server
# sent before it is shown
_CONTROL = re.compile(r'[\x00-\x08\x0a-\x1f\x7f-\x9f]')
# the same in text shown as lines: LF and CR LF stay, a lone CR does not
_CONTROL_IN_LINES = re.compile(
    r'\r(?!\n)|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]')
# what json.dumps(ensure_ascii=False) leaves as it is but a terminal obeys
_CONTROL_IN_JSON = re.compile(r'[\x7f-\x9f]')
_TRUE = frozenset({'true', 't', '1', 'yes', 'y', 'on'})
_FALSE = frozenset({'false', 'f', '0', 'no', 'n', 'off'})
# tornado's ``python -m tornado.httpclient`` flags: name -> (the option
# for a true value, the option for a false value); None adds nothing
_TORNADO_FLAGS: typing.Dict[str, typing.Tuple[typing.Optional[str],
                                              typing.Optional[str]]] = {
    'print_headers': ('--print-headers', None),
    'print_body': (None, '--no-body'),
    'follow_redirects': ('--follow-redirects', None),
    'validate_cert': (None, '--insecure'),
}
# options whose value is the next argument (when not given as --opt=value)
VALUE_OPTIONS = frozenset({
    '-X', '--method', '-H', '--header', '--json', '--data', '-o', '--output',
    '--max-attempts', '--retry-timeout', '--deadline', '--timeout'})
# the package's names for the values of these options, in its messages
_OPTION_NAMES = {'max_http_attempts': '--max-attempts',
                 'max_attempts': '--max-attempts',
                 'retry_timeout': '--retry-timeout',
                 'deadline': '--deadline', 'request_timeout': '--timeout'}
_TEXT_SUBTYPES = frozenset({
    'xml', 'javascript', 'ecmascript', 'x-www-form-urlencoded', 'yaml',
    'x-yaml', 'graphql', 'sql', 'x-sh', 'csv'})
_TEXT_SUFFIXES = frozenset({'xml', 'json', 'yaml'})


class UsageError(Exception):
    """A mistake on the command line; its message is one line."""


class OutputError(Exception):
    """stdout, stderr or the ``-o`` file could not be written (other than
    a closed pipe); its message is one line."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise :class:`UsageError`, so that
    every usage error is reported the same way, on one line."""

    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(message)

    def _print_message(self, message: str,
                       file: typing.Any = None) -> None:
        # argparse ignores a failure to print --help or --version
        if message:
            stream = file or sys.stderr
            with _writing(stream):
                stream.write(message)
                stream.flush()


# -- the command line ---------------------------------------------------------

DESCRIPTION = """\
Fetch URL with sprockets.mixins.http: retry what is safe to retry, print
one line per attempt on stderr and the body on stdout (JSON and msgpack
pretty-printed as JSON).  Run with --demo to watch it retry against an
upstream started inside this process."""

EPILOG = """\
exit codes: 0 success (final status 2xx or 3xx), 1 error status (400 or
more, or the last attempt failed after an earlier one got a status), 2
usage error, 3 no response at all (every attempt failed in transport), 4
the output could not be written (a full disk), 141 stdout closed early
(broken pipe).
tornado's flags --print_headers, --print_body=false, --follow_redirects and
--validate_cert=false are accepted too."""


def build_parser() -> argparse.ArgumentParser:
    """Return the parser for the command line."""
    parser = _Parser(
        prog=PROG, description=DESCRIPTION, epilog=EPILOG,
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('url', nargs='?', metavar='URL',
                        help='the http:// or https:// URL to fetch')
    parser.add_argument(
        '-X', '--method', metavar='METHOD',
        help='the request method (default: GET, or POST with a body)')
    parser.add_argument(
        '-H', '--header', action='append', default=[], metavar='HEADER',
        help="a request header, 'Name: value' (repeatable)")
    body = parser.add_mutually_exclusive_group()
    body.add_argument(
        '--json', metavar='DATA',
        help='send DATA, a JSON document, as application/json '
             '(@FILE reads a file, @- reads stdin)')
    body.add_argument(
        '--data', metavar='DATA',
        help='send DATA as it is, as application/x-www-form-urlencoded '
             'unless -H sets a Content-Type (@FILE reads a file, @- '
             'reads stdin)')
    parser.add_argument(
        '--msgpack', action='store_true',
        help='send the --json document as application/msgpack')
    parser.add_argument(
        '--max-attempts', type=int, metavar='N',
        help='send the request at most N times (default: '
             f'{http.HTTPClientMixin.MAX_HTTP_RETRIES})')
    parser.add_argument(
        '--retry-timeout', type=float, metavar='SECONDS',
        help='the backoff base: retry n waits a random time up to '
             'SECONDS * 2 ** (n - 1) (default: '
             f'{http.HTTPClientMixin.DEFAULT_RETRY_TIMEOUT:g}; 0 retries at '
             'once)')
    parser.add_argument(
        '--deadline', type=float, metavar='SECONDS',
        help='the most the whole call may take, retries and waits '
             'included (default: none)')
    parser.add_argument(
        '--timeout', type=float, metavar='SECONDS',
        help='the most one attempt may take (default: '
             f'{http.HTTPClientMixin.DEFAULT_REQUEST_TIMEOUT:g}; 0 for no '
             'limit)')
    parser.add_argument('--follow-redirects', action='store_true',
                        help='follow 3xx redirects')
    parser.add_argument('--insecure', action='store_true',
                        help="do not verify the server's TLS certificate")
    parser.add_argument(
        '--curl', action='store_true',
        help="send with tornado's curl_httpclient (needs pycurl)")
    parser.add_argument(
        '--print-headers', action='store_true',
        help='print the final status line and headers before the body')
    output = parser.add_mutually_exclusive_group()
    output.add_argument('--no-body', action='store_true',
                        help='do not print the body')
    output.add_argument(
        '-o', '--output', metavar='FILE',
        help='write the body, exactly as received, to FILE (- for stdout)')
    parser.add_argument(
        '-v', '--verbose', action='store_true',
        help="log the package's DEBUG lines to stderr (secrets redacted)")
    parser.add_argument(
        '--demo', action='store_true',
        help='start an upstream in this process and show the retries '
             '(takes a few seconds, no network)')
    parser.add_argument('--version', action='version',
                        version=f'sprockets.mixins.http {http.__version__}')
    return parser


def normalize_argv(argv: typing.Sequence[str]) -> typing.List[str]:
    """Translate tornado's flag names into this command's options.

    ``--print_headers``, ``--print_body``, ``--follow_redirects`` and
    ``--validate_cert`` are accepted bare (true) or as ``--name=BOOL``.
    Values of other options and everything after ``--`` are left alone.

    :raises UsageError: for a flag value that is not a boolean

    """
    result: typing.List[str] = []
    arguments = iter(argv)
    for argument in arguments:
        if argument == '--':
            result.append(argument)
            result.extend(arguments)
            break
        if argument in VALUE_OPTIONS:
            result.append(argument)
            following = next(arguments, None)
            if following is not None:
                result.append(following)
            continue
        name, equals, value = argument[2:].partition('=')
        if not argument.startswith('--') or name not in _TORNADO_FLAGS:
            result.append(argument)
            continue
        if not equals or value.lower() in _TRUE:
            flag = True
        elif value.lower() in _FALSE:
            flag = False
        else:
            raise UsageError(f'--{name} takes true or false, got {value!r}')
        option = _TORNADO_FLAGS[name][0 if flag else 1]
        if option is not None:
            result.append(option)
    return result


def parse_args(argv: typing.Sequence[str]) -> argparse.Namespace:
    """Parse and check the command line.

    :raises UsageError: for anything wrong with it

    """
    args = build_parser().parse_args(normalize_argv(argv))
    if args.demo:
        if args.url is not None:
            raise UsageError('--demo takes no URL')
        return args
    if args.url is None:
        raise UsageError('a URL is required (or --demo)')
    args.url = check_url(args.url)
    if args.method is not None:
        try:
            _checks.method(args.method)
        except ValueError:
            raise UsageError(
                f'invalid method {args.method!r}: it must be an HTTP token '
                '(letters, digits and !#$%&\'*+-.^_`|~)') from None
    if args.msgpack and args.json is None:
        raise UsageError('--msgpack sends the --json document: give --json')
    # 0 means no limit for --timeout, and is no time at all for --deadline
    for option, seconds, positive in (
            ('--timeout', args.timeout, False),
            ('--deadline', args.deadline, True),
            ('--retry-timeout', args.retry_timeout, False)):
        if seconds is None:
            continue
        if not seconds <= MAX_SECONDS:  # NaN too
            raise UsageError(f'{option} must be a number of seconds up to '
                             f'{MAX_SECONDS:.0f}, got {seconds!r}')
        try:
            _checks.seconds(option, seconds, positive=positive)
        except ValueError as error:
            raise UsageError(str(error)) from None
    if args.max_attempts is not None:
        try:
            _checks.count('--max-attempts', args.max_attempts)
        except ValueError as error:
            raise UsageError(str(error)) from None
    if args.output not in (None, '-'):
        directory = os.path.dirname(os.path.abspath(args.output))
        if os.path.isdir(args.output):
            raise UsageError(f'cannot write --output {args.output!r}: it is '
                             'a directory')
        if not os.path.isdir(directory):
            raise UsageError(f'cannot write --output {args.output!r}: no '
                             'such directory')
    return args


def check_url(url: str) -> str:
    """Return `url` when it is an absolute http or https URL with a host.

    What the package would strip or percent-encode as a programming
    error's last resort (:func:`sprockets.mixins.http._checks.url`: white
    space, a control character, C1 controls included) is refused here
    instead, as a typo is more likely than a wish.  Text outside ASCII
    (``/café``) is sent percent-encoded as UTF-8, as by the package.

    :raises UsageError: naming what is wrong with it

    """
    if not url or any(character.isspace() for character in url):
        raise UsageError(f'invalid URL {url!r}: it is empty or contains '
                         'whitespace')
    if _has_surrogates(url):
        raise UsageError(f'invalid URL {url!r}: it contains bytes that are '
                         'not valid in the locale\'s encoding')
    if _CONTROL.search(url):
        raise UsageError(f'invalid URL {url!r}: it contains a control '
                         'character')
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as error:
        raise UsageError(f'invalid URL {url!r}: {error}') from None
    if not parts.scheme or (not parts.netloc and (
            '.' in parts.scheme or parts.path[:1].isdigit())):
        raise UsageError(f'invalid URL {url!r}: no scheme, try '
                         f'http://{url}')
    if parts.scheme.lower() not in ('http', 'https'):
        raise UsageError(f'invalid URL {url!r}: the scheme must be http or '
                         f'https, not {parts.scheme!r}')
    if not parts.hostname:
        raise UsageError(f'invalid URL {url!r}: no host')
    return url


def parse_header(value: str) -> typing.Tuple[str, str]:
    """Return ``(name, value)`` from ``'Name: value'``, both trimmed of
    spaces and tabs.

    What is refused is what the package refuses
    (:func:`~sprockets.mixins.http._checks.header_name` and
    :func:`~sprockets.mixins.http._checks.header_value`); the message
    names the header and never shows its value, which may be a secret.

    :raises UsageError: when there is no colon, the name is not an HTTP
        token, or the value has a line break or another control character
        (tab is allowed) or a character outside ISO-8859-1, which HTTP
        headers cannot carry

    """
    name, colon, field = value.partition(':')
    name, field = name.strip(' \t'), field.strip(' \t')
    if not colon:
        raise UsageError(f"invalid header {value!r}: use 'Name: value'")
    try:
        _checks.header_name(name)
    except ValueError:
        raise UsageError(f"invalid header {name!r}: the name is not an "
                         "HTTP token (no spaces, colons or control "
                         "characters); use 'Name: value'") from None
    try:
        _checks.header_value(name, field)
    except ValueError:
        raise UsageError(f'invalid header {name!r}: '
                         f'{_header_value_problem(name, field)}') from None
    return name, field


def _header_value_problem(name: str, field: str) -> str:
    """Say, without showing it, why the value `field` was refused."""
    if '\r' in field or '\n' in field:
        return 'a line break in the value'
    # with every character Latin-1 cannot encode replaced, is it still
    # refused?  Then it has a control character
    latin1 = field.encode('latin-1', errors='replace').decode('latin-1')
    try:
        _checks.header_value(name, latin1)
    except ValueError:
        return 'a control character in the value'
    return 'the value has a character outside ISO-8859-1 (latin-1)'


def _has_surrogates(text: str) -> bool:
    """Whether `text` has lone surrogates: the bytes of a command line
    argument that did not decode in the locale's encoding."""
    return any('\ud800' <= character <= '\udfff' for character in text)


def read_data(value: str, stdin: typing.BinaryIO) -> bytes:
    """Return `value` as bytes; ``@-`` reads `stdin`, ``@FILE`` a file.

    An inline `value` gives the bytes of the command line argument, as
    they were, even when they are not valid in the locale's encoding.

    :raises UsageError: when the file cannot be read

    """
    if not value.startswith('@'):
        return os.fsencode(value)
    if value == '@-':
        try:
            return stdin.read()
        except OSError as error:
            raise UsageError(f'cannot read stdin: '
                             f'{error.strerror or error}') from None
    path = value[1:]
    try:
        with open(path, 'rb') as handle:
            return handle.read()
    except OSError as error:
        raise UsageError(f'cannot read {path!r}: '
                         f'{error.strerror or error}') from None


# -- the request --------------------------------------------------------------

@dataclasses.dataclass
class Request:
    """One fetch, ready for :meth:`HTTPClientMixin.http_fetch`."""
    url: str
    method: str = 'GET'
    headers: typing.List[typing.Tuple[str, str]] = dataclasses.field(
        default_factory=list)
    body: typing.Any = None
    content_type: str = str(http.CONTENT_TYPE_MSGPACK)
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
    if args.json is not None:
        document = parse_json(read_data(args.json, stdin))
        dump = _content.dump_json
        request.content_type = str(http.CONTENT_TYPE_JSON)
        if args.msgpack:
            dump = _content.dump_msgpack
            request.content_type = str(http.CONTENT_TYPE_MSGPACK)
        try:
            request.body = (document if isinstance(document, (dict, list))
                            else dump(document))
        except (TypeError, ValueError, OverflowError) as error:
            raise UsageError(_reason(error)) from None
    elif args.data is not None:
        request.content_type = _FORM
        request.body = read_data(args.data, stdin)
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


def parse_json(data: bytes) -> typing.Any:
    """Return the ``--json`` document `data`.

    Only what JSON can carry is accepted: :func:`json.loads` alone would
    take ``Infinity``, ``-Infinity`` and ``NaN``, and turn ``1e400`` into
    infinity, and then send ``Infinity``, which is not JSON.

    :raises UsageError: for invalid JSON, JSON that is not UTF-8, those
        numbers, and a document nested too deeply to decode

    """
    try:
        return json.loads(data, parse_constant=_refuse_constant,
                          parse_float=_finite_float)
    except _OutOfRange as error:
        raise UsageError(f'--json has a number out of range: {error} '
                         'overflows a float (a double)') from None
    except RecursionError:
        raise UsageError('--json is nested too deeply to decode') from None
    except ValueError as error:
        raise UsageError(f'--json is not valid JSON: {error}') from None


class _OutOfRange(ValueError):
    """A JSON number that is infinite as a float; its message is the
    number as written."""


def _refuse_constant(name: str) -> typing.NoReturn:
    raise ValueError(f'{name} is not a JSON number (JSON has no infinity '
                     'or NaN)')


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _OutOfRange(text)
    return number


# -- what the server sent, shown ----------------------------------------------

def escape_controls(text: str, *, keep_lines: bool = False) -> str:
    """Return `text` with every character a terminal would obey written as
    ``\\xNN``: the C0 controls but tab, DEL and the C1 controls (U+0080 to
    U+009F; U+009B is the 8-bit CSI that starts an escape sequence).

    :param keep_lines: LF and CR LF stay too (a text body's line ends);
        a lone CR, which would let a line overwrite what was shown, does
        not

    """
    pattern = _CONTROL_IN_LINES if keep_lines else _CONTROL
    return pattern.sub(lambda match: f'\\x{ord(match.group()):02x}', text)


def _escape_json(text: str) -> str:
    """Return the JSON `text` with DEL and the C1 controls (which can only
    be in its strings) written as ``\\u`` escapes: the same document."""
    return _CONTROL_IN_JSON.sub(
        lambda match: f'\\u{ord(match.group()):04x}', text)


class _EscapingFormatter(logging.Formatter):
    """The log lines of ``-v``, with what the server sent (a ``Warning``
    header) escaped as :func:`escape_controls` does."""

    def format(self, record: logging.LogRecord) -> str:
        return escape_controls(super().format(record), keep_lines=True)


# -- the timeline -------------------------------------------------------------

def describe_outcome(record: http.AttemptRecord) -> str:
    """Return the status, or the exception's class and message."""
    if record.status is not None:
        return str(record.status)
    error = record.exception
    message = escape_controls(' '.join(str(error).split()))
    name = type(error).__name__
    return f'{name} ({message})' if message else name


def attempt_line(record: http.AttemptRecord) -> str:
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
        self.tty = _isatty(stream) if tty is None else tty
        self.clock = clock
        self._pending: typing.Optional[str] = None

    def write(self, line: str) -> None:
        """Write a whole line (after any countdown in progress).

        :raises OutputError: when the stream cannot be written
        :raises BrokenPipeError: when nobody reads it any more

        """
        with _writing(self.stream):
            self._finish_pending()
            self.stream.write(line + '\n')
            self.stream.flush()

    def attempt(self, record: http.AttemptRecord) -> None:
        """Show what one attempt did and what follows it."""
        line = attempt_line(record)
        if self.tty and record.delay_reason is not None:
            with _writing(self.stream):
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
            with _writing(self.stream):
                self.stream.write('\r' + text.ljust(width))
                self.stream.flush()
            await sleep(min(COUNTDOWN_TICK, left))
        self._pending = None
        with _writing(self.stream):
            self.stream.write('\r' + line.ljust(width) + '\n')
            self.stream.flush()

    def stop(self, response: http.HTTPResponse) -> None:
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


class CLIClient(http.HTTPClientMixin):
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

    def _http_req_on_attempt(self, response: http.HTTPResponse,
                             record: http.AttemptRecord) -> None:
        try:
            self.timeline.attempt(record)
        except (BrokenPipeError, OutputError) as error:
            self.write_error = error

    async def _http_req_sleep(self, seconds: float) -> None:
        if self.write_error is not None:  # nobody sees it: stop now
            raise self.write_error
        await self.timeline.wait(seconds, super()._http_req_sleep)


# -- the body -----------------------------------------------------------------

def to_jsonable(value: typing.Any) -> typing.Any:
    """Return `value` with what JSON cannot show made showable.

    bytes become ``{"$base64": "..."}`` (a bytes map key becomes the string
    ``"$base64:..."``), a msgpack timestamp an ISO 8601 string, a msgpack
    extension ``{"$ext": code, "$base64": "..."}``, and any other value
    JSON cannot encode its ``repr``.

    """
    if isinstance(value, dict):
        return {_json_key(key): to_jsonable(item)
                for key, item in value.items()}
    if isinstance(value, msgpack.ExtType):  # a namedtuple: before tuple
        return {'$ext': value.code, '$base64': _b64(value.data)}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {'$base64': _b64(bytes(value))}
    if isinstance(value, msgpack.Timestamp):
        return value.to_datetime().isoformat()
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def _json_key(key: typing.Any) -> typing.Any:
    if key is None or isinstance(key, (str, int, float, bool)):
        return key
    if isinstance(key, bytes):
        return f'$base64:{_b64(key)}'
    return repr(key)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode('ascii')


@dataclasses.dataclass
class Rendered:
    """How to show a body: as `text` (ending in a newline), or as raw
    `data` that is binary; `note` is a line for stderr."""
    text: typing.Optional[str] = None
    data: typing.Optional[bytes] = None
    note: typing.Optional[str] = None


def render_body(response: http.HTTPResponse) -> Rendered:
    """Decide how to show the final response's body.

    JSON and msgpack that decode are pretty-printed as JSON; ``text/*``,
    any type with a ``charset`` and the usual textual types are decoded
    with their charset (UTF-8 by default); a body without a Content-Type
    is text when it is UTF-8 without NUL bytes; anything else is binary.

    """
    raw = response.raw
    data = (raw.body or b'') if raw is not None else b''
    if not data:
        return Rendered()
    content_type = raw.headers.get('Content-Type') if raw else None
    codec = _content.codec_for(content_type)
    note = None
    if codec in (_content.JSON, _content.MSGPACK):
        try:
            error = response.body_error
            if error is None:
                text = json.dumps(to_jsonable(response.body), indent=2,
                                  ensure_ascii=False)
                return Rendered(text=_escape_json(text) + '\n')
            note = (f'the body is not valid {codec} ({_reason(error)}); '
                    'shown as received')
        except RecursionError:
            note = (f'the {codec} body is nested too deeply to pretty-print; '
                    'shown as received')
        if codec == _content.MSGPACK:
            return Rendered(data=data, note=note)
    parsed = _content.parse_content_type(content_type)
    charset = parsed.parameters.get('charset') if parsed else None
    if parsed is None:
        textual = b'\0' not in data and _decodes(data, 'utf-8')
    else:
        subtype = parsed.content_subtype.lower()
        suffix = (getattr(parsed, 'content_suffix', None) or '').lower()
        textual = (parsed.content_type.lower() == 'text'
                   or charset is not None or subtype in _TEXT_SUBTYPES
                   or suffix in _TEXT_SUFFIXES or codec == _content.JSON)
    if not textual:
        return Rendered(data=data, note=note)
    try:
        text = data.decode(charset or 'utf-8', errors='replace')
    except LookupError:
        note = f'unknown charset {charset!r}; decoded as UTF-8'
        text = data.decode('utf-8', errors='replace')
    if not text.endswith('\n'):
        text += '\n'
    return Rendered(text=text, note=note)


def _reason(error: BaseException) -> str:
    """Return the message of `error`, or its class name when it has none."""
    return ' '.join(str(error).split()) or type(error).__name__


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def exit_code(response: http.HTTPResponse) -> int:
    """Return the process exit code for `response`.

    :data:`EXIT_NO_RESPONSE` when no attempt got a response;
    :data:`EXIT_ERROR_STATUS` when the final attempt failed in transport
    after an earlier one got a status, whatever that status was.

    """
    records = response.records
    if last_status(response) is None:
        return EXIT_NO_RESPONSE
    if records[-1].status is None:
        return EXIT_ERROR_STATUS
    return EXIT_OK if response.ok else EXIT_ERROR_STATUS


def last_status(response: http.HTTPResponse) -> typing.Optional[int]:
    """Return the status of the last attempt that got a response, or
    :data:`None` when none did."""
    for record in reversed(response.records):
        if record.status is not None:
            return record.status
    return None


@dataclasses.dataclass
class Streams:
    """Where the command reads and writes."""
    stdin: typing.BinaryIO
    stdout: typing.TextIO
    stderr: typing.TextIO


def show_response(response: http.HTTPResponse, args: argparse.Namespace,
                  out: typing.TextIO, notes: typing.TextIO) -> None:
    """Print the headers and body of the last response received as asked
    (the final attempt's, unless it failed in transport).

    The status line and the headers are shown with their control
    characters escaped (:func:`escape_controls`), and so is a text body on
    a terminal, so that a server cannot drive the terminal.

    :raises OutputError: when `out`, `notes` or the ``-o`` file cannot be
        written
    :raises BrokenPipeError: when nobody reads `out` or `notes` any more

    """
    raw = response.raw
    if raw is None:
        return
    with _writing(out):
        if args.print_headers:
            out.write(escape_controls(f'{raw.code} {raw.reason}') + '\n')
            for name, value in raw.headers.get_all():
                out.write(escape_controls(f'{name}: {value}') + '\n')
            out.write('\n')
        if args.no_body:
            out.flush()
            return
        if args.output is not None:
            _write_bytes(raw.body or b'', args.output, out, notes)
            return
        shown = render_body(response)
        if shown.note:
            _note(notes, shown.note)
        if shown.text is not None:
            out.write(escape_controls(shown.text, keep_lines=True)
                      if _isatty(out) else shown.text)
        elif shown.data is not None:
            if _isatty(out):
                kind = raw.headers.get('Content-Type', 'no Content-Type')
                _note(notes, f'binary body ({len(shown.data)} bytes, {kind}) '
                             'not shown on a terminal; use -o FILE')
            else:
                _write_bytes(shown.data, '-', out, notes)
        out.flush()


def _note(notes: typing.TextIO, line: str, prefix: str = 'note: ') -> None:
    with _writing(notes):
        notes.write(f'{prefix}{escape_controls(line)}\n')


def _write_bytes(data: bytes, path: str, out: typing.TextIO,
                 notes: typing.TextIO) -> None:
    if path == '-':
        out.flush()
        buffer = getattr(out, 'buffer', None)
        if buffer is None:  # an in-memory text stream
            out.write(data.decode('utf-8', errors='replace'))
        else:
            buffer.write(data)
            buffer.flush()
        return
    try:
        with open(path, 'wb') as handle:
            handle.write(data)
    except OSError as error:
        raise OutputError(f'cannot write {path!r}: '
                          f'{error.strerror or error}') from None
    _note(notes, f'{len(data)} bytes written to {path}', prefix='body: ')


@contextlib.contextmanager
def _writing(stream: typing.IO[typing.Any]) -> typing.Iterator[None]:
    """Turn a failed write to `stream` into an :class:`OutputError` that
    names it; a closed pipe stays a :exc:`BrokenPipeError`."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as error:
        raise OutputError(f'cannot write to {_stream_name(stream)}: '
                          f'{error.strerror or error}') from None


def _stream_name(stream: typing.IO[typing.Any]) -> str:
    name = getattr(stream, 'name', None)
    if name in ('<stdout>', '<stderr>'):
        return typing.cast(str, name)[1:-1]
    return 'the output'


def _isatty(stream: typing.IO[typing.Any]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


async def perform(request: Request, timeline: Timeline
                  ) -> http.HTTPResponse:
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


async def run(args: argparse.Namespace, streams: Streams) -> int:
    """Fetch the URL of `args`, show it, and return the exit code."""
    request = build_request(args, streams.stdin)
    http.LOGGER.debug('Sending with %s',
                      httpclient.AsyncHTTPClient.configured_class().__name__)
    try:
        response = await perform(request, Timeline(streams.stderr))
    finally:
        _close_clients()
    show_response(response, args, streams.stdout, streams.stderr)
    return exit_code(response)


def _close_clients() -> None:
    """Close the AsyncHTTPClient instances the engine sent with."""
    try:
        client = _engine.async_http_client()
    except ValueError:  # a bad HTTP_MAX_CLIENTS, already reported
        client = httpclient.AsyncHTTPClient()
    client.close()


# -- the demo -----------------------------------------------------------------

DEMO_RETRY_TIMEOUT = 1.0
DEMO_ORDER: typing.Dict[str, typing.Any] = {
    'id': 42, 'item': 'widget', 'quantity': 3, 'status': 'shipped',
    'thumbnail': b'\x89PNG\r\n\x1a\n'}


class _DemoState:
    """What the demo upstream has seen."""

    def __init__(self) -> None:
        self.order_requests = 0
        self.payment_keys: typing.Set[str] = set()


class _DemoHandler(web.RequestHandler):
    def initialize(self, state: _DemoState) -> None:
        self.state = state

    def send(self, status: int, document: typing.Any,
             content_type: str = 'application/json') -> None:
        self.set_status(status)
        self.set_header('Content-Type', content_type)
        if content_type == 'application/json':
            self.finish(json.dumps(document))
        else:
            self.finish(_content.dump_msgpack(document))


class FlakyOrderHandler(_DemoHandler):
    """GET /orders/42: 503, then 429 with Retry-After: 1, then 200."""

    def get(self) -> None:
        self.state.order_requests += 1
        if self.state.order_requests == 1:
            self.send(503, {'message': 'warming up'})
        elif self.state.order_requests == 2:
            self.set_header('Retry-After', '1')
            self.send(429, {'message': 'slow down'})
        else:
            self.send(200, DEMO_ORDER, 'application/msgpack')


class BadGatewayHandler(_DemoHandler):
    """POST /orders: always 502, as a proxy whose upstream dropped."""

    def post(self) -> None:
        self.send(502, {'message': 'the order service did not answer'})


class IdempotentPaymentHandler(_DemoHandler):
    """POST /payments: 502 the first time a key is seen, then 201."""

    def post(self) -> None:
        key = self.request.headers.get('Idempotency-Key')
        if not key:
            self.send(400, {'message': 'Idempotency-Key is required'})
        elif key not in self.state.payment_keys:
            self.state.payment_keys.add(key)
            self.send(502, {'message': 'the ledger did not answer'})
        else:
            self.send(201, {'payment': 'accepted', 'idempotency_key': key},
                      'application/msgpack')


def demo_application(state: _DemoState) -> web.Application:
    """Return the demo upstream's application."""
    arguments = {'state': state}
    return web.Application(
        [('/orders/42', FlakyOrderHandler, arguments),
         ('/orders', BadGatewayHandler, arguments),
         ('/payments', IdempotentPaymentHandler, arguments)],
        log_function=lambda handler: None)


def _wrap(text: str, indent: str = '   ') -> str:
    return '\n'.join(indent + line for line in text.splitlines())


async def run_demo(args: argparse.Namespace, streams: Streams) -> int:
    """Start the upstream, tell the three stories, return the exit code.

    :raises OutputError: when stdout cannot be written

    """
    sockets = netutil.bind_sockets(0, '127.0.0.1')
    server = httpserver.HTTPServer(demo_application(_DemoState()))
    server.add_sockets(sockets)
    base = f'http://127.0.0.1:{sockets[0].getsockname()[1]}'
    try:
        with _writing(streams.stdout):
            return await _tell_stories(base, streams)
    finally:
        _close_clients()
        server.stop()
        await server.close_all_connections()


async def _tell_stories(base: str, streams: Streams) -> int:
    out = streams.stdout
    timeline = Timeline(out)
    mixin = http.HTTPClientMixin
    started = time.monotonic()
    retry = ['--retry-timeout', f'{DEMO_RETRY_TIMEOUT:g}']
    key = str(uuid.uuid4())
    stories = [
        ('1. A GET that fails, is rate-limited, then succeeds',
         'The upstream answers 503, then 429 with "Retry-After: 1", then 200\n'
         'with a msgpack document.  GET is idempotent, so each failure is\n'
         'retried: after a random backoff, or after the wait the server\n'
         'asked for.  The msgpack body is printed as JSON; its bytes value\n'
         'shows as {"$base64": ...}.',
         [*retry, f'{base}/orders/42'], (200, 3, 'success')),
        ('2. A POST that is not retried',
         'The upstream answers 502.  A 502 after a POST may mean the order\n'
         'was placed and only the answer was lost; sending it again could\n'
         'place it twice, so the client stops (stop reason unsafe-method).',
         [*retry, '--json', '{"item": "widget", "quantity": 3}',
          f'{base}/orders'], (502, 1, 'unsafe-method')),
        ('3. The same kind of POST, retried because it has an '
         'Idempotency-Key',
         'The upstream answers 502, then 201.  The Idempotency-Key header\n'
         'lets the upstream recognize a repeat, so the client may send the\n'
         'POST again; the same key goes with every attempt.',
         [*retry, '-H', f'Idempotency-Key: {key}', '--json',
          '{"order": 42, "amount": "19.99"}', f'{base}/payments'],
         (201, 2, 'success')),
    ]
    out.write(
        'sprockets.mixins.http demo: a retrying HTTP client for Tornado\n\n'
        f'An upstream is listening on {base}, inside this process\n'
        '(loopback only, no network).  Each step below is the command line\n'
        'shown after "$", run against it: one line per attempt, then why the\n'
        'client stopped, then the body.\n\n'
        f'Retry policy: at most {mixin.MAX_HTTP_RETRIES} attempts, '
        'full-jitter backoff (a random\n'
        'wait up to retry_timeout * 2 ** (retry - 1) seconds); a Retry-After\n'
        'header replaces the backoff.  The demo uses --retry-timeout '
        f'{DEMO_RETRY_TIMEOUT:g} to stay\n'
        f'short; the default retry_timeout is '
        f'{mixin.DEFAULT_RETRY_TIMEOUT:g} s.\n')
    failures = []
    for heading, story, argv, expected in stories:
        out.write(f'\n{heading}\n{_wrap(story)}\n'
                  f'   $ {PROG} {_shell_join(argv)}\n')
        out.flush()
        story_args = parse_args(argv)
        response = await perform(build_request(story_args,
                                               streams.stdin), timeline)
        show_response(response, story_args, out, out)
        outcome = (response.code, len(response),
                   str(response.stop_reason))
        if outcome != expected:
            failures.append(f'{heading.split(".")[0]}: expected '
                            f'{expected}, got {outcome}')
    elapsed = time.monotonic() - started
    if failures:
        out.write(f'\ndemo: unexpected results: {"; ".join(failures)}\n')
        return EXIT_ERROR_STATUS
    out.write(f'\nDone in {elapsed:.1f} s.  Next: {PROG} --help\n')
    out.flush()
    return EXIT_OK


def _shell_join(argv: typing.Sequence[str]) -> str:
    return ' '.join(
        argument if re.match(r'^[\w@%+=:,./-]+$', argument)
        else "'" + argument.replace("'", "'\"'\"'") + "'"
        for argument in argv)


# -- main ---------------------------------------------------------------------

def main(argv: typing.Optional[typing.Sequence[str]] = None,
         streams: typing.Optional[Streams] = None) -> int:
    """Run the command line and return its exit code.

    :param argv: the arguments, without the program name; :data:`None`
        reads :data:`sys.argv`
    :param streams: where to read and write; :data:`None` uses the
        process's standard streams (a closed one, :data:`None` in
        :mod:`sys`, as :data:`os.devnull`)

    A closed pipe on stdout or stderr (``... | head -1``) ends the command
    quietly with :data:`EXIT_BROKEN_PIPE`; any other failure to write them
    (a full disk) is one line on stderr, when stderr can still be written,
    and :data:`EXIT_WRITE_ERROR`.

    """
    if argv is None:
        argv = sys.argv[1:]
    if streams is not None:
        try:
            return _main(argv, streams)
        except BrokenPipeError:
            return EXIT_BROKEN_PIPE
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, 'reconfigure', None)
        if reconfigure is not None:
            reconfigure(errors='backslashreplace')
    stdin = getattr(sys.stdin, 'buffer', None) or io.BytesIO()
    with contextlib.ExitStack() as stack:
        streams = Streams(
            stdin, sys.stdout or stack.enter_context(_devnull()),
            sys.stderr or stack.enter_context(_devnull()))
        try:
            code = _main(argv, streams)
        except BrokenPipeError:
            code = EXIT_BROKEN_PIPE
        # what is left in a buffer (argparse's --help) fails only now
        failure = _settle(streams)
        if failure is None or code != EXIT_OK:
            return code
        if isinstance(failure, BrokenPipeError):
            return EXIT_BROKEN_PIPE
        return _report(f'cannot write to stdout: '
                       f'{failure.strerror or failure}', streams.stderr,
                       EXIT_WRITE_ERROR)


def _devnull() -> typing.TextIO:
    return open(os.devnull, 'w', encoding='utf-8')


def _settle(streams: Streams) -> typing.Optional[OSError]:
    """Flush stdout and stderr, and point each one that fails (a broken
    pipe, a full disk) at :data:`os.devnull`, so that Python's flush at
    exit does not report it again (as the :mod:`signal` documentation
    recommends); return the first failure of stdout."""
    failure = None
    for stream in (streams.stdout, streams.stderr):
        try:
            stream.flush()
        except (OSError, ValueError) as error:
            if (failure is None and stream is streams.stdout
                    and isinstance(error, OSError)):
                failure = error
            try:
                descriptor = stream.fileno()
            except (OSError, ValueError, AttributeError):
                continue
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, descriptor)
            os.close(devnull)
    return failure


def _main(argv: typing.Sequence[str], streams: Streams) -> int:
    try:
        args = parse_args(argv)
        if args.curl:
            _use_curl()
    except UsageError as error:
        return _usage_error(error, streams.stderr)
    except OutputError as error:  # --help or --version
        return _report(str(error), streams.stderr, EXIT_WRITE_ERROR)
    except SystemExit as done:  # --help and --version
        return done.code if isinstance(done.code, int) else EXIT_OK
    handler = logging.StreamHandler(streams.stderr)
    handler.setFormatter(_EscapingFormatter('%(levelname)s %(name)s: '
                                            '%(message)s'))
    # without -v the timeline says what the package's log lines would
    handler.setLevel(logging.DEBUG if args.verbose else logging.ERROR)
    logger = http.LOGGER
    previous_level = logger.level
    logger.addHandler(handler)
    if args.verbose:
        logger.setLevel(logging.DEBUG)
    # tornado's own warnings ("SSL Error on ...") would interleave with the
    # timeline, which already says what failed
    tornado_logger = logging.getLogger('tornado.general')
    tornado_level = tornado_logger.level
    if not args.verbose:
        tornado_logger.setLevel(logging.ERROR)
    try:
        return asyncio.run(run_demo(args, streams) if args.demo
                           else run(args, streams))
    except UsageError as error:
        return _usage_error(error, streams.stderr)
    except OutputError as error:
        return _report(str(error), streams.stderr, EXIT_WRITE_ERROR)
    except KeyboardInterrupt:
        with contextlib.suppress(OSError, ValueError):
            streams.stderr.write('\ninterrupted\n')
        return EXIT_INTERRUPTED
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
        tornado_logger.setLevel(tornado_level)
        if args.curl:
            httpclient.AsyncHTTPClient.configure(None)


def _use_curl() -> None:
    try:
        httpclient.AsyncHTTPClient.configure(CURL_CLIENT)
    except ImportError:
        raise UsageError('--curl needs pycurl: pip install '
                         "'sprockets.mixins.http[curl]'") from None


def _usage_error(error: UsageError, stderr: typing.TextIO) -> int:
    message = ' '.join(str(error).split())
    return _report(f'{message} (see --help)', stderr, EXIT_USAGE)


def _report(message: str, stderr: typing.TextIO, code: int) -> int:
    """Write the one-line error `message` to `stderr` if it can be written
    (the exit code is the answer either way) and return `code`."""
    with contextlib.suppress(OSError, ValueError):
        stderr.write(f'{PROG}: error: {message}\n')
        stderr.flush()
    return code
