"""The command line, ``python -m sprockets.mixins.http``.

It fetches one URL through :class:`~sprockets.mixins.http._mixin.
HTTPClientMixin` (a small subclass that draws the timeline; the retry loop
is the package's own), prints one line per attempt on stderr and the
decoded body on stdout, and exits with a code a script can test: see
:data:`EXIT_OK` and its siblings.  ``--demo`` runs the same code against
an upstream that it starts inside this process.

This module is :func:`main` and the exit codes; the steps live in

- :mod:`~sprockets.mixins.http._cli.args`: the parser and the checks of
  the command line;
- :mod:`~sprockets.mixins.http._cli.fetch`: the request, sent through the
  mixin;
- :mod:`~sprockets.mixins.http._cli.timeline`: one line per attempt, and
  the countdown;
- :mod:`~sprockets.mixins.http._cli.render`: the headers and the body
  shown, control characters escaped, and the writing of it;
- :mod:`~sprockets.mixins.http._cli.demo`: ``--demo``.

.. versionadded:: 3.0

"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import io
import logging
import os
import sys
import typing

from tornado import httpclient

from sprockets.mixins.http._cli.args import PROG, UsageError, parse_args
from sprockets.mixins.http._cli.fetch import (
    build_request,
    close_clients,
    perform,
)
from sprockets.mixins.http._cli.render import (
    EscapingFormatter,
    OutputError,
    show_response,
)
from sprockets.mixins.http._cli.timeline import Timeline, last_status
from sprockets.mixins.http._response import HTTPResponse

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

CURL_CLIENT = 'tornado.curl_httpclient.CurlAsyncHTTPClient'
AIOHTTP_CLIENT = ('sprockets.mixins.http.aiohttp_client.'
                  'AiohttpAsyncHTTPClient')

LOGGER = logging.getLogger('sprockets.mixins.http')


@dataclasses.dataclass
class Streams:
    """Where the command reads and writes."""
    stdin: typing.BinaryIO
    stdout: typing.TextIO
    stderr: typing.TextIO


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
    with contextlib.ExitStack() as stack:
        streams = _standard_streams(stack)
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


def _standard_streams(stack: contextlib.ExitStack) -> Streams:
    """Return the process's standard streams, a closed stdout or stderr
    (:data:`None` in :mod:`sys`) as :data:`os.devnull`, closed when
    `stack` is."""
    stdin = getattr(sys.stdin, 'buffer', None) or io.BytesIO()
    return Streams(stdin, sys.stdout or stack.enter_context(_devnull()),
                   sys.stderr or stack.enter_context(_devnull()))


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
    """Parse `argv`, then fetch or run the demo with the package's log
    lines on stderr."""
    try:
        # argparse prints --help and --version to sys.stdout: to the
        # streams the command was given, as everything else
        with contextlib.redirect_stdout(streams.stdout), \
                contextlib.redirect_stderr(streams.stderr):
            args = parse_args(argv)
        if args.curl:
            _use_client(CURL_CLIENT, '--curl', 'curl')
        elif args.aiohttp:
            _use_client(AIOHTTP_CLIENT, '--aiohttp', 'aiohttp')
    except UsageError as error:
        return _usage_error(error, streams.stderr)
    except OutputError as error:  # --help or --version
        return _report(str(error), streams.stderr, EXIT_WRITE_ERROR)
    except SystemExit as done:  # --help and --version
        return done.code if isinstance(done.code, int) else EXIT_OK
    try:
        with _logging_to(streams.stderr, verbose=args.verbose):
            return _run(args, streams)
    finally:
        if args.curl or args.aiohttp:
            httpclient.AsyncHTTPClient.configure(None)


def _run(args: argparse.Namespace, streams: Streams) -> int:
    """Run the fetch or the demo in an event loop of its own; turn what
    it raises into an exit code."""
    try:
        return asyncio.run(_demo(streams) if args.demo
                           else run(args, streams))
    except UsageError as error:
        return _usage_error(error, streams.stderr)
    except OutputError as error:
        return _report(str(error), streams.stderr, EXIT_WRITE_ERROR)
    except KeyboardInterrupt:
        with contextlib.suppress(OSError, ValueError):
            streams.stderr.write('\ninterrupted\n')
        return EXIT_INTERRUPTED


@contextlib.contextmanager
def _logging_to(stderr: typing.TextIO, *,
                verbose: bool) -> typing.Iterator[None]:
    """Send the package's log lines to `stderr` for the duration: all of
    them with `verbose`, else only errors (the timeline says what the
    others would), and tornado's warnings only with `verbose`."""
    handler = logging.StreamHandler(stderr)
    handler.setFormatter(EscapingFormatter('%(levelname)s %(name)s: '
                                           '%(message)s'))
    handler.setLevel(logging.DEBUG if verbose else logging.ERROR)
    previous_level = LOGGER.level
    LOGGER.addHandler(handler)
    if verbose:
        LOGGER.setLevel(logging.DEBUG)
    # tornado's own warnings ("SSL Error on ...") would interleave with the
    # timeline, which already says what failed
    tornado_logger = logging.getLogger('tornado.general')
    tornado_level = tornado_logger.level
    if not verbose:
        tornado_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(previous_level)
        tornado_logger.setLevel(tornado_level)


async def run(args: argparse.Namespace, streams: Streams) -> int:
    """Fetch the URL of `args`, show it, and return the exit code."""
    request = build_request(args, streams.stdin)
    LOGGER.debug('Sending with %s',
                 httpclient.AsyncHTTPClient.configured_class().__name__)
    try:
        response = await perform(request, Timeline(streams.stderr))
    finally:
        close_clients()
    show_response(response, args, streams.stdout, streams.stderr)
    return exit_code(response)


async def _demo(streams: Streams) -> int:
    """Run ``--demo``: :data:`EXIT_OK` when every story ended as it
    says, else :data:`EXIT_ERROR_STATUS`."""
    # imported only for --demo: its FakeUpstream comes with
    # sprockets.mixins.http.testing, which imports pytest when it is
    # installed, and a fetch should not wait for that
    from sprockets.mixins.http._cli import demo

    told = await demo.run(streams.stdin, streams.stdout)
    return EXIT_OK if told else EXIT_ERROR_STATUS


def exit_code(response: HTTPResponse) -> int:
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


def _use_client(implementation: str, option: str, extra: str) -> None:
    try:
        httpclient.AsyncHTTPClient.configure(implementation)
    except ImportError as error:
        raise UsageError(f'{option} needs {error.name or extra}: pip install '
                         f"'sprockets.mixins.http[{extra}]'") from None


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
