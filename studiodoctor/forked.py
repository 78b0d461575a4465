"""The run on two cores: the checks behind the heaviest client libraries run in a forked child.

One interpreter runs one thread at a time, and a run's SDK imports are its longest serial work: on
loopback `diagnose 502` waited ~0.3 s for psycopg and ~0.2 s more for redis-py, one after the other,
while the HTTP checks ran beside them on the same lock. A command-line run that may (``ALLOWED``: the
console script's one-shot commands) forks once before any thread starts: the child imports psycopg and
redis-py and runs the checks that need them (``APART_SDKS``), the parent imports httpx and runs the rest,
on the machine's other core.

What the runner promises holds across the split: a group moves whole (a check with every check it
depends on or that depends on it, and every check of the same backend, so the per-backend caps and the
PostgreSQL pool stay per backend); both sides run ``runner.run_checks`` with the same per-check timeout and
the same run deadline; the total cap is shared out (``MAX_CONCURRENT`` in all); results come back as the
runner made them (pickled over a pipe, one per check, as each finishes, so the progress bar moves) and are
redacted where every result is, when the report is rendered. A check the child never reported (it died,
or overstayed the run's deadline and was killed) is an `error` that says so, never a guess.

No split when it could not pay or not be safe: another thread already runs (forking it is undefined), not
Linux, one usable core, or nothing (or everything) to move.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
import threading
import time
from typing import Callable

from .model import Reason, Result, error
from .registry import Check
from .runner import GRACE, MAX_CONCURRENT, _needs_skip, backend, deadline_of_run, run_checks, sdk_imports

# Set by the command line for its one-shot commands (cli.main): an in-process caller (tests, serve) never forks.
ALLOWED = False
# The client libraries whose checks run in the child: the two heaviest imports of a run (~0.1 CPU-s each),
# which no HTTP check needs.
APART_SDKS = frozenset({"psycopg", "redis"})
_FRAME = struct.Struct("!I")


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def can_fork() -> bool:
    return (ALLOWED and sys.platform.startswith("linux") and hasattr(os, "fork")
            and threading.active_count() == 1 and usable_cores() >= 2)


def split(checks: list[Check], profile=None) -> tuple[list[Check], list[Check]]:
    """(here, apart): the groups of ``checks`` (joined by a dependency either way, or by a backend) that use
    an SDK of ``APART_SDKS`` go apart, unless the profile leaves those checks unconfigured (they would only
    say `skip`); input order kept on both sides."""
    parent = {c.id: c.id for c in checks}

    def root(cid: str) -> str:
        while parent[cid] != cid:
            parent[cid] = parent[parent[cid]]
            cid = parent[cid]
        return cid

    def join(a: str, b: str) -> None:
        parent[root(a)] = root(b)

    first_of_backend: dict[str, str] = {}
    for chk in checks:
        join(chk.id, first_of_backend.setdefault(backend(chk), chk.id))
        for dep in chk.depends_on:
            if dep in parent:
                join(chk.id, dep)
    heavy = {root(c.id) for c in checks if APART_SDKS.intersection(sdk_imports(c))
             and (profile is None or _needs_skip(c, profile) is None)}
    apart = [c for c in checks if root(c.id) in heavy]
    return [c for c in checks if root(c.id) not in heavy], apart


def _send(fd: int, item) -> None:
    data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_FRAME.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _passable(res: Result) -> Result:
    """``res`` if it pickles, else with its evidence as text (a value only this process could hold)."""
    try:
        pickle.dumps(res, protocol=pickle.HIGHEST_PROTOCOL)
        return res
    except Exception:  # noqa: BLE001 - any object the evidence may hold
        res.evidence = {str(k): repr(v)[:300] for k, v in (res.evidence or {}).items()}
        res.metrics = []
        return res


def _child(fd: int, checks: list[Check], profile, kwargs: dict) -> None:
    """In the child: run ``checks``, write ("start", id) and ("done", result) frames, then leave at once
    (never the parent's atexit handlers or its buffered output)."""
    code = 0
    try:
        _send(fd, ("clock", time.monotonic()))
        results = run_checks(checks, profile, on_start=lambda chk: _send(fd, ("start", chk.id)),
                             on_done=lambda res: _send(fd, ("done", _passable(res))), **kwargs)
        _send(fd, ("end", len(results)))
    except BaseException:  # noqa: BLE001 - the parent reports every check it did not get
        code = 1
    finally:
        os._exit(code)


class Child:
    """The forked child's side of a run, as the parent sees it: its results as they come."""

    def __init__(self, pid: int, fd: int, checks: list[Check], started: float, deadline: float,
                 on_start: Callable | None, on_done: Callable | None):
        self.pid, self.fd, self.checks, self.started, self.deadline = pid, fd, checks, started, deadline
        self.on_start, self.on_done = on_start, on_done
        self.results: dict[str, Result] = {}
        self.offset_ms = 0.0
        self.reader = threading.Thread(target=self._read, daemon=True, name="forked-reader")
        self.reader.start()

    def _frames(self):
        buf = b""
        while True:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return
            buf += chunk
            while len(buf) >= _FRAME.size:
                size = _FRAME.unpack_from(buf)[0]
                if len(buf) < _FRAME.size + size:
                    break
                yield pickle.loads(buf[_FRAME.size:_FRAME.size + size])
                buf = buf[_FRAME.size + size:]

    def _read(self) -> None:
        by_id = {c.id: c for c in self.checks}
        try:
            for kind, value in self._frames():
                if kind == "clock":
                    self.offset_ms = (value - self.started) * 1000
                elif kind == "start" and self.on_start and value in by_id:
                    self.on_start(by_id[value])
                elif kind == "done":
                    if value.start_ms is not None:
                        value.start_ms += self.offset_ms
                    self.results[value.id] = value
                    if self.on_done:
                        self.on_done(value)
        except Exception:  # noqa: BLE001 - a torn frame: what is missing is reported below
            pass
        finally:
            os.close(self.fd)

    def collect(self) -> list[Result]:
        """Wait for the child until the run's deadline (and the runner's grace for abandoned checks), end it
        if it is still there, and return a result for every check given to it."""
        self.reader.join(max(0.0, self.deadline + 2 * GRACE - time.monotonic()))
        late = self.reader.is_alive()
        status = None
        if late:
            try:
                os.kill(self.pid, 9)
            except ProcessLookupError:
                pass
        try:
            status = os.waitpid(self.pid, 0)[1]
        except ChildProcessError:
            pass
        self.reader.join(1.0)
        out = []
        for chk in self.checks:
            res = self.results.get(chk.id)
            if res is None:
                why = ("the process running it overstayed the run's deadline and was ended" if late else
                       f"the process running it ended early (wait status {status})")
                res = error(f"not answered: {why}", reason=Reason.TIMEOUT if late else Reason.BUG)
                res.id, res.layer, res.title = chk.id, chk.layer, chk.title
                if self.on_done:
                    self.on_done(res)
            out.append(res)
        return out


def start(checks: list[Check], profile, *, timeout: float | None = None, run_deadline: float | None = None,
          max_concurrent: int = MAX_CONCURRENT, on_start=None, on_done=None,
          **kwargs) -> tuple[list[Check], Child | None, int]:
    """Fork the child for the checks that go apart, if the run can split: (the checks left here, the child
    or None, the concurrency cap left here). Call before any thread of the run starts."""
    if not can_fork():
        return checks, None, max_concurrent
    here, apart = split(checks, profile)
    if not here or not apart:
        return checks, None, max_concurrent
    share = max(1, min(len(apart), -(-max_concurrent * len(apart) // len(checks)), max_concurrent - 1))
    started = time.monotonic()
    deadline = deadline_of_run(started, float(timeout or profile.timeout), run_deadline, kwargs.get("run_timeout"))
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        return checks, None, max_concurrent
    if pid == 0:
        os.close(read_fd)
        _child(write_fd, apart, profile, dict(kwargs, timeout=timeout, run_deadline=deadline,
                                              max_concurrent=share))
    os.close(write_fd)
    return here, Child(pid, read_fd, apart, started, deadline, on_start, on_done), max_concurrent - share
