"""What each lab counterpart was asked: one JSON line per request (method, path), so a test can prove
that a run of the doctor only read (GET/HEAD/OPTIONS, and SelfSubjectAccessReview on Kubernetes).

A counterpart that receives HTTP calls ``MethodLog.beside(state_path, name).record(method, path)``;
real servers (nginx, traefik, gunicorn) write their own access logs, read with the same ``read``.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        seen = []
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            seen.append((str(entry.get("method", "")), str(entry.get("path", ""))))
        return seen

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
