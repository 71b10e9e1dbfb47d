"""Reaching a host whose name resolves to several addresses, as RFC 8305
("Happy Eyeballs Version 2") says, for simple_httpclient.

Tornado's ``TCPClient`` tries the addresses of one family one after the
other, each until it fails, and starts the other family only after 0.3 s:
an address whose packets are dropped holds the attempt for its whole
connect timeout, and the retry resolves the same list in the same order,
so it goes to the same dead address again.  :func:`connect` instead

* interleaves the addresses by family (RFC 8305 section 4),
* starts the next connection attempt every
  :data:`CONNECTION_ATTEMPT_DELAY` while none has connected, or at once
  when one fails, without giving up on those in flight (section 5); the
  first to connect wins and the others are closed,
* remembers, per host and port, what the connections said of each address
  (the "historical data" of section 4, the cache of RFC 6555 section
  4.2): the address that answered last is tried first next time, and one
  that failed or never answered within the connect timeout is tried last,
  so the retry of a connect timeout goes to another address.

Resolution and the TLS handshake are tornado's: the resolver of the
client's ``TCPClient``, ``IOStream.start_tls``, and the messages of
tornado's timeouts, which the transport's ``classify`` reads.  An IP
address literal is not resolved when the resolver is one of tornado's
own, which would only hand it to ``getaddrinfo`` in a thread and give it
back (about 0.2 ms of CPU per request, which simple_httpclient pays on
every request: it connects anew each time).

"""
from __future__ import annotations

import asyncio
import collections
import datetime
import ipaddress
import numbers
import socket
import ssl
import typing

from tornado import gen, ioloop, iostream, netutil

__all__ = [
    'CONNECTION_ATTEMPT_DELAY',
    'REMEMBERED_FAILURES',
    'REMEMBERED_FOR',
    'REMEMBERED_HOSTS',
    'History',
    'connect',
    'format_address',
    'interleave',
    'literal_addresses',
    'race',
]

#: Seconds between the starts of two connection attempts, RFC 8305's
#: recommended "Connection Attempt Delay" (section 5).
CONNECTION_ATTEMPT_DELAY = 0.25

#: Seconds what a connection said of an address is remembered: the ten
#: minutes RFC 6555 (section 4.2) suggests.
REMEMBERED_FOR = 600.0

#: The most hosts (host and port) whose addresses are remembered; the one
#: tried least recently is forgotten first.
REMEMBERED_HOSTS = 256

#: The most failed addresses remembered per host (a name whose addresses
#: rotate could name many within :data:`REMEMBERED_FOR`); the one that
#: failed longest ago is forgotten first.
REMEMBERED_FAILURES = 64

#: Seconds before the deadline under which no new attempt starts: it could
#: not connect in time, and would be remembered as failed unjustly (the
#: loop's timers may fire this much early).
_TOO_LATE = 0.01

#: ``(family, sockaddr)``, as ``Resolver.resolve`` returns them.
Address = typing.Tuple[int, typing.Any]
#: What a :class:`History` is kept by: the host and port connected to.
Key = typing.Tuple[str, int]
#: Opens the socket of one connection attempt: its stream, and the future
#: of its ``connect``.
Opener = typing.Callable[
    [Address], typing.Tuple[iostream.IOStream,
                            'asyncio.Future[iostream.IOStream]']]


def interleave(addresses: typing.Iterable[Address]) -> typing.List[Address]:
    """`addresses` in the order RFC 8305 (section 4) tries them: one of
    each family in turn, starting with the family of the first, each
    family's in the order given (the resolver's, RFC 6724's); an address
    given twice is tried once."""
    families: typing.Dict[int, typing.List[Address]] = {}
    seen = set()
    for family, sockaddr in addresses:
        if (family, sockaddr) not in seen:
            seen.add((family, sockaddr))
            families.setdefault(family, []).append((family, sockaddr))
    ordered: typing.List[Address] = []
    queues = [collections.deque(queue) for queue in families.values()]
    while queues:
        ordered.extend(queue.popleft() for queue in queues)
        queues = [queue for queue in queues if queue]
    return ordered


