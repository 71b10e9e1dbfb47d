"""A retry storm: what the retry policy does to an upstream that fails.

Usage::

    python benchmarks/retry_storm.py                  # about 45 s
    python benchmarks/retry_storm.py --client curl
    python benchmarks/retry_storm.py --warmup 10      # a full budget
        # first; about 65 s
    python benchmarks/retry_storm.py --retry-timeout 3 --outage 60 \\
        --recovered 10 --flaky 60    # the real default backoff: minutes

An upstream in its own process on 127.0.0.1 (a tornado server, pinned to
another core than the callers when there are two) goes through these
phases:

* ``healthy (warm-up)``, ``--warmup`` seconds (none by default): every
  request gets a 200, and the budget fills with what calls earn;
* ``outage``, ``--outage`` seconds: every request gets a 503;
* ``recovered``, ``--recovered`` seconds: every request gets a 200;
* ``10 % failures``, ``--flaky`` seconds: ``--failure-ratio`` of the
  requests get a 503, exactly that share of every thousand, in an order
  shuffled by a :class:`random.Random` seeded with ``--seed`` (the
  sequence of outcomes is fixed; which call meets which depends on the
  order requests arrive in).

``--callers`` coroutines (200 by default) call
``HTTPClientMixin().http_fetch`` in a loop, one call at a time each, a
new call every ``--interval`` seconds or as soon as the previous one
ends when it took longer (closed loop: a call that sleeps between
retries delays its caller's next call, as a handler waiting on it
would).  A call counts in the phase it started in.  The whole storm runs
once per policy, each against a fresh upstream:

* ``default``: ``RetryPolicy(retry_timeout=...)``, otherwise the defaults
  (3 attempts, full jitter, the process-wide ``DEFAULT_BUDGET``, reset
  before the run); its jitter is seeded with ``--seed``;
* ``2.x``: ``RetryPolicy(retry_timeout=..., jitter=None, budget=None)``,
  the 2.x schedule of 2.x's ``MAX_HTTP_RETRIES = 3`` attempts, sleeping
  exactly ``retry_timeout * 2 ** (n - 1)`` before retry *n*, with no
  budget.

The backoff base is shortened to ``--retry-timeout`` (0.1 s, against the
3 s default) so that a call in the outage ends well inside a phase and the
run stays under a minute; the budget keeps its defaults (a 10 s window, a
reserve of 10 retries per second of it, 0.2 of a retry earned per call),
so in an outage the budget allows about ``0.2 * calls + 100`` retries per
10 s: requests per call tend to 1.2 and the reserve weighs more the
fewer calls an outage has.  Real sleeps: this is a benchmark, not a test.

It prints, per policy and phase: calls, requests (attempts), requests per
call, the share of calls that ended ``ok``, the share stopped by the
budget and the requests per second the upstream saw; then the upstream's
requests per second and the calls per second the callers started in
successive ``--window`` second windows from the start of the outage, with
the requests per call since the outage began, which show how fast the
load falls; then whether issue 9's targets hold for the default policy
(requests per call in the outage at most 1.25, success at 10 % failures
at least 99.8 %).

The callers are a closed loop: while the 2.x schedule keeps a caller
asleep between retries it starts fewer calls.  When the callers' core is
saturated (the simple client opens a connection per request), the
upstream then sees about as many requests per second with either policy,
and the difference shows as requests per call (what each caller's own
traffic is multiplied by); with cheaper requests (curl keeps connections
alive) it shows in requests per second too.

Every loop is bounded in time and in count (``--max-calls`` per caller);
calls still running when the last phase ends get ``--drain`` seconds.

"""
from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import logging
import math
import multiprocessing
import os
import random
import resource
import socket
import sys
import time
import typing

from tornado import httpclient

from sprockets.mixins import http

CLIENTS = {
    'simple': 'tornado.simple_httpclient.SimpleAsyncHTTPClient',
    'curl': 'tornado.curl_httpclient.CurlAsyncHTTPClient',
}

