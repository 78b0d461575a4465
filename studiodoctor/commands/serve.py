"""``studiodoctor serve``: a Prometheus exporter in the style of blackbox_exporter.

- ``/metrics``: the last results of a background smoke loop (every ``interval`` seconds), plus the
  exporter's own process metrics and counters;
- ``/probe?layer=redis[&layer=...][&profile=production]``: runs those layers' checks on demand within
  ``probe_budget`` seconds. One lock serialises every run (loop and probes: runs never overlap, so the
  stack never sees two of us at once) and answers are cached ``probe_cache`` seconds per
  (profile, layers), so a scrape storm costs one run;
- ``/report?layer=redis[&check=postgres.reachable][&profile=...]``: the same run as a ``studiodoctor.report/1``
  JSON document, read-only checks only, redacted: what a laptop asks the in-cluster doctor for, through
  the API server's service proxy (``studiodoctor.diagnosis.vantage``);
- any method but GET and HEAD: 405;
- ``/healthz``: 200 while the loop is alive and has finished a run recently, 503 otherwise;
- ``/``: the stack as a picture (the HTML format) from the last smoke run, reloading itself.

Memory stays bounded: only the last smoke report (as redacted data) and at most ``MAX_CACHED`` probe
answers are kept; nothing accumulates per run.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable, List, Optional
from urllib.parse import parse_qs, urlsplit

import typer

from ..engine import UsageError
from ..model import READ_ONLY
from ..render import prometheus
from ..secrets import Redactor
from .common import CliError, ConfigOpt, ProfileOpt, load_profile, one_line

if TYPE_CHECKING:
    from http.server import ThreadingHTTPServer

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_CACHED = 64

app = typer.Typer()


def not_read_only(chk):
    """The `skip` a check that is not read-only gets from ``/report``: it is never run on a caller's behalf."""
    from ..model import Reason, skip

    res = skip(f"not run by the in-cluster doctor's /report: {chk.id} is {chk.safety}, and /report runs "
               "read-only checks only", reason=Reason.NOT_APPLICABLE,
               hint=f"run `studiodoctor check --check {chk.id}` where its endpoint is reachable")
    res.id, res.layer, res.title = chk.id, chk.layer, chk.title
    return res


def _default_registry():
    from ..registry import default_registry

    return default_registry.load_plugins()


