"""The base of the lab's SaaS API stand-ins (Sentry, New Relic NerdGraph, Postmark): a threaded HTTP
server answering JSON from a state file it rereads on change, so ``lab break`` flips a fault while it
runs. Each vendor module provides ``handle(state, method, path, query, headers, body) -> (status, json)``
(pure: tests may call it directly) and a ``StubAPI`` subclass (state editing, profile section). A REST
stand-in keeps its routes as data -- a module-level ``ROUTES`` of ``route(methods, pattern, handler, scope)``
-- and its ``handle`` does what the vendor does before routing (method, auth, prefix), then ``dispatch``.

    python -m studiodoctor.lab.standins.saas_stub --module sentry_api --port 8790 --state state.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ..launcher import Launcher, free_port, write_json_atomic
from ..methodlog import MethodLog


class _StateFile:
    def __init__(self, path: Path):
        self.path, self._mtime, self._state, self._lock = path, None, {}, threading.Lock()

    def current(self) -> dict:
        with self._lock:
            try:
                mtime = self.path.stat().st_mtime_ns
                if mtime != self._mtime:
                    self._state, self._mtime = json.loads(self.path.read_text()), mtime
            except (OSError, ValueError):
                pass
            return self._state


@dataclass(frozen=True)
class Route:
    """One route of a stand-in, as data: the ``methods`` it answers, the compiled ``pattern`` the path must
    match whole, the ``scope`` (or permission) the vendor requires for it ("" for none), and
    ``handler(request, *groups) -> (status, body)``."""

    methods: frozenset
    pattern: re.Pattern
    handler: object
    scope: str = ""


def route(methods: str, pattern: str, handler, scope: str = "") -> Route:
    """``route("GET HEAD", r"/things/([^/]+)/?", _thing, scope="thing:read")``."""
    return Route(frozenset(methods.split()), re.compile(pattern), handler, scope)


def route_methods(routes) -> frozenset:
    """Every method some route answers (a stand-in that refuses any other method first, before auth)."""
    return frozenset().union(*(r.methods for r in routes))


@dataclass(frozen=True)
class Request:
    """What a route's handler is given (besides the pattern's groups)."""

    state: dict
    method: str
    path: str
    query: dict
    headers: dict
    body: object
    route: Route

    @property
    def params(self) -> dict:
        """The query string with one value per name (the first)."""
        return {k: v[0] for k, v in self.query.items()}

    def lacks_scope(self, scopes) -> bool:
        """True when the route requires a scope that ``scopes`` does not hold. The handler asks where the
        vendor checks it (Sentry answers 404 for another organization's resource before 403), so the order
        of 403/404/400 stays the vendor's."""
        return bool(self.route.scope) and self.route.scope not in scopes


def dispatch(routes, state: dict, method: str, path: str, query: dict, headers: dict, body, *,
             not_found: tuple, not_allowed: tuple):
    """The first route whose pattern matches ``path`` whole answers: ``not_allowed`` when it does not take
    ``method``, else its handler's answer; ``not_found`` when none matches."""
    for r in routes:
        if (m := r.pattern.fullmatch(path)):
            if method not in r.methods:
                return not_allowed
            return r.handler(Request(state, method, path, query, headers, body, r), *m.groups())
    return not_found


def graphql_operation(body) -> str:
    """``#query`` or ``#mutation`` for a GraphQL request body (NerdGraph is POST-only: its reads are
    queries), else ""; what a method log records after the path, so a POST that only read can be told."""
    query = body.get("query") if isinstance(body, dict) else None
    if not isinstance(query, str):
        return ""
    text = query.lstrip()
    word = text.split(None, 1)[0].split("(")[0].split("{")[0] if text else ""
    return "#query" if text.startswith("{") or word in ("query", "") else f"#{word}"


def serve(module: str, port: int, state_path: Path, address: str = "127.0.0.1", tls: tuple = ()) -> None:
    serve_json(importlib.import_module(f"studiodoctor.lab.standins.{module}").handle, module, port, state_path, address,
               tls=tls)


def serve_json(handle, name: str, port: int, state_path: Path, address: str = "127.0.0.1",
               headers: dict | None = None, suffix: str = "", tls: tuple = ()) -> None:
    """Serve ``handle(state, method, path, query, headers, body) -> (status, json or bytes)`` over HTTP,
    with the state file reread on change; ``headers`` are added to every answer (e.g. CloudFlare's cf-ray).
    Every request's method is recorded in ``<name>.requests.jsonl`` beside the state file."""
    states = _StateFile(state_path)
    methods = MethodLog.beside(state_path, name)
    extra = dict(headers or {})

    class Handler(BaseHTTPRequestHandler):
        server_version = name
        sys_version = ""
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stalls

        def _answer(self):
            method = self.command
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            methods.record(method, self.path + graphql_operation(body))
            state = states.current()
            delay = float(state.get("delay_s") or 0)
            if delay:
                threading.Event().wait(delay)  # a hanging API (deadline tests)
            status, payload = handle(state, method, parts.path, parse_qs(parts.query),
                                     {k.lower(): v for k, v in self.headers.items()}, body)
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html" if isinstance(payload, bytes) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(data)

        do_GET = do_HEAD = do_OPTIONS = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        def do_CONNECT(self):
            """``tls=(cert, key)``: the stand-in is also the HTTPS proxy its vendor's real host is reached
            through (a client with ``https_proxy`` set CONNECTs to it, then speaks TLS to "the vendor" and is
            answered by this same handler, with the lab's certificate for that name)."""
            if not tls:
                self.send_error(405)
                return
            import ssl

            self.send_response(200, "Connection established")
            self.end_headers()
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.connection = ctx.wrap_socket(self.connection, server_side=True)
            self.rfile = self.connection.makefile("rb")
            self.wfile = self.connection.makefile("wb", buffering=0)
            self.close_connection = False
            while not self.close_connection:
                self.handle_one_request()

        def log_message(self, fmt, *args):
            sys.stdout.write("%s %s\n" % (self.address_string(), fmt % args))
            sys.stdout.flush()

    httpd = ThreadingHTTPServer((address, port), Handler)
    httpd.daemon_threads = True
    print(f"{name} listening on http://{address}:{port}{suffix}", flush=True)
    httpd.serve_forever()


class StubAPI(Launcher):
    """A SaaS stand-in process. Subclasses set ``kind``, ``module`` and implement ``default_state``."""

    module = ""

    def __init__(self, root, port: int = 0, **options):
        super().__init__(root, port, **options)
        self.state_file = self.dir / "state.json"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def default_state(self) -> dict:
        raise NotImplementedError

    @property
    def method_logs(self) -> list[Path]:
        return [MethodLog.beside(self.state_file, self.module).path]

    def read_state(self) -> dict:
        return json.loads(self.state_file.read_text())

    def write_state(self, state: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.state_file, state)

    def edit(self, fn) -> None:
        state = self.read_state()
        fn(state)
        self.write_state(state)

    def set(self, **fields) -> None:
        self.edit(lambda s: s.update(fields))

    def reset(self) -> None:
        self.write_state(self.default_state())

    def command(self) -> list[str]:
        tls = self.options.get("connect_tls") or ()
        return [sys.executable, "-m", "studiodoctor.lab.standins.saas_stub", "--module", self.module,
                "--port", str(self.port), "--state", str(self.state_file),
                *(["--connect-tls", *tls] if tls else [])]

    def start(self, timeout: float = 15.0) -> "StubAPI":
        if not self.state_file.exists():
            self.reset()
        return super().start(timeout)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--state", required=True, type=Path)
    parser.add_argument("--connect-tls", nargs=2, metavar=("CERT", "KEY"), default=(),
                        help="also be the HTTPS proxy (CONNECT) of the vendor's host, with this certificate")
    args = parser.parse_args(argv)
    serve(args.module, args.port or free_port(), args.state, args.address, tls=tuple(args.connect_tls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
