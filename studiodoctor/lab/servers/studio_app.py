"""A stand-in for the Studio Django app, served by a real gunicorn (like Studio's pods on :8081).

It answers what studiodoctor probes, the way Studio does (facts file §5 and §6):

- ``/stealthz``: ``<3`` without touching the database;
- ``/healthz``: opens a PostgreSQL connection per request (Studio has no ``CONN_MAX_AGE``) and returns the
  first channel's name from ``contentcuration_channel`` (``No channels created yet!`` on an empty table);
  500 when the database is unreachable or the query fails;
- ``/`` redirects to the login page ``/en/accounts/``, which answers 200 for a browser-like or
  ``Studio-Internal-Prober`` User-Agent and Studio's "unsupported browser" page otherwise;
- ``/api/public/v1/channels``: the public channels (ids give ``/content/databases/<id>.sqlite3``);
- ``/api/probers/...``: the admin prober endpoints, ``Authorization: Token <key>`` only;
- ``/slow?seconds=N`` sleeps, ``/error`` always answers 500 (lab helpers, not Studio's);
- ``/static/...`` is NOT served here (Django with DEBUG off answers 404; nginx serves it from disk).

Faults come from a JSON state file the app rereads on every request (``StudioApp.set_fault``):
``slow_s`` (sleep that long on every request), ``error`` (every request answers 500),
``healthz_error`` (only ``/healthz`` answers 500, as a failing query would), ``pages_error`` (the pages
Django renders from templates answer 500 while /stealthz, /healthz and the JSON API answer: a pod whose
static files manifest is missing, ``ManifestStaticFilesStorage`` raising on every ``{% static %}``),
``fail_every`` (every Nth
request to each path but ``/stealthz`` answers 500: a worker that fails now and then, which one lucky
probe misses), ``slow_every`` with ``slow_every_s`` (every Nth request to each path but ``/stealthz``
sleeps that long: a slow tail), ``public_api_absent`` (the public channel API answers 404, as on a stack
that does not serve it). The kubelet's readiness probe (User-Agent ``kube-probe``) is spared the
two periodic faults: with its failureThreshold of 3 it never sees three failures in a row from them, so
the pods stay Ready, as they would.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs

from ..launcher import LabError, Launcher, stop_pid, wait_for_port, wait_until, write_json_atomic

STATE_ENV = "STUDIO_APP_STATE"
# Studio's settings.HEALTH_CHECK_BROWSERS plus the browsers `browser_is_supported` accepts.
SUPPORTED_UA = ("kube-probe", "GoogleHC", "Studio-Internal-Prober", "Chrome", "Firefox", "Safari")
PROBER_ENDPOINTS = ("get_prober_channel", "publishing_status", "celery_worker_status", "task_queue_status",
                    "unapplied_changes_status")

# Headers Django's default middleware stack adds to every response (SecurityMiddleware,
# XFrameOptionsMiddleware, LocaleMiddleware).
_DJANGO_HEADERS = [("X-Frame-Options", "DENY"), ("X-Content-Type-Options", "nosniff"),
                   ("Referrer-Policy", "same-origin"), ("Vary", "Accept-Language, Cookie"),
                   ("Content-Language", "en")]

_UNSUPPORTED_HTML = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Kolibri Studio</title></head>
<body><h1>Your browser is not supported</h1><p>Kolibri Studio works with Chrome, Firefox and Safari.</p></body></html>
"""

_state_cache: dict = {"mtime": None, "data": {}}
_counts: dict = {}
_counts_lock = threading.Lock()

if os.environ.get(STATE_ENV):
    # in the gunicorn master (--preload): load the database driver once, before the workers fork, as
    # Django does at startup; otherwise each worker's first /healthz pays the import (seconds on a
    # loaded machine, beyond the readiness probe's 1 s)
    import psycopg  # noqa: F401


def read_state() -> dict:
    path = os.environ.get(STATE_ENV)
    if not path:
        return {}
    try:
        mtime = os.stat(path).st_mtime_ns
        if mtime != _state_cache["mtime"]:
            _state_cache["data"] = json.loads(Path(path).read_text())
            _state_cache["mtime"] = mtime
    except (OSError, ValueError):
        pass
    return _state_cache["data"]


def _respond(start_response, status: str, body: str | bytes, ctype: str = "text/html; charset=utf-8",
             extra: list | None = None):
    data = body.encode() if isinstance(body, str) else body
    headers = [("Content-Type", ctype), ("Content-Length", str(len(data))), *_DJANGO_HEADERS, *(extra or [])]
    start_response(status, headers)
    return [data]


