"""The command line, ``python -m sprockets.mixins.http``.

The integration tests run the command in a subprocess against tornado
servers that run on their own IOLoop in a thread of this process, once
with the simple AsyncHTTPClient and once with ``--curl``.  Retries never
sleep: the command gets ``--retry-timeout 0`` and servers send
``Retry-After: 0``.  The pure parts (argument translation, URL checks, the
timeline's lines and countdown, rendering) are tested in process.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import os
import pathlib
import pty
import re
import socket
import ssl
import struct
import subprocess
import sys
import threading
import typing
import warnings

import msgpack
import pytest
from tornado import httpclient, httpserver, httputil, netutil, web

from sprockets.mixins import http
from sprockets.mixins.http import _checks, _cli, testing
from sprockets.mixins.http._cli import args as cli_args
from sprockets.mixins.http._cli import demo as cli_demo
from sprockets.mixins.http._cli import render as cli_render
from sprockets.mixins.http._cli import timeline as cli_timeline

TLS = pathlib.Path(__file__).parent / 'tls'
BINARY = bytes(range(256))
JSON_DOCUMENT = {'greeting': 'hello', 'numbers': [1, 2, 3], 'nested': {}}
MSGPACK_DOCUMENT = {'name': 'blob', 'data': b'\x00\x01\xff', 'n': 7}
JSON_RAW = json.dumps(JSON_DOCUMENT, separators=(',', ':')).encode()
ERROR_DOCUMENT = {'message': 'no such thing', 'code': 'missing'}
DEEP = 500  # JSON nesting that decodes but is too deep to pretty-print
TOO_DEEP = 100_000  # JSON nesting too deep to decode at all
FULL = pathlib.Path('/dev/full')  # every write fails: No space left
needs_dev_full = pytest.mark.skipif(not FULL.exists(), reason='no /dev/full')
# what a hostile server sends: C0 and C1 controls (U+009B is the 8-bit
# CSI a terminal obeys) in the status line, header values and the body;
# tab, LF and CR LF are what a text body legitimately has
HOSTILE_BODY = 'one\x1b[2J\u009b31m\x07\r\nover\rwritten\ttab\x7f\n'
HOSTILE_SHOWN = ('one\\x1b[2J\\x9b31m\\x07\r\nover\\x0dwritten\ttab'
                 '\\x7f\n')
HOSTILE_DOCUMENT = {'name': 'a\u009b31m\u007fb'}


# -- the upstream ---------------------------------------------------------

_hits: typing.Dict[str, int] = {}


def _count(key: str) -> int:
    """Return how many times `key` has been requested, this one included."""
    _hits[key] = _hits.get(key, 0) + 1
    return _hits[key]


class JSONHandler(web.RequestHandler):
    def get(self) -> None:
        self.set_header('Content-Type', 'application/json')
        self.write(JSON_RAW)


class MsgpackHandler(web.RequestHandler):
    def get(self) -> None:
        self.set_header('Content-Type', 'application/msgpack')
        self.write(msgpack.packb(MSGPACK_DOCUMENT, use_bin_type=True))


class Latin1TextHandler(web.RequestHandler):
    def get(self) -> None:
        self.set_header('Content-Type', 'text/plain; charset=iso-8859-1')
        self.write('café'.encode('iso-8859-1'))


class BinaryHandler(web.RequestHandler):
    def get(self) -> None:
        self.set_header('Content-Type', 'application/octet-stream')
        self.write(BINARY)


class EchoHandler(web.RequestHandler):
    """Answers with the request it got, as JSON."""

    SUPPORTED_METHODS = ('GET', 'POST', 'PUT', 'PATCH', 'DELETE')

    def _echo(self) -> None:
        self.write({
            'method': self.request.method,
            'headers': list(self.request.headers.get_all()),
            'content_type': self.request.headers.get('Content-Type'),
            'body': self.request.body.decode('utf-8', errors='replace')})

    get = post = put = patch = delete = _echo


class MsgpackOnlyHandler(web.RequestHandler):
    """Accepts only a msgpack body and answers with it as JSON."""

    def post(self) -> None:
        if self.request.headers.get('Content-Type') != 'application/msgpack':
            raise web.HTTPError(415)
        self.write({'received': msgpack.unpackb(self.request.body)})


class FlakyHandler(web.RequestHandler):
    """502 twice per path, then 200."""

    def get(self, key: str) -> None:
        if _count(self.request.path) <= 2:
            self.set_status(502)
            self.finish({'message': 'bad gateway'})
        else:
            self.write({'key': key})

    post = get


class RateLimitedHandler(web.RequestHandler):
    """429 with ``Retry-After: 0`` once per path, then 200."""

    def get(self, key: str) -> None:
        if _count(self.request.path) == 1:
            self.set_status(429)
            self.set_header('Retry-After', '0')
            self.finish()
        else:
            self.write({'key': key})


class UnavailableHandler(web.RequestHandler):
    def get(self) -> None:
        self.set_status(503)
        self.finish({'message': 'down'})


class NotFoundHandler(web.RequestHandler):
    def get(self) -> None:
        self.set_status(404)
        self.finish(ERROR_DOCUMENT)


class RedirectHandler(web.RequestHandler):
    def get(self) -> None:
        self.redirect('/json')


class SlowHandler(web.RequestHandler):
    async def get(self) -> None:
        await asyncio.sleep(0.5)
        self.write({'slow': True})


class RawEchoHandler(web.RequestHandler):
    """Answers a POST with its body, byte for byte, as binary."""

    def post(self) -> None:
        self.set_header('Content-Type', 'application/octet-stream')
        self.write(self.request.body)


class ResetAfterUnavailableHandler(web.RequestHandler):
    """503 the first time per path, then resets the connection."""

    def get(self, key: str) -> None:
        if _count(self.request.path) == 1:
            self.set_status(503)
            self.finish('down')
            return
        stream = self.detach()
        # linger 0: close() sends a reset instead of a clean FIN
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 struct.pack('ii', 1, 0))
        stream.close()


class DeepJSONHandler(web.RequestHandler):
    """A valid JSON array nested DEEP levels deep."""

    def get(self) -> None:
        self.set_header('Content-Type', 'application/json')
        self.write(b'[' * DEEP + b']' * DEEP)


class HostileHandler(web.RequestHandler):
    """Controls in the status line, in header values and in a text body,
    written as raw bytes (tornado would not send some of them)."""

    async def get(self) -> None:
        body = HOSTILE_BODY.encode('utf-8')
        head = (b'HTTP/1.1 200 OK\x9b2J\r\n'
                b'Content-Type: text/plain; charset=utf-8\r\n'
                b'X-Evil: a\x9b31mb\r\n'
                b'Warning: 199 - "\x9b2J"\r\n'
                b'Connection: close\r\n'
                b'Content-Length: %d\r\n\r\n' % len(body))
        stream = self.detach()
        await stream.write(head + body)
        stream.close()


class HostileJSONHandler(web.RequestHandler):
    """A JSON string with C1 controls and DEL in it, sent unescaped."""

    def get(self) -> None:
        self.set_header('Content-Type', 'application/json')
        self.write(json.dumps(HOSTILE_DOCUMENT,
                              ensure_ascii=False).encode('utf-8'))


class HostileBinaryHandler(web.RequestHandler):
    """A binary body whose Content-Type has a C1 control."""

    def get(self) -> None:
        self.set_header('Content-Type', 'application/x-\x9b2J')
        self.write(BINARY)


class SinkHandler(web.RequestHandler):
    """Counts what reaches it: a usage error must send nothing here."""

    def post(self) -> None:
        _count(self.request.path)


class HeadersHandler(web.RequestHandler):
    def get(self) -> None:
        self.set_header('Content-Type', 'text/plain; charset=utf-8')
        self.add_header('X-Multi', 'a')
        self.add_header('X-Multi', 'b')
        self.write('ok')


def application() -> web.Application:
    return web.Application([
        ('/json', JSONHandler),
        ('/msgpack', MsgpackHandler),
        ('/text', Latin1TextHandler),
        ('/binary', BinaryHandler),
        ('/echo', EchoHandler),
        ('/msgpack-only', MsgpackOnlyHandler),
        (r'/flaky/(\w+)', FlakyHandler),
        (r'/limited/(\w+)', RateLimitedHandler),
        ('/unavailable', UnavailableHandler),
        ('/missing', NotFoundHandler),
        ('/redirect', RedirectHandler),
        ('/slow', SlowHandler),
        ('/headers', HeadersHandler),
        ('/raw-echo', RawEchoHandler),
        (r'/reset-after-503/(\w+)', ResetAfterUnavailableHandler),
        ('/deep', DeepJSONHandler),
        ('/hostile', HostileHandler),
        ('/hostile-json', HostileJSONHandler),
        ('/hostile-binary', HostileBinaryHandler),
        ('/sink', SinkHandler),
    ], log_function=lambda handler: None)


class ServerThread:
    """A tornado server on 127.0.0.1 with its own event loop in a thread."""

    def __init__(self, ssl_options: typing.Optional[ssl.SSLContext] = None
                 ) -> None:
        self.ssl_options = ssl_options
        self.sockets = netutil.bind_sockets(0, '127.0.0.1')
        self.port = self.sockets[0].getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.server: typing.Optional[httpserver.HTTPServer] = None

    def url(self, path: str) -> str:
        scheme = 'https' if self.ssl_options else 'http'
        return f'{scheme}://127.0.0.1:{self.port}{path}'

    def start(self) -> None:
        self.thread.start()
        self.ready.wait(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def listen() -> None:
            self.server = httpserver.HTTPServer(
                application(), ssl_options=self.ssl_options)
            self.server.add_sockets(self.sockets)

        async def close() -> None:
            assert self.server is not None
            self.server.stop()
            await self.server.close_all_connections()

        self.loop.run_until_complete(listen())
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(close())
        self.loop.close()


@pytest.fixture(scope='module')
def server() -> typing.Iterator[ServerThread]:
    running = ServerThread()
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope='module')
def tls_server() -> typing.Iterator[ServerThread]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(TLS / 'cert.pem', TLS / 'key.pem')
    running = ServerThread(context)
    running.start()
    yield running
    running.stop()


# -- running the command ----------------------------------------------------

class Result(typing.NamedTuple):
    code: int
    stdout: bytes
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout.decode('utf-8')

    @property
    def json(self) -> typing.Any:
        return json.loads(self.stdout)


def _environment() -> typing.Dict[str, str]:
    environment = dict(os.environ, PYTHONIOENCODING='utf-8')
    environment.pop('HTTP_MAX_CLIENTS', None)
    return environment


def cli(*arguments: str, stdin: bytes = b'',
        stdout: typing.Optional[int] = None,
        stderr: typing.Optional[int] = None) -> Result:
    """Run the command: in this process through ``_cli.main`` with streams
    of its own (pipes, as a subprocess's are), warnings as errors; in a
    subprocess when the test gives stdout or stderr descriptors of its
    own (a full disk, a closed stream)."""
    if stdout is None and stderr is None:
        return _in_process(arguments, stdin)
    return _subprocess(arguments, stdin, stdout, stderr)


def _in_process(arguments: typing.Sequence[str], stdin: bytes) -> Result:
    out, err = io.BytesIO(), io.BytesIO()
    streams = _cli.Streams(
        io.BufferedReader(io.BytesIO(stdin)),  # type: ignore[arg-type]
        io.TextIOWrapper(out, encoding='utf-8', write_through=True),
        io.TextIOWrapper(err, encoding='utf-8', write_through=True))
    saved = os.environ.pop('HTTP_MAX_CLIENTS', None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            code = _cli.main(list(arguments), streams)
    finally:
        if saved is not None:
            os.environ['HTTP_MAX_CLIENTS'] = saved
    streams.stdout.flush()
    streams.stderr.flush()
    return Result(code, out.getvalue(), err.getvalue().decode('utf-8'))


def _subprocess(arguments: typing.Sequence[str], stdin: bytes,
                stdout: typing.Optional[int],
                stderr: typing.Optional[int]) -> Result:
    """Run the command in a subprocess; warnings are errors there too."""
    process = subprocess.run(
        [sys.executable, '-W', 'error', '-m', 'sprockets.mixins.http',
         *arguments], input=stdin, env=_environment(), timeout=30,
        stdout=subprocess.PIPE if stdout is None else stdout,
        stderr=subprocess.PIPE if stderr is None else stderr, check=False)
    return Result(process.returncode, process.stdout or b'',
                  (process.stderr or b'').decode('utf-8'))


ATTEMPT = re.compile(
    r'^attempt (?P<number>\d+): (?P<outcome>\S+)(?: \((?P<message>.*)\))?'
    r' in (?P<duration>\d+\.\d{3}) s'
    r'(?: -> retrying in (?P<delay>\d+\.\d{2}) s'
    r' \((?P<reason>backoff|Retry-After)\))?$')
STOP = re.compile(
    r'^stop: (?P<reason>[a-z-]+) after (?P<attempts>\d+) attempts?'
    r' in (?P<duration>\d+\.\d{3}) s'
    r' \((?:final status (?P<status>\d+)|no response'
    r'|last status (?P<last>\d+); the final attempt got no response)\)$')


class Timeline(typing.NamedTuple):
    attempts: typing.List[typing.Dict[str, typing.Optional[str]]]
    stop: typing.Dict[str, typing.Optional[str]]

    @property
    def outcomes(self) -> typing.List[typing.Optional[str]]:
        return [attempt['outcome'] for attempt in self.attempts]


def timeline(output: str) -> Timeline:
    """Parse the attempt lines and the stop line; no other line of the
    timeline may appear between them."""
    attempts: typing.List[typing.Dict[str, typing.Optional[str]]] = []
    for line in output.split('\n'):
        # a terminal line may be rewritten: keep what is left on screen
        line = line.rstrip('\r ').rpartition('\r')[2].rstrip()
        match = ATTEMPT.match(line)
        if match:
            assert int(match['number']) == len(attempts) + 1, output
            attempts.append(match.groupdict())
            continue
        match = STOP.match(line)
        if match:
            assert int(match['attempts']) == len(attempts), output
            return Timeline(attempts, match.groupdict())
        assert not attempts, f'unexpected line {line!r} in\n{output}'
    raise AssertionError(f'no stop line in\n{output}')


@pytest.fixture(params=['simple', 'curl', 'aiohttp'])
def client_args(request: pytest.FixtureRequest) -> typing.List[str]:
    """The command's arguments that pick each AsyncHTTPClient."""
    return [] if request.param == 'simple' else [f'--{request.param}']


def client_key(client_args: typing.List[str]) -> str:
    """The name of the client `client_args` pick, for paths of its own."""
    return client_args[0].lstrip('-') if client_args else 'simple'


#: What a failure with no response is on each client: the exception's
#: name on the timeline.
NO_RESPONSE = {'simple': 'ConnectionRefusedError', 'curl': 'CurlError',
               'aiohttp': 'NoResponseError'}


# -- bodies -----------------------------------------------------------------

class TestBodies:

    def test_json_is_pretty_printed(self, server: ServerThread,
                                    client_args: typing.List[str]) -> None:
        """A JSON body is printed indented on stdout; exit 0, one attempt."""
        result = cli(*client_args, server.url('/json'))
        assert result.code == _cli.EXIT_OK
        assert result.text == json.dumps(JSON_DOCUMENT, indent=2) + '\n'
        steps = timeline(result.stderr)
        assert steps.outcomes == ['200']
        assert steps.stop['reason'] == 'success'
        assert steps.stop['status'] == '200'

    def test_msgpack_is_printed_as_json(self, server: ServerThread) -> None:
        """A msgpack body is printed as JSON with bytes as {"$base64"}."""
        result = cli(server.url('/msgpack'))
        assert result.code == _cli.EXIT_OK
        assert result.json == {'name': 'blob', 'n': 7,
                               'data': {'$base64': 'AAH/'}}

    def test_text_is_decoded_with_its_charset(self,
                                              server: ServerThread) -> None:
        """A latin-1 text body is printed decoded, with a final newline."""
        result = cli(server.url('/text'))
        assert result.code == _cli.EXIT_OK
        assert result.text == 'café\n'

    def test_binary_goes_to_a_pipe_as_it_is(self,
                                            server: ServerThread) -> None:
        """A binary body goes unchanged to a stdout that is a pipe."""
        result = cli(server.url('/binary'))
        assert result.code == _cli.EXIT_OK
        assert result.stdout == BINARY

    def test_binary_on_a_terminal_is_a_note(self,
                                            server: ServerThread) -> None:
        """On a terminal a binary body is not printed; stderr says why."""
        primary, secondary = pty.openpty()
        try:
            result = cli(server.url('/binary'), stdout=secondary)
            os.close(secondary)
            shown = _read_all(primary)
        finally:
            os.close(primary)
        assert result.code == _cli.EXIT_OK
        assert shown == b''
        assert ('note: binary body (256 bytes, application/octet-stream) '
                'not shown on a terminal; use -o FILE') in result.stderr

    def test_output_writes_the_body_to_a_file(
            self, server: ServerThread, tmp_path: pathlib.Path) -> None:
        """-o FILE writes the raw body there and nothing to stdout."""
        target = tmp_path / 'body.bin'
        result = cli('-o', str(target), server.url('/binary'))
        assert result.code == _cli.EXIT_OK
        assert target.read_bytes() == BINARY
        assert result.stdout == b''
        assert f'body: 256 bytes written to {target}' in result.stderr

    def test_output_dash_writes_raw_json_to_stdout(
            self, server: ServerThread) -> None:
        """--output - writes the JSON exactly as received, not indented."""
        result = cli('--output', '-', server.url('/json'))
        assert result.stdout == JSON_RAW

    def test_too_deep_json_is_shown_as_received(
            self, server: ServerThread) -> None:
        """JSON too deep to pretty-print is printed raw with a note, exit 0."""
        result = cli(server.url('/deep'))
        assert result.code == _cli.EXIT_OK
        assert result.stdout == b'[' * DEEP + b']' * DEEP + b'\n'
        assert result.stderr.splitlines()[-1] == (
            'note: the json body is nested too deeply to pretty-print; '
            'shown as received')

    def test_error_body_is_printed_whole(self, server: ServerThread,
                                         client_args: typing.List[str]
                                         ) -> None:
        """A 404 exits 1 and prints the whole error document."""
        result = cli(*client_args, server.url('/missing'))
        assert result.code == _cli.EXIT_ERROR_STATUS
        assert result.json == ERROR_DOCUMENT
        assert timeline(result.stderr).stop['reason'] == 'not-retryable'


def _read_all(descriptor: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(descriptor, 65536)
        except OSError:  # EIO: the other side of the pty is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b''.join(chunks)


def on_terminal(*arguments: str, stream: str = 'stdout'
                ) -> typing.Tuple[Result, bytes]:
    """Run the command with `stream` (stdout or stderr) on a pseudo-terminal;
    return the result and what the terminal got, its CR LF back to LF."""
    primary, secondary = pty.openpty()
    try:
        try:
            result = cli(*arguments,
                         stdout=secondary if stream == 'stdout' else None,
                         stderr=secondary if stream == 'stderr' else None)
        finally:
            os.close(secondary)
        shown = _read_all(primary)
    finally:
        os.close(primary)
    return result, shown.replace(b'\r\n', b'\n')


# -- what is sent ---------------------------------------------------------

class TestRequestOptions:

    def test_method(self, server: ServerThread,
                    client_args: typing.List[str]) -> None:
        """-X and --method set the method, in any case."""
        assert cli(*client_args, '-X', 'PUT',
                   server.url('/echo')).json['method'] == 'PUT'
        assert cli(*client_args, '--method', 'delete',
                   server.url('/echo')).json['method'] == 'DELETE'

    def test_repeated_headers(self, server: ServerThread) -> None:
        """Every -H is sent, a repeated name included."""
        result = cli('-H', 'X-One: 1', '-H', 'X-Two: 2', '--header',
                     'X-Two:3', server.url('/echo'))
        headers = result.json['headers']
        assert ['X-One', '1'] in headers
        assert ['X-Two', '2'] in headers
        assert ['X-Two', '3'] in headers

    def test_json(self, server: ServerThread,
                  client_args: typing.List[str]) -> None:
        """--json sends the document as application/json with POST."""
        echo = cli(*client_args, '--json', '{"a": [1, 2]}',
                   server.url('/echo')).json
        assert echo['method'] == 'POST'
        assert echo['content_type'] == 'application/json'
        assert json.loads(echo['body']) == {'a': [1, 2]}

    def test_json_from_a_file(self, server: ServerThread,
                              tmp_path: pathlib.Path) -> None:
        """--json @FILE reads the document from the file."""
        document = tmp_path / 'document.json'
        document.write_text('{"from": "file"}')
        echo = cli('-X', 'PATCH', '--json', f'@{document}',
                   server.url('/echo')).json
        assert echo['method'] == 'PATCH'
        assert json.loads(echo['body']) == {'from': 'file'}

    def test_data_from_a_file(self, server: ServerThread,
                              tmp_path: pathlib.Path) -> None:
        """--data @FILE sends the file's bytes as a form body."""
        payload = tmp_path / 'payload'
        payload.write_bytes(b'a=1&b=two')
        echo = cli('--data', f'@{payload}', server.url('/echo')).json
        assert echo['method'] == 'POST'
        assert echo['body'] == 'a=1&b=two'
        assert echo['content_type'] == 'application/x-www-form-urlencoded'

    def test_data_from_stdin(self, server: ServerThread) -> None:
        """--data @- sends standard input."""
        echo = cli('-X', 'PUT', '--data', '@-', server.url('/echo'),
                   stdin=b'from stdin').json
        assert echo['method'] == 'PUT'
        assert echo['body'] == 'from stdin'

    def test_data_keeps_a_content_type_header(self,
                                              server: ServerThread) -> None:
        """--data with -H Content-Type sends that Content-Type."""
        echo = cli('-H', 'Content-Type: text/plain', '--data', 'hi',
                   server.url('/echo')).json
        assert echo['content_type'] == 'text/plain'
        assert echo['body'] == 'hi'

    def test_data_sends_the_argument_bytes(self,
                                           server: ServerThread) -> None:
        """--data sends argv bytes as given, even when not UTF-8."""
        # a lone surrogate is how Python holds an undecodable argv byte;
        # subprocess turns it back into the byte 0xff
        result = cli('--data', 'a=\udcff', server.url('/raw-echo'))
        assert result.code == _cli.EXIT_OK, result.stderr
        assert result.stdout == b'a=\xff'

    def test_json_that_is_not_utf8_is_a_usage_error(self) -> None:
        """--json with bytes that are not UTF-8 exits 2, one line."""
        result = cli('--json', '"\udcff"', 'http://127.0.0.1:9/')
        assert result.code == _cli.EXIT_USAGE
        assert result.stderr.startswith(
            'python -m sprockets.mixins.http: error: --json is not valid '
            "JSON: 'utf-8' codec can't decode byte 0xff")
        assert len(result.stderr.splitlines()) == 1

    def test_msgpack(self, server: ServerThread,
                     client_args: typing.List[str]) -> None:
        """--msgpack sends the --json document as msgpack."""
        result = cli(*client_args, '--msgpack', '--json',
                     '{"packed": [1, "two"]}', server.url('/msgpack-only'))
        assert result.code == _cli.EXIT_OK
        assert result.json == {'received': {'packed': [1, 'two']}}

    def test_without_msgpack_the_server_refuses(
            self, server: ServerThread) -> None:
        """The msgpack-only upstream refuses JSON (so --msgpack counts)."""
        result = cli('--json', '{"packed": 1}', server.url('/msgpack-only'))
        assert result.code == _cli.EXIT_ERROR_STATUS
        assert timeline(result.stderr).stop['status'] == '415'


def _usage_line(message: str) -> str:
    return f'python -m sprockets.mixins.http: error: {message} (see --help)\n'


class TestJSONArgument:
    """--json takes only what JSON can carry; anything else is a usage
    error, one line, and nothing is sent."""

    @pytest.mark.parametrize('document, message', [
        ('[Infinity]', '--json is not valid JSON: Infinity is not a JSON '
                       'number (JSON has no infinity or NaN)'),
        ('{"a": -Infinity}', '--json is not valid JSON: -Infinity is not a '
                             'JSON number (JSON has no infinity or NaN)'),
        ('NaN', '--json is not valid JSON: NaN is not a JSON number (JSON '
                'has no infinity or NaN)'),
        ('[1e400]', '--json has a number out of range: 1e400 overflows a '
                    'float (a double)'),
        ('{"a": -1.5E+999}', '--json has a number out of range: -1.5E+999 '
                             'overflows a float (a double)'),
    ])
    def test_not_a_json_number(self, server: ServerThread, document: str,
                               message: str) -> None:
        """Infinity, -Infinity, NaN and 1e400 (infinite as a float) exit 2
        and are never sent as JSON."""
        result = cli(f'--json={document}', server.url('/sink'))
        assert (result.code, result.stdout) == (_cli.EXIT_USAGE, b'')
        assert result.stderr == _usage_line(message)
        assert '/sink' not in _hits

    @pytest.mark.parametrize('source', ['file', 'stdin'])
    def test_not_a_json_number_from_a_file(self, server: ServerThread,
                                           tmp_path: pathlib.Path,
                                           source: str) -> None:
        """--json @FILE and @- refuse NaN the same way."""
        document = tmp_path / 'nan.json'
        document.write_bytes(b'{"a": [NaN]}')
        argument = f'@{document}' if source == 'file' else '@-'
        result = cli('--json', argument, server.url('/sink'),
                     stdin=document.read_bytes())
        assert result.code == _cli.EXIT_USAGE
        assert result.stderr == _usage_line(
            '--json is not valid JSON: NaN is not a JSON number (JSON has '
            'no infinity or NaN)')
        assert '/sink' not in _hits

    @pytest.mark.parametrize('source', ['argument', 'file', 'stdin'])
    def test_nested_too_deeply(self, server: ServerThread,
                               tmp_path: pathlib.Path, source: str) -> None:
        """TOO_DEEP nested arrays (inline, @FILE or @-) exit 2 with one
        line, never a traceback, and nothing is sent."""
        deep = b'[' * TOO_DEEP + b']' * TOO_DEEP
        document = tmp_path / 'deep.json'
        document.write_bytes(deep)
        # an argument this long would exceed the kernel's limit: unclosed,
        # it is just as deep where the decoder gives up
        argument = {'argument': '[' * TOO_DEEP, 'file': f'@{document}',
                    'stdin': '@-'}[source]
        result = cli('--json', argument, server.url('/sink'), stdin=deep)
        assert (result.code, result.stdout) == (_cli.EXIT_USAGE, b'')
        assert result.stderr == _usage_line(
            '--json is nested too deeply to decode')
        assert '/sink' not in _hits

    @pytest.mark.parametrize('document', ['100000000000000000000000',
                                          '[100000000000000000000000]'])
    def test_msgpack_cannot_carry_it(self, server: ServerThread,
                                     document: str) -> None:
        """--msgpack with an integer over 64 bits exits 2, one line."""
        result = cli('--msgpack', '--json', document, server.url('/sink'))
        assert (result.code, result.stdout) == (_cli.EXIT_USAGE, b'')
        assert result.stderr == _usage_line(
            'cannot serialize int value 100000000000000000000000 as msgpack')
        assert '/sink' not in _hits


# -- retries, the timeline, exit codes --------------------------------------

class TestRetries:

    def test_timeline_of_backoff_retries(self, server: ServerThread,
                                         client_args: typing.List[str]
                                         ) -> None:
        """Each attempt has a line with delay and reason; no \r off a tty."""
        result = cli(*client_args, '--retry-timeout', '0',
                     server.url(f'/flaky/get{client_key(client_args)}'))
        assert result.code == _cli.EXIT_OK
        steps = timeline(result.stderr)
        assert steps.outcomes == ['502', '502', '200']
        assert [(step['delay'], step['reason']) for step in steps.attempts
                ] == [('0.00', 'backoff'), ('0.00', 'backoff'), (None, None)]
        assert steps.stop['reason'] == 'success'
        assert steps.stop['attempts'] == '3'
        assert '\r' not in result.stderr

    def test_retry_after_is_the_reason(self, server: ServerThread,
                                       client_args: typing.List[str]
                                       ) -> None:
        """A wait asked for by Retry-After is labelled Retry-After."""
        result = cli(*client_args,
                     server.url(f'/limited/x{client_key(client_args)}'))
        assert result.code == _cli.EXIT_OK
        first = timeline(result.stderr).attempts[0]
        assert (first['outcome'], first['delay'], first['reason']) == (
            '429', '0.00', 'Retry-After')

    def test_max_attempts(self, server: ServerThread) -> None:
        """--max-attempts caps the attempts; an error status exits 1."""
        result = cli('--max-attempts', '2', '--retry-timeout', '0',
                     server.url('/unavailable'))
        assert result.code == _cli.EXIT_ERROR_STATUS
        steps = timeline(result.stderr)
        assert steps.outcomes == ['503', '503']
        assert steps.stop['reason'] == 'attempts-exhausted'

    def test_post_is_not_retried_on_502(self, server: ServerThread,
                                        client_args: typing.List[str]
                                        ) -> None:
        """A POST that got a 502 stops at once: unsafe-method."""
        result = cli(*client_args, '--retry-timeout', '0', '--json', '{}',
                     server.url(f'/flaky/post{client_key(client_args)}'))
        assert result.code == _cli.EXIT_ERROR_STATUS
        steps = timeline(result.stderr)
        assert steps.outcomes == ['502']
        assert steps.stop['reason'] == 'unsafe-method'

    def test_post_with_idempotency_key_is_retried(
            self, server: ServerThread) -> None:
        """A POST with an Idempotency-Key is retried until it succeeds."""
        result = cli('--retry-timeout', '0', '-H', 'Idempotency-Key: k1',
                     '--json', '{}', server.url('/flaky/keyed'))
        assert result.code == _cli.EXIT_OK
        assert timeline(result.stderr).outcomes == ['502', '502', '200']

    def test_connection_refused_exits_3(self,
                                        client_args: typing.List[str]
                                        ) -> None:
        """Connection refused exits 3 and names the exception."""
        with socket.socket() as unused:
            unused.bind(('127.0.0.1', 0))
            port = unused.getsockname()[1]
        result = cli(*client_args, '--max-attempts', '1',
                     f'http://127.0.0.1:{port}/')
        assert result.code == _cli.EXIT_NO_RESPONSE
        assert result.stdout == b''
        steps = timeline(result.stderr)
        assert steps.outcomes == [NO_RESPONSE[client_key(client_args)]]
        assert steps.stop['reason'] == 'attempts-exhausted'
        assert steps.stop['status'] is None

    def test_final_transport_failure_after_a_status_exits_1(
            self, server: ServerThread,
            client_args: typing.List[str]) -> None:
        """503 then a reset: exit 1, the stop line names the last status
        and stdout shows that response."""
        key = client_key(client_args)
        result = cli(*client_args, '--retry-timeout', '0', '--max-attempts',
                     '2', '--print-headers',
                     server.url(f'/reset-after-503/{key}'))
        assert result.code == _cli.EXIT_ERROR_STATUS
        steps = timeline(result.stderr)
        assert steps.outcomes[0] == '503'
        assert steps.outcomes[1] in ('CurlError', 'ConnectionResetError',
                                     'HTTPStreamClosedError',
                                     'NoResponseError')
        assert steps.stop['reason'] == 'attempts-exhausted'
        assert (steps.stop['status'], steps.stop['last']) == (None, '503')
        assert result.text.startswith('503 Service Unavailable\n')
        assert result.text.endswith('\n\ndown\n')

    def test_timeout(self, server: ServerThread,
                     client_args: typing.List[str]) -> None:
        """--timeout bounds an attempt; a timeout exits 3."""
        result = cli(*client_args, '--timeout', '0.1', '--max-attempts',
                     '1', server.url('/slow'))
        assert result.code == _cli.EXIT_NO_RESPONSE
        steps = timeline(result.stderr)
        assert steps.outcomes == (['CurlError'] if client_args == ['--curl']
                                  else ['HTTPTimeoutError'])
        assert float(steps.attempts[0]['duration'] or 0) < 0.4

    def test_deadline(self, server: ServerThread) -> None:
        """--deadline bounds the whole call: stop reason deadline."""
        result = cli('--deadline', '0.2', '--retry-timeout', '0',
                     server.url('/slow'))
        assert result.code == _cli.EXIT_NO_RESPONSE
        steps = timeline(result.stderr)
        assert steps.stop['reason'] == 'deadline'
        assert float(steps.stop['duration'] or 0) < 0.45

    def test_redirect_is_not_followed_by_default(
            self, server: ServerThread) -> None:
        """Without --follow-redirects a 302 is the final answer: exit 0."""
        result = cli(server.url('/redirect'))
        assert result.code == _cli.EXIT_OK
        assert timeline(result.stderr).stop['status'] == '302'

    @pytest.mark.parametrize('flag', ['--follow-redirects',
                                      '--follow_redirects',
                                      '--follow_redirects=true'])
    def test_follow_redirects(self, server: ServerThread, flag: str) -> None:
        """--follow-redirects (or tornado's spelling) follows the 302."""
        result = cli(flag, server.url('/redirect'))
        assert result.code == _cli.EXIT_OK
        assert result.json == JSON_DOCUMENT

    def test_follow_redirects_false(self, server: ServerThread) -> None:
        """--follow_redirects=false leaves the 302 alone."""
        result = cli('--follow_redirects=false', server.url('/redirect'))
        assert timeline(result.stderr).stop['status'] == '302'

    def test_countdown_terminal_keeps_the_lines(
            self, server: ServerThread) -> None:
        """On a terminal the timeline ends with the same lines."""
        primary, secondary = pty.openpty()
        try:
            result = cli('--retry-timeout', '0', server.url('/flaky/tty'),
                         stderr=secondary)
            os.close(secondary)
            shown = _read_all(primary).decode('utf-8')
        finally:
            os.close(primary)
        assert result.code == _cli.EXIT_OK
        assert timeline(shown).outcomes == ['502', '502', '200']


# -- headers, body switches, TLS, client, logging ----------------------------

class TestOutputSwitches:

    @pytest.mark.parametrize('flag', ['--print-headers', '--print_headers'])
    def test_print_headers(self, server: ServerThread, flag: str) -> None:
        """The status line and headers, a blank line, then the body."""
        result = cli(flag, server.url('/headers'))
        head, blank, body = result.text.partition('\n\n')
        lines = head.splitlines()
        assert lines[0] == '200 OK'
        assert 'X-Multi: a' in lines
        assert 'X-Multi: b' in lines
        assert 'Content-Type: text/plain; charset=utf-8' in lines
        assert (blank, body) == ('\n\n', 'ok\n')

    @pytest.mark.parametrize('flag', ['--no-body', '--print_body=false',
                                      '--print_body=0'])
    def test_no_body(self, server: ServerThread, flag: str) -> None:
        """--no-body (or tornado's --print_body=false) prints no body."""
        result = cli('--print-headers', flag, server.url('/headers'))
        assert result.code == _cli.EXIT_OK
        assert result.text.startswith('200 OK\n')
        assert result.text.endswith('\n\n')
        assert 'ok' not in result.text.splitlines()

    def test_print_body_true_prints_it(self, server: ServerThread) -> None:
        """--print_body=true keeps the body."""
        assert cli('--print_body=true',
                   server.url('/headers')).text == 'ok\n'

    def test_certificate_is_verified(self, tls_server: ServerThread,
                                     client_args: typing.List[str]) -> None:
        """A self-signed certificate fails unretried: exit 3."""
        result = cli(*client_args, tls_server.url('/json'))
        assert result.code == _cli.EXIT_NO_RESPONSE
        steps = timeline(result.stderr)
        assert len(steps.attempts) == 1
        assert steps.stop['reason'] == 'not-retryable'

    def test_tls_failure_writes_only_the_timeline(
            self, tls_server: ServerThread,
            client_args: typing.List[str]) -> None:
        """tornado's own "SSL Error" warning stays off stderr without -v."""
        result = cli(*client_args, tls_server.url('/json'))
        assert result.code == _cli.EXIT_NO_RESPONSE
        lines = result.stderr.splitlines()
        assert len(lines) == 2, result.stderr
        assert ATTEMPT.match(lines[0]) and STOP.match(lines[1])

    def test_tornado_logger_level_is_restored(
            self, tls_server: ServerThread) -> None:
        """main puts tornado.general's level back as it found it."""
        logger = logging.getLogger('tornado.general')
        before = logger.level
        stderr = io.StringIO()
        code = _cli.main([tls_server.url('/json')],
                         _cli.Streams(io.BytesIO(), io.StringIO(), stderr))
        assert code == _cli.EXIT_NO_RESPONSE, stderr.getvalue()
        assert logger.level == before

    @pytest.mark.parametrize('flag', ['--insecure', '--validate_cert=false'])
    def test_insecure(self, tls_server: ServerThread,
                      client_args: typing.List[str], flag: str) -> None:
        """--insecure (or --validate_cert=false) accepts the certificate."""
        result = cli(*client_args, flag, tls_server.url('/json'))
        assert result.code == _cli.EXIT_OK
        assert result.json == JSON_DOCUMENT

    @pytest.mark.parametrize('arguments, implementation', [
        ([], 'SimpleAsyncHTTPClient'),
        (['--curl'], 'CurlAsyncHTTPClient'),
        (['--aiohttp'], 'AiohttpAsyncHTTPClient'),
    ])
    def test_curl_and_verbose(self, server: ServerThread,
                              arguments: typing.List[str],
                              implementation: str) -> None:
        """-v logs the AsyncHTTPClient in use; --curl picks curl."""
        result = cli('-v', *arguments, server.url('/json'))
        assert result.code == _cli.EXIT_OK
        assert (f'DEBUG sprockets.mixins.http: Sending with '
                f'{implementation}') in result.stderr.splitlines()

    def test_verbose_redacts_secrets(self, server: ServerThread) -> None:
        """-v shows the request headers with credentials redacted."""
        result = cli('-v', '-H', 'Authorization: Bearer s3cr3t', '-H',
                     'X-Api-Token: t0k3n', server.url('/json'))
        debug = [line for line in result.stderr.splitlines()
                 if line.startswith('DEBUG sprockets.mixins.http: Attempt')]
        assert len(debug) == 1
        assert "'Authorization': '<redacted>'" in debug[0]
        assert "'X-Api-Token': '<redacted>'" in debug[0]
        assert 's3cr3t' not in result.stderr
        assert 't0k3n' not in result.stderr

    def test_quiet_without_verbose(self, server: ServerThread) -> None:
        """Without -v the package's log lines stay out of the timeline."""
        result = cli('--retry-timeout', '0', server.url('/flaky/quiet'))
        assert 'WARNING' not in result.stderr
        assert 'DEBUG' not in result.stderr
        assert timeline(result.stderr).outcomes == ['502', '502', '200']


# -- a hostile server ---------------------------------------------------------

class TestHostileServer:
    """Controls from the server never reach a terminal as they are."""

    @pytest.mark.parametrize('terminal', [False, True],
                             ids=['pipe', 'terminal'])
    def test_status_line_and_headers_are_escaped(
            self, server: ServerThread, client_args: typing.List[str],
            terminal: bool) -> None:
        """--print-headers shows a C1 control of the reason or a header
        value as \\x9b, on a terminal or not."""
        arguments = (*client_args, '--print-headers', '--no-body',
                     server.url('/hostile'))
        if terminal:
            result, shown = on_terminal(*arguments)
        else:
            result = cli(*arguments)
            shown = result.stdout
        assert result.code == _cli.EXIT_OK, result.stderr
        text = shown.decode('utf-8')
        assert '\x9b' not in text
        lines = text.splitlines()
        assert lines[0] == '200 OK\\x9b2J'
        assert 'X-Evil: a\\x9b31mb' in lines

    def test_text_body_is_escaped_on_a_terminal(
            self, server: ServerThread) -> None:
        """On a terminal a text body's controls are escaped as \\xNN; tab,
        LF and CR LF stay."""
        result, shown = on_terminal(server.url('/hostile'))
        assert result.code == _cli.EXIT_OK, result.stderr
        assert shown.decode('utf-8') == HOSTILE_SHOWN

    def test_text_body_goes_to_a_pipe_as_it_is(
            self, server: ServerThread) -> None:
        """Off a terminal the text body is written as decoded, unchanged."""
        assert cli(server.url('/hostile')).text == HOSTILE_BODY

    @pytest.mark.parametrize('terminal', [False, True],
                             ids=['pipe', 'terminal'])
    def test_json_strings_escape_c1_controls(self, server: ServerThread,
                                             terminal: bool) -> None:
        """Pretty-printed JSON writes C1 controls and DEL as \\u escapes:
        the same document, harmless on a terminal."""
        if terminal:
            result, shown = on_terminal(server.url('/hostile-json'))
        else:
            result = cli(server.url('/hostile-json'))
            shown = result.stdout
        assert result.code == _cli.EXIT_OK, result.stderr
        assert shown.decode('utf-8') == (
            '{\n  "name": "a\\u009b31m\\u007fb"\n}\n')
        assert json.loads(shown) == HOSTILE_DOCUMENT

    def test_binary_note_escapes_the_content_type(
            self, server: ServerThread) -> None:
        """The note about a binary body escapes the server's Content-Type."""
        result, shown = on_terminal(server.url('/hostile-binary'))
        assert (result.code, shown) == (_cli.EXIT_OK, b'')
        assert '\x9b' not in result.stderr
        assert ('note: binary body (256 bytes, application/x-\\x9b2J) not '
                'shown on a terminal; use -o FILE'
                ) in result.stderr.splitlines()

    def test_verbose_log_lines_are_escaped(self,
                                           server: ServerThread) -> None:
        """-v shows a Warning header's C1 control as \\x9b."""
        result = cli('-v', server.url('/hostile'))
        assert result.code == _cli.EXIT_OK
        assert '\x9b' not in result.stderr
        warnings = [line for line in result.stderr.splitlines()
                    if line.startswith('WARNING sprockets.mixins.http: '
                                       'Warning header from ')]
        assert len(warnings) == 1, result.stderr
        assert warnings[0].endswith(': 199 - "\\x9b2J"')


# -- closed standard streams -------------------------------------------------

@contextlib.contextmanager
def broken_pipe() -> typing.Iterator[int]:
    """Yield the write end of a pipe whose read end is closed."""
    read, write = os.pipe()
    os.close(read)
    try:
        yield write
    finally:
        os.close(write)


class TestClosedStreams:

    def test_stdout_closed_early(self, server: ServerThread) -> None:
        """A closed stdout pipe exits 141 quietly, the timeline intact."""
        with broken_pipe() as stdout:
            result = cli(server.url('/json'), stdout=stdout)
        assert result.code == _cli.EXIT_BROKEN_PIPE
        assert timeline(result.stderr).outcomes == ['200']
        assert len(result.stderr.splitlines()) == 2, result.stderr

    def test_demo_with_stdout_closed_early(self) -> None:
        """--demo into a closed pipe exits 141 at once, nothing on stderr."""
        with broken_pipe() as stdout:
            result = cli('--demo', stdout=stdout)
        assert (result.code, result.stderr) == (_cli.EXIT_BROKEN_PIPE, '')

    def test_broken_timeline_stops_the_retries(
            self, server: ServerThread) -> None:
        """A timeline line that cannot be written stops before a retry."""
        code = None
        # closing flushes the line left in the buffer: it breaks again
        with contextlib.ExitStack() as stack:
            write = stack.enter_context(broken_pipe())
            stack.enter_context(contextlib.suppress(BrokenPipeError))
            stderr = stack.enter_context(
                open(write, 'w', encoding='utf-8', closefd=False))
            code = _cli.main(
                ['--retry-timeout', '0', server.url('/flaky/broken')],
                _cli.Streams(io.BytesIO(), io.StringIO(), stderr))
        assert code == _cli.EXIT_BROKEN_PIPE
        assert _hits['/flaky/broken'] == 1

    def test_stdout_closed_before_start(self, server: ServerThread) -> None:
        """With stdout closed (>&-) the body is dropped, exit 0."""
        process = subprocess.run(
            ['sh', '-c', 'exec "$0" "$@" >&-', sys.executable, '-W',
             'error', '-m', 'sprockets.mixins.http', server.url('/json')],
            env=_environment(), capture_output=True, timeout=30,
            check=False)
        stderr = process.stderr.decode('utf-8')
        assert process.returncode == _cli.EXIT_OK, stderr
        assert timeline(stderr).outcomes == ['200']
        assert len(stderr.splitlines()) == 2, stderr

    @needs_dev_full
    @pytest.mark.parametrize('arguments', [
        ['/json'], ['/text'], ['/binary'], ['-o', '-', '/binary'],
        ['--print-headers', '--no-body', '/headers'],
    ], ids=['json', 'text', 'binary', 'output', 'headers'])
    def test_stdout_on_a_full_disk(self, server: ServerThread,
                                   arguments: typing.List[str]) -> None:
        """stdout on a full disk (> /dev/full): the timeline, then one
        line naming the error, exit 4, no traceback."""
        *options, path = arguments
        with FULL.open('wb') as stdout:
            result = cli(*options, server.url(path), stdout=stdout.fileno())
        assert result.code == _cli.EXIT_WRITE_ERROR, result.stderr
        *steps, last = result.stderr.splitlines()
        assert last == ('python -m sprockets.mixins.http: error: cannot '
                        'write to stdout: No space left on device')
        assert timeline('\n'.join(steps)).outcomes == ['200']
        assert len(steps) == 2, result.stderr

    def test_stdout_that_cannot_be_written(self,
                                           server: ServerThread) -> None:
        """A stdout open only for reading (1</dev/null): one line, exit 4."""
        with open(os.devnull, 'rb') as stdout:
            result = cli(server.url('/json'), stdout=stdout.fileno())
        assert result.code == _cli.EXIT_WRITE_ERROR, result.stderr
        assert result.stderr.splitlines()[-1] == (
            'python -m sprockets.mixins.http: error: cannot write to '
            'stdout: Bad file descriptor')
        assert len(result.stderr.splitlines()) == 3, result.stderr

    @needs_dev_full
    def test_output_file_on_a_full_disk(self, server: ServerThread) -> None:
        """-o FILE on a full disk: one line naming FILE, exit 4."""
        result = cli('-o', str(FULL), server.url('/json'))
        assert result.code == _cli.EXIT_WRITE_ERROR, result.stderr
        assert result.stderr.splitlines()[-1] == (
            "python -m sprockets.mixins.http: error: cannot write "
            f"'{FULL}': No space left on device")
        assert len(result.stderr.splitlines()) == 3, result.stderr

    @needs_dev_full
    def test_stderr_on_a_full_disk_stops_the_retries(
            self, server: ServerThread) -> None:
        """A timeline that cannot be written (2> /dev/full) stops before a
        retry and exits 4, not 1 as a traceback would."""
        with FULL.open('wb') as stderr:
            result = cli('--retry-timeout', '0', server.url('/flaky/full'),
                         stderr=stderr.fileno())
        assert (result.code, result.stdout) == (_cli.EXIT_WRITE_ERROR, b'')
        assert _hits['/flaky/full'] == 1

    @needs_dev_full
    def test_usage_error_with_stderr_on_a_full_disk(self) -> None:
        """A usage error exits 2 even when its line cannot be written."""
        with FULL.open('wb') as stderr:
            result = cli('--bogus', 'http://127.0.0.1/',
                         stderr=stderr.fileno())
        assert (result.code, result.stdout) == (_cli.EXIT_USAGE, b'')

    @needs_dev_full
    @pytest.mark.parametrize('flag', ['--help', '--version'])
    def test_help_on_a_full_disk(self, flag: str) -> None:
        """--help or --version > /dev/full: one line, exit 4 (argparse
        alone ignores the failure and exits 0)."""
        with FULL.open('wb') as stdout:
            result = cli(flag, stdout=stdout.fileno())
        assert (result.code, result.stderr) == (
            _cli.EXIT_WRITE_ERROR, 'python -m sprockets.mixins.http: error: '
            'cannot write to stdout: No space left on device\n')

    @needs_dev_full
    def test_demo_on_a_full_disk(self) -> None:
        """--demo with stdout on a full disk stops at once: one line, 4."""
        with FULL.open('wb') as stdout:
            result = cli('--demo', stdout=stdout.fileno())
        assert result.code == _cli.EXIT_WRITE_ERROR, result.stderr
        assert result.stderr == (
            'python -m sprockets.mixins.http: error: cannot write to '
            'stdout: No space left on device\n')


# -- usage errors ----------------------------------------------------------

@pytest.mark.parametrize('arguments, message', [
    (['example.com/x'], "invalid URL 'example.com/x': no scheme"),
    (['localhost:8000'], "invalid URL 'localhost:8000': no scheme"),
    (['ftp://example.com/'], 'the scheme must be http or https'),
    (['http://'], "invalid URL 'http://': no host"),
    (['http://example.com:port/'], "invalid URL 'http://example.com:port/'"),
    (['http://exa mple.com/'], 'contains whitespace'),
    ([], 'a URL is required'),
    (['--bogus', 'http://127.0.0.1/'], 'unrecognized arguments: --bogus'),
    (['--max-attempts', 'two', 'http://127.0.0.1/'],
     "argument --max-attempts: invalid int value: 'two'"),
    (['--max-attempts', '0', 'http://127.0.0.1/'],
     '--max-attempts must be at least 1, got 0'),
    (['--retry-timeout', '-1', 'http://127.0.0.1/'],
     '--retry-timeout must be 0 or more seconds, got -1.0'),
    (['--retry-timeout=-inf', 'http://127.0.0.1/'],
     '--retry-timeout must be 0 or more seconds, got -inf'),
    (['--deadline', '0', 'http://127.0.0.1/'],
     '--deadline must be greater than 0'),
    (['--timeout', '-1', 'http://127.0.0.1/'], '--timeout must be'),
    (['--json', '{nope', 'http://127.0.0.1/'], '--json is not valid JSON'),
    (['--json', '{}', '--data', 'x', 'http://127.0.0.1/'],
     'not allowed with argument'),
    (['--msgpack', 'http://127.0.0.1/'], '--msgpack sends the --json'),
    (['-X', 'GET', '--json', '{}', 'http://127.0.0.1/'],
     'a GET request cannot have a body'),
    (['-H', 'no colon', 'http://127.0.0.1/'], "invalid header 'no colon'"),
    (['-H', 'Bad Name: x', 'http://127.0.0.1/'], 'invalid header'),
    (['--data', '@/no/such/file', 'http://127.0.0.1/'],
     "cannot read '/no/such/file'"),
    (['--print_body=maybe', 'http://127.0.0.1/'],
     "--print_body takes true or false, got 'maybe'"),
    (['-o', '/no/such/dir/out', 'http://127.0.0.1/'],
     "cannot write --output '/no/such/dir/out'"),
    (['--demo', 'http://127.0.0.1/'], '--demo takes no URL'),
    (['-o', '/', 'http://127.0.0.1/'],
     "cannot write --output '/': it is a directory"),
    (['-H', 'X-E: \u20ac', 'http://127.0.0.1/'],
     'the value has a character outside ISO-8859-1'),
    (['-H', 'X-E: a\x01b', 'http://127.0.0.1/'],
     'a control character in the value'),
    (['-H', 'X-E: a\x7f', 'http://127.0.0.1/'],
     'a control character in the value'),
    (['-H', 'X-E: \udcff', 'http://127.0.0.1/'],
     'the value has a character outside ISO-8859-1'),
    (['-X', 'GET\r\nX: y', 'http://127.0.0.1/'], "invalid method 'GET"),
    (['-X', 'GE T', 'http://127.0.0.1/'], "invalid method 'GE T'"),
    (['-X', '', 'http://127.0.0.1/'], "invalid method ''"),
    (['--timeout', '1e308', 'http://127.0.0.1/'],
     '--timeout must be a number of seconds up to 1000000, got 1e+308'),
    (['--deadline', '1e308', 'http://127.0.0.1/'],
     '--deadline must be a number of seconds up to 1000000'),
    (['--retry-timeout', '1000001', 'http://127.0.0.1/'],
     '--retry-timeout must be a number of seconds up to 1000000'),
    (['--deadline', 'nan', 'http://127.0.0.1/'],
     '--deadline must be a number of seconds up to 1000000, got nan'),
    (['http://127.0.0.1/\udcff'], 'not valid in the locale'),
    (['http://127.0.0.1/a\x01'], 'it contains a control character'),
    (['http://127.0.0.1/a\x9b'], 'it contains a control character'),
    (['-X', 'GET\n', 'http://127.0.0.1/'], "invalid method 'GET\\n'"),
    (['-H', 'X-A\n: b', 'http://127.0.0.1/'], "invalid header 'X-A\\n'"),
])
def test_usage_error(arguments: typing.List[str], message: str) -> None:
    """A usage error returns 2 with one line on stderr (in process)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    code = _cli.main(arguments, _cli.Streams(io.BytesIO(), stdout, stderr))
    assert code == _cli.EXIT_USAGE
    assert stdout.getvalue() == ''
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 1, stderr.getvalue()
    assert lines[0].startswith('python -m sprockets.mixins.http: error: ')
    assert message in lines[0]


@pytest.mark.parametrize('arguments, message', [
    (['example.com/x'],
     "invalid URL 'example.com/x': no scheme, try http://example.com/x"),
    (['--bogus', 'http://127.0.0.1/'], 'unrecognized arguments: --bogus'),
    (['--max-attempts', '0', 'http://127.0.0.1/'],
     '--max-attempts must be at least 1, got 0'),
    (['-H', 'X-E: \u20ac', 'http://127.0.0.1/'],
     "invalid header 'X-E': the value has a character outside "
     'ISO-8859-1 (latin-1)'),
    (['http://127.0.0.1/\udcff'],
     "invalid URL 'http://127.0.0.1/\\udcff': it contains bytes that are "
     "not valid in the locale's encoding"),
])
def test_usage_error_in_a_process(arguments: typing.List[str],
                                  message: str) -> None:
    """A real process exits 2 with one line and no traceback."""
    result = cli(*arguments)
    assert result.code == _cli.EXIT_USAGE
    assert result.stdout == b''
    assert result.stderr == (
        f'python -m sprockets.mixins.http: error: {message} (see --help)\n')


def test_help() -> None:
    """--help prints the options and the exit codes and exits 0."""
    result = cli('--help')
    assert result.code == 0
    assert '--retry-timeout SECONDS' in result.text
    assert 'exit codes: 0 success' in result.text


def test_version() -> None:
    """--version prints the package version."""
    result = cli('--version')
    assert result.code == 0
    assert result.text == f'sprockets.mixins.http {http.__version__}\n'


# -- the demo ----------------------------------------------------------------

class TestDemo:
    """The product demo, run in process with instant retries; .ci/run runs
    the real one (with its real waits) as a smoke test."""

    def test_demo(self) -> None:
        """--demo tells the three stories: >= 3 attempts ending in 200, an
        unretried POST and a POST retried with its Idempotency-Key."""
        out, err = io.StringIO(), io.StringIO()
        with testing.instant_retries() as delays:
            code = _cli.main(['--demo'],
                             _cli.Streams(io.BytesIO(), out, err))
        text = out.getvalue()
        assert code == _cli.EXIT_OK, err.getvalue()
        stories = re.split(r'^\d\. ', text, flags=re.MULTILINE)[1:]
        assert len(stories) == 3
        first, unsafe, keyed = (timeline(story) for story in stories)
        assert first.outcomes == ['503', '429', '200']
        assert [step['reason'] for step in first.attempts] == [
            'backoff', 'Retry-After', None]
        assert first.attempts[1]['delay'] == '1.00'
        assert first.stop['status'] == '200'
        assert '"$base64": "iVBORw0KGgo="' in stories[0]
        assert unsafe.outcomes == ['502']
        assert unsafe.stop['reason'] == 'unsafe-method'
        assert 'Idempotency-Key: ' in stories[2]
        assert keyed.outcomes == ['502', '201']
        assert keyed.stop['reason'] == 'success'
        # backoff (full jitter, retry_timeout 1), Retry-After: 1, backoff
        assert len(delays) == 3
        assert 0 <= delays[0] <= 1 and delays[1] == 1.0
        assert 0 <= delays[2] <= 1


# -- the pure parts, in process ----------------------------------------------

@pytest.mark.parametrize('argv, expected', [
    (['--print_headers', 'URL'], ['--print-headers', 'URL']),
    (['--print_headers=false', 'URL'], ['URL']),
    (['--print_body=false'], ['--no-body']),
    (['--print_body=FALSE'], ['--no-body']),
    (['--print_body'], []),
    (['--follow_redirects'], ['--follow-redirects']),
    (['--follow_redirects=1'], ['--follow-redirects']),
    (['--follow_redirects=no'], []),
    (['--validate_cert=false'], ['--insecure']),
    (['--validate_cert=true'], []),
    (['-H', '--print_headers', 'URL'], ['-H', '--print_headers', 'URL']),
    (['--data', '--validate_cert=false'], ['--data',
                                           '--validate_cert=false']),
    (['--', '--print_headers'], ['--', '--print_headers']),
    (['--print-headers', '-v'], ['--print-headers', '-v']),
])
def test_normalize_argv(argv: typing.List[str],
                        expected: typing.List[str]) -> None:
    """tornado's flags are translated; option values are left alone."""
    assert cli_args.normalize_argv(argv) == expected


def test_value_options_match_the_parser() -> None:
    """VALUE_OPTIONS lists exactly the options that take a value."""
    parser = cli_args.build_parser()
    taking = {option for action in parser._actions
              for option in action.option_strings if action.nargs != 0}
    assert taking == cli_args.VALUE_OPTIONS


@pytest.mark.parametrize('url', [
    'http://example.com', 'https://127.0.0.1:8443/a?b=c',
    'HTTP://Example.com/', 'http://user:pw@[::1]:80/',
    'http://h/caf\u00e9?q=\u00fc'])
def test_check_url_accepts(url: str) -> None:
    """Absolute http and https URLs with a host are accepted, text
    outside ASCII too (the package percent-encodes it)."""
    assert cli_args.check_url(url) == url


@pytest.mark.parametrize('url', [
    '', 'example.com', '/path', 'mailto:a@b', 'file:///etc/passwd',
    'http:///path', 'http://[::1/', 'http://h:99999/',
    'http://h/\x00', 'http://h/\x7f', 'http://h/\udcff', 'http://h/\x9b',
    '\x01http://h/'])
def test_check_url_rejects(url: str) -> None:
    """Anything else is a usage error."""
    with pytest.raises(cli_args.UsageError, match='invalid URL'):
        cli_args.check_url(url)


@pytest.mark.parametrize('value, expected', [
    ('Accept: text/plain', ('Accept', 'text/plain')),
    ('X-Empty:', ('X-Empty', '')),
    ('  X-Spaced  :  a b  ', ('X-Spaced', 'a b')),
    ('X-Colon: a:b', ('X-Colon', 'a:b')),
    ('X-Tab: a\tb', ('X-Tab', 'a\tb')),
    ('X-Latin: caf\u00e9', ('X-Latin', 'caf\u00e9')),
])
def test_parse_header(value: str, expected: typing.Tuple[str, str]) -> None:
    """'Name: value' splits at the first colon, trimmed."""
    assert cli_args.parse_header(value) == expected


def _refused(check: typing.Callable[[], typing.Any]) -> bool:
    try:
        check()
    except ValueError:
        return True
    return False


@pytest.mark.parametrize('name, value', [
    ('X-A', 'b'), ('X-A', 'a\tb'), ('X-A', 'caf\u00e9'), ('X-A', 'a\x9bb'),
    ('X-A', 'a\x85b'), ('X-A', 'a\rb'), ('X-A', 'a\nb'), ('X-A', 'a\x00b'),
    ('X-A', 'a\x0bb'), ('X-A', 'a\x7f'), ('X-A', '\u20ac'), ('X-A', '\udcff'),
    ('X-A\n', 'b'), ('X-A\r', 'b'), ('X\x00A', 'b'), ('X\x7fA', 'b'),
    ('X\x9bA', 'b'), ('X A', 'b'), ('', 'b'), ("X-A!#$%&'*+.^_`|~", 'b'),
])
def test_parse_header_refuses_what_the_package_refuses(name: str,
                                                       value: str) -> None:
    """-H refuses exactly what _checks.header_name and header_value
    refuse, as a usage error."""
    refused = _refused(lambda: _checks.header_value(
        _checks.header_name(name), value))
    if not refused:
        assert cli_args.parse_header(f'{name}: {value}') == (name, value)
        return
    with pytest.raises(cli_args.UsageError, match=r'^invalid header '):
        cli_args.parse_header(f'{name}: {value}')


@pytest.mark.parametrize('header', [
    'X-Secret: s3cr3t\r\nX-Injected: 1', 'X-Secret: s3cr3t\x00',
    'X-Secret: s3cr3t\x1b[0m', 'X-Secret: s3cr3t\u20ac',
    'X-Secret: s3cr3t\udcff'])
def test_refused_header_value_is_never_shown(header: str) -> None:
    """A -H value that cannot be sent is a usage error naming the header,
    never showing the value (it may be a secret)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    code = _cli.main(['-H', header, 'http://127.0.0.1:9/'],
                     _cli.Streams(io.BytesIO(), stdout, stderr))
    assert code == _cli.EXIT_USAGE
    assert stderr.getvalue().startswith(
        "python -m sprockets.mixins.http: error: invalid header "
        "'X-Secret': ")
    assert 's3cr3t' not in stderr.getvalue()


@pytest.mark.parametrize('method', [
    'GET', 'purge', 'M-SEARCH', 'GET\n', 'GET ', ' GET', 'G\u00c9T', '',
    'GET\r\nX: y', 'GE(T'])
def test_method_refuses_what_the_package_refuses(method: str) -> None:
    """-X refuses exactly what _checks.method refuses."""
    argv = ['-X', method, 'http://127.0.0.1/']
    if _refused(lambda: _checks.method(method)):
        with pytest.raises(cli_args.UsageError, match='invalid method'):
            cli_args.parse_args(argv)
    else:
        assert cli_args.parse_args(argv).method == method


@pytest.mark.parametrize('option, value, refused', [
    ('--timeout', '0', False), ('--timeout', '-0.5', True),
    ('--timeout', '-inf', True), ('--deadline', '0', True),
    ('--deadline', '0.001', False), ('--deadline', '-1', True),
    ('--retry-timeout', '0', False), ('--retry-timeout', '-1', True),
    ('--retry-timeout', '-inf', True), ('--timeout', 'inf', True),
    ('--deadline', 'nan', True), ('--retry-timeout', '1000000', False),
])
def test_seconds_are_checked_by_the_package_rule(option: str, value: str,
                                                 refused: bool) -> None:
    """The number-of-seconds options are checked as the command line is
    parsed, by _checks.seconds (and the MAX_SECONDS cap)."""
    argv = [f'{option}={value}', 'http://127.0.0.1/']
    if refused:
        with pytest.raises(cli_args.UsageError, match=f'^{option} must be '):
            cli_args.parse_args(argv)
    else:
        cli_args.parse_args(argv)


@pytest.mark.parametrize('text, keep_lines, expected', [
    ('plain', False, 'plain'),
    ('a\tb', False, 'a\tb'),
    ('\x1b[2J\x07\x00\x7f', False, '\\x1b[2J\\x07\\x00\\x7f'),
    ('\u009b31m\u0080\u009f\u00a0', False, '\\x9b31m\\x80\\x9f\u00a0'),
    ('a\nb\r\n', False, 'a\\x0ab\\x0d\\x0a'),
    ('a\nb\r\nc\rd\te', True, 'a\nb\r\nc\\x0dd\te'),
    ('\x0b\x0c\x1f\u0085', True, '\\x0b\\x0c\\x1f\\x85'),
    ('caf\u00e9 \u20ac', True, 'caf\u00e9 \u20ac'),
])
def test_escape_controls(text: str, keep_lines: bool, expected: str) -> None:
    """C0 controls but tab, DEL and C1 controls become \\xNN; with
    keep_lines, LF and CR LF stay too."""
    assert cli_render.escape_controls(text, keep_lines=keep_lines) == expected


def _record(**fields: typing.Any) -> http.AttemptRecord:
    return http.AttemptRecord(**{'number': 1, 'started': 0.0, **fields})


@pytest.mark.parametrize('record, expected', [
    (_record(status=200, duration=0.0042),
     'attempt 1: 200 in 0.004 s'),
    (_record(number=2, status=503, duration=0.01, delay=1.266,
             delay_reason='backoff'),
     'attempt 2: 503 in 0.010 s -> retrying in 1.27 s (backoff)'),
    (_record(status=429, delay=1.0, delay_reason='retry-after'),
     'attempt 1: 429 in 0.000 s -> retrying in 1.00 s (Retry-After)'),
    (_record(exception=ConnectionRefusedError(111, 'Connection refused')),
     'attempt 1: ConnectionRefusedError ([Errno 111] Connection refused) '
     'in 0.000 s'),
    (_record(exception=TimeoutError()), 'attempt 1: TimeoutError in 0.000 s'),
    (_record(exception=OSError('bad \x9b2J\x1b[0m\x00')),
     'attempt 1: OSError (bad \\x9b2J\\x1b[0m\\x00) in 0.000 s'),
])
def test_attempt_line(record: http.AttemptRecord, expected: str) -> None:
    """One stable, readable line per attempt."""
    assert cli_timeline.attempt_line(record) == expected


@pytest.mark.parametrize('arguments, expected', [
    (('success', 3, 2.2851, 200),
     'stop: success after 3 attempts in 2.285 s (final status 200)'),
    (('attempts-exhausted', 1, 0.002, None),
     'stop: attempts-exhausted after 1 attempt in 0.002 s (no response)'),
    (('attempts-exhausted', 2, 0.002, None, 503),
     'stop: attempts-exhausted after 2 attempts in 0.002 s (last status '
     '503; the final attempt got no response)'),
])
def test_stop_line(arguments: typing.Tuple[typing.Any, ...],
                   expected: str) -> None:
    """The last line names the stop reason, attempts and duration."""
    assert cli_timeline.stop_line(*arguments) == expected


class FakeClock:
    """A monotonic clock that only the fake sleep moves."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: typing.List[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_countdown_on_a_terminal() -> None:
    """On a terminal the wait ticks by 0.1 s with a countdown line."""
    stream, clock = io.StringIO(), FakeClock()
    line = cli_timeline.Timeline(stream, tty=True, clock=clock)
    line.attempt(_record(status=503, delay=0.35, delay_reason='backoff'))
    asyncio.run(line.wait(0.35, clock.sleep))
    assert sum(clock.sleeps) == pytest.approx(0.35)
    assert 4 <= len(clock.sleeps) <= 5
    assert all(tick <= cli_timeline.COUNTDOWN_TICK for tick in clock.sleeps)
    plain = 'attempt 1: 503 in 0.000 s -> retrying in 0.35 s (backoff)'
    first, *frames, last = stream.getvalue().split('\r')
    assert first == plain
    left = [float(frame.rstrip().rpartition(': ')[2].split()[0])
            for frame in frames]
    assert all(frame.startswith(f'{plain}: ') for frame in frames)
    assert left[0] == pytest.approx(0.35, abs=0.051)
    assert left == sorted(left, reverse=True)
    assert len(left) == len(clock.sleeps)
    assert last.rstrip(' \n') == plain
    assert last.endswith('\n')


def test_no_countdown_off_a_terminal() -> None:
    """Off a terminal the line is written once and slept once."""
    stream, clock = io.StringIO(), FakeClock()
    line = cli_timeline.Timeline(stream, tty=False, clock=clock)
    line.attempt(_record(status=503, delay=2.5, delay_reason='backoff'))
    asyncio.run(line.wait(2.5, clock.sleep))
    assert clock.sleeps == [2.5]
    assert stream.getvalue() == (
        'attempt 1: 503 in 0.000 s -> retrying in 2.50 s (backoff)\n')


@pytest.mark.parametrize('value, expected', [
    (b'\x00\xff', {'$base64': 'AP8='}),
    ({b'k': 1}, {'$base64:aw==': 1}),
    ({1: [b'']}, {1: [{'$base64': ''}]}),
    (msgpack.Timestamp(0), '1970-01-01T00:00:00+00:00'),
    (msgpack.ExtType(5, b'x'), {'$ext': 5, '$base64': 'eA=='}),
    ([None, True, 1.5, 'a'], [None, True, 1.5, 'a']),
])
def test_to_jsonable(value: typing.Any, expected: typing.Any) -> None:
    """What JSON cannot show gets a clear, documented marker."""
    assert cli_render.to_jsonable(value) == expected


def _response(body: bytes, content_type: typing.Optional[str]
              ) -> http.HTTPResponse:
    headers = httputil.HTTPHeaders()
    if content_type is not None:
        headers['Content-Type'] = content_type
    response = http.HTTPResponse(simplify_error_response=False)
    response.append_response(httpclient.HTTPResponse(
        httpclient.HTTPRequest('http://127.0.0.1/'), 200, headers=headers,
        buffer=io.BytesIO(body)))
    return response


@pytest.mark.parametrize('body, content_type, text', [
    (b'{"a":1}', 'application/json', '{\n  "a": 1\n}\n'),
    (b'{"a":1}', 'application/problem+json', '{\n  "a": 1\n}\n'),
    (msgpack.packb([1]), 'application/x-msgpack', '[\n  1\n]\n'),
    ('é'.encode('utf-16'), 'text/plain; charset=utf-16', 'é\n'),
    (b'<a/>', 'application/xml', '<a/>\n'),
    (b'<a/>', 'application/atom+xml', '<a/>\n'),
    (b'plain\n', None, 'plain\n'),
    (b'{bad', 'application/json', '{bad\n'),
])
def test_render_text(body: bytes, content_type: typing.Optional[str],
                     text: str) -> None:
    """JSON and msgpack are pretty-printed; textual types are decoded."""
    assert cli_render.render_body(_response(body, content_type)).text == text


@pytest.mark.parametrize('body, content_type', [
    (b'\x89PNG', 'image/png'),
    (b'a\x00b', None),
    (b'\xff\xfe', None),
    (b'\xc1', 'application/msgpack'),
])
def test_render_binary(body: bytes,
                       content_type: typing.Optional[str]) -> None:
    """Anything else is binary, kept as received."""
    assert cli_render.render_body(_response(body, content_type)).data == body


@pytest.mark.parametrize('body, content_type, shown', [
    (b'[' * DEEP + b']' * DEEP, 'application/json',
     cli_render.Rendered(text='[' * DEEP + ']' * DEEP + '\n',
                         note='the json body is nested too deeply to '
                              'pretty-print; shown as received')),
    (b'\x91' * DEEP + b'\x01', 'application/msgpack',
     cli_render.Rendered(data=b'\x91' * DEEP + b'\x01',
                         note='the msgpack body is nested too deeply to '
                              'pretty-print; shown as received')),
])
def test_render_too_deep(body: bytes, content_type: str,
                         shown: cli_render.Rendered) -> None:
    """A body that decodes but is too deep to print is shown raw."""
    assert cli_render.render_body(_response(body, content_type)) == shown


def test_render_names_an_error_without_a_message() -> None:
    """An undecodable body's note names the error's class if no message."""
    shown = cli_render.render_body(_response(b'\xc1', 'application/msgpack'))
    assert shown.note == ('the body is not valid msgpack (FormatError); '
                          'shown as received')


def test_render_notes_an_undecodable_json_body() -> None:
    """A JSON body that does not parse is shown as text with a note."""
    shown = cli_render.render_body(_response(b'{bad', 'application/json'))
    assert shown.note is not None
    assert shown.note.startswith('the body is not valid json')


def _final(status: typing.Optional[int], stop_reason: str,
           records: int = 1) -> http.HTTPResponse:
    response = _response(b'', None) if status is not None else (
        http.HTTPResponse())
    if response.raw is not None and status is not None:
        response.raw.code = status
    for number in range(1, records + 1):
        response.records.append(http.AttemptRecord(
            number, 0.0, status=status,
            exception=None if status else ConnectionResetError()))
    response.finish(stop_reason)
    return response


def _status_then_no_response(status: int) -> http.HTTPResponse:
    response = _final(status, 'attempts-exhausted')
    response.records.append(http.AttemptRecord(
        2, 0.0, exception=ConnectionResetError()))
    return response


@pytest.mark.parametrize('response, code', [
    (_final(200, 'success'), _cli.EXIT_OK),
    (_final(304, 'success'), _cli.EXIT_OK),
    (_final(302, 'too-many-redirects'), _cli.EXIT_ERROR_STATUS),
    (_final(404, 'not-retryable'), _cli.EXIT_ERROR_STATUS),
    (_final(503, 'attempts-exhausted', 3), _cli.EXIT_ERROR_STATUS),
    (_final(None, 'attempts-exhausted', 2), _cli.EXIT_NO_RESPONSE),
    (_final(None, 'not-retryable', 0), _cli.EXIT_NO_RESPONSE),
    (_status_then_no_response(503), _cli.EXIT_ERROR_STATUS),
])
def test_exit_code(response: http.HTTPResponse, code: int) -> None:
    """2xx/3xx exit 0, an error, redirect loop or a status then a
    transport failure 1, no response at all 3."""
    assert _cli.exit_code(response) == code


def test_bad_http_max_clients_is_a_usage_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The package's ValueError for HTTP_MAX_CLIENTS is one line, exit 2."""
    monkeypatch.setenv('HTTP_MAX_CLIENTS', 'many')
    stderr = io.StringIO()
    code = _cli.main(['--max-attempts', '1', 'http://127.0.0.1:9/'],
                     _cli.Streams(io.BytesIO(), io.StringIO(), stderr))
    assert code == _cli.EXIT_USAGE
    assert stderr.getvalue() == (
        'python -m sprockets.mixins.http: error: HTTP_MAX_CLIENTS must be a '
        "whole number, got 'many' (see --help)\n")


def test_demo_document_has_bytes() -> None:
    """The demo's msgpack document has bytes, to show the marker."""
    assert (base64.b64encode(cli_demo.DEMO_ORDER['thumbnail'])
            == b'iVBORw0KGgo=')
