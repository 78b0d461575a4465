"""Studio's own processes, from its source tree and venv (``studiodoctor.lab.studio_source``), run the way its
Makefile runs them in production:

- :class:`StudioGunicorn` (kind ``studio-app``): ``altprodserver``'s ``gunicorn contentcuration.wsgi:application
  --timeout=4000 --workers=3 --threads=5`` on a loopback port instead of 8081;
- :class:`StudioCelery` (kind ``celery``): ``prodceleryworkers``' ``celery -A contentcuration worker -l info
  --concurrency=3 --task-events`` (prefork: a publish runs in a pool child, which is what an OOM kill takes).

Both take ``src`` (the tree), ``python`` (its venv's) and ``env`` (:func:`studio_source.environment`), run from
``<src>/contentcuration`` and log to the launcher's log file. Faults are made on their processes and data,
never on their code (:mod:`studiodoctor.lab.studio_faults`).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from ..launcher import LabError, Launcher, log_size, stop_pid, wait_for_log_line, wait_for_port, wait_until


class _StudioProcess(Launcher):
    def __init__(self, root, port: int = 0, src: str = "", python: str = "", env: dict | None = None, **options):
        super().__init__(root, port, src=src, python=python, env=dict(env or {}), **options)
        if not (src and python):
            raise LabError(f"{self.kind}: Studio's source tree and venv python are required")
        self.src, self.python, self.env = Path(src), Path(python), dict(env or {})

    def spawn_studio(self, args: list[str]) -> int:
        self.dir.mkdir(parents=True, exist_ok=True)
        import subprocess

        with open(self.log, "ab") as log:
            proc = subprocess.Popen([str(self.python), "-m", *args], stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    env={**os.environ, **self.env}, cwd=self.src / "contentcuration")
        return proc.pid

    def stop(self) -> None:
        pid = self.pid
        stop_pid(pid, signal.SIGTERM, timeout=10.0)
        if pid:
            try:  # whatever is left of its session (pool children, gunicorn workers)
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


class StudioGunicorn(_StudioProcess):
    kind = "studio-app"

    def __init__(self, root, port: int = 0, workers: int = 3, threads: int = 5, api_token: str = "",
                 name: str = "studio-app", **options):
        self.kind = name  # one per frontend pod: studio-app, studio-app-1, ...
        super().__init__(root, port, workers=workers, threads=threads, api_token=api_token, name=name, **options)
        self.workers, self.threads, self.api_token = workers, threads, api_token

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def method_logs(self) -> list[Path]:
        return [self.log]

    def command(self) -> list[str]:
        return ["gunicorn", "contentcuration.wsgi:application", "--timeout=4000", f"--workers={self.workers}",
                f"--threads={self.threads}", f"--bind=127.0.0.1:{self.port}", "--access-logfile=-",
                "--error-logfile=-", "--log-level=info"]

    def start(self, timeout: float = 90.0) -> "StudioGunicorn":
        self.pid = self.spawn_studio(self.command())
        wait_for_port(self.port, timeout, pid=self.pid, log=self.log)
        wait_until(self._answers, timeout, f"Studio's gunicorn on {self.address}: no worker answers /stealthz")
        wait_until(self._warm, timeout, f"Studio's gunicorn on {self.address}: its workers are still cold")
        return self

    def _warm(self) -> bool:
        """Each gunicorn worker loads Django's URLconf, views and templates on its first requests (seconds
        each): ready is every worker answering fast, as a readiness probe's first period would leave them.
        Concurrent requests reach every worker; warm when a round answers /stealthz and the login page
        within a second each."""
        import time
        import urllib.error
        import urllib.request
        from concurrent.futures import ThreadPoolExecutor

        def get(path: str) -> float:
            t0 = time.monotonic()
            req = urllib.request.Request(self.url + path, headers={"User-Agent": "Studio-Internal-Prober"})
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    resp.read()
            except urllib.error.HTTPError:
                pass
            except OSError:
                return 99.0
            return time.monotonic() - t0

        paths = ["/stealthz", "/en/accounts/", "/healthz"] * (self.workers * self.threads)
        with ThreadPoolExecutor(max_workers=self.workers * self.threads) as pool:
            return max(pool.map(get, paths)) < 1.0

    def _answers(self) -> bool:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.url}/stealthz", timeout=5):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            if not self.alive():
                raise LabError(f"Studio's gunicorn on {self.address} exited (see {self.log})") from None
            return False

    def set_fault(self, **faults) -> None:
        raise LabError("the studio variant runs Studio's own code: its app is broken through its processes and "
                       "data, never by a switch in the code")

    def profile(self) -> dict:
        return {"app": {"url": self.url, **({"api_token": self.api_token} if self.api_token else {})}}


class StudioCelery(_StudioProcess):
    kind = "celery"

    def __init__(self, root, port: int = 0, concurrency: int = 3, name: str = "", **options):
        super().__init__(root, port, concurrency=concurrency, name=name, **options)
        self.concurrency = concurrency
        self.name = name or "studio-worker@lab"
        self.broker_url = f"redis://{self.env.get('CELERY_BROKER_ENDPOINT', '127.0.0.1:6379')}/" \
                          f"{self.env.get('CELERY_REDIS_DB', '0')}"

    def command(self) -> list[str]:
        return ["celery", "-A", "contentcuration", "worker", "-l", "info", f"--concurrency={self.concurrency}",
                "--task-events", "-n", self.name, f"--pidfile={self.pidfile}"]

    @property
    def pidfile(self):
        """Where the worker writes its process id (the Kubernetes stand-in reads it, as for the lab's worker)."""
        return self.dir / "worker.pid"

    def start(self, timeout: float = 90.0) -> "StudioCelery":
        offset = log_size(self.log)
        self.pid = self.spawn_studio(self.command())
        try:
            wait_for_log_line(self.log, offset, " ready.", self.pid, timeout, "Studio's celery worker")
        except LabError:
            self.stop()
            raise
        return self

    def stop(self, cold: bool = False) -> None:
        """SIGTERM: Celery's warm shutdown (the running task gets its soft-shutdown time); ``cold``: SIGQUIT."""
        pid = self.pid
        stop_pid(pid, signal.SIGQUIT if cold else signal.SIGTERM, timeout=35.0)
        if pid:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def profile(self) -> dict:
        return {"celery": {"broker_url": self.broker_url, "queues": ["celery"], "expected_workers": 1}}