class _Host:
    """What the connections to one host said of its addresses."""

    __slots__ = ('answered', 'answered_at', 'failed')

    def __init__(self) -> None:
        self.answered: typing.Any = None
        self.answered_at = 0.0
        #: the sockaddrs that failed, with when they last did
        self.failed: typing.Dict[typing.Any, float] = {}

    def forget_before(self, then: float) -> None:
        if self.answered is not None and self.answered_at < then:
            self.answered = None
        for sockaddr, when in list(self.failed.items()):
            if when < then:
                del self.failed[sockaddr]


class History:
    """What the last connections to each host said of its addresses, for
    :meth:`order` to try the one that answered first and those that did
    not last (RFC 8305 section 4, RFC 6555 section 4.2).

    Times are the caller's (the IOLoop's clock), so that the class reads
    no clock of its own.

    :param remembered_for: the seconds an outcome is remembered, defaults
        to :data:`REMEMBERED_FOR`
    :param hosts: the most hosts remembered, defaults to
        :data:`REMEMBERED_HOSTS`

    """

    def __init__(self, remembered_for: float = REMEMBERED_FOR,
                 hosts: int = REMEMBERED_HOSTS) -> None:
        self.remembered_for = remembered_for
        self.hosts = hosts
        self._hosts: collections.OrderedDict[Key, _Host] = (
            collections.OrderedDict())

    def __repr__(self) -> str:
        return f'<History of {len(self._hosts)} host(s)>'

    def order(self, key: Key, addresses: typing.Sequence[Address],
              now: float) -> typing.List[Address]:
        """`addresses` of `key` in the order to try them: the one that
        answered last first, those that failed last (the one that failed
        longest ago first among them), the others as they are."""
        host = self._hosts.get(key)
        if host is None:
            return list(addresses)
        host.forget_before(now - self.remembered_for)

        def rank(address: Address) -> typing.Tuple[int, float]:
            sockaddr = address[1]
            if sockaddr in host.failed:
                return 2, host.failed[sockaddr]
            return (0 if sockaddr == host.answered else 1), 0.0

        return sorted(addresses, key=rank)  # stable: the rest as given

    def answered(self, key: Key, sockaddr: typing.Any, now: float) -> None:
        """Remember that `sockaddr` of `key` connected at `now`."""
        host = self._host(key)
        host.answered, host.answered_at = sockaddr, now
        host.failed.pop(sockaddr, None)

    def failed(self, key: Key, sockaddr: typing.Any, now: float) -> None:
        """Remember that `sockaddr` of `key` failed, or did not answer in
        time, at `now`."""
        host = self._host(key)
        host.failed.pop(sockaddr, None)
        host.failed[sockaddr] = now  # the most recent last
        while len(host.failed) > REMEMBERED_FAILURES:
            del host.failed[next(iter(host.failed))]
        if host.answered == sockaddr:
            host.answered = None

    def _host(self, key: Key) -> _Host:
        host = self._hosts.pop(key, None) or _Host()
        self._hosts[key] = host  # the most recent last
        while len(self._hosts) > self.hosts:
            self._hosts.popitem(last=False)
        return host


