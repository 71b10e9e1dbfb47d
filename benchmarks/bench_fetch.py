"""What sprockets.mixins.http costs on top of a bare AsyncHTTPClient.

Starts a tornado server on 127.0.0.1 in this process and measures, for the
simple and the curl AsyncHTTPClient:

* requests per second and the mean time per call of ``http_fetch`` against
  a bare ``AsyncHTTPClient.fetch`` on the same 200 JSON endpoint, one call
  at a time and then many at once;
* the cost of a pure ``RetryPolicy.decide`` call;
* the cost of ``HTTPResponse.body`` decoding a 10 KB JSON and msgpack
  document, against bare ``json.loads`` and ``msgpack.unpackb``;
* the memory that 1000 retained responses hold (tracemalloc).

Loopback only; every loop is bounded in count.  Run it with::

    python benchmarks/bench_fetch.py            # N=2000, 200 concurrent
    python benchmarks/bench_fetch.py -n 200     # a quick look

"""
from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import logging
import sys
import time
import timeit
import tracemalloc
import typing

import msgpack
from tornado import httpclient, httpserver, httputil, testing, web

from sprockets.mixins import http

IMPLEMENTATIONS = {
    'simple': 'tornado.simple_httpclient.SimpleAsyncHTTPClient',
    'curl': 'tornado.curl_httpclient.CurlAsyncHTTPClient',
}
PAYLOAD = {'id': 42, 'name': 'sprocket', 'tags': ['a', 'b', 'c'],
           'active': True, 'ratio': 0.25}
Row = typing.Tuple[str, ...]
ROUNDS = 4


class JSONHandler(web.RequestHandler):
    """The upstream: 200 with a small JSON document."""

    def get(self) -> None:
        self.write(PAYLOAD)


class Caller(http.HTTPClientMixin):
    """A mixin user outside any handler."""


def document(size: int, encode: typing.Callable[[typing.Any], bytes]
             ) -> typing.Dict[str, typing.Any]:
    """Return a document that `encode` turns into about `size` bytes."""
    items: typing.List[typing.Dict[str, typing.Any]] = []
    while len(encode({'items': items, 'count': len(items)})) < size:
        index = len(items)
        items.append({'id': index, 'name': f'item-{index}',
                      'price': index * 1.25, 'tags': ['x', 'y'],
                      'available': index % 2 == 0})
    return {'items': items, 'count': len(items)}


Factory = typing.Callable[[], typing.Awaitable[typing.Any]]


async def timed(coro_factory: Factory, count: int) -> float:
    """Await `count` calls one after another; return the seconds taken."""
    start = time.perf_counter()
    for _ in range(count):
        await coro_factory()
    return time.perf_counter() - start


async def timed_concurrent(coro_factory: Factory, count: int) -> float:
    """Await `count` calls at once; return the seconds taken."""
    start = time.perf_counter()
    await asyncio.gather(*(coro_factory() for _ in range(count)))
    return time.perf_counter() - start


def serve_json(implementation: str) -> typing.Tuple[
        httpserver.HTTPServer, str, httpclient.AsyncHTTPClient]:
    """Start the JSON endpoint on loopback with `implementation` as the
    AsyncHTTPClient; return the server, its URL and the shared client."""
    httpclient.AsyncHTTPClient.configure(IMPLEMENTATIONS[implementation])
    sock, port = testing.bind_unused_port()
    server = httpserver.HTTPServer(web.Application([('/', JSONHandler)]))
    server.add_sockets([sock])
    http.DEFAULT_BUDGET.reset()
    return server, f'http://127.0.0.1:{port}/', httpclient.AsyncHTTPClient()


