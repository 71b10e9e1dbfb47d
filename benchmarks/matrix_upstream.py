"""The upstream of ``matrix.py``: its documents, its certificate, and nginx
or, without nginx, a tornado server in its own process.

Every server listens on 127.0.0.1 only and serves, over HTTP and HTTPS:

* ``/<name>.msgpack`` and ``/<name>.json`` for each document (``small``:
  a 165-byte msgpack document and its JSON; ``large``: about 1,200
  catalogue records whose msgpack is 1 MiB, and their JSON), with
  ``application/msgpack`` and ``application/json``;
* ``/retry/<file>``: 503 unless the request carries ``X-Retry-Attempt``
  (which the project and 2.6.0 add to every retry by default), else the
  file: a 503-then-200 path without state on the server.

Run as a script it is the tornado fallback::

    python matrix_upstream.py DOCROOT PORT TLS_PORT CERT KEY

"""
from __future__ import annotations

import functools
import json
import math
import os
import pathlib
import shutil
import subprocess
import sys
import typing

SMALL_MSGPACK_BYTES = 165
LARGE_MSGPACK_BYTES = 1 << 20
CONTENT_TYPES = {'.msgpack': 'application/msgpack',
                 '.json': 'application/json'}
RETRY_PREFIX = '/retry/'
RETRY_HEADER = 'X-Retry-Attempt'

Document = typing.Dict[str, typing.Any]


@functools.cache
def small_document() -> Document:
    """A document whose msgpack is exactly 165 bytes."""
    import msgpack

    document: Document = {
        'id': 42, 'name': 'sprocket', 'active': True, 'ratio': 0.25,
        'tags': ['a', 'b', 'c'], 'created': '2026-12-01T11:00:00Z',
        'owner': {'id': 7, 'email': 'ops@example.com'}, 'count': 3,
        'note': ''}
    for length in range(SMALL_MSGPACK_BYTES):  # a str header may grow
        document['note'] = 'x' * length
        if len(msgpack.packb(document)) >= SMALL_MSGPACK_BYTES:
            break
    assert len(msgpack.packb(document)) == SMALL_MSGPACK_BYTES
    return document


WORDS = ['sprocket', 'gear', 'chain', 'wheel', 'bolt', 'nut', 'washer',
         'spring', 'lever', 'pulley', 'shaft', 'bearing']


def _item(index: int) -> Document:
    """A catalogue record of about 850 bytes, most of it text."""
    return {'id': index, 'sku': f'SKU-{index:06d}', 'name': f'item {index}',
            'price': index * 1.25, 'tags': ['x', 'y'],
            'available': index % 2 == 0,
            'description': ' '.join(WORDS[(index + word) % len(WORDS)]
                                    for word in range(120))}


@functools.cache
def large_document() -> Document:
    """About 1,200 records whose msgpack is just over 1 MiB."""
    import msgpack

    def packed(items: typing.List[Document]) -> int:
        return len(msgpack.packb({'items': items, 'count': len(items)}))

    per_item = packed([_item(index) for index in range(1000)]) / 1000
    items = [_item(index)
             for index in range(math.ceil(LARGE_MSGPACK_BYTES / per_item))]
    for _ in range(1000):  # the estimate is close: a few at most
        if packed(items) >= LARGE_MSGPACK_BYTES:
            break
        items.append(_item(len(items)))
    return {'items': items, 'count': len(items)}


def write_documents(docroot: pathlib.Path) -> typing.Dict[str, int]:
    """Write every file the upstream serves; return file name -> bytes."""
    import msgpack

    sizes = {}
    for name, document in (('small', small_document()),
                           ('large', large_document())):
        for suffix, data in (
                ('.msgpack', msgpack.packb(document)),
                ('.json', json.dumps(document,
                                     separators=(',', ':')).encode())):
            path = docroot / f'{name}{suffix}'
            path.write_bytes(data)
            path.chmod(0o644)
            sizes[path.name] = len(data)
    return sizes


def expected_count(file_name: str) -> int:
    """The ``count`` of the document in `file_name` (what a cell checks)."""
    document = (small_document() if file_name.startswith('small')
                else large_document())
    return int(document['count'])