def _json(start_response, status: str, obj, extra: list | None = None):
    return _respond(start_response, status, json.dumps(obj), "application/json", extra)


def _server_error(start_response):
    return _respond(start_response, "500 Internal Server Error", "\n<!doctype html>\n<html lang=\"en\">\n<head>\n"
                    "  <title>Server Error (500)</title>\n</head>\n<body>\n  <h1>Server Error (500)</h1><p></p>\n"
                    "</body>\n</html>\n")


def _not_found(start_response, path: str):
    return _respond(start_response, "404 Not Found", "\n<!doctype html>\n<html lang=\"en\">\n<head>\n"
                    "  <title>Not Found</title>\n</head>\n<body>\n  <h1>Not Found</h1><p>The requested resource "
                    "was not found on this server.</p>\n</body>\n</html>\n")


def _query(state: dict, sql: str):
    import psycopg

    dsn = state.get("dsn") or os.environ.get("STUDIO_APP_DSN", "")
    with psycopg.connect(dsn, connect_timeout=float(state.get("db_connect_timeout", 3)), autocommit=True) as conn:
        return conn.execute(sql).fetchall()


def _healthz(state, start_response):
    from ..studio_schema import CHANNEL_TABLE

    if state.get("healthz_error"):
        return _server_error(start_response)
    try:
        rows = _query(state, f"SELECT name FROM {CHANNEL_TABLE} ORDER BY id LIMIT 1")
    except Exception as exc:  # Django would log the traceback and answer its 500 page
        print(f"/healthz: {type(exc).__name__}: {str(exc).strip()[:200]}", file=sys.stderr, flush=True)
        return _server_error(start_response)
    name = rows[0][0] if rows else "No channels created yet!"
    return _respond(start_response, "200 OK", name)


def _public_channels(state, start_response):
    from ..studio_schema import CHANNEL_TABLE

    try:
        rows = _query(state, f"SELECT id, name, version FROM {CHANNEL_TABLE} WHERE public AND NOT deleted "
                             f"ORDER BY id")
    except Exception:
        return _server_error(start_response)
    channels = [{"id": r[0], "name": r[1], "version": r[2], "public": True} for r in rows]
    return _json(start_response, "200 OK", channels, [("Cache-Control", "max-age=300")])


def _probers(state, environ, start_response, name: str):
    auth = environ.get("HTTP_AUTHORIZATION", "")
    www = [("WWW-Authenticate", "Token")]
    if not auth.startswith("Token "):
        return _json(start_response, "401 Unauthorized",
                     {"detail": "Authentication credentials were not provided."}, www)
    if not state.get("api_token") or auth[6:].strip() != state["api_token"]:
        return _json(start_response, "401 Unauthorized", {"detail": "Invalid token."}, www)
    if name not in PROBER_ENDPOINTS:
        return _not_found(start_response, name)
    prober = state.get("probers", {})
    answers = {
        "get_prober_channel": {"id": "p0", "name": "Prober channel"},
        "publishing_status": prober.get("publishing_status", []),
        "celery_worker_status": prober.get("celery_worker_status", {"celery@studio-lab": {"ok": "pong"}}),
        "task_queue_status": {"queued_task_count": prober.get("queued_task_count", 0)},
        "unapplied_changes_status": {"active_task_count": prober.get("active_task_count", 0),
                                     "unapplied_changes_count": prober.get("unapplied_changes_count", 0)},
    }
    return _json(start_response, "200 OK", answers[name])


def _nth(state: dict, path: str, environ) -> int:
    """This request's number among the requests to ``path`` (counted only while a periodic fault is on)."""
    if path == "/stealthz" or "kube-probe" in environ.get("HTTP_USER_AGENT", ""):
        return 0
    if not (state.get("fail_every") or state.get("slow_every")):
        return 0
    with _counts_lock:
        _counts[path] = _counts.get(path, 0) + 1
        return _counts[path]


def _every(state: dict, key: str, nth: int) -> bool:
    every = int(state.get(key) or 0)
    return every > 0 and nth > 0 and nth % every == 0


