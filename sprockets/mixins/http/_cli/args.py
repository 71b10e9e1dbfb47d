"""The command line itself: the parser, tornado's flag names, and the
checks of what it gives (the URL, the method, the headers, the times, the
``--json`` and ``--data`` documents), each a :class:`UsageError` before
anything is sent.

Where the package has a rule (:mod:`sprockets.mixins.http._checks`), the
command line applies the same one.

"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import typing
import urllib.parse

from sprockets.mixins.http import _checks
from sprockets.mixins.http._cli.render import CONTROL, writing
from sprockets.mixins.http._mixin import HTTPClientMixin
from sprockets.mixins.http._version import __version__

PROG = 'python -m sprockets.mixins.http'

#: The largest ``--timeout``, ``--deadline`` and ``--retry-timeout``
#: accepted, in seconds (about 11.6 days); larger values overflow curl.
MAX_SECONDS = 1_000_000.0

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


class UsageError(Exception):
    """A mistake on the command line; its message is one line."""


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
            with writing(stream):
                stream.write(message)
                stream.flush()


# -- the parser ---------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """Return the parser for the command line."""
    parser = _Parser(
        prog=PROG, description=DESCRIPTION, epilog=EPILOG,
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_request_arguments(parser)
    _add_retry_arguments(parser)
    _add_output_arguments(parser)
    parser.add_argument(
        '--demo', action='store_true',
        help='start an upstream in this process and show the retries '
             '(takes a few seconds, no network)')
    parser.add_argument('--version', action='version',
                        version=f'sprockets.mixins.http {__version__}')
    return parser


def _add_request_arguments(parser: argparse.ArgumentParser) -> None:
    """The URL, the method, the headers and the body."""
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


def _add_retry_arguments(parser: argparse.ArgumentParser) -> None:
    """The attempts and the times, with the mixin's defaults."""
    parser.add_argument(
        '--max-attempts', type=int, metavar='N',
        help='send the request at most N times (default: '
             f'{HTTPClientMixin.MAX_HTTP_RETRIES})')
    parser.add_argument(
        '--retry-timeout', type=float, metavar='SECONDS',
        help='the backoff base: retry n waits a random time up to '
             'SECONDS * 2 ** (n - 1) (default: '
             f'{HTTPClientMixin.DEFAULT_RETRY_TIMEOUT:g}; 0 retries at '
             'once)')
    parser.add_argument(
        '--deadline', type=float, metavar='SECONDS',
        help='the most the whole call may take, retries and waits '
             'included (default: none)')
    parser.add_argument(
        '--timeout', type=float, metavar='SECONDS',
        help='the most one attempt may take (default: '
             f'{HTTPClientMixin.DEFAULT_REQUEST_TIMEOUT:g}; 0 for no '
             'limit)')


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """How the request is sent, and what is shown of the response."""
    parser.add_argument('--follow-redirects', action='store_true',
                        help='follow 3xx redirects')
    parser.add_argument('--insecure', action='store_true',
                        help="do not verify the server's TLS certificate")
    client = parser.add_mutually_exclusive_group()
    client.add_argument(
        '--curl', action='store_true',
        help="send with tornado's curl_httpclient (needs pycurl)")
    client.add_argument(
        '--aiohttp', action='store_true',
        help='send with the aiohttp AsyncHTTPClient (needs aiohttp)')
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


# -- the checks ---------------------------------------------------------------

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
        _check_method(args.method)
    if args.msgpack and args.json is None:
        raise UsageError('--msgpack sends the --json document: give --json')
    _check_times(args)
    if args.output not in (None, '-'):
        _check_output(args.output)
    return args


def _check_method(method: str) -> None:
    try:
        _checks.method(method)
    except ValueError:
        raise UsageError(
            f'invalid method {method!r}: it must be an HTTP token '
            '(letters, digits and !#$%&\'*+-.^_`|~)') from None


def _check_times(args: argparse.Namespace) -> None:
    """Check ``--timeout``, ``--deadline``, ``--retry-timeout`` and
    ``--max-attempts`` by the package's rules, and :data:`MAX_SECONDS`."""
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


def _check_output(path: str) -> None:
    """Refuse an ``--output`` that is a directory or in none."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f'cannot write --output {path!r}: it is '
                         'a directory')
    if not os.path.isdir(directory):
        raise UsageError(f'cannot write --output {path!r}: no '
                         'such directory')


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
    if CONTROL.search(url):
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


# -- --json and --data --------------------------------------------------------

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
