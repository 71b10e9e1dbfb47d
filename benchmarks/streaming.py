"""How live streaming is: first-chunk latency and peak memory of a large
body read through ``streaming_callback`` with the default three attempts.

Usage::

    python benchmarks/streaming.py [--mb 200] [--repeat 3]

An upstream in its own process on 127.0.0.1 sends the body in 64 KiB
writes.  Each measurement runs in a fresh process (so peak RSS is that
call's alone), on simple_httpclient and on curl_httpclient when pycurl
imports, repetitions interleaved; the table gives medians with min-max.

* ``first chunk ms``: from the call to the first chunk in the callback
* ``total s``: the whole call
* ``peak RSS MiB``: the process's peak resident memory minus its RSS
  just before the call

"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import pathlib
import resource
import socket
import statistics
import subprocess
import sys
import time
import typing

# the package of this checkout, whatever is installed
ENVIRONMENT = dict(os.environ, PYTHONPATH=os.pathsep.join(
    [str(pathlib.Path(__file__).resolve().parent.parent)]
    + ([os.environ['PYTHONPATH']] if os.environ.get('PYTHONPATH') else [])))
BLOCK = 65536
CLIENTS = {
    'simple': 'tornado.simple_httpclient.SimpleAsyncHTTPClient',
    'curl': 'tornado.curl_httpclient.CurlAsyncHTTPClient',
}


def serve(sock: socket.socket, megabytes: int) -> None:
    """The upstream: every GET gets `megabytes` MiB."""
    from tornado import httpserver, web

    class Big(web.RequestHandler):
        async def get(self) -> None:
            block = b'b' * BLOCK
            blocks = megabytes * 1024 * 1024 // BLOCK
            self.set_header('Content-Length', str(blocks * BLOCK))
            for _ in range(blocks):
                self.write(block)
                await self.flush()

    async def main() -> None:
        sock.setblocking(False)
        server = httpserver.HTTPServer(web.Application([('/', Big)]))
        server.add_sockets([sock])
        await asyncio.Event().wait()

    asyncio.run(main())


def rss_kib() -> int:
    with open('/proc/self/statm') as statm:
        return int(statm.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') \
            // 1024


def measure(url: str, implementation: str) -> typing.Dict[str, float]:
    """One call in this process: what the table shows."""
    from tornado import httpclient

    from sprockets.mixins import http

    # tornado's clients refuse a body over 100 MiB unless told otherwise,
    # streamed or not
    httpclient.AsyncHTTPClient.configure(implementation,
                                         max_body_size=1 << 40)
    first: typing.List[float] = []
    received = 0

    def collect(chunk: bytes) -> None:
        nonlocal received
        if not first:
            first.append(time.perf_counter())
        received += len(chunk)

    async def call() -> typing.Dict[str, float]:
        before = rss_kib()
        started = time.perf_counter()
        response = await http.HTTPClientMixin().http_fetch(
            url, streaming_callback=collect, request_timeout=300)
        ended = time.perf_counter()
        assert response.code == 200, response.exceptions
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {'first_ms': (first[0] - started) * 1000,
                'total_s': ended - started,
                'peak_mib': (peak - before) / 1024,
                'received_mib': received / 1024 / 1024}

    return asyncio.run(call())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--mb', type=int, default=200)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--measure', nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return
    clients = {}
    for name, implementation in CLIENTS.items():
        try:
            __import__(implementation.rsplit('.', 1)[0])
        except ImportError as error:
            print(f'{name}: skipped ({error})')
            continue
        clients[name] = implementation
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    sock.listen(128)
    url = f'http://127.0.0.1:{sock.getsockname()[1]}/'
    upstream = multiprocessing.get_context('fork').Process(
        target=serve, args=(sock, args.mb), daemon=True)
    upstream.start()
    results: typing.Dict[str, typing.List[typing.Dict[str, float]]] = {
        name: [] for name in clients}
    try:
        for _ in range(args.repeat):
            for name, implementation in clients.items():
                out = subprocess.run(
                    [sys.executable, __file__, '--measure', url,
                     implementation], capture_output=True, text=True,
                    timeout=600, check=True, env=ENVIRONMENT)
                results[name].append(json.loads(out.stdout))
    finally:
        upstream.terminate()
        upstream.join(5)
    print(f'{args.mb} MiB body, streaming_callback, default policy '
          f'(3 attempts), {args.repeat} runs each, median (min-max)')
    print(f'{"client":8} {"first chunk ms":>22} {"total s":>18} '
          f'{"peak RSS MiB":>20}')
    for name, runs in results.items():
        cells = []
        for key in ('first_ms', 'total_s', 'peak_mib'):
            values = [run[key] for run in runs]
            cells.append(f'{statistics.median(values):8.1f} '
                         f'({min(values):.1f}-{max(values):.1f})')
        print(f'{name:8} {cells[0]:>22} {cells[1]:>18} {cells[2]:>20}')


if __name__ == '__main__':
    main()