# what the upstream does, shared with its process
SUCCEED, FAIL_ALL, FAIL_SOME = 0, 1, 2
# name, what the upstream does, the option that says how long
WARMUP, OUTAGE, FLAKY = 'healthy (warm-up)', 'outage', '10 % failures'
PHASES = ((WARMUP, SUCCEED, 'warmup'),
          (OUTAGE, FAIL_ALL, 'outage'),
          ('recovered', SUCCEED, 'recovered'),
          (FLAKY, FAIL_SOME, 'flaky'))

#: issue 9's targets for the default policy
TARGET_OUTAGE_REQUESTS_PER_CALL = 1.25
TARGET_FLAKY_SUCCESS = 0.998

Shared = typing.Any  # a multiprocessing.Value


def failures(ratio: float, seed: int,
             block: int = 1000) -> typing.Iterator[bool]:
    """Whether each request fails: in every `block` requests exactly
    ``ratio * block`` do, in an order shuffled by a generator seeded with
    `seed` (independent draws would drift: the first 5,600 draws of
    ``random.Random(9)`` fail 11 % of the time, not 10 %)."""
    shuffler = random.Random(seed)
    failing = round(ratio * block)
    while True:
        outcomes = [True] * failing + [False] * (block - failing)
        shuffler.shuffle(outcomes)
        yield from outcomes


