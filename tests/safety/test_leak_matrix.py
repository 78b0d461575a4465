"""Secrets, as a matrix: every output format the CLI offers (html too, and a diagnose --watch page) x every failure path that echoes an input x
every kind of secret -> the secret appears 0 times in stdout, stderr, files written (textfile) and
warnings logged. The API stand-ins here are hostile on purpose: their 401/403 bodies echo the request's
headers and URL back, as some real APIs and proxies do."""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest

from studiodoctor.cli import main
from studiodoctor.render import FORMATS

# One distinct value per secret kind, so a leak names its kind.
S = {
    "dsn-password": "dsnpw-Q7w9e1r3",
    "url-userinfo": "userinfo-Z8x6c4v2",
    "bearer-cloudflare": "cfbearer-H5j3k1l9aa",
    "bearer-kubernetes": "kubebearer-P0o9i8u7aa",
    "bearer-app": "appbearer-Y6t5r4e3aa",
    "var-value": "varvalue-M1n2b3v4",
    "traefik-basic": "traefikpw-G4f5d6s7",
    "signed-url": "signedsig-W2q3a4s5d6",
    "redis-auth": "redisauth-K9l8j7h6",
}


class _Echo(BaseHTTPRequestHandler):
    """401 (or 403 under /forbidden/) with the request's headers and URL echoed in the body."""

    def log_message(self, *a):
        pass

    def _answer(self):
        code = 403 if self.path.startswith("/forbidden") else 401
        body = json.dumps({"success": False, "errors": [{"code": 10000, "message":
                           f"denied {self.command} {self.path} with {dict(self.headers)}"}],
                           "message": f"Unauthorized: {self.headers.get('Authorization')}",
                           "kind": "Status", "status": "Failure", "code": code}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("WWW-Authenticate", f'Bearer realm="{self.headers.get("Authorization")}"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_HEAD = do_OPTIONS = _answer


@pytest.fixture(scope="module")
def echo():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def closed_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens: refused
    return port


@pytest.fixture(scope="module")
def not_tls():
    """Accepts and answers garbage to a TLS ClientHello: a refused TLS handshake."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            try:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\nnot TLS\r\n")
            except OSError:
                pass
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield sock.getsockname()[1]
    stop.set()
    sock.close()


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory):
    from studiodoctor.lab.servers.redis_server import RedisServer

    from checks.celery import READ_ACL

    server = RedisServer(tmp_path_factory.mktemp("redis-locked"), password="the-right-one-771").start()
    # a user whose password is right but whose grants are not: the celery layer's errors name the ACL lines
    server.client().execute_command("ACL", "SETUSER", "doctor-leak", "reset", "on", f">{S['redis-auth']}", "-@all",
                                    "+hello", *READ_ACL)
    yield server
    server.stop()


def scenarios(echo, closed, not_tls, redis_srv, pg):
    """name -> (profile TOML body, env, layers, secret kinds in play)."""
    return {
        "redis-wrong-auth": (f'''
[profiles.leak.redis]
url = "redis://:{S['redis-auth']}@127.0.0.1:{redis_srv.port}/0"
[profiles.leak.celery]
broker_url = "redis://:{S['redis-auth']}@127.0.0.1:{redis_srv.port}/0"
''', {}, ["redis", "celery"], ["redis-auth"]),
        "redis-acl-denied": (f'''
[profiles.leak.redis]
url = "redis://doctor-leak:{S['redis-auth']}@127.0.0.1:{redis_srv.port}/0"
''', {}, ["redis", "celery"], ["redis-auth"]),
        "postgres-wrong-password": (f'''
[profiles.leak.postgres]
dsn = "postgresql://postgres:{S['dsn-password']}@127.0.0.1:{pg.port}/{pg.dbname}?sslmode=disable"
''', {}, ["postgres"], ["dsn-password"]),
        "postgres-bad-dsn": (f'''
[profiles.leak.postgres]
dsn = "postgresql://postgres:{S['dsn-password']}@127.0.0.1:notaport/db?sslmode=bogus&password={S['dsn-password']}"
''', {}, ["postgres"], ["dsn-password"]),
        "userinfo-refused": (f'''
[profiles.leak.nginx]
url = "http://ops:{S['url-userinfo']}@127.0.0.1:{closed}"
[profiles.leak.app]
url = "http://ops:{S['url-userinfo']}@127.0.0.1:{closed}"
[profiles.leak.traefik]
api_url = "http://ops:{S['url-userinfo']}@127.0.0.1:{closed}"
''', {}, ["nginx", "app", "traefik"], ["url-userinfo"]),
        "tls-refused": (f'''
[profiles.leak.nginx]
url = "https://ops:{S['url-userinfo']}@127.0.0.1:{not_tls}"
[profiles.leak.kubernetes]
api_url = "https://127.0.0.1:{not_tls}"
token = "{S['bearer-kubernetes']}"
''', {}, ["nginx", "kubernetes"], ["url-userinfo", "bearer-kubernetes"]),
        "api-401": (f'''
[profiles.leak.cloudflare]
api_url = "{echo}/client/v4"
api_token = "{S['bearer-cloudflare']}"
zone = "example.org"
[profiles.leak.kubernetes]
api_url = "{echo}"
token = "{S['bearer-kubernetes']}"
[profiles.leak.app]
url = "{echo}"
api_token = "{S['bearer-app']}"
[profiles.leak.traefik]
api_url = "{echo}"
api_auth = "ops:{S['traefik-basic']}"
''', {}, ["cloudflare", "edge", "kubernetes", "app", "traefik"],
                    ["bearer-cloudflare", "bearer-kubernetes", "bearer-app", "traefik-basic"]),
        "api-403": (f'''
[profiles.leak.cloudflare]
api_url = "{echo}/forbidden/client/v4"
api_token = "{S['bearer-cloudflare']}"
zone = "example.org"
[profiles.leak.kubernetes]
api_url = "{echo}/forbidden"
token = "{S['bearer-kubernetes']}"
[profiles.leak.app]
url = "{echo}/forbidden"
api_token = "{S['bearer-app']}"
''', {}, ["cloudflare", "edge", "kubernetes", "app"], ["bearer-cloudflare", "bearer-kubernetes", "bearer-app"]),
        "var-values": (f'''
[profiles.leak.cloudflare]
api_url = "{echo}/client/v4"
api_token = "${{H17_LEAK_CF}}"
zone = "example.org"
[profiles.leak.traefik]
api_url = "{echo}"
api_auth = "${{H17_LEAK_TRAEFIK}}"
[profiles.leak.redis]
url = "${{H17_LEAK_REDIS}}"
''', {"H17_LEAK_CF": S["var-value"], "H17_LEAK_TRAEFIK": f"ops:{S['var-value']}",
      "H17_LEAK_REDIS": f"redis://default:{S['var-value']}@127.0.0.1:{redis_srv.port}/0"},
                       ["cloudflare", "edge", "traefik", "redis"], ["var-value"]),
        "signed-url": (f'''
[profiles.leak]
public_urls = ["http://127.0.0.1:{closed}/content/databases/x.sqlite3?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Signature={S['signed-url']}"]
[profiles.leak.gcs]
bucket = "content"
endpoint = "{echo}/storage?X-Goog-Signature={S['signed-url']}"
public_url = "http://127.0.0.1:{closed}/?X-Goog-Signature={S['signed-url']}"
''', {}, ["cloudflare", "edge", "gcs", "trace"], ["signed-url"]),
    }


def _variants(layers):
    """The command lines of one scenario: every format, --debug, diagnose, config show/validate."""
    out = [["check", *sum((["--layer", lay] for lay in layers), []), "--format", fmt] for fmt in FORMATS]
    out.append(["check", *sum((["--layer", lay] for lay in layers), []), "--format", "json", "--debug"])
    out.append(["diagnose", "502", "--format", "json", "--debug"])
    # the page (cause on top, runbook, boxes) and the incident timeline of a watch (its event summaries)
    out.append(["diagnose", "502", "--format", "html", "--watch", "1", "--until", "1"])
    out += [["config", "show"], ["config", "show", "--format", "json"], ["config", "validate"]]
    return out


class _Logs(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = []

    def emit(self, record):
        self.lines.append(self.format(record))


def _encodings(secret):
    from html import escape

    return {secret, quote(secret, safe=""), secret.encode().hex(), escape(secret)}


@pytest.mark.parametrize("name", ["redis-wrong-auth", "redis-acl-denied", "postgres-wrong-password", "postgres-bad-dsn", "userinfo-refused",
                                  "tls-refused", "api-401", "api-403", "var-values", "signed-url"])
def test_no_secret_in_any_output(name, tmp_path, monkeypatch, capsys, echo, closed_port, not_tls, locked_redis,
                                 postgres_server):
    body, env, layers, kinds = scenarios(echo, closed_port, not_tls, locked_redis, postgres_server)[name]
    cfg = tmp_path / "leak.toml"
    cfg.write_text(body)
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("STUDIODOCTOR_LAB_DIR", str(tmp_path / "lab"))
    logs = _Logs()
    logging.getLogger().addHandler(logs)
    leaks = []
    runs = 0
    try:
        for argv in _variants(layers):
            argv = [*argv, "--config", str(cfg), "--profile", "leak"]
            if argv[0] == "check":
                argv += ["--timeout", "4", "--textfile", str(textfile)]
            elif argv[0] == "diagnose":
                argv += ["--timeout", "4"]
            code = main(argv)
            out, err = capsys.readouterr()
            runs += 1
            assert code in (0, 1, 2, 3), argv
            written = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*")
                              if p.is_file() and p != cfg)
            for kind in kinds:
                for form in _encodings(S[kind]):
                    for where, text in (("stdout", out), ("stderr", err), ("files", written),
                                        ("logs", "\n".join(logs.lines))):
                        if form in text:
                            leaks.append(f"{kind} in {where} of {' '.join(argv[:4])}")
    finally:
        logging.getLogger().removeHandler(logs)
    assert runs == len(_variants(layers))
    assert not leaks, sorted(set(leaks))
