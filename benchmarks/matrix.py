"""The benchmark matrix: what the project costs per call next to bare
tornado clients (simple, curl and the package's aiohttp client),
sprockets.mixins.http 2.6.0 and bare aiohttp.

The clients: tornado's ``simple_httpclient`` and ``curl_httpclient`` and
the package's ``AiohttpAsyncHTTPClient``, each bare (``raw``) and under
the project's mixin, the first two also under 2.6.0 (which has no
aiohttp client); and bare aiohttp.

From a fresh clone::

    python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]'
    .venv/bin/python benchmarks/matrix.py            # the default grid
    .venv/bin/python benchmarks/matrix.py --full     # every workload

What it does, each step bounded in time:

1. installs what is missing: aiohttp into the running venv; 2.6.0 (with
   the same tornado, msgpack and pycurl versions) into its own venv under
   ``~/.cache/sprockets-bench/``; nginx from Debian's packages when it is
   not there, the script runs as root and ``CI`` is not set
   (``--no-install`` skips all three);
2. writes the documents (small: a 165-byte msgpack document and its JSON;
   large: about 1,200 catalogue records, 1 MiB of msgpack, and their
   JSON) and a self-signed certificate (trustme, else openssl) and starts
   the upstream on 127.0.0.1: nginx with one worker, else (or with
   ``--tornado``) a tornado server in its own process; ``/retry/...``
   answers 503 unless the request has ``X-Retry-Attempt``, which both
   packages add to a retry by default;
3. pins the upstream to one core and every client to another;
4. records the request each client sends (to a recording server) and
   gives the raw clients and aiohttp exactly the project's headers, then
   checks that they send the same request;
5. runs each cell (a client on a workload) in a fresh process, repetitions
   interleaved, and prints medians with min-max, ratios measured in the
   same run, and the targets of issues 9 and 10 as this run measured
   them.

Ctrl-C stops it and the upstream.  Loopback only.

"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import pathlib
import platform
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import typing
import urllib.error
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import matrix_upstream as upstream  # noqa: E402

CELL = HERE / 'matrix_cell.py'
V2_VERSION = '2.6.0'
CACHE = pathlib.Path(os.environ.get('XDG_CACHE_HOME')
                     or pathlib.Path.home() / '.cache') / 'sprockets-bench'
MAX_CLIENTS = 50
CELL_TIMEOUT = 180  # seconds; a cell that takes longer is reported failed


class Client(typing.NamedTuple):
    key: str
    kind: str  # raw, v2, project, aiohttp
    # the AsyncHTTPClient implementation (matrix_cell.IMPLEMENTATIONS):
    # simple, curl, aiohttp (the package's AiohttpAsyncHTTPClient); None
    # for bare aiohttp
    impl: typing.Optional[str]


CLIENTS = [Client('raw simple', 'raw', 'simple'),
           Client('2.6.0 simple', 'v2', 'simple'),
           Client('project simple', 'project', 'simple'),
           Client('raw curl', 'raw', 'curl'),
           Client('2.6.0 curl', 'v2', 'curl'),
           Client('project curl', 'project', 'curl'),
           # 2.6.0 has no aiohttp client: no 2.6.0 cell on it
           Client('raw aiohttp-client', 'raw', 'aiohttp'),
           Client('project aiohttp', 'project', 'aiohttp'),
           Client('aiohttp', 'aiohttp', None)]


def peer(kind: str, impl: typing.Optional[str]) -> typing.Optional[str]:
    """The key of the client of that kind on that implementation."""
    return next((client.key for client in CLIENTS
                 if client.kind == kind and client.impl == impl), None)


def needs_aiohttp(client: Client) -> bool:
    return client.kind == 'aiohttp' or client.impl == 'aiohttp'


class Workload(typing.NamedTuple):
    key: str
    size: str  # small, large
    format: str  # msgpack, json
    concurrency: int
    retry: bool = False
    https: bool = False

    @property
    def file(self) -> str:
        return f'{self.size}.{self.format}'

    @property
    def path(self) -> str:
        return (upstream.RETRY_PREFIX if self.retry else '/') + self.file


def _grid() -> typing.Dict[str, Workload]:
    grid = {}
    for size in ('small', 'large'):
        for form in ('msgpack', 'json'):
            for concurrency in (1, 50):
                key = f'{size} {form} c{concurrency}'
                grid[key] = Workload(key, size, form, concurrency)
    for concurrency in (1, 50):
        grid[f'retry 503-200 c{concurrency}'] = Workload(
            f'retry 503-200 c{concurrency}', 'small', 'msgpack',
            concurrency, retry=True)
        grid[f'https c{concurrency}'] = Workload(
            f'https c{concurrency}', 'small', 'msgpack', concurrency,
            https=True)
    return grid


WORKLOADS = _grid()
# the default grid: every cell of the targets of issues 9 and 10
QUICK = ['small msgpack c1', 'small msgpack c50', 'small json c50',
         'large msgpack c50', 'large json c50', 'retry 503-200 c50',
         'https c50']


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- setup: what to install ----------------------------------------------

def pip_install(python: str, packages: typing.List[str]) -> bool:
    log(f'installing {" ".join(packages)} ...')
    result = subprocess.run(
        [python, '-m', 'pip', 'install', '-q', '--disable-pip-version-check',
         *packages], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines()
                  if 'ERROR' in line or 'error' in line]
        log('  failed: ' + ' / '.join(errors[-3:]))
    return result.returncode == 0


def installed_version(name: str) -> typing.Optional[str]:
    from importlib import metadata
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def ensure_aiohttp(install: bool) -> typing.Optional[str]:
    """aiohttp in this venv; None (aiohttp skipped) when it cannot be."""
    if importlib.util.find_spec('aiohttp') is not None:
        return None
    if install and pip_install(sys.executable, ['aiohttp']):
        importlib.invalidate_caches()
        return None
    return 'aiohttp is not installed' + ('' if install else
                                         ' (--no-install)')


def ensure_v2(install: bool) -> typing.Tuple[typing.Optional[str], str]:
    """(python of the 2.6.0 venv or None, a note)."""
    pins = {name: installed_version(name)
            for name in ('tornado', 'msgpack', 'pycurl')}
    tag = '-'.join(f'{name}{version}' for name, version in pins.items()
                   if version)
    venv = CACHE / (f'venv-{V2_VERSION}-py{sys.version_info[0]}'
                    f'{sys.version_info[1]}-{tag}')
    python = venv / 'bin' / 'python'
    ready = venv / '.ready'
    if ready.exists():
        return str(python), ready.read_text().strip()
    if not install:
        return None, f'no 2.6.0 venv at {venv} (--no-install)'
    log(f'creating {venv} ...')
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True,
                   capture_output=True, timeout=300)
    wanted = [f'sprockets.mixins.http=={V2_VERSION}']
    pinned = wanted + [f'{name}=={version}'
                       for name, version in pins.items() if version]
    if pip_install(str(python), pinned):
        note = 'pinned to this venv: ' + ', '.join(pinned[1:])
    elif pip_install(str(python), [*wanted, 'pycurl', 'msgpack']):
        note = 'the pinned versions failed to install; latest ones used'
    else:
        return None, '2.6.0 could not be installed'
    ready.write_text(note + '\n')
    return str(python), note


def find_nginx(install: bool) -> typing.Tuple[typing.Optional[str], str]:
    """(path of nginx or None, a note)."""
    found = shutil.which('nginx') or next(
        (path for path in ('/usr/sbin/nginx', '/usr/local/sbin/nginx')
         if os.access(path, os.X_OK)), None)
    if found:
        return found, 'found'
    if not install:
        return None, 'nginx is not installed (--no-install)'
    if os.environ.get('CI'):
        return None, 'nginx is not installed and CI is set'
    if os.geteuid() != 0 or not shutil.which('apt-get'):
        return None, 'nginx is not installed (and no apt-get as root)'
    environment = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    for attempt in range(2):
        for package in ('nginx-light', 'nginx'):
            log(f'apt-get install {package} ...')
            result = subprocess.run(
                ['apt-get', 'install', '-y', '-q', package],
                capture_output=True, env=environment, timeout=600)
            found = shutil.which('nginx') or (
                '/usr/sbin/nginx' if os.access('/usr/sbin/nginx', os.X_OK)
                else None)
            if result.returncode == 0 and found:
                return found, f'installed {package} with apt-get'
        if attempt == 0:
            log('apt-get update ...')
            subprocess.run(['apt-get', 'update', '-q'],
                           capture_output=True, env=environment,
                           timeout=600)
    return None, 'apt-get could not install nginx'


# -- the upstream ----------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return int(sock.getsockname()[1])


def pinned(cpu: typing.Optional[int]) -> typing.Optional[
        typing.Callable[[], None]]:
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


class Upstream:
    """nginx or the tornado fallback, in its own process group."""

    def __init__(self, work: pathlib.Path, cpu: typing.Optional[int],
                 certificate: typing.Optional[typing.Tuple[str, str]]):
        self.work, self.cpu, self.certificate = work, cpu, certificate
        self.process: typing.Optional[subprocess.Popen[bytes]] = None
        self.port = self.tls_port = 0
        self.description = ''

    def start_nginx(self, nginx: str) -> typing.Optional[str]:
        """Start nginx; return None, or why it did not start."""
        compiled = subprocess.run([nginx, '-V'], capture_output=True,
                                  text=True, timeout=30).stderr
        version = compiled.splitlines()[0].split('/')[-1] if compiled \
            else '?'
        prefix = self.work / 'nginx'
        prefix.mkdir()
        prefix.chmod(0o755)
        for _ in range(3):  # a port taken in between: new ports
            self.port, self.tls_port = free_port(), free_port()
            tls = ((self.tls_port, *self.certificate) if self.certificate
                   else None)
            conf = prefix / 'nginx.conf'
            conf.write_text(upstream.nginx_config(
                prefix, self.work / 'docroot', self.port, tls, compiled))
            command = [nginx, '-p', str(prefix), '-c', str(conf),
                       '-e', str(prefix / 'error.log')]
            if self.cpu is not None and shutil.which('taskset'):
                command = ['taskset', '-c', str(self.cpu), *command]
                preexec = None
            else:
                preexec = pinned(self.cpu)
            with open(prefix / 'stderr.log', 'wb') as stderr:
                self.process = subprocess.Popen(
                    command, stdout=subprocess.DEVNULL, stderr=stderr,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                    preexec_fn=preexec)
            if self.wait_ready():
                self.description = (f'nginx {version}, 1 worker')
                return None
            self.stop()
            error = ((prefix / 'stderr.log').read_text(errors='replace')
                     + ((prefix / 'error.log').read_text(errors='replace')
                        if (prefix / 'error.log').exists() else ''))
            if 'Address already in use' not in error:
                break
        return 'nginx did not start: ' + ' '.join(error.split())[-300:]

    def start_tornado(self) -> None:
        self.port, self.tls_port = free_port(), free_port()
        cert, key = self.certificate or ('', '')
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / 'matrix_upstream.py'),
             str(self.work / 'docroot'), str(self.port),
             str(self.tls_port if self.certificate else 0), cert, key],
            stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=pinned(self.cpu))
        if not self.certificate:
            self.tls_port = 0
        if not self.wait_ready():
            self.stop()
            raise RuntimeError('the tornado upstream did not start')
        import tornado
        self.description = (f'tornado {tornado.version} HTTPServer, '
                            f'one process')

    def wait_ready(self, seconds: float = 15) -> bool:
        deadline = time.monotonic() + seconds
        ports = [self.port] + ([self.tls_port] if self.certificate else [])
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                for port in ports:
                    socket.create_connection(('127.0.0.1', port), 1).close()
                return True
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self.process = None
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        self.process = None

    def url(self, workload: Workload) -> str:
        if workload.https:
            return f'https://127.0.0.1:{self.tls_port}{workload.path}'
        return f'http://127.0.0.1:{self.port}{workload.path}'

    def check(self, sizes: typing.Dict[str, int]) -> None:
        """Every path answers as the workloads need, or raise."""
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        bases = [f'http://127.0.0.1:{self.port}']
        if self.certificate:
            bases.append(f'https://127.0.0.1:{self.tls_port}')
        for base in bases:
            for name, size in sizes.items():
                with urllib.request.urlopen(base + '/' + name, timeout=10,
                                            context=insecure) as reply:
                    body, kind = reply.read(), reply.headers['Content-Type']
                expected = upstream.CONTENT_TYPES[pathlib.Path(name).suffix]
                if len(body) != size or kind != expected:
                    raise RuntimeError(f'{base}/{name}: {len(body)} bytes '
                                       f'of {kind}')
            retry = base + upstream.RETRY_PREFIX + 'small.msgpack'
            try:
                urllib.request.urlopen(retry, timeout=10, context=insecure)
                raise RuntimeError(f'{retry}: no 503')
            except urllib.error.HTTPError as error:
                if error.code != 503:
                    raise
            request = urllib.request.Request(
                retry, headers={upstream.RETRY_HEADER: '2'})
            with urllib.request.urlopen(request, timeout=10,
                                        context=insecure) as reply:
                if reply.status != 200:
                    raise RuntimeError(f'{retry}: {reply.status}')


# -- cells -----------------------------------------------------------------

class Runner:
    def __init__(self, args: argparse.Namespace,
                 v2_python: typing.Optional[str],
                 cpu: typing.Optional[int]):
        self.args, self.v2_python, self.cpu = args, v2_python, cpu
        base = {key: value for key, value in os.environ.items()
                if key not in ('HTTP_MAX_CLIENTS', 'PYTHONPATH')}
        # the package of this checkout, whatever is installed
        self.project_env = dict(base, PYTHONPATH=str(ROOT))
        self.v2_env = dict(base, PYTHONNOUSERSITE='1')

    def run(self, client: Client, spec: typing.Dict[str, typing.Any]
            ) -> typing.Dict[str, typing.Any]:
        spec = dict(spec, client=client.kind, impl=client.impl,
                    cpu=self.cpu, max_clients=MAX_CLIENTS)
        if client.kind == 'v2':
            python, env = self.v2_python, self.v2_env
        else:
            python, env = sys.executable, self.project_env
        if python is None:
            return {'error': 'skipped'}
        try:
            result = subprocess.run(
                [python, str(CELL), json.dumps(spec)], capture_output=True,
                text=True, timeout=CELL_TIMEOUT, env=env, cwd=str(HERE),
                stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return {'error': f'timed out after {CELL_TIMEOUT} s'}
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines() or ['no output']
            return {'error': lines[-1][-200:]}
        return typing.cast(typing.Dict[str, typing.Any],
                           json.loads(result.stdout.splitlines()[-1]))


TRANSPORT_HEADERS = ('host', 'connection', 'content-length')


def capture_requests(runner: Runner, clients: typing.List[Client],
                     docroot: pathlib.Path) -> typing.Dict[str, typing.Any]:
    """The requests each client sends on the retry path (first attempt and
    retry); the raw clients get the project's headers.  Return, per
    client, its heads, headers given, and whether it matches."""
    body = (docroot / 'small.msgpack').read_bytes().decode('latin-1')
    spec = {'capture': True, 'retry': True, 'https': False,
            'format': 'msgpack', 'path': upstream.RETRY_PREFIX + 'x',
            'body': body, 'content_type': 'application/msgpack'}
    captured: typing.Dict[str, typing.Any] = {}
    headers: typing.Dict[typing.Optional[str], typing.Dict[str, str]] = {}
    for client in clients:
        if client.kind in ('project', 'v2'):
            out = runner.run(client, dict(spec, headers={}))
            captured[client.key] = out
            if client.kind == 'project' and 'heads' in out:
                first = out['heads'][0][1:]
                headers[client.impl] = dict(
                    line.split(': ', 1) for line in first
                    if line.split(':')[0].lower() not in TRANSPORT_HEADERS)
    for client in clients:
        if client.kind not in ('raw', 'aiohttp'):
            continue
        given = headers.get(client.impl) or headers.get('curl') or \
            headers.get('simple') or {}
        out = runner.run(client, dict(spec, headers=given))
        out['headers'] = given
        captured[client.key] = out
        mirror = peer('project', client.impl or 'curl') or ''
        theirs = captured.get(mirror, {}).get('heads')
        if theirs is not None and 'heads' in out:
            out['same_as'] = mirror
            out['same'] = [sorted(head[1:]) for head in out['heads']] == \
                [sorted(head[1:]) for head in theirs]
    return captured


def cell_spec(args: argparse.Namespace, workload: Workload, url: str,
              count: int,
              headers: typing.Dict[str, str]) -> typing.Dict[str, typing.Any]:
    return {'url': url, 'format': workload.format, 'retry': workload.retry,
            'https': workload.https, 'concurrency': workload.concurrency,
            'count': count, 'headers': headers,
            'calls': args.calls if workload.size == 'small'
            else max(1, args.calls // 10),
            'seconds': args.seconds,
            'warmup_calls': max(20, 2 * workload.concurrency),
            'warmup_seconds': args.warmup}


# -- the report ------------------------------------------------------------

Runs = typing.List[typing.Dict[str, typing.Any]]


def ok_runs(runs: Runs) -> Runs:
    return [run for run in runs if 'error' not in run]


def spread(values: typing.List[float], digits: int) -> str:
    if not values:
        return '-'
    middle = statistics.median(values)
    if len(values) == 1:
        return f'{middle:.{digits}f}'
    return (f'{middle:.{digits}f} ({min(values):.{digits}f}-'
            f'{max(values):.{digits}f})')


def ratio(mine: Runs, theirs: Runs) -> typing.Optional[
        typing.Tuple[float, float, float]]:
    """The ratio of median CPU per call, and the min-max of the ratios of
    runs paired by repetition."""
    pairs = [(a['cpu_us'], b['cpu_us']) for a, b in zip(mine, theirs)
             if 'error' not in a and 'error' not in b]
    if not pairs:
        return None
    paired = [a / b for a, b in pairs]
    return (statistics.median(a for a, _ in pairs)
            / statistics.median(b for _, b in pairs),
            min(paired), max(paired))


def show_ratio(value: typing.Optional[typing.Tuple[float, float, float]]
               ) -> str:
    if value is None:
        return ''
    middle, low, high = value
    return f'{middle:.2f}x ({low:.2f}-{high:.2f})'


def render(results: typing.Dict[str, typing.Dict[str, Runs]],
           clients: typing.List[Client],
           workloads: typing.List[Workload]) -> str:
    lines = ['| workload | client | CPU µs/call | calls/s | peak RSS MiB '
             '| ÷ raw, same client | ÷ 2.6.0, same client |',
             '|---|---|---|---|---|---|---|']
    for workload in workloads:
        cells = results[workload.key]
        for client in clients:
            runs = cells[client.key]
            good = ok_runs(runs)
            if not good:
                error = runs[0].get('error', '?') if runs else 'not run'
                lines.append(f'| {workload.key} | {client.key} | '
                             f'failed: {error} | | | | |')
                continue
            versus_raw = versus_v2 = None
            if client.kind in ('project', 'v2'):
                versus_raw = ratio(runs, cells.get(
                    peer('raw', client.impl) or '', []))
            if client.kind == 'project':
                versus_v2 = ratio(runs, cells.get(
                    peer('v2', client.impl) or '', []))
            failed = len(runs) - len(good)
            note = f' ({failed} failed)' if failed else ''
            fewer = min(run['concurrency'] for run in good)
            if fewer < workload.concurrency:
                note += f' †{fewer}'
            expected = 2 if workload.retry else 1
            made = [run['attempts_per_call'] for run in good
                    if run.get('attempts_per_call') is not None]
            if made and max(made) != expected:
                note += f' ‡{max(made):.3f}'
            lines.append(
                f'| {workload.key} | {client.key}{note} | '
                f'{spread([run["cpu_us"] for run in good], 1)} | '
                f'{spread([run["calls_per_s"] for run in good], 0)} | '
                f'{spread([run["peak_rss_mib"] for run in good], 1)} | '
                f'{show_ratio(versus_raw)} | {show_ratio(versus_v2)} |')
    return '\n'.join(lines)


AIOHTTP_PAIRS = [('aiohttp', 'raw simple'), ('aiohttp', 'raw curl'),
                 ('raw aiohttp-client', 'aiohttp'),
                 ('project simple', 'aiohttp'), ('project curl', 'aiohttp'),
                 ('project aiohttp', 'aiohttp')]


def render_aiohttp(results: typing.Dict[str, typing.Dict[str, Runs]],
                   workloads: typing.List[Workload]) -> str:
    lines = ['| workload | ' + ' | '.join(
        f'{mine} ÷ {theirs}' for mine, theirs in AIOHTTP_PAIRS) + ' |',
        '|---|' + '---|' * len(AIOHTTP_PAIRS)]
    for workload in workloads:
        cells = results[workload.key]
        if not ok_runs(cells.get('aiohttp', [])):
            continue
        shown = [show_ratio(ratio(cells.get(mine, []), cells.get(theirs, [])))
                 for mine, theirs in AIOHTTP_PAIRS]
        lines.append(f'| {workload.key} | ' + ' | '.join(shown) + ' |')
    return '\n'.join(lines)


class Target(typing.NamedTuple):
    """One target of an issue, as this run measured it."""
    label: str
    value: typing.Optional[float]  # None: not measured in this run
    shown: str
    op: str  # '≤', '<' or '≥'
    limit: float
    unit: str = 'x'

    @property
    def met(self) -> typing.Optional[bool]:
        if self.value is None:
            return None
        if self.op == '<':
            return self.value < self.limit
        if self.op == '≥':
            return self.value >= self.limit
        return self.value <= self.limit


Results = typing.Dict[str, typing.Dict[str, Runs]]


def versus(results: Results, workloads: typing.List[Workload],
           workload: str, mine: str, theirs: str, op: str, limit: float,
           label: typing.Optional[str] = None
           ) -> typing.List[Target]:
    """The target on mine ÷ theirs (median CPU per call) at `workload`;
    none when the workload did not run, unmeasured when a client did
    not."""
    if workload not in {w.key for w in workloads}:
        return []
    value = ratio(results[workload].get(mine, []),
                  results[workload].get(theirs, []))
    return [Target(label or f'{mine} ÷ {theirs}, {workload}',
                   value[0] if value else None, show_ratio(value), op,
                   limit)]


def issue9_targets(results: Results, workloads: typing.List[Workload]
                   ) -> typing.List[Target]:
    """Issue 9's targets (the retry storm's are retry_storm.py's)."""
    targets = [
        *versus(results, workloads, 'small msgpack c50', 'project simple',
                'raw simple', '≤', 1.10),
        *versus(results, workloads, 'small msgpack c50', 'project curl',
                'raw curl', '≤', 1.20)]
    for large in ('large msgpack c50', 'large json c50'):
        for impl in ('simple', 'curl'):
            targets += versus(results, workloads, large, f'project {impl}',
                              f'raw {impl}', '≤', 1.10)
    worst: typing.List[typing.Tuple[float, str]] = []
    for workload in workloads:
        for impl in ('simple', 'curl'):
            value = ratio(results[workload.key].get(f'project {impl}', []),
                          results[workload.key].get(f'2.6.0 {impl}', []))
            if value:
                worst.append((value[0], f'{workload.key}, {impl}'))
    if worst:
        misses = [cell for value, cell in worst if value > 0.95]
        top = max(worst)
        targets.append(Target(
            'project ÷ 2.6.0, every cell (the worst shown)', top[0],
            f'{top[0]:.2f}x ({top[1]}); {len(misses)} of {len(worst)} '
            f'cells over 0.95x', '≤', 0.95))
    if 'https c50' in {workload.key for workload in workloads}:
        good = ok_runs(results['https c50'].get('project simple', []))
        value = (statistics.median(run['cpu_us'] for run in good) / 1000
                 if good else None)
        targets.append(Target(
            'HTTPS validate_cert=False, project simple, CPU ms/call',
            value, '' if value is None else f'{value:.2f} ms',
            '≤', 1.5, ' ms'))
    return targets