def make_certificate(directory: pathlib.Path
                     ) -> typing.Optional[typing.Tuple[str, str, str]]:
    """Write a self-signed certificate for 127.0.0.1; return (cert, key,
    how), or None when neither trustme nor openssl is there."""
    cert, key = directory / 'cert.pem', directory / 'key.pem'
    try:
        import trustme  # type: ignore[import-not-found]
    except ImportError:
        trustme = None
    if trustme is not None:
        issued = trustme.CA().issue_cert('127.0.0.1', 'localhost')
        issued.cert_chain_pems[0].write_to_path(str(cert))
        issued.private_key_pem.write_to_path(str(key))
        how = 'trustme'
    elif shutil.which('openssl'):
        subprocess.run(
            ['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
             'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
             '-subj', '/CN=127.0.0.1', '-addext',
             'subjectAltName=IP:127.0.0.1,DNS:localhost',
             '-keyout', str(key), '-out', str(cert)],
            check=True, capture_output=True, timeout=60)
        how = 'openssl (EC P-256, self-signed)'
    else:
        return None
    key.chmod(0o600)
    cert.chmod(0o644)
    return str(cert), str(key), how


def nginx_config(prefix: pathlib.Path, docroot: pathlib.Path, port: int,
                 tls: typing.Optional[typing.Tuple[int, str, str]],
                 compiled: str) -> str:
    """An nginx.conf for one worker serving `docroot` on 127.0.0.1.

    `compiled` is ``nginx -V``'s output: a temp path is set only for a
    module that is compiled in.
    """
    user = ''
    if os.geteuid() == 0:  # the worker drops to nobody; it only reads
        import grp
        import pwd
        try:
            nobody = pwd.getpwnam('nobody')
            user = (f'user nobody '
                    f'{grp.getgrgid(nobody.pw_gid).gr_name};')
        except KeyError:
            user = 'user root;'
    temp = [f'client_body_temp_path {prefix}/body;']
    for module in ('proxy', 'fastcgi', 'uwsgi', 'scgi'):
        if f'--without-http_{module}_module' not in compiled:
            temp.append(f'{module}_temp_path {prefix}/{module};')
    listen = [f'listen 127.0.0.1:{port} backlog=4096;']
    if tls is not None:
        tls_port, cert, key = tls
        listen += [f'listen 127.0.0.1:{tls_port} ssl backlog=4096;',
                   f'ssl_certificate {cert};',
                   f'ssl_certificate_key {key};']
    newline = '\n        '
    return f'''{user}
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    types {{ application/msgpack msgpack; application/json json; }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    open_file_cache max=16;
    {newline.join(temp)}
    server {{
        {newline.join(listen)}
        root {docroot};
        location {RETRY_PREFIX} {{
            if ($http_{RETRY_HEADER.lower().replace('-', '_')} = "") {{
                return 503;
            }}
            alias {docroot}/;
        }}
    }}
}}
'''


def serve_tornado(docroot: str, port: int, tls_port: int,
                  cert: str, key: str) -> None:
    """The fallback upstream: the same paths from memory, one process."""
    import asyncio
    import ssl

    from tornado import httpserver, web

    files = {path.name: path.read_bytes()
             for path in pathlib.Path(docroot).iterdir()
             if path.suffix in CONTENT_TYPES}

    class File(web.RequestHandler):
        def get(self, retry: str, name: str) -> None:
            if name not in files:
                raise web.HTTPError(404)
            if retry and RETRY_HEADER not in self.request.headers:
                raise web.HTTPError(503)
            self.set_header('Content-Type',
                            CONTENT_TYPES[pathlib.Path(name).suffix])
            self.write(files[name])

    async def main() -> None:
        application = web.Application(
            [(r'/(retry/)?([^/]+)', File)], log_function=lambda _: None)
        httpserver.HTTPServer(application).listen(port, '127.0.0.1',
                                                  backlog=4096)
        if tls_port:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            httpserver.HTTPServer(application, ssl_options=context).listen(
                tls_port, '127.0.0.1', backlog=4096)
        await asyncio.Event().wait()

    asyncio.run(main())


if __name__ == '__main__':
    root, plain, secure, certificate, private = sys.argv[1:6]
    serve_tornado(root, int(plain), int(secure), certificate, private)