def serve(sock: socket.socket, mode: Shared, served: Shared,
          failure_ratio: float, seed: int,
          cpu: typing.Optional[int]) -> None:
    """The upstream, in its own process: answers as `mode` says and
    counts every request in `served`."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    from tornado import httpserver, web

    outcomes = failures(failure_ratio, seed)

    class Upstream(web.RequestHandler):
        def get(self) -> None:
            served.value += 1
            current = mode.value
            if current == FAIL_ALL or (
                    current == FAIL_SOME and next(outcomes)):
                self.set_status(503)
                self.finish()
            else:
                self.finish(b'ok')

    async def main() -> None:
        sock.setblocking(False)
        server = httpserver.HTTPServer(web.Application(
            [('/', Upstream)], log_function=lambda handler: None))
        server.add_sockets([sock])
        await asyncio.Event().wait()

    asyncio.run(main())


@dataclasses.dataclass
class PhaseStats:
    """What the callers saw in one phase, and what the upstream served."""
    calls: int = 0
    requests: int = 0
    ok: int = 0
    budget_stops: int = 0
    served: int = 0
    failures: typing.Counter[str] = dataclasses.field(
        default_factory=collections.Counter)
    seconds: float = 0.0

    @property
    def per_call(self) -> float:
        return self.requests / self.calls if self.calls else math.nan

    @property
    def success(self) -> float:
        return self.ok / self.calls if self.calls else math.nan


@dataclasses.dataclass
class Window:
    """One window after the outage began: requests the upstream served
    and calls the callers started."""
    end: float
    seconds: float
    served: int
    calls: int


@dataclasses.dataclass
class Run:
    phases: typing.Dict[str, PhaseStats]
    windows: typing.List[Window]
    elapsed: float
    client_cpu: float = 0.0
    upstream_cpu: float = 0.0


async def wait_until_up(url: str) -> None:
    """Return once the upstream answers (a 503 is an answer)."""
    client = httpclient.AsyncHTTPClient()
    for _ in range(100):
        response = await client.fetch(url, raise_error=False,
                                      request_timeout=1)
        if response.code != 599:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f'the upstream at {url} does not answer')


async def storm(url: str, policy: http.RetryPolicy, mode: Shared,
                served: Shared, args: argparse.Namespace) -> Run:
    """Run the three phases against the upstream at `url`."""
    httpclient.AsyncHTTPClient.configure(CLIENTS[args.client])
    http.DEFAULT_BUDGET.reset()
    loop = asyncio.get_running_loop()
    mixin = http.HTTPClientMixin()
    phases = [phase for phase in PHASES if getattr(args, phase[2]) > 0]
    stats = {phase[0]: PhaseStats() for phase in phases}
    current = [phases[0][0]]
    started_calls = [0]
    done = asyncio.Event()
    await wait_until_up(url)

    async def caller(index: int) -> None:
        # spread the callers' first calls over one interval
        next_start = loop.time() + args.interval * index / args.callers
        for _ in range(args.max_calls):
            delay = next_start - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if done.is_set():
                return
            phase = stats[current[0]]
            started_calls[0] += 1
            response = await mixin.http_fetch(
                url, retry_policy=policy, connect_timeout=args.timeout,
                request_timeout=args.timeout)
            phase.calls += 1
            phase.requests += len(response)
            phase.ok += response.ok
            phase.budget_stops += (
                response.stop_reason is http.StopReason.BUDGET_EXHAUSTED)
            if not response.ok:
                phase.failures[' '.join(
                    [str(response.stop_reason)]
                    + [record.outcome for record in response.records])] += 1
            next_start = max(next_start + args.interval, loop.time())

    begun = time.perf_counter()
    tasks = [asyncio.ensure_future(caller(index))
             for index in range(args.callers)]
    windows: typing.List[Window] = []
    for name, what, attribute in phases:
        mode.value, current[0] = what, name
        phase_start = loop.time()
        served_at_start = served.value
        last, last_served, last_calls = phase_start, served_at_start, \
            started_calls[0]
        seconds = getattr(args, attribute)
        count = max(1, round(seconds / args.window))
        for index in range(count):
            await asyncio.sleep(max(
                0.0, phase_start + (index + 1) * args.window - loop.time()))
            now = loop.time()
            if name == OUTAGE:
                windows.append(Window(
                    now - phase_start, now - last, served.value - last_served,
                    started_calls[0] - last_calls))
            last, last_served, last_calls = now, served.value, \
                started_calls[0]
        stats[name].served = served.value - served_at_start
        stats[name].seconds = loop.time() - phase_start
    done.set()
    # the calls in flight end within their retries and timeouts
    _, pending = await asyncio.wait(tasks, timeout=args.drain)
    for task in pending:
        task.cancel()
    if pending:
        print(f'  {len(pending)} callers still busy after {args.drain} s: '
              'cancelled', file=sys.stderr)
        await asyncio.wait(pending)
    httpclient.AsyncHTTPClient().close()
    return Run(stats, windows, time.perf_counter() - begun)


def run_policy(policy: http.RetryPolicy, args: argparse.Namespace,
               pin: typing.Optional[typing.Tuple[int, int]]) -> Run:
    """One storm against a fresh upstream process."""
    context = multiprocessing.get_context('fork')
    mode = context.Value('i', FAIL_ALL, lock=False)
    served = context.Value('q', 0, lock=False)
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    sock.listen(1024)
    url = f'http://127.0.0.1:{sock.getsockname()[1]}/'
    upstream = context.Process(
        target=serve, daemon=True,
        args=(sock, mode, served, args.failure_ratio, args.seed,
              pin[1] if pin else None))
    upstream.start()
    sock.close()
    before = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        run = asyncio.run(storm(url, policy, mode, served, args))
    finally:
        upstream.terminate()
        upstream.join(5)
    after = resource.getrusage(resource.RUSAGE_SELF)
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    run.client_cpu = (after.ru_utime + after.ru_stime
                      - before.ru_utime - before.ru_stime)
    run.upstream_cpu = (ended.ru_utime + ended.ru_stime
                        - children.ru_utime - children.ru_stime)
    return run


def table(header: typing.Sequence[str],
          rows: typing.Sequence[typing.Sequence[str]]) -> str:
    """A Markdown table, the first column left-aligned."""
    widths = [max(len(row[i]) for row in (header, *rows))
              for i in range(len(header))]
    lines = []
    for index, row in enumerate((header, *rows)):
        cells = [cell.ljust(width) if not column or not index
                 else cell.rjust(width)
                 for column, (cell, width) in enumerate(zip(row, widths))]
        lines.append('| ' + ' | '.join(cells) + ' |')
        if not index:
            lines.append('|' + '|'.join(
                '-' * (width + 1) + (':' if column else '-')
                for column, width in enumerate(widths)) + '|')
    return '\n'.join(lines)


def parse_args(argv: typing.Optional[typing.Sequence[str]]
               ) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or '').split('\n')[0])
    parser.add_argument('--callers', type=int, default=200,
                        help='concurrent callers (default %(default)s)')
    parser.add_argument('--warmup', type=float, default=0.0,
                        help='seconds of success before the outage, which '
                             'fill the budget (default %(default)s: none)')
    parser.add_argument('--outage', type=float, default=8.0,
                        help='seconds of the outage (default %(default)s)')
    parser.add_argument('--recovered', type=float, default=2.0,
                        help='seconds of the recovery (default %(default)s)')
    parser.add_argument('--flaky', type=float, default=10.0,
                        help='seconds of the 10 %% failures (default '
                             '%(default)s)')
    parser.add_argument('--interval', type=float, default=0.4,
                        help='seconds between the starts of one caller\'s '
                             'calls (default %(default)s)')
    parser.add_argument('--retry-timeout', type=float, default=0.1,
                        help='the backoff base of both policies, seconds '
                             '(default %(default)s; the real default is 3)')
    parser.add_argument('--failure-ratio', type=float, default=0.1,
                        help='share of 503s in the last phase '
                             '(default %(default)s)')
    parser.add_argument('--seed', type=int, default=9,
                        help='seed of the upstream\'s failures and of the '
                             'jitter (default %(default)s)')
    parser.add_argument('--window', type=float, default=0.5,
                        help='seconds per window of the load after the '
                             'outage begins (default %(default)s)')
    parser.add_argument('--timeout', type=float, default=5.0,
                        help='connect and request timeout, seconds '
                             '(default %(default)s)')
    parser.add_argument('--max-calls', type=int, default=10000,
                        help='calls per caller at most (default '
                             '%(default)s)')
    parser.add_argument('--drain', type=float, default=30.0,
                        help='seconds the last calls may take to end '
                             '(default %(default)s)')
    parser.add_argument('--client', choices=sorted(CLIENTS),
                        default='simple',
                        help='the AsyncHTTPClient (default %(default)s)')
    parser.add_argument('--no-pin', action='store_true',
                        help='do not pin the callers and the upstream to '
                             'different cores')
    args = parser.parse_args(argv)
    if not 1 <= args.callers <= 5000:
        parser.error('--callers must be from 1 to 5000')
    if not 1 <= args.max_calls <= 1_000_000:
        parser.error('--max-calls must be from 1 to 1000000')
    for name in ('warmup', 'outage', 'recovered', 'flaky', 'interval',
                 'retry_timeout', 'window', 'timeout', 'drain'):
        value = getattr(args, name)
        if not (math.isfinite(value) and 0 <= value <= 3600) or (
                value == 0 and name not in (
                    'warmup', 'interval', 'retry_timeout')):
            parser.error(f'--{name.replace("_", "-")} must be a number of '
                         'seconds from 0 to 3600 (more than 0 but for '
                         '--warmup, --interval and --retry-timeout)')
    if not 0 <= args.failure_ratio <= 1:
        parser.error('--failure-ratio must be from 0 to 1')
    return args


def main(argv: typing.Optional[typing.Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.client == 'curl':
        try:
            import pycurl  # noqa: F401
        except ImportError:
            print('pycurl is not installed: use --client simple')
            return 2
    logging.getLogger('sprockets.mixins.http').setLevel(logging.ERROR)
    # one connection per caller: the default of 10 would queue 190 of them
    os.environ['HTTP_MAX_CLIENTS'] = str(args.callers)
    cpus = sorted(os.sched_getaffinity(0))
    pin = (cpus[0], cpus[1]) if len(cpus) >= 2 and not args.no_pin else None
    if pin:
        os.sched_setaffinity(0, {pin[0]})
    policies = {
        'default': http.RetryPolicy(
            retry_timeout=args.retry_timeout,
            random=random.Random(args.seed + 1).random),
        '2.x': http.RetryPolicy(
            max_attempts=http.HTTPClientMixin.MAX_HTTP_RETRIES,
            retry_timeout=args.retry_timeout, jitter=None, budget=None),
    }
    print(f'Python {sys.version.split()[0]}, tornado '
          f'{__import__("tornado").version}, sprockets.mixins.http '
          f'{http.__version__}, {args.client} client; {args.callers} '
          f'callers, a call every {args.interval} s each; phases of '
          f'{args.warmup} (warm-up), {args.outage}, {args.recovered} and '
          f'{args.flaky} s; '
          f'retry_timeout {args.retry_timeout} s, '
          f'{args.failure_ratio:.0%} failures, seed {args.seed}; '
          + (f'callers on CPU {pin[0]}, upstream on CPU {pin[1]}'
             if pin else 'not pinned') + '\n')
    runs = {}
    for name, policy in policies.items():
        print(f'{name}: {policy!r} ...', flush=True)
        runs[name] = run_policy(policy, args, pin)
        run = runs[name]
        print(f'  {run.elapsed:.1f} s, CPU: callers {run.client_cpu:.1f} s, '
              f'upstream {run.upstream_cpu:.1f} s', flush=True)
    print()

    rows = []
    for name, run in runs.items():
        for phase, stats in run.phases.items():
            rows.append((name, phase, f'{stats.calls:,}',
                         f'{stats.requests:,}', f'{stats.per_call:.3f}',
                         f'{stats.success:.2%}',
                         f'{stats.budget_stops / stats.calls:.1%}',
                         f'{stats.served / stats.seconds:,.0f}'))
    print(table(('policy', 'phase', 'calls', 'requests', 'requests/call',
                 'success', 'budget stops', 'upstream req/s'), rows))
    print()

    names = list(runs)
    header = ['s after outage began'] + [
        f'{name} {column}' for name in names
        for column in ('req/s', 'calls/s', 'req/call so far')]
    window_rows = []
    totals = {name: [0, 0] for name in names}
    for index, window in enumerate(runs[names[0]].windows):
        row = [f'{window.end:.1f}']
        for name in names:
            other = runs[name].windows[index]
            totals[name][0] += other.served
            totals[name][1] += other.calls
            served, calls = totals[name]
            row += [f'{other.served / other.seconds:,.0f}',
                    f'{other.calls / other.seconds:,.0f}',
                    f'{served / calls:.2f}' if calls else '-']
        window_rows.append(row)
    print(table(header, window_rows))
    print()

    for name, run in runs.items():
        for phase, stats in run.phases.items():
            if phase != OUTAGE and stats.failures:
                print(f'{name}, {phase}: failed calls by stop reason and '
                      'attempts: ' + ', '.join(
                          f'{count} x {what}' for what, count
                          in stats.failures.most_common(5)))
    print()
    default = runs['default'].phases
    outage, flaky = default[OUTAGE], default[FLAKY]
    attempts = policies['default'].max_attempts
    # with independent failures a call fails only when every attempt does
    expected = 1 - args.failure_ratio ** attempts
    for label, value, met, note in (
            (f'requests per call in a total outage <= '
             f'{TARGET_OUTAGE_REQUESTS_PER_CALL}', f'{outage.per_call:.3f}',
             outage.per_call <= TARGET_OUTAGE_REQUESTS_PER_CALL,
             f'{outage.calls:,} calls; the budget alone allows 1.2 plus '
             f'its reserve of 100 retries per 10 s over the calls'),
            (f'success at {args.failure_ratio:.0%} failures >= '
             f'{TARGET_FLAKY_SUCCESS:.1%}', f'{flaky.success:.2%}',
             flaky.success >= TARGET_FLAKY_SUCCESS,
             f'{flaky.calls - flaky.ok} of {flaky.calls:,} calls failed, '
             f'{flaky.budget_stops} stopped by the budget; '
             f'{expected:.2%} expected of {attempts} attempts')):
        print(f'target (default policy): {label}: {value}, '
              f'{"met" if met else "NOT met"} ({note})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
