"""A real nginx on loopback with its own prefix (pid, logs and temp paths under the lab dir).

Callers give the ``http { ... }`` body (server blocks); this wraps it with the paths nginx needs.

Reloads are awaited, not slept through: every config written carries a new *generation* that a control
server on its own loopback port answers (``GET /generation``), and :meth:`NginxServer.reload` returns
once (1) that port answers the new generation, so workers of the new config are serving, and (2) no
worker of the old config still holds a listening socket (nginx starts the new workers, then tells the
old ones to quit, and for a moment both accept connections). From then on every new connection, on
every port, is served by the new configuration."""

from __future__ import annotations

import os
import secrets
import subprocess
import urllib.request

from ..launcher import LabError, Launcher, free_port, require_binary, stop_pid, listening_sockets, wait_for_port, wait_until

_MAIN = """{prelude}worker_processes 1;
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
  server {{ listen 127.0.0.1:{control_port}; access_log off;
           location = /generation {{ default_type text/plain; return 200 "{generation}"; }} }}
{body}
}}
"""


def _children(pid: int) -> set[int]:
    """The PIDs whose parent is ``pid`` (nginx's workers and cache processes)."""
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.add(int(entry))
    return out


def _listening_inodes(ports: set[int]) -> set[str]:
    """Socket inodes of the TCP listeners on ``ports``."""
    return {inode for port, inode in listening_sockets() if port in ports}


def _holds_any(pid: int, inodes: set[str]) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False  # gone
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            return True
    return False


class NginxServer(Launcher):
    """nginx whose http body comes from ``http_body()`` (override) or the ``body`` option."""

    kind = "nginx"

    def __init__(self, root, port: int = 0, body: str = "", name: str = "nginx", **options):
        self.kind = name
        super().__init__(root, port, body=body, name=name, **options)
        self.body = body
        self.options.setdefault("control_port", free_port())
        self.generation = ""

    @property
    def conf(self):
        return self.dir / "nginx.conf"

    def http_body(self) -> str:
        return self.body

    @property
    def control_port(self) -> int:
        return int(self.options["control_port"])

    def listen_ports(self) -> set[int]:
        """Every port this nginx listens on (subclasses with more servers add theirs)."""
        return {self.port, self.control_port}

    def render(self, prelude: str = "") -> str:
        """The whole nginx.conf, with a fresh generation for the control server to answer."""
        self.generation = secrets.token_hex(6)
        return _MAIN.format(prelude=prelude, dir=self.dir, body=self.http_body(), control_port=self.control_port,
                            generation=self.generation)

    def write_config(self, prelude: str = "") -> None:
        for sub in ("logs", "tmp"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self.render(prelude))
        binary = require_binary("nginx", "nginx-light", "/usr/sbin/nginx")
        test = subprocess.run([binary, "-t", "-q", "-c", str(self.conf), "-p", str(self.dir)],
                              capture_output=True, text=True)
        if test.returncode != 0:
            lines = test.stderr.strip().splitlines()
            why = next((ln for ln in lines if "[emerg]" in ln), lines[0] if lines else f"exit {test.returncode}")
            raise LabError(f"nginx config rejected ({self.conf}): {why}")

    def command(self) -> list[str]:
        return [require_binary("nginx", "nginx-light", "/usr/sbin/nginx"), "-c", str(self.conf),
                "-p", str(self.dir)]

    @property
    def method_logs(self) -> list:
        return [self.dir / "logs" / "access.log"]  # the combined format quotes the request line

    def start(self, timeout: float = 15.0) -> "NginxServer":
        self.write_config()
        self.pid = self.spawn(self.command())
        wait_for_port(self.port, timeout, pid=self.pid, log=self.log)
        return self

    def served_generation(self) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.control_port}/generation", timeout=1) as resp:
                return resp.read().decode()
        except OSError:
            return ""

    def reload(self, timeout: float = 15.0) -> None:
        """Rewrite the config and reload it (faults and fixes); returns once only the new config serves."""
        import signal

        old_workers = _children(self.pid)
        self.write_config()
        os.kill(self.pid, signal.SIGHUP)
        wait_until(lambda: self.served_generation() == self.generation, timeout,
                   f"{self.kind}: nginx did not serve its new configuration")
        inodes = _listening_inodes(self.listen_ports())
        wait_until(lambda: not any(_holds_any(pid, inodes) for pid in old_workers), timeout,
                   f"{self.kind}: old nginx workers still accept connections")

    def stop(self) -> None:
        stop_pid(self.pid)