def application(environ, start_response):
    """The WSGI entry point gunicorn serves."""
    state = read_state()
    path = environ.get("PATH_INFO", "/")
    nth = _nth(state, path, environ)
    slow = float(state.get("slow_s") or 0)
    if _every(state, "slow_every", nth):
        slow = max(slow, float(state.get("slow_every_s") or 3))
    if slow > 0:
        time.sleep(slow)
    if state.get("error") or _every(state, "fail_every", nth):
        return _server_error(start_response)
    if path == "/stealthz":
        return _respond(start_response, "200 OK", "<3")
    if path == "/healthz":
        return _healthz(state, start_response)
    if path == "/":
        return _respond(start_response, "302 Found", "", extra=[("Location", "/en/accounts/")])
    if path in ("/en/accounts/", "/accounts/"):
        if state.get("pages_error"):
            print(f"{path}: ValueError: Missing staticfiles manifest entry for 'css/export.css'", file=sys.stderr,
                  flush=True)
            return _server_error(start_response)
        ua = environ.get("HTTP_USER_AGENT", "")
        page = state.get("login_html", "") if any(b in ua for b in SUPPORTED_UA) else _UNSUPPORTED_HTML
        return _respond(start_response, "200 OK", page)
    if path.rstrip("/") in ("/api/public/v1/channels", "/api/public/v2/channels") and not state.get("public_api_absent"):
        return _public_channels(state, start_response)
    if path == "/api/public/info":
        return _json(start_response, "200 OK", {"application": "studio", "kolibri_version": None,
                                                "instance_id": "studio-lab", "device_name": "Kolibri Studio"})
    if path.startswith("/api/probers/"):
        return _probers(state, environ, start_response, path[len("/api/probers/"):].strip("/"))
    if path == "/slow":
        seconds = float((parse_qs(environ.get("QUERY_STRING", "")).get("seconds") or ["5"])[0])
        time.sleep(max(0.0, min(seconds, 600.0)))
        return _respond(start_response, "200 OK", f"slept {seconds:g} s", "text/plain")
    if path == "/error":
        return _server_error(start_response)
    return _not_found(start_response, path)


class StudioApp(Launcher):
    """gunicorn serving :func:`application` on a free loopback port (Studio's app container, :8081)."""

    kind = "studio-app"

    def __init__(self, root, port: int = 0, dsn: str = "", api_token: str = "", workers: int = 1,
                 threads: int = 8, faults: dict | None = None, variant: str = "default", name: str = "studio-app",
                 **options):
        self.kind = name  # one per frontend pod: studio-app, studio-app-1, ...
        super().__init__(root, port, dsn=dsn, api_token=api_token, workers=workers, threads=threads,
                         faults=dict(faults or {}), variant=variant, name=name, **options)
        self.variant = variant
        self.dsn = dsn
        self.api_token = api_token
        self.workers = workers
        self.threads = threads
        self.faults: dict = dict(faults or {})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    def write_state(self) -> None:
        from ..variants import get

        write_json_atomic(self.state_file, {"dsn": self.dsn, "api_token": self.api_token,
                                            "login_html": get(self.variant).login_html, **self.faults})
        self.options["faults"] = dict(self.faults)

    # faults ---------------------------------------------------------------
    def set_fault(self, **faults) -> None:
        """``slow_s=4`` (every request sleeps), ``error=True`` (every request 500s), ``healthz_error=True``,
        ``probers={...}`` (prober figures). Takes effect on the next request: the app rereads the file."""
        self.faults.update(faults)
        self.write_state()

    def clear_faults(self) -> None:
        self.faults = {}
        self.write_state()

    # lifecycle ------------------------------------------------------------
    def command(self) -> list[str]:
        return [sys.executable, "-m", "gunicorn", "studiodoctor.lab.servers.studio_app:application",
                "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers), "--threads", str(self.threads),
                "--worker-class", "gthread", "--timeout", "4000", "--graceful-timeout", "2", "--preload",
                "--access-logfile", "-", "--error-logfile", "-", "--log-level", "info"]

    @property
    def method_logs(self) -> list[Path]:
        return [self.log]  # gunicorn's access log (--access-logfile -), combined format

    def start(self, timeout: float = 20.0) -> "StudioApp":
        self.write_state()
        self.pid = self.spawn(self.command(), env={STATE_ENV: str(self.state_file)})
        # gunicorn binds before its workers have booted: ready is a worker answering, not the port
        wait_for_port(self.port, timeout, pid=self.pid, log=self.log)
        wait_until(self._answers, timeout, f"gunicorn on {self.address} has no worker answering")
        return self

    def _answers(self) -> bool:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.url}/stealthz", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # a worker answered (a fault may make it 500)
        except OSError:
            if not self.alive():
                raise LabError(f"gunicorn on {self.address} exited (see {self.log})") from None
            return False

    def stop(self) -> None:
        pid = self.pid
        stop_pid(pid, signal.SIGINT, timeout=5.0)  # gunicorn: INT = quick shutdown
        if pid:
            try:  # workers are in the master's own session/process group (spawned with a new session)
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def profile(self) -> dict:
        app = {"url": self.url}
        if self.api_token:
            app["api_token"] = self.api_token
        return {"app": app}
