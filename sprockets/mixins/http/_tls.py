"""One :class:`ssl.SSLContext` per TLS configuration, made once.

``simple_httpclient`` shares one context for the default configuration
(``validate_cert`` true, no ``ca_certs``, ``client_cert`` nor
``client_key``), but for any other it makes a new context on every
request, loading the system's CA store each time (about 18 ms of CPU).
:func:`ssl_options` makes that same context once per distinct
configuration and hands it back on every later request, as the request's
``ssl_options``.

Every input of the context is in its key: the verify flag, each file's
path and what :func:`os.stat` says of it (device, inode, size, mtime and
ctime, so that a rotated file is loaded again), and, when the system
store is used (verification on without ``ca_certs``), the store's file
and directory as ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` name them at the
time.  At most :data:`MAX_CONTEXTS` contexts are kept, the least recently
used forgotten first.

Only for a client that takes an :class:`ssl.SSLContext` as
``ssl_options`` and reads ``validate_cert``, ``ca_certs``, ``client_cert``
and ``client_key`` as ``simple_httpclient`` does: ``simple_httpclient``
itself, and the package's aiohttp client (which keeps its own contexts
already).  Never for ``curl_httpclient``: it raises :exc:`ValueError`
for any ``ssl_options``, and passes these four options to libcurl as
settings of its own (``SSL_VERIFYPEER``, ``CAINFO``, ``SSLCERT``,
``SSLKEY``), which loads the files itself.

No clock, no tornado: it reads the files it is given, and the
environment.

.. versionadded:: 3.0

"""
from __future__ import annotations

import collections
import os
import ssl
import threading
import typing
import urllib.parse

__all__ = ['MAX_CONTEXTS', 'OPTIONS', 'clear', 'ssl_options']

#: How many contexts are kept at most.
MAX_CONTEXTS = 64

#: The request options a context depends on, and ``ssl_options``, which
#: replaces them all when a caller gives it.
OPTIONS = ('ssl_options', 'validate_cert', 'ca_certs', 'client_cert',
           'client_key')

# tornado's HTTPRequest._DEFAULTS for these options
_DEFAULTS: typing.Mapping[str, typing.Any] = {'validate_cert': True}

# what os.stat says of a file, or None when there is no path
_Stat = typing.Tuple[int, int, int, int, int]
_File = typing.Optional[typing.Tuple[str, _Stat]]
_Key = typing.Tuple[bool, _File, _File, _File, typing.Any]

_contexts: collections.OrderedDict[_Key, ssl.SSLContext] = (
    collections.OrderedDict())
_lock = threading.Lock()


class _Unusable(Exception):
    """A file of the configuration cannot be read."""


def ssl_options(url: str, options: typing.Mapping[str, typing.Any],
                defaults: typing.Optional[typing.Mapping[str, typing.Any]]
                = None) -> typing.Optional[ssl.SSLContext]:
    """Return the shared context for the TLS configuration of a request.

    :param url: the request's URL; only an ``https`` one gets a context
    :param options: the request's options (``vars()`` of a tornado
        ``HTTPRequest`` will do): ``ssl_options``, ``validate_cert``,
        ``ca_certs``, ``client_cert`` and ``client_key``, each absent or
        :data:`None` when not given
    :param defaults: the client's defaults (``AsyncHTTPClient.defaults``),
        for the options `options` does not give, as tornado reads them;
        :data:`None` means tornado's own (``validate_cert`` true)
    :returns: the context ``simple_httpclient`` would make, made once
        for this configuration; :data:`None` when the request needs none
        of this module: not ``https``, an ``ssl_options`` of the caller's
        (or of the client's defaults), which wins, the default
        configuration (tornado already shares one context for it), or a
        file that cannot be read or loaded (tornado then fails the
        attempt as it always has)

    """
    if urllib.parse.urlsplit(url).scheme != 'https':
        return None

    def option(name: str) -> typing.Any:
        value = options.get(name)
        if value is None:
            value = (defaults if defaults is not None
                     else _DEFAULTS).get(name)
        return value

    if option('ssl_options') is not None:
        return None
    verify = bool(option('validate_cert'))
    ca_certs = option('ca_certs')
    client_cert, client_key = option('client_cert'), option('client_key')
    if verify and ca_certs is None and client_cert is None \
            and client_key is None:
        return None
    try:
        key: _Key = (verify, _file(ca_certs), _file(client_cert),
                     _file(client_key),
                     _system_store() if verify and ca_certs is None
                     else None)
    except _Unusable:
        return None
    with _lock:
        context = _contexts.get(key)
        if context is not None:
            _contexts.move_to_end(key)
            return context
    try:  # outside the lock: loading the system store takes milliseconds
        context = _context(verify, ca_certs, client_cert, client_key)
    except (OSError, ssl.SSLError, TypeError, ValueError):
        return None
    with _lock:
        # another thread may have made one meanwhile: keep the first
        context = _contexts.setdefault(key, context)
        _contexts.move_to_end(key)
        while len(_contexts) > MAX_CONTEXTS:
            _contexts.popitem(last=False)
    return context


def clear() -> None:
    """Forget every context kept."""
    with _lock:
        _contexts.clear()


def _context(verify: bool, ca_certs: typing.Any, client_cert: typing.Any,
             client_key: typing.Any) -> ssl.SSLContext:
    """The context ``simple_httpclient`` makes in
    ``_HTTPConnection._get_ssl_options`` (tornado 6.5 and 6.6; a test
    compares the two): never changed once made."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                         cafile=ca_certs)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if client_cert is not None:
        context.load_cert_chain(client_cert, client_key)
    context.options |= ssl.OP_NO_COMPRESSION
    return context


def _stat(path: str) -> _Stat:
    info = os.stat(path)
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns,
            info.st_ctime_ns)


def _file(path: typing.Any) -> _File:
    """A file's part of the key: its path and what :func:`os.stat` says
    of it; :data:`None` when there is no path."""
    if path is None:
        return None
    try:
        name = os.fsdecode(path)
        return name, _stat(name)
    except (OSError, TypeError, ValueError) as error:
        raise _Unusable(path) from error


# the names of the system store's environment variables and its default
# file and directory: OpenSSL's, the same for the whole process
_PATHS = ssl.get_default_verify_paths()


def _system_store() -> typing.Tuple[typing.Any, ...]:
    """The system store's part of the key: its file and directory as the
    environment names them now (what ``load_default_certs`` reads), and
    what :func:`os.stat` says of each, :data:`None` for one missing."""
    parts: typing.List[typing.Any] = []
    for variable, default in ((_PATHS.openssl_cafile_env,
                               _PATHS.openssl_cafile),
                              (_PATHS.openssl_capath_env,
                               _PATHS.openssl_capath)):
        path = os.environ.get(variable, default)
        try:
            stat: typing.Optional[_Stat] = _stat(path)
        except (OSError, ValueError):
            stat = None
        parts += [path, stat]
    return tuple(parts)