class Exporter:
    """The state behind the HTTP endpoints; tests and the memory benchmark drive it in-process."""

    def __init__(self, profile, *, load_profile: Callable[[str], object] | None = None, registry=None,
                 layers=(), interval: float = 60.0, budget: float = 20.0, probe_budget: float = 10.0,
                 probe_cache: float = 30.0):
        from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector

        self.profile, self.registry, self.layers = profile, registry, list(layers)
        self.load_profile = load_profile or (lambda name: profile)
        self.interval, self.budget = interval, budget
        self.probe_budget, self.probe_cache = probe_budget, probe_cache
        self.run_lock = threading.Lock()      # one run at a time: loop and probes alike
        self.cache_lock = threading.Lock()
        self.cache: OrderedDict[tuple, tuple[float, bytes]] = OrderedDict()
        self.last: dict | None = None         # the last smoke report, redacted data
        self.last_finished = 0.0
        self.stop = threading.Event()
        self.ran = threading.Event()          # set after every smoke run (tests and readiness wait on it)
        self.thread: threading.Thread | None = None
        self.metrics = CollectorRegistry(auto_describe=False)
        self.metrics.register(prometheus.ReportCollector(lambda: [self.last] if self.last else []))
        ProcessCollector(registry=self.metrics)
        self.runs = Counter("studiodoctor_serve_runs", "Runs made by the exporter", ["kind"], registry=self.metrics)
        self.cache_hits = Counter("studiodoctor_serve_probe_cache_hits", "Probe answers served from the cache",
                                  registry=self.metrics)
        self.run_seconds = Gauge("studiodoctor_serve_last_smoke_duration_seconds", "Wall time of the last smoke run",
                                 registry=self.metrics)

    # -- runs ------------------------------------------------------------------------------------------
    def smoke_once(self) -> dict:
        from ..smoke import smoke

        with self.run_lock:
            t0 = time.monotonic()
            report = smoke(self.profile, self.layers, registry=self.registry, budget=self.budget)
            data = report.to_dict(Redactor(self.profile.secrets))
            self.last, self.last_finished = data, time.monotonic()
            self.run_seconds.set(self.last_finished - t0)
        self.runs.labels("smoke").inc()
        self.ran.set()
        return data

    def loop(self) -> None:
        from ..runner import preload
        from ..smoke import smoke_checks

        preload(smoke_checks(self.registry or _default_registry(), self.layers))  # once, outside every budget
        while not self.stop.is_set():
            try:
                self.smoke_once()
            except Exception as exc:  # noqa: BLE001 - the loop must survive; /healthz turns 503 if runs stop
                import sys

                print(f"studiodoctor serve: smoke run failed: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
            self.stop.wait(self.interval)

    def start(self) -> "Exporter":
        self.thread = threading.Thread(target=self.loop, name="studiodoctor-smoke-loop", daemon=True)
        self.thread.start()
        return self

    def healthy(self) -> tuple[bool, str]:
        if self.thread is None or not self.thread.is_alive():
            return False, "the smoke loop is not running"
        if not self.last_finished:
            return True, "starting: no smoke run finished yet"
        age = time.monotonic() - self.last_finished
        if age > 3 * self.interval + self.budget:
            return False, f"the last smoke run finished {age:.0f} s ago (interval {self.interval:g} s)"
        return True, f"ok: last smoke run {age:.0f} s ago"

    def probe(self, layers: list[str], profile_name: str | None) -> bytes:
        """The metrics of a run of ``layers``' checks, from the cache when fresh."""
        from prometheus_client import generate_latest

        if not layers:
            raise UsageError("say which layer to probe: /probe?layer=redis")

        def metrics(data: dict) -> bytes:
            return generate_latest(prometheus.registry_for(lambda: [data]))

        return self._run("probe", layers, (), profile_name, metrics)

    def report(self, layers: list[str], check_ids: list[str], profile_name: str | None) -> bytes:
        """``/report``: a ``studiodoctor.report/1`` JSON document of the chosen layers' or checks' results,
        for a laptop that cannot reach them (``studiodoctor.diagnosis.vantage``). Read-only checks only:
        one that is not (a Celery broadcast) is answered `skip` naming its safety class, never run.
        Redacted, bounded by ``probe_budget``, under the one-run lock and the cache like ``/probe``."""
        import json

        if not layers and not check_ids:
            raise UsageError("say which layers or checks to run: /report?layer=redis&check=postgres.reachable")
        return self._run("report", layers, check_ids, profile_name,
                         lambda data: json.dumps(data, default=str).encode(), read_only=True)

    def _run(self, kind: str, layers: list[str], check_ids, profile_name: str | None, render: Callable,
             read_only: bool = False) -> bytes:
        """One run of the chosen checks under the run lock, its rendered answer cached ``probe_cache`` s."""
        from ..engine import run, select_checks
        from ..runner import preload

        profile = self.load_profile(profile_name) if profile_name else self.profile
        key = (kind, profile.name, tuple(sorted(set(layers))), tuple(sorted(set(check_ids))))
        fresh = self._cached(key)
        if fresh is not None:
            return fresh
        chosen = select_checks(self.registry or _default_registry(), layers, check_ids)  # unknown names: 400
        refused = [c for c in chosen if read_only and c.safety != READ_ONLY]
        chosen = [c for c in chosen if c not in refused]
        if not self.run_lock.acquire(timeout=self.budget + self.probe_budget):
            raise TimeoutError("another run holds the lock")
        try:
            fresh = self._cached(key)  # a concurrent scrape may have run it while we waited
            if fresh is not None:
                return fresh
            preload(chosen)  # imports: not the stack's time
            started = time.monotonic()
            report = run(profile, chosen, timeout=min(profile.timeout, self.probe_budget),
                         run_deadline=started + self.probe_budget - 0.5)
            report.results += [not_read_only(c) for c in refused]
            body = render(report.to_dict(Redactor(profile.secrets)))
        finally:
            self.run_lock.release()
        self.runs.labels(kind).inc()
        with self.cache_lock:
            self.cache[key] = (time.monotonic(), body)
            self.cache.move_to_end(key)
            while len(self.cache) > MAX_CACHED:
                self.cache.popitem(last=False)
        return body

    def _cached(self, key) -> bytes | None:
        with self.cache_lock:
            hit = self.cache.get(key)
            if hit and time.monotonic() - hit[0] < self.probe_cache:
                self.cache_hits.inc()
                return hit[1]
        return None

    def page(self) -> str:
        """``/``: the stack as a picture from the last smoke run (the HTML format), reloading itself as often
        as the loop runs; before the first run, a page that says so and reloads in a few seconds."""
        from ..render.html import page, waiting_page

        refresh = max(5.0, min(self.interval, 300.0))
        if self.last is None:
            return waiting_page(3, f"profile {self.profile.name}: the first smoke run has not finished yet. "
                                   "Also here: /metrics, /probe?layer=..., /healthz.")
        return page(self.last, refresh=refresh, note=f"serve: the last smoke run of the loop (every "
                                                      f"{self.interval:g} s); this page reloads every {refresh:g} s. "
                                                      "Also here: /metrics, /probe?layer=..., /healthz.")

    def metrics_text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.metrics)


