"""What each lab counterpart was asked: one JSON line per request (method, path), so a test can prove
that a run of the doctor only read (GET/HEAD/OPTIONS, and SelfSubjectAccessReview on Kubernetes).

A stand-in that receives HTTP calls ``MethodLog.beside(state_path, name).record(method, path)``; real
servers write their own access logs in a format that records the method (nginx's and gunicorn's
combined format, fake-gcs-server's log, Traefik's JSON access log). :func:`read_methods` reads any of
them; every launcher lists its logs in ``Launcher.method_logs``.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# the request line as a combined access log quotes it: "GET /path HTTP/1.1" (nginx, gunicorn,
# fake-gcs-server, Python's http.server); a JSON line: ours {"method","path"}, Traefik's RequestMethod/Path
_REQUEST_LINE = re.compile(r'"([A-Z]+) (\S+) HTTP/[0-9.]+\\?"')


def parse_line(line: str) -> tuple[str, str] | None:
    """(method, path) of one access-log line of any of the lab's formats, or None for another line."""
    line = line.strip()
    if line.startswith("{"):
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if isinstance(entry, dict):
            method = entry.get("method") or entry.get("RequestMethod")
            path = entry.get("path") or entry.get("RequestPath") or ""
            if method:
                return str(method), str(path).split("?", 1)[0]
    match = _REQUEST_LINE.search(line)
    if match:
        return match.group(1), match.group(2).split("?", 1)[0]
    return None


def read_methods(path: Path | str, start: int = 0) -> list[tuple[str, str]]:
    """(method, path) of every request a log records from byte offset ``start``; none when it does not exist."""
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            text = fh.read().decode(errors="replace")
    except FileNotFoundError:
        return []
    return [seen for seen in map(parse_line, text.splitlines()) if seen]


def log_size(path: Path | str) -> int:
    """Where a log ends now (the ``start`` of :func:`read_methods` for what comes next)."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


class MethodLog:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    @classmethod
    def beside(cls, state_path: Path | str, name: str) -> "MethodLog":
        """The log of counterpart ``name``, in the folder of its state file: ``<name>.requests.jsonl``."""
        return cls(Path(state_path).with_name(f"{name}.requests.jsonl"))

    def record(self, method: str, path: str) -> None:
        line = json.dumps({"method": method, "path": path.split("?", 1)[0]}) + "\n"
        with self._lock:  # one write per line with O_APPEND: lines from processes never interleave
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)

    def read(self) -> list[tuple[str, str]]:
        """(method, path) of every request recorded so far; none when the log does not exist."""
        return read_methods(self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
