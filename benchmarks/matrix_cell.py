"""One cell of ``matrix.py`` in a fresh process: one client, one workload.

Run by ``matrix.py`` with the interpreter of the client's venv (the
project's, or the 2.6.0 one), a JSON spec as its only argument, and one
JSON line on stdout.  It imports only the standard library, tornado,
msgpack and the client it measures, so it runs under either venv.  The
tornado implementations are ``simple``, ``curl`` and ``aiohttp`` (the
package's ``AiohttpAsyncHTTPClient``, configured as curl's is; only the
project's venv has it).

A cell pins itself to its core, builds the client, checks one call
(status, decoded document, attempts), warms up at the cell's concurrency,
then times a loop bounded by a call count and by seconds, whichever ends
first, with ``resource.getrusage(RUSAGE_SELF)`` (user + system CPU)
around it.  A mixin cell also counts the attempts of every call of the
warm-up and the timed loop (``len(response)``) and reports attempts per
call: a transport that retried behind the scenes shows.

With ``"capture": true`` it sends its workload's requests once to a
recording server in the same process instead, and prints the request
heads received, so that ``matrix.py`` can check that a raw client sends
what the project sends.

"""
from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import resource
import sys
import time
import types
import typing

IMPLEMENTATIONS = {
    'simple': 'tornado.simple_httpclient.SimpleAsyncHTTPClient',
    'curl': 'tornado.curl_httpclient.CurlAsyncHTTPClient',
    'aiohttp': 'sprockets.mixins.http.aiohttp_client.AiohttpAsyncHTTPClient',
}
RETRY_HEADER = 'X-Retry-Attempt'
Spec = typing.Dict[str, typing.Any]
Call = typing.Callable[[], typing.Awaitable[typing.Any]]
Check = typing.Callable[[], typing.Awaitable[typing.Tuple[typing.Any, int]]]
Tally = typing.Dict[str, int]


def decoder(spec: Spec) -> typing.Callable[[bytes], typing.Any]:
    """How a raw client decodes the body: what the project does for the
    Content-Type the upstream sends."""
    if spec['format'] == 'msgpack':
        import msgpack

        def unpack(body: bytes) -> typing.Any:
            return msgpack.unpackb(body, raw=False)
        return unpack
    return json.loads


def tornado_raw(spec: Spec) -> Call:
    """Bare ``AsyncHTTPClient().fetch`` with the project's headers."""
    from tornado import httpclient

    decode = decoder(spec)
    url, headers = spec['url'], dict(spec['headers'])
    retried = dict(headers, **{RETRY_HEADER: '2'})
    options = {'decompress_response': False, 'follow_redirects': False,
               'raise_error': False, 'validate_cert': not spec['https']}
    client = httpclient.AsyncHTTPClient()

    async def call() -> typing.Any:
        response = await client.fetch(url, headers=headers, **options)
        if spec['retry']:
            if response.code != 503:
                raise RuntimeError(f'first attempt: {response.code}')
            response = await client.fetch(url, headers=retried, **options)
        if response.code != 200:
            raise RuntimeError(f'{response.code} {response.error}')
        return decode(response.body)
    return call


def mixin(spec: Spec) -> typing.Tuple[Call, Check, Tally]:
    """``HTTPClientMixin().http_fetch(url)`` then ``.body``: the project
    or 2.6.0, whichever this interpreter imports; and the count of
    attempts the calls made."""
    from sprockets.mixins import http

    url = spec['url']
    kwargs = {'validate_cert': False} if spec['https'] else {}
    caller: typing.Callable[[], typing.Any] = http.HTTPClientMixin
    if spec['retry'] and spec['client'] == 'project':
        class InstantRetry(http.HTTPClientMixin):
            """The default policy, its sleeps instant and no budget (the
            budget would, by design, stop most of these retries)."""

            async def _http_req_sleep(self, seconds: float) -> None:
                return None

            def _http_req_retry_budget(self, policy: typing.Any) -> None:
                return None
        caller = InstantRetry
    elif spec['retry']:
        # what 2.x users' own test suites do to skip the sleeps: replace
        # the package's module attribute ``asyncio``
        async def sleep(*_: typing.Any, **__: typing.Any) -> None:
            return None
        instant = types.SimpleNamespace(**vars(asyncio))
        instant.sleep = sleep
        setattr(http, 'asyncio', instant)  # noqa: B010

    tally: Tally = {'attempts': 0}

    async def call() -> typing.Any:
        response = await caller().http_fetch(url, **kwargs)
        tally['attempts'] += len(response)
        if response.code != 200:
            raise RuntimeError(f'{response.code} {response.exceptions}')
        return response.body

    async def check() -> typing.Tuple[typing.Any, int]:
        response = await caller().http_fetch(url, **kwargs)
        return response.body, len(response)
    return call, check, tally