def handler_for(exporter: Exporter):
    from http.server import BaseHTTPRequestHandler  # here: `studiodoctor --help` need not import it

    class Handler(BaseHTTPRequestHandler):
        server_version = "studiodoctor"

        def log_message(self, *args):  # quiet: one scrape every few seconds is not news
            pass

        def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8", **headers) -> None:
            self.send_response(code)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self):
            url = urlsplit(self.path)
            try:
                if url.path == "/metrics":
                    return self._send(200, exporter.metrics_text(), CONTENT_TYPE)
                if url.path == "/probe":
                    query = parse_qs(url.query)
                    layers = [x for v in query.get("layer", []) for x in v.split(",") if x]
                    profile = (query.get("profile") or [None])[0]
                    return self._send(200, exporter.probe(layers, profile), CONTENT_TYPE)
                if url.path == "/report":
                    query = parse_qs(url.query)
                    layers, checks = ([x for v in query.get(k, []) for x in v.split(",") if x] for k in ("layer", "check"))
                    profile = (query.get("profile") or [None])[0]
                    return self._send(200, exporter.report(layers, checks, profile), "application/json")
                if url.path == "/healthz":
                    ok, text = exporter.healthy()
                    return self._send(200 if ok else 503, (text + "\n").encode())
                if url.path == "/":
                    return self._send(200, exporter.page().encode(), "text/html; charset=utf-8")
                return self._send(404, b"not found\n")
            except TimeoutError as exc:
                return self._send(503, f"busy: {exc}\n".encode())
            except Exception as exc:  # noqa: BLE001 - one redacted line, never a traceback
                from ..config import ConfigError

                code = 400 if isinstance(exc, (UsageError, ConfigError)) else 500
                return self._send(code, f"{one_line(exc)}\n".encode())

        do_HEAD = do_GET

        def refuse(self):
            """Every endpoint only reads: any method but GET and HEAD is 405."""
            self._send(405, f"{self.command} not allowed: studiodoctor serve answers GET and HEAD only\n".encode(),
                       Allow="GET, HEAD")

        do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = refuse

    return Handler


def make_server(exporter: Exporter, host: str, port: int) -> ThreadingHTTPServer:
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer((host, port), handler_for(exporter))
    server.daemon_threads = True
    return server


@app.command(epilog="\b\nExamples:\n  studiodoctor serve --profile production --listen 0.0.0.0:9842\n"
                    "  curl -s localhost:9842/metrics; curl -s 'localhost:9842/probe?layer=redis'\n"
                    "  curl -s 'localhost:9842/report?check=postgres.reachable&layer=redis'   # JSON, read-only checks")
def serve(
    profile: Optional[str] = ProfileOpt,
    config: Optional[str] = ConfigOpt,
    listen: str = typer.Option("127.0.0.1:9842", "--listen", help="HOST:PORT to listen on."),
    interval: float = typer.Option(60.0, "--interval", help="Seconds between two smoke runs of the background loop."),
    budget: float = typer.Option(20.0, "--budget", help="Seconds one smoke run may take."),
    probe_budget: float = typer.Option(10.0, "--probe-budget", help="Seconds one /probe run may take."),
    probe_cache: float = typer.Option(30.0, "--probe-cache", help="Seconds a /probe or /report answer is reused."),
    layer: Optional[List[str]] = typer.Option(None, "--layer", "-l", help="Only this layer's smoke checks."),
):
    """A Prometheus exporter: /metrics (background smoke loop), /probe?layer=..., /healthz; / shows the last run
    as a picture of the stack (the HTML format), reloading itself; /report?check=...&layer=... answers a run of
    read-only checks as JSON (studiodoctor.report/1): the in-cluster doctor a laptop asks. GET and HEAD only."""
    from ..engine import select_checks
    from ..registry import default_registry

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise CliError(f"--listen {listen!r}: expected HOST:PORT")
    for name, value in (("--interval", interval), ("--budget", budget), ("--probe-budget", probe_budget)):
        if value < 3:
            raise CliError(f"{name} must be at least 3 s")
    prof = load_profile(profile, config)
    registry = default_registry.load_plugins()
    select_checks(registry, layer or [], [])
    exporter = Exporter(prof, load_profile=lambda name: load_profile(name, config), registry=registry,
                        layers=layer or [], interval=interval, budget=budget,
                        probe_budget=probe_budget, probe_cache=probe_cache)
    try:
        server = make_server(exporter, host.strip("[]"), int(port))
    except OSError as exc:
        raise CliError(f"--listen {listen}: {exc.strerror or exc}") from None
    exporter.start()
    typer.echo(f"studiodoctor serve: profile {prof.name}, http://{listen}/metrics", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        exporter.stop.set()
        server.server_close()