def issue10_targets(results: Results, workloads: typing.List[Workload]
                    ) -> typing.List[Target]:
    """Issue 10's targets: the package's aiohttp client."""
    return [
        *versus(results, workloads, 'small msgpack c50',
                'raw aiohttp-client', 'aiohttp', '≤', 1.25),
        *versus(results, workloads, 'small msgpack c50', 'project aiohttp',
                'aiohttp', '≤', 1.40),
        *versus(results, workloads, 'small msgpack c50', 'project aiohttp',
                'raw curl', '<', 1.00),
        *versus(results, workloads, 'https c50', 'project simple',
                'project aiohttp', '≥', 5.0,
                'project simple ÷ project aiohttp, https c50 (CPU; '
                'validate_cert=False, keep-alive)')]


def render_targets(targets: typing.List[Target]) -> str:
    lines = ['| target | measured | target | met |', '|---|---|---|---|']
    for target in targets:
        met = {None: '', True: 'yes', False: 'no'}[target.met]
        lines.append(f'| {target.label} | {target.shown or "-"} | '
                     f'{target.op} {target.limit:.2f}{target.unit} | '
                     f'{met} |')
    return '\n'.join(lines)


def checkout() -> str:
    """The commit of this checkout, and whether the package differs."""
    try:
        commit = subprocess.run(
            ['git', '-C', str(ROOT), 'rev-parse', '--short', 'HEAD'],
            capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ['git', '-C', str(ROOT), 'status', '--porcelain', '--',
             'sprockets'], capture_output=True, text=True, timeout=30,
            check=True).stdout.split('\n')
    except (OSError, subprocess.SubprocessError):
        return 'not a git checkout'
    files = [line[3:] for line in changed if line.strip()]
    return commit + (f' with uncommitted changes to {", ".join(files)}'
                     if files else '')