def aiohttp_raw(spec: Spec) -> typing.Tuple[Call, typing.Any]:
    """Bare aiohttp, a pooled connector, the project's headers."""
    import aiohttp

    decode = decoder(spec)
    url, headers = spec['url'], dict(spec['headers'])
    retried = dict(headers, **{RETRY_HEADER: '2'})
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(
        limit=spec['max_clients'], ssl=not spec['https']))

    async def call() -> typing.Any:
        if spec['retry']:
            async with session.get(url, headers=headers) as response:
                await response.read()
                if response.status != 503:
                    raise RuntimeError(f'first attempt: {response.status}')
        async with session.get(url, headers=retried if spec['retry']
                               else headers) as response:
            body = await response.read()
            if response.status != 200:
                raise RuntimeError(f'{response.status}')
        return decode(body)
    return call, session


async def bounded(call: Call, concurrency: int, calls: int,
                  seconds: float) -> int:
    """Run `call` from `concurrency` workers until `calls` have started or
    `seconds` have passed; return how many completed."""
    started = done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal started, done
        while started < calls and time.perf_counter() < deadline:
            started += 1
            await call()
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def build(spec: Spec) -> typing.Tuple[Call, Check, typing.Any,
                                      typing.Optional[Tally]]:
    """The cell's call, a call that also says how many attempts it made,
    what to close at the end, and the attempts counted (mixin cells)."""
    from tornado import httpclient

    if spec['impl']:
        httpclient.AsyncHTTPClient.configure(
            IMPLEMENTATIONS[spec['impl']], max_clients=spec['max_clients'])
    session = None
    if spec['client'] in ('project', 'v2'):
        call, check, tally = mixin(spec)
        return call, check, None, tally
    if spec['client'] == 'raw':
        call = tornado_raw(spec)
    else:
        call, session = aiohttp_raw(spec)
    attempts = 2 if spec['retry'] else 1

    async def checked() -> typing.Tuple[typing.Any, int]:
        return await call(), attempts
    return call, checked, session, None


def cpu_pressure() -> typing.Optional[float]:
    """Microseconds that some task on this machine waited for a CPU, so
    far (Linux PSI), or None where the kernel does not say."""
    try:
        with open('/proc/pressure/cpu') as pressure:
            some = pressure.readline().split()
    except OSError:
        return None
    return float(some[-1].split('=')[1])