async def measure_fetch(implementation: str, count: int, concurrency: int
                        ) -> typing.List[Row]:
    """Time bare fetch against http_fetch with one implementation."""
    server, url, client = serve_json(implementation)
    caller = Caller()

    async def bare() -> httpclient.HTTPResponse:
        return await client.fetch(url)

    async def mixin() -> http.HTTPResponse:
        response = await caller.http_fetch(url)
        if response.code != 200:
            raise RuntimeError(f'unexpected {response!r}')
        return response

    rows: typing.List[Row] = []
    try:
        for factory in (bare, mixin):  # warm up connections and caches
            await timed(factory, min(50, count))
        # interleaved rounds, best of each: background load on the machine
        # then slows both sides alike instead of whichever ran second
        rounds = max(1, min(ROUNDS, count))
        size = count // rounds
        factories: typing.Dict[str, Factory] = {
            'bare fetch': bare, 'http_fetch': mixin}
        best = dict.fromkeys(factories, float('inf'))
        best_concurrent = dict.fromkeys(factories, float('inf'))
        for _ in range(rounds):
            for name, call in factories.items():
                best[name] = min(best[name],
                                 await timed(call, size) / size)
                best_concurrent[name] = min(
                    best_concurrent[name],
                    await timed_concurrent(call, concurrency))
        for name in factories:
            rows.append((implementation, name, f'{1 / best[name]:,.0f}',
                         f'{best[name] * 1e6:,.0f}',
                         f'{concurrency / best_concurrent[name]:,.0f}'))
        overhead = best['http_fetch'] - best['bare fetch']
        rows.append((implementation, 'overhead', '',
                     f'{overhead * 1e6:+,.0f}', ''))
    finally:
        client.close()
        server.stop()
        await server.close_all_connections()
        httpclient.AsyncHTTPClient.configure(None)
    return rows


async def measure_memory(implementation: str, count: int) -> Row:
    """Return the bytes that `count` retained responses hold."""
    server, url, client = serve_json(implementation)
    caller = Caller()
    try:
        await caller.http_fetch(url)  # connections and caches first
        gc.collect()
        tracemalloc.start()
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        kept = [await caller.http_fetch(url) for _ in range(count)]
        gc.collect()
        retained, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        bodies = sum(len(response.raw.body) for response in kept
                     if response.raw is not None)
    finally:
        client.close()
        server.stop()
        await server.close_all_connections()
        httpclient.AsyncHTTPClient.configure(None)
    return (implementation, f'{count}',
            f'{(retained - before) / 1024:,.0f}',
            f'{(peak - before) / 1024:,.0f}',
            f'{(retained - before) / count:,.0f}',
            f'{bodies / count:,.0f}')


def per_call(statement: typing.Callable[[], typing.Any],
             number: int) -> float:
    """Return the best of five runs of `number` calls, in microseconds."""
    runs = timeit.repeat(statement, number=number, repeat=5)
    return min(runs) / number * 1e6


def measure_cpu(number: int) -> typing.List[Row]:
    """Time the pure policy and the body decoding."""
    rows: typing.List[Row] = []
    policy = http.RetryPolicy()
    exact = http.RetryPolicy(jitter=None)
    for label, active, status in (
            ('decide: 200, stop', policy, 200),
            ('decide: 503, retry (full jitter)', policy, 503),
            ('decide: 503, retry (jitter=None)', exact, 503)):
        def decide(p: http.RetryPolicy = active, s: int = status) -> object:
            return p.decide(attempt=1, method='GET', idempotent=True,
                            status=s)
        rows.append((label, f'{per_call(decide, number):.2f}'))
    rows.append(('parse_retry_after(HTTP-date)', f'''{per_call(
        lambda: http.parse_retry_after('Wed, 21 Oct 2026 07:28:00 GMT',
                                       time.time()), number):.2f}'''))

    codecs: typing.Dict[str, typing.Callable[[typing.Any], bytes]] = {
        'application/json': lambda value: json.dumps(value).encode(),
        'application/msgpack': lambda value: typing.cast(
            bytes, msgpack.packb(value, use_bin_type=True)),
    }
    request = httpclient.HTTPRequest('http://127.0.0.1/')
    for content_type, encode in codecs.items():
        doc = document(10 * 1024, encode)
        data = encode(doc)
        headers = httputil.HTTPHeaders({'Content-Type': content_type})

        def decode(data: bytes = data,
                   headers: httputil.HTTPHeaders = headers) -> object:
            response = http.HTTPResponse()
            response.append_response(httpclient.HTTPResponse(
                request, 200, headers=headers, buffer=io.BytesIO(data),
                effective_url=request.url))
            return response.body

        if decode() != doc:
            raise RuntimeError(f'{content_type} did not round-trip')
        bare: typing.Callable[[], object]
        if content_type == 'application/json':
            def bare(data: bytes = data) -> object:
                return json.loads(data.decode('utf-8'))
        else:
            def bare(data: bytes = data) -> object:
                return msgpack.unpackb(data, raw=False)
        name = content_type.split('/')[1]
        rows.append((f'HTTPResponse.body, {len(data):,} B {name}',
                     f'{per_call(decode, number // 10):.2f}'))
        rows.append((f'  bare {name} decode, same bytes',
                     f'{per_call(bare, number // 10):.2f}'))
    return rows