def package_digest() -> str:
    """A digest of the package's sources: a run whose digest changed
    measured a tree that others edited meanwhile."""
    import hashlib

    digest = hashlib.sha1(usedforsecurity=False)
    for path in sorted((ROOT / 'sprockets').rglob('*.py')):
        digest.update(str(path.relative_to(ROOT)).encode())
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b'unreadable')
    return digest.hexdigest()[:12]


def machine() -> typing.Dict[str, typing.Any]:
    model = '?'
    try:
        with open('/proc/cpuinfo') as cpuinfo:
            model = next((line.split(':', 1)[1].strip() for line in cpuinfo
                          if line.startswith('model name')), '?')
    except OSError:
        pass
    return {'cpu': model, 'cores': os.cpu_count(),
            'kernel': platform.release(),
            'python': platform.python_version(),
            'loadavg': os.getloadavg()}


# -- main --------------------------------------------------------------------

def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=' '.join(__doc__.split('\n\n')[0].split()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    grid = parser.add_mutually_exclusive_group()
    grid.add_argument('--full', action='store_true',
                      help='every workload: small and large x JSON and '
                      'msgpack x c1 and c50, retry and HTTPS at c1 and '
                      'c50 (default: ' + ', '.join(QUICK) + ', which '
                      'cover the targets of issues 9 and 10)')
    grid.add_argument('--workload', action='append', default=[],
                      choices=sorted(WORKLOADS), metavar='NAME',
                      help='run this workload (repeatable): '
                      + ', '.join(sorted(WORKLOADS)))
    parser.add_argument('--client', action='append', default=[],
                        choices=[client.key for client in CLIENTS],
                        metavar='NAME', help='only this client '
                        '(repeatable; ratios need their peers): '
                        + ', '.join(client.key for client in CLIENTS))
    parser.add_argument('--repeat', type=int, default=None,
                        help='repetitions of each cell (default 3, '
                        '5 with --full)')
    parser.add_argument('--seconds', type=float, default=0.5,
                        help='time bound of one timed loop (default 0.5)')
    parser.add_argument('--calls', type=int, default=20000,
                        help='call bound of one timed loop, a tenth of it '
                        'for large bodies (default 20000)')
    parser.add_argument('--warmup', type=float, default=0.2,
                        help='time bound of the warm-up (default 0.2)')
    parser.add_argument('--tornado', action='store_true',
                        help='use the tornado upstream even with nginx')
    parser.add_argument('--no-install', action='store_true',
                        help='install nothing (aiohttp, 2.6.0, nginx)')
    parser.add_argument('--json', type=pathlib.Path,
                        help='also write every run to this file')
    args = parser.parse_args()
    if args.repeat is None:
        args.repeat = 5 if args.full else 3
    if not 1 <= args.repeat <= 50 or not 0 < args.seconds <= 60:
        parser.error('--repeat 1-50, --seconds up to 60')
    return args


def main() -> None:
    args = parse()
    began = time.monotonic()
    digest = package_digest()
    started_at = datetime.datetime.now().astimezone()
    names = list(WORKLOADS) if args.full else args.workload or QUICK
    workloads = [WORKLOADS[name] for name in names]
    clients = [client for client in CLIENTS
               if not args.client or client.key in args.client]
    notes: typing.List[str] = []
    install = not args.no_install

    aiohttp_note = ensure_aiohttp(install)
    if aiohttp_note:
        notes.append(aiohttp_note + ': aiohttp and aiohttp-client cells '
                     'skipped')
        clients = [client for client in clients
                   if not needs_aiohttp(client)]
    v2_python, v2_note = ensure_v2(install)
    notes.append(f'2.6.0: {v2_note}')
    nginx, nginx_note = (None, '--tornado') if args.tornado \
        else find_nginx(install)

    cores = sorted(os.sched_getaffinity(0))
    server_cpu = client_cpu = None
    if len(cores) >= 2:
        server_cpu, client_cpu = cores[0], cores[1]
        # this process waits on the cells: keep it off the client's core
        os.sched_setaffinity(0, {server_cpu})
        pinning = (f'upstream on core {server_cpu}, clients on core '
                   f'{client_cpu}')
    else:
        pinning = 'one core: nothing pinned'

    work = pathlib.Path(tempfile.mkdtemp(prefix='sprockets-matrix-'))
    work.chmod(0o755)
    service: typing.Optional[Upstream] = None
    # Ctrl-C, a kill or a closed terminal: stop, and stop the upstream
    # (also where a shell started this with SIGINT ignored)
    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {stop: signal.signal(stop, signal.default_int_handler)
                for stop in stops}
    try:
        docroot = work / 'docroot'
        docroot.mkdir(mode=0o755)
        sizes = upstream.write_documents(docroot)
        made = upstream.make_certificate(work)
        if made is None:
            notes.append('no trustme and no openssl: HTTPS cells skipped')
            workloads = [w for w in workloads if not w.https]
        certificate = made[:2] if made else None
        service = Upstream(work, server_cpu, certificate)
        why = service.start_nginx(nginx) if nginx else nginx_note
        if why:
            notes.append(f'upstream: tornado fallback ({why})')
            service.start_tornado()
        service.check(sizes)
        log(f'upstream: {service.description} on 127.0.0.1:{service.port}'
            f' (HTTPS :{service.tls_port}); {pinning}')

        runner = Runner(args, v2_python, client_cpu)
        captured = capture_requests(runner, clients, docroot)
        headers = {client.key: captured.get(client.key, {}).get(
            'headers', {}) for client in clients}
        for key, out in captured.items():
            if out.get('same') is False:
                notes.append(f'{key} does NOT send the same request as '
                             f'{out["same_as"]}')
        counts = {name: upstream.expected_count(name) for name in sizes}

        results: typing.Dict[str, typing.Dict[str, Runs]] = {
            workload.key: {client.key: [] for client in clients}
            for workload in workloads}
        total = args.repeat * len(workloads) * len(clients)
        done = 0
        for repetition in range(args.repeat):
            for workload in workloads:
                spec_base = cell_spec(args, workload, service.url(workload),
                                      counts[workload.file], {})
                for client in clients:
                    spec = dict(spec_base, headers=headers[client.key])
                    began_cell = time.monotonic()
                    out = runner.run(client, spec)
                    results[workload.key][client.key].append(out)
                    done += 1
                    shown = out.get('error') or (
                        f'{out["cpu_us"]:.1f} µs/call, {out["calls"]} '
                        f'calls, {out["concurrency"]} in flight')
                    if out.get('attempts_per_call') is not None:
                        shown += (f', {out["attempts_per_call"]:.3f} '
                                  f'attempts/call')
                    log(f'[{done}/{total}, rep {repetition + 1}, '
                        f'{time.monotonic() - began_cell:4.1f} s] '
                        f'{workload.key:18} {client.key:18} {shown}')
    except KeyboardInterrupt:
        log('interrupted')
        raise SystemExit(130) from None
    finally:
        if service is not None:
            service.stop()
        shutil.rmtree(work, ignore_errors=True)
        for stop, handler in previous.items():
            signal.signal(stop, handler)

    elapsed = time.monotonic() - began
    versions: typing.Dict[str, str] = {}
    for runs_by_client in results.values():
        for key, runs in runs_by_client.items():
            for run in ok_runs(runs)[:1]:
                for name, value in run['versions'].items():
                    label = name if name in ('python', 'tornado',
                                             'aiohttp') else f'{name}'
                    if name == 'sprockets.mixins.http':
                        label = f'{key.split()[0]} sprockets.mixins.http'
                    versions.setdefault(label, value)
    about = machine()
    about['checkout'] = checkout()
    if package_digest() != digest:
        notes.append('the package\'s sources changed during the run (the '
                     'tree is shared): cells may have measured different '
                     'code')
    print(f'# benchmarks/matrix.py, {started_at:%Y-%m-%d %H:%M %Z}, '
          f'{elapsed:.0f} s')
    print()
    print(f'- command: {" ".join(["python", *sys.argv])}')
    print(f'- machine: {about["cores"]} cores, {about["cpu"]}, Linux '
          f'{about["kernel"]}; load average at the end '
          f'{about["loadavg"][0]:.2f}')
    print(f'- checkout: {about["checkout"]}')
    print('- versions: ' + ', '.join(f'{name} {value}' for name, value
                                     in sorted(versions.items())))
    print(f'- upstream: {service.description if service else "?"}; '
          f'{pinning}; files: '
          + ', '.join(f'{name} {size} B' for name, size in sizes.items()))
    print(f'- {args.repeat} runs per cell, each a fresh process, '
          f'repetitions interleaved; a timed loop is at most '
          f'{args.seconds:g} s or {args.calls} calls ({args.calls // 10} '
          f'for large bodies) after a warm-up; max_clients '
          f'{MAX_CLIENTS} on every client')
    pressures = [run['cpu_pressure'] for by_client in results.values()
                 for runs in by_client.values() for run in ok_runs(runs)
                 if run.get('cpu_pressure') is not None]
    if pressures:
        print(f'- CPU pressure (Linux PSI "some": share of the time a task '
              f'waited for a core) during the timed loops: median '
              f'{statistics.median(pressures):.0%}, '
              f'{min(pressures):.0%}-{max(pressures):.0%}; the machine is '
              f'shared: trust the ratios of one run, not absolute figures')
    for note in notes:
        print(f'- {note}')
    print()
    print('CPU µs per call (client process, user + system), calls per '
          'second, peak RSS: median (min-max).  Ratios: of median CPU per '
          'call, with the min-max of the ratios of runs of the same '
          'repetition.  †N: one call cost so much that the timed loop ran '
          'only N calls, N at once (the fewest of the runs).  ‡N: a mixin '
          'cell made N attempts per call (the most of the runs) where 1 '
          '(2 on the retry path) was expected.')
    print()
    print(render(results, clients, workloads))
    if any(client.kind == 'aiohttp' for client in clients):
        print()
        print(render_aiohttp(results, workloads))
    targets = {'issue 9': issue9_targets(results, workloads),
               'issue 10': issue10_targets(results, workloads)}
    headings = {
        'issue 9': "Issue 9's targets, as measured in this run (the "
                   "retry storm's: see retry_storm.py):",
        'issue 10': "Issue 10's targets (the package's aiohttp client), "
                    "as measured in this run:"}
    for issue, rows in targets.items():
        print()
        print(headings[issue])
        print()
        print(render_targets(rows) if rows else
              '(none of its workloads ran)')
    print()
    print('Requests sent (headers, Host left out):')
    for key, out in captured.items():
        heads = out.get('heads')
        if not heads:
            print(f'- {key}: {out.get("error", "?")}')
            continue
        same = ('' if 'same' not in out else
                f' (same as {out["same_as"]}: '
                f'{"yes" if out["same"] else "NO"})')
        print(f'- {key}{same}: ' + ' | '.join(
            '; '.join(head[1:]) for head in heads))
    if args.json:
        args.json.write_text(json.dumps(
            {'started': started_at.isoformat(), 'seconds': elapsed,
             'command': sys.argv, 'machine': about, 'versions': versions,
             'upstream': service.description if service else None,
             'pinning': pinning, 'files': sizes, 'notes': notes,
             'requests': captured, 'results': results,
             'targets': {issue: [dict(row._asdict(), met=row.met)
                                 for row in rows]
                         for issue, rows in targets.items()}},
            indent=1))


if __name__ == '__main__':
    main()