async def race(addresses: typing.Sequence[Address], open_stream: Opener,
               deadline: typing.Optional[float], *,
               delay: float = CONNECTION_ATTEMPT_DELAY,
               failed: typing.Callable[[Address], None] = lambda _: None,
               ) -> typing.Tuple[Address, iostream.IOStream]:
    """Connect to the first of `addresses` that answers (RFC 8305
    section 5): an attempt starts every `delay` seconds, or at once when
    one fails, while those in flight go on; the others are closed once one
    connected.

    :param open_stream: opens one attempt's socket
    :param deadline: the IOLoop time to give up at, :data:`None` for none
    :param failed: told of each address whose attempt failed, or was
        still in flight at the deadline
    :raises TimeoutError: at the deadline, naming the addresses still in
        flight as tornado's ``TCPClient`` does
    :raises Exception: the last attempt's error, when every one failed

    """
    loop = ioloop.IOLoop.current()
    waiting = collections.deque(addresses)
    racing: typing.Dict[asyncio.Future[iostream.IOStream],
                        typing.Tuple[Address, iostream.IOStream]] = {}
    error: typing.Optional[BaseException] = None

    def start_next() -> None:
        nonlocal error
        while waiting:
            address = waiting.popleft()
            try:
                stream, future = open_stream(address)
            except Exception as refused:  # e.g. a family not supported
                error = refused
                failed(address)
                continue
            racing[future] = address, stream
            return

    try:
        start_next()
        while True:
            if not racing:
                raise error or OSError('no address to connect to')
            wait = delay if waiting else None
            if deadline is not None:
                left = deadline - loop.time()
                if left <= 0:
                    raise _timed_out(racing.values(), failed)
                wait = left if wait is None else min(wait, left)
            done, _ = await asyncio.wait(
                set(racing), timeout=wait,
                return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                address, stream = racing.pop(future)
                error = future.exception()
                if error is None:
                    return address, future.result()
                failed(address)
            # one failed, or none connected within the delay: the next
            # one goes, unless it could not connect before the deadline
            if deadline is None or deadline - loop.time() > _TOO_LATE:
                start_next()
    finally:
        # the losers, or every attempt when the caller gave up
        for _, stream in racing.values():
            stream.close()


def _timed_out(racing: typing.Iterable[typing.Tuple[Address, typing.Any]],
               failed: typing.Callable[[Address], None]) -> TimeoutError:
    """The error of a race that reached its deadline, naming the addresses
    still in flight, as tornado's ``TCPClient`` does (the transport reads
    "connecting" in it: nothing was sent); each of them `failed`."""
    addresses = [address for address, _ in racing]
    for address in addresses:
        failed(address)
    pending = ', '.join(sorted(format_address(address[1])
                               for address in addresses))
    return TimeoutError(f'Timeout while connecting to {pending}')


def literal_addresses(resolver: netutil.Resolver, host: str, port: int,
            af: socket.AddressFamily = socket.AF_UNSPEC
            ) -> typing.Optional[typing.List[Address]]:
    """What `resolver` would answer for `host`, an IP address literal,
    without asking it; :data:`None` when it must be asked: `host` is a
    name (or a scoped IPv6 address), of a family `af` excludes (the
    resolver says what is wrong), or `resolver` is not one of tornado's
    own ``getaddrinfo`` resolvers (an ``OverrideResolver``, or a resolver
    of the application's, may map an address elsewhere)."""
    if '%' in host or (not host[:1].isdigit() and ':' not in host):
        return None  # a name (cheaply: no address starts with a letter)
    plain = _PLAIN_RESOLVERS.get(type(resolver))
    if plain is None or type(resolver).resolve is not plain.resolve:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    family, sockaddr = (
        (socket.AF_INET, (host, port)) if address.version == 4
        else (socket.AF_INET6, (host, port, 0, 0)))
    if af not in (socket.AF_UNSPEC, family):
        return None
    return [(family, sockaddr)]


# tornado's resolvers that hand a host to getaddrinfo as it is, each with
# the class whose resolve it uses (an application's subclass is asked)
_PLAIN_RESOLVERS: typing.Dict[type, typing.Type[netutil.Resolver]] = {
    netutil.DefaultExecutorResolver: netutil.DefaultExecutorResolver,
    netutil.DefaultLoopResolver: netutil.DefaultLoopResolver,
    netutil.ExecutorResolver: netutil.ExecutorResolver,
    netutil.BlockingResolver: netutil.ExecutorResolver,
    netutil.ThreadedResolver: netutil.ExecutorResolver,
}


async def connect(resolver: netutil.Resolver, history: History, host: str,
                  port: int, af: socket.AddressFamily = socket.AF_UNSPEC,
                  ssl_options: typing.Union[
                      typing.Dict[str, typing.Any], ssl.SSLContext,
                      None] = None,
                  max_buffer_size: typing.Optional[int] = None,
                  source_ip: typing.Optional[str] = None,
                  source_port: typing.Optional[int] = None,
                  timeout: typing.Union[
                      float, datetime.timedelta, None] = None,
                  opened: typing.Callable[[iostream.IOStream], None] = (
                      lambda _: None),
                  ) -> iostream.IOStream:
    """``TCPClient.connect`` (same arguments, same timeout messages), with
    the addresses of `host` raced as RFC 8305 says (see the module's
    docstring) and what each said remembered in `history`.

    :param resolver: resolves `host` (the client's ``TCPClient``'s)
    :param timeout: seconds (or a ``timedelta``) for resolution, the
        connection and the TLS handshake together, :data:`None` for none
    :param opened: told of each stream opened, so that the caller can
        close it should it give up

    """
    loop = ioloop.IOLoop.current()
    deadline = _deadline(timeout, loop)
    addrinfo = literal_addresses(resolver, host, port, af)
    if addrinfo is not None:
        pass  # an address already
    elif deadline is None:
        addrinfo = await resolver.resolve(host, port, af)
    else:
        addrinfo = await gen.with_timeout(
            deadline, resolver.resolve(host, port, af),
            message=f'Timeout while resolving {host}')
    key = (host, port)

    def open_stream(address: Address) -> typing.Tuple[
            iostream.IOStream, asyncio.Future[iostream.IOStream]]:
        stream, future = _open(address, max_buffer_size, source_ip,
                               source_port)
        opened(stream)
        return stream, future

    address, stream = await race(
        history.order(key, interleave(addrinfo), loop.time()), open_stream,
        deadline,
        failed=lambda lost: history.failed(key, lost[1], loop.time()))
    history.answered(key, address[1], loop.time())
    if ssl_options is None:
        return stream
    handshake = stream.start_tls(False, ssl_options=ssl_options,
                                 server_hostname=host)
    try:
        if deadline is None:
            return await handshake
        return typing.cast(iostream.IOStream, await gen.with_timeout(
            deadline, handshake, message=lambda: (
                'Timeout during TLS handshake with '
                + format_address(address[1]))))
    finally:
        # a timeout or a cancelled caller: close the stream, which the
        # handshake now owns (a no-op once it completed)
        handshake.cancel()


def _deadline(timeout: typing.Union[float, datetime.timedelta, None],
              loop: ioloop.IOLoop) -> typing.Optional[float]:
    """The IOLoop time `timeout` (seconds or a ``timedelta``) from now."""
    if timeout is None:
        return None
    if isinstance(timeout, datetime.timedelta):
        return loop.time() + timeout.total_seconds()
    if isinstance(timeout, numbers.Real):
        return loop.time() + float(timeout)
    raise TypeError(f'Unsupported timeout {timeout!r}')


def _open(address: Address, max_buffer_size: typing.Optional[int],
          source_ip: typing.Optional[str],
          source_port: typing.Optional[int]) -> typing.Tuple[
              iostream.IOStream, asyncio.Future[iostream.IOStream]]:
    """Open a plain-text stream to `address`, bound to `source_ip` and
    `source_port` when given (a port alone binds the family's loopback
    address, as tornado's ``TCPClient`` does)."""
    family, sockaddr = address
    bind_port = source_port if isinstance(source_port, int) else 0
    bind_ip = source_ip
    if bind_port and not bind_ip:
        bind_ip = '::1' if family == socket.AF_INET6 else '127.0.0.1'
    sock = socket.socket(family)
    try:
        if bind_ip or bind_port:
            sock.bind((bind_ip, bind_port))
        stream = iostream.IOStream(sock, max_buffer_size=max_buffer_size)
    except BaseException:
        sock.close()
        raise
    return stream, stream.connect(sockaddr)


def format_address(sockaddr: typing.Any) -> str:
    """``1.2.3.4:443``, ``[::1]:443``, as tornado's timeout messages name
    an address."""
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        host, port = sockaddr[:2]
        if isinstance(host, str) and ':' in host:
            return f'[{host}]:{port}'
        return f'{host}:{port}'
    return str(sockaddr)