async def measure(spec: Spec) -> typing.Dict[str, typing.Any]:
    """Check one call, warm up, time a bounded loop.

    The bounds: a warm-up of at most ``warmup_calls`` calls, fewer when
    one call costs so much that they would take over twice
    ``warmup_seconds`` of CPU; a timed loop of at most ``calls`` calls or
    ``seconds``; but when one call costs over 100 ms of CPU and
    `concurrency` calls would cost more than four times ``seconds``, only
    as many calls as fit in that, with as many in flight (reported as
    ``concurrency``): at 50 in flight a loop cannot end before 50 calls
    have.
    """
    call, check, session, tally = build(spec)
    concurrency = spec['concurrency']
    try:
        cpu, started = cpu_seconds(), time.perf_counter()
        body, attempts = await check()
        first_s = time.perf_counter() - started
        first_cpu = cpu_seconds() - cpu
        if (not isinstance(body, dict)
                or body.get('count') != spec['count']):
            raise RuntimeError(f'unexpected body: {str(body)[:200]}')
        if attempts != (2 if spec['retry'] else 1):
            raise RuntimeError(f'{attempts} attempts')
        if spec['retry'] and first_s > 1:
            raise RuntimeError(f'the retry slept: {first_s:.1f} s')
        if tally is not None:
            tally['attempts'] = 0
        warm_calls = max(1, min(spec['warmup_calls'], int(
            2 * spec['warmup_seconds'] / max(first_cpu, 1e-6))))
        cpu = cpu_seconds()
        warm = await bounded(call, min(concurrency, warm_calls), warm_calls,
                             spec['warmup_seconds'])
        per_call = (cpu_seconds() - cpu) / warm
        calls, budget = spec['calls'], 4 * spec['seconds']
        if per_call > 0.1 and per_call * concurrency > budget:
            calls = max(3, int(budget / per_call))
            concurrency = min(concurrency, calls)
        del body
        gc.collect()
        pressure = cpu_pressure()
        cpu, wall = cpu_seconds(), time.perf_counter()
        calls = await bounded(call, concurrency, calls, spec['seconds'])
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        if pressure is not None:
            pressure = (typing.cast(float, cpu_pressure()) - pressure) \
                / 1e6 / wall
    finally:
        if session is not None:
            await session.close()
    # attempts per call over the warm-up and the timed loop: the
    # expected 1 (2 on the retry path), or more where a transport failed
    # and the engine retried
    made = (None if tally is None
            else tally['attempts'] / (warm + calls))
    return {'calls': calls, 'concurrency': concurrency,
            'warmup_calls': warm, 'wall_s': wall, 'cpu_s': cpu,
            'cpu_us': cpu / calls * 1e6, 'calls_per_s': calls / wall,
            'attempts': attempts, 'attempts_per_call': made,
            'cpu_pressure': pressure,
            'peak_rss_mib': resource.getrusage(
                resource.RUSAGE_SELF).ru_maxrss / 1024}


# -- capture mode --------------------------------------------------------

async def capture(spec: Spec) -> typing.Dict[str, typing.Any]:
    """Send the workload's requests to a recording server in this
    process; return the heads it received, Host left out."""
    heads: typing.List[typing.List[str]] = []
    retry_lower = RETRY_HEADER.lower().encode()

    async def handle(reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b'\r\n\r\n')
                lines = head.decode('latin-1').split('\r\n')
                heads.append([lines[0], *sorted(
                    line for line in lines[1:]
                    if line and not line.lower().startswith('host:'))])
                if (spec['retry']
                        and retry_lower not in head.lower()):
                    status, body, kind = b'503 Service Unavailable', \
                        b'', b'text/plain'
                else:
                    status, body, kind = b'200 OK', spec['body'].encode(
                        'latin-1'), spec['content_type'].encode()
                writer.write(b'HTTP/1.1 ' + status + b'\r\nContent-Type: '
                             + kind + b'\r\nContent-Length: '
                             + str(len(body)).encode() + b'\r\n\r\n'
                             + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, '127.0.0.1', 0)
    port = server.sockets[0].getsockname()[1]
    spec = dict(spec, https=False,
                url=f'http://127.0.0.1:{port}{spec["path"]}')
    try:
        call, _, session, _ = build(spec)
        try:
            await asyncio.wait_for(call(), 30)
        finally:
            if session is not None:
                await session.close()
    finally:
        server.close()
    return {'heads': heads}


def versions(spec: Spec) -> typing.Dict[str, str]:
    import tornado

    found = {'python': sys.version.split()[0], 'tornado': tornado.version}
    if spec['impl'] == 'curl':
        import pycurl
        found['pycurl'] = pycurl.version
    if spec['client'] in ('project', 'v2'):
        from sprockets.mixins import http
        found['sprockets.mixins.http'] = http.__version__
    if spec['client'] == 'aiohttp' or spec['impl'] == 'aiohttp':
        import aiohttp
        found['aiohttp'] = aiohttp.__version__
    return found


def main() -> None:
    spec = json.loads(sys.argv[1])
    if spec.get('cpu') is not None:
        os.sched_setaffinity(0, {spec['cpu']})
    # a service's log handler, without a terminal behind it: WARNING lines
    # (a failed attempt) are formatted and written, to /dev/null
    logging.basicConfig(level=logging.WARNING,
                        stream=open(os.devnull, 'w'))  # noqa: SIM115
    if spec.get('capture'):
        result = asyncio.run(capture(spec))
    else:
        result = asyncio.run(measure(spec))
    result['versions'] = versions(spec)
    print(json.dumps(result))


if __name__ == '__main__':
    main()
