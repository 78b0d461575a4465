"""A real nginx on loopback with its own prefix (pid, logs and temp paths under the lab dir).

Callers give the ``http { ... }`` body (server blocks); this wraps it with the paths nginx needs."""

from __future__ import annotations

import subprocess

from .launcher import LabError, Launcher, require_binary, stop_pid, wait_for_port

_MAIN = """worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/logs/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log {dir}/logs/access.log;
  client_body_temp_path {dir}/tmp/body;
  proxy_temp_path {dir}/tmp/proxy;
  fastcgi_temp_path {dir}/tmp/fcgi;
  uwsgi_temp_path {dir}/tmp/uwsgi;
  scgi_temp_path {dir}/tmp/scgi;
  types {{ text/html html; text/css css; application/javascript js; image/png png; image/svg+xml svg;
          application/json json; application/octet-stream sqlite3; video/mp4 mp4; }}
  default_type application/octet-stream;
{body}
}}
"""


class NginxServer(Launcher):
    """nginx whose http body comes from ``http_body()`` (override) or the ``body`` option."""

    kind = "nginx"

    def __init__(self, root, port: int = 0, body: str = "", name: str = "nginx", **options):
        self.kind = name
        super().__init__(root, port, body=body, name=name, **options)
        self.body = body

    @property
    def conf(self):
        return self.dir / "nginx.conf"

    def http_body(self) -> str:
        return self.body

    def write_config(self) -> None:
        for sub in ("logs", "tmp"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(_MAIN.format(dir=self.dir, body=self.http_body()))
        binary = require_binary("nginx", "nginx-light", "/usr/sbin/nginx")
        test = subprocess.run([binary, "-t", "-q", "-c", str(self.conf), "-p", str(self.dir)],
                              capture_output=True, text=True)
        if test.returncode != 0:
            raise LabError(f"nginx config rejected: {test.stderr.strip().splitlines()[-1:]}")

    def command(self) -> list[str]:
        return [require_binary("nginx", "nginx-light", "/usr/sbin/nginx"), "-c", str(self.conf),
                "-p", str(self.dir)]

    def start(self, timeout: float = 15.0) -> "NginxServer":
        self.write_config()
        self.pid = self.spawn(self.command())
        wait_for_port(self.port, timeout, pid=self.pid, log=self.log)
        return self

    def reload(self) -> None:
        """Rewrite the config and reload it (faults and fixes)."""
        import os
        import signal
        import time

        self.write_config()
        os.kill(self.pid, signal.SIGHUP)
        time.sleep(0.3)  # nginx swaps workers asynchronously; no readiness signal exists for a reload

    def stop(self) -> None:
        stop_pid(self.pid)