def table(header: Row, rows: typing.Sequence[Row], left: int = 1) -> str:
    """Format `rows` under `header` as a plain-text table; the first
    `left` columns are text, the others numbers."""
    widths = [max(len(str(row[i])) for row in (header, *rows))
              for i in range(len(header))]
    lines = []
    for index, row in enumerate((header, *rows)):
        cells = [cell.ljust(width) if column < left or not index else
                 cell.rjust(width)
                 for column, (cell, width) in enumerate(zip(row, widths))]
        lines.append('  '.join(cells).rstrip())
        if index == 0:
            lines.append('  '.join('-' * width for width in widths))
    return '\n'.join(lines)


def main(argv: typing.Optional[typing.Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('-n', '--count', type=int, default=2000,
                        help='sequential calls per measurement')
    parser.add_argument('-c', '--concurrency', type=int, default=200,
                        help='calls at once per measurement')
    parser.add_argument('--retained', type=int, default=1000,
                        help='responses kept for the memory measurement')
    args = parser.parse_args(argv)
    for name in ('count', 'concurrency', 'retained'):
        if not 1 <= getattr(args, name) <= 20000:
            parser.error(f'--{name} must be from 1 to 20000')
    logging.getLogger('sprockets.mixins.http').setLevel(logging.ERROR)
    try:
        import pycurl  # noqa: F401
    except ImportError:
        implementations = ['simple']
        print('pycurl is not installed: measuring the simple client only')
    else:
        implementations = list(IMPLEMENTATIONS)

    started = time.perf_counter()
    print(f'Python {sys.version.split()[0]}, tornado '
          f'{__import__("tornado").version}, sprockets.mixins.http '
          f'{http.__version__}; N={args.count}, '
          f'concurrency={args.concurrency}\n')

    fetch_rows: typing.List[Row] = []
    for implementation in implementations:
        fetch_rows.extend(asyncio.run(measure_fetch(
            implementation, args.count, args.concurrency)))
    print(table(('client', 'call', 'seq req/s', 'seq us/call',
                 f'{args.concurrency} at once req/s'), fetch_rows, left=2))
    print(f'\nBest of {ROUNDS} interleaved rounds of N/{ROUNDS} sequential '
          'calls and of the concurrent batch;\n"overhead" is http_fetch\'s '
          'mean time per call minus bare fetch\'s.\n')

    print(table(('pure CPU', 'us/call'), measure_cpu(20000)))
    print()

    memory_rows = [asyncio.run(measure_memory(implementation, args.retained))
                   for implementation in implementations]
    print(table(('client', 'responses', 'retained KiB', 'peak KiB',
                 'B/response', 'body B/response'), memory_rows))
    print(f'\ntotal {time.perf_counter() - started:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
