"""``--demo``: three stories told with the command's own code against a
:class:`~sprockets.mixins.http.testing.FakeUpstream` started in this
process, the same scripted upstream users' tests get.

Each story is a command line, shown after ``$`` and run as the command
runs it (:func:`~sprockets.mixins.http._cli.args.parse_args`,
:func:`~sprockets.mixins.http._cli.fetch.perform`,
:func:`~sprockets.mixins.http._cli.render.show_response`), then checked:
the demo says so when a story did not end as it describes.

"""
from __future__ import annotations

import dataclasses
import re
import time
import typing
import uuid

from sprockets.mixins.http import testing
from sprockets.mixins.http._cli.args import PROG, parse_args
from sprockets.mixins.http._cli.fetch import (
    build_request,
    close_clients,
    perform,
)
from sprockets.mixins.http._cli.render import show_response, writing
from sprockets.mixins.http._cli.timeline import Timeline
from sprockets.mixins.http._mixin import HTTPClientMixin

DEMO_RETRY_TIMEOUT = 1.0
DEMO_ORDER: typing.Dict[str, typing.Any] = {
    'id': 42, 'item': 'widget', 'quantity': 3, 'status': 'shipped',
    'thumbnail': b'\x89PNG\r\n\x1a\n'}
_MSGPACK = 'application/msgpack'


@dataclasses.dataclass(frozen=True)
class Story:
    """One step of the demo: what it says, the command line it runs, and
    how it must end."""
    heading: str
    text: str
    argv: typing.List[str]
    #: the final status, the number of attempts and the stop reason
    expected: typing.Tuple[int, int, str]
    #: the Idempotency-Key every attempt must carry, if any
    idempotency_key: typing.Optional[str] = None


def script(upstream: testing.FakeUpstream, key: str) -> None:
    """Queue the upstream's answers to the three stories; `key` is the
    Idempotency-Key of the third."""
    # 1. a GET: 503, then 429 with Retry-After: 1, then the document
    upstream.reply('GET', '/orders/42', 503, {'message': 'warming up'})
    upstream.reply('GET', '/orders/42', 429, {'message': 'slow down'},
                   headers={'Retry-After': '1'})
    upstream.reply('GET', '/orders/42', 200, DEMO_ORDER,
                   content_type=_MSGPACK)
    # 2. a POST, as a proxy whose upstream dropped
    upstream.reply('POST', '/orders', 502,
                   {'message': 'the order service did not answer'})
    # 3. a POST with an Idempotency-Key: 502, then 201
    upstream.reply('POST', '/payments', 502,
                   {'message': 'the ledger did not answer'})
    upstream.reply('POST', '/payments', 201,
                   {'payment': 'accepted', 'idempotency_key': key},
                   content_type=_MSGPACK)


_FAILS_THEN_SUCCEEDS = """\
The upstream answers 503, then 429 with "Retry-After: 1", then 200
with a msgpack document.  GET is idempotent, so each failure is
retried: after a random backoff, or after the wait the server
asked for.  The msgpack body is printed as JSON; its bytes value
shows as {"$base64": ...}."""

_NOT_RETRIED = """\
The upstream answers 502.  A 502 after a POST may mean the order
was placed and only the answer was lost; sending it again could
place it twice, so the client stops (stop reason unsafe-method)."""

_RETRIED_WITH_KEY = """\
The upstream answers 502, then 201.  The Idempotency-Key header
lets the upstream recognize a repeat, so the client may send the
POST again; the same key goes with every attempt."""


def stories(base: str, key: str) -> typing.List[Story]:
    """Return the three stories, against the upstream at `base`; `key`
    is the Idempotency-Key of the third."""
    retry = ['--retry-timeout', f'{DEMO_RETRY_TIMEOUT:g}']
    return [
        Story('1. A GET that fails, is rate-limited, then succeeds',
              _FAILS_THEN_SUCCEEDS, [*retry, f'{base}/orders/42'],
              (200, 3, 'success')),
        Story('2. A POST that is not retried', _NOT_RETRIED,
              [*retry, '--json', '{"item": "widget", "quantity": 3}',
               f'{base}/orders'],
              (502, 1, 'unsafe-method')),
        Story('3. The same kind of POST, retried because it has an '
              'Idempotency-Key', _RETRIED_WITH_KEY,
              [*retry, '-H', f'Idempotency-Key: {key}', '--json',
               '{"order": 42, "amount": "19.99"}', f'{base}/payments'],
              (201, 2, 'success'), idempotency_key=key),
    ]


def introduction(base: str) -> str:
    """Return what the demo says before the stories."""
    mixin = HTTPClientMixin
    return (
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


async def run(stdin: typing.BinaryIO, out: typing.TextIO) -> bool:
    """Start the upstream and tell the stories on `out`; return whether
    each one ended as it says.

    :raises OutputError: when `out` cannot be written
    :raises BrokenPipeError: when nobody reads it any more

    """
    async with testing.FakeUpstream() as upstream:
        try:
            with writing(out):
                return await _tell_stories(upstream, stdin, out)
        finally:
            close_clients()


async def _tell_stories(upstream: testing.FakeUpstream,
                        stdin: typing.BinaryIO, out: typing.TextIO) -> bool:
    base = upstream.url()
    key = str(uuid.uuid4())
    script(upstream, key)
    timeline = Timeline(out)
    started = time.monotonic()
    out.write(introduction(base))
    failures = []
    for story in stories(base, key):
        failure = await _tell(story, upstream, timeline, stdin, out)
        if failure is not None:
            failures.append(failure)
    elapsed = time.monotonic() - started
    if failures:
        out.write(f'\ndemo: unexpected results: {"; ".join(failures)}\n')
        return False
    out.write(f'\nDone in {elapsed:.1f} s.  Next: {PROG} --help\n')
    out.flush()
    return True


async def _tell(story: Story, upstream: testing.FakeUpstream,
                timeline: Timeline, stdin: typing.BinaryIO,
                out: typing.TextIO) -> typing.Optional[str]:
    """Tell and run one story; return what went other than described, or
    :data:`None`."""
    out.write(f'\n{story.heading}\n{_wrap(story.text)}\n'
              f'   $ {PROG} {_shell_join(story.argv)}\n')
    out.flush()
    args = parse_args(story.argv)
    seen = len(upstream.requests)
    response = await perform(build_request(args, stdin), timeline)
    show_response(response, args, out, out)
    number = story.heading.split('.')[0]
    outcome = (response.code, len(response), str(response.stop_reason))
    if outcome != story.expected:
        return f'{number}: expected {story.expected}, got {outcome}'
    if story.idempotency_key is not None:
        keys = [request.headers.get('Idempotency-Key')
                for request in upstream.requests[seen:]]
        if any(sent != story.idempotency_key for sent in keys):
            return (f'{number}: expected Idempotency-Key '
                    f'{story.idempotency_key} on every attempt, got {keys}')
    return None


def _wrap(text: str, indent: str = '   ') -> str:
    return '\n'.join(indent + line for line in text.splitlines())


def _shell_join(argv: typing.Sequence[str]) -> str:
    return ' '.join(
        argument if re.match(r'^[\w@%+=:,./-]+$', argument)
        else "'" + argument.replace("'", "'\"'\"'") + "'"
        for argument in argv)
