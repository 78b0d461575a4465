"""Base of every lab launcher: a real server process on a free loopback port, started and stopped
by PID, reconstructable from a state dict so that ``lab down`` works from another process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

POLL = 0.05  # seconds between two looks at a readiness signal (never a wait on its own)


class LabError(Exception):
    """A launcher could not start its server (one line; names the missing package if any)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_binary(name: str, package: str, *candidates: str) -> str:
    for cand in (name, *candidates):
        path = shutil.which(cand) or (cand if os.path.isabs(cand) and os.access(cand, os.X_OK) else None)
        if path:
            return path
    raise LabError(f"{name} not found: install it with `apt-get install -y {package}`")


def wait_until(ready: Callable[[], Any], timeout: float, what: str, interval: float = POLL):
    """Poll ``ready()`` until it returns something truthy (returned) or ``timeout`` seconds pass
    (LabError naming ``what``). ``ready`` may raise LabError to give up at once."""
    end = time.monotonic() + timeout
    while True:
        got = ready()
        if got:
            return got
        if time.monotonic() >= end:
            raise LabError(f"{what} after {timeout:g} s")
        time.sleep(interval)


def write_json_atomic(path: Path, data: Any) -> None:
    """Replace ``path`` with ``data`` as JSON in one step (a reader never sees half a file), with an
    mtime strictly after the previous version's: the stand-ins reload their state file when its mtime
    changes, and two writes within one clock tick would otherwise look like one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        before = path.stat().st_mtime_ns
    except OSError:
        before = 0
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
    st = path.stat()
    if st.st_mtime_ns <= before:
        os.utime(path, ns=(st.st_atime_ns, before + 1000))


def _log_tail(log: Path | None) -> str:
    lines = log.read_text(errors="replace").strip().splitlines()[-1:] if log and log.exists() else []
    return f": {lines[0]}" if lines else ""


def wait_for_port(port: int, timeout: float = 15.0, host: str = "127.0.0.1", pid: int | None = None,
                  log: Path | None = None) -> None:
    def listening() -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            if pid is not None and not pid_alive(pid):
                raise LabError(f"process {pid} exited before listening on {port}{_log_tail(log)}") from None
            return False

    wait_until(listening, timeout, f"nothing listening on {host}:{port}")


def listening_sockets() -> set[tuple[int, str]]:
    """(port, inode) of each TCP socket listening here, IPv4 and IPv6 (no connection made). Asked of the
    kernel over netlink (sock_diag, the interface of ``ss -tl``) for listeners only: the whole table of
    ``/proc/net/tcp`` (``tcp_sockets``) holds every TIME_WAIT connection too, ten thousand rows and 50-90 ms
    to read on a machine whose labs churn connections, which a poller every 100 ms cannot afford. Falls
    back to that table where netlink is refused (not Linux, a sandbox without sock_diag)."""
    try:
        return _netlink_listeners()
    except OSError:
        return {(local, inode) for local, _remote, state, inode in tcp_sockets() if state == "0A"}


# sock_diag (linux/sock_diag.h, linux/inet_diag.h): one dump request per address family, TCP listeners only
_NETLINK_SOCK_DIAG, _SOCK_DIAG_BY_FAMILY, _NLM_F_DUMP_REQUEST = 4, 20, 0x301
_NLMSG_ERROR, _NLMSG_DONE, _TCP_LISTEN = 2, 3, 10


def _netlink_listeners() -> set[tuple[int, str]]:
    import struct

    found: set[tuple[int, str]] = set()
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(2.0)
        for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), 1):
            # inet_diag_req_v2: family, protocol, ext, pad, states bitmask, then a zeroed inet_diag_sockid
            req = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 1 << _TCP_LISTEN) + bytes(48)
            nl.send(struct.pack("=IHHII", 16 + len(req), _SOCK_DIAG_BY_FAMILY, _NLM_F_DUMP_REQUEST, seq, 0) + req)
            while not _read_dump(nl.recv(1 << 16), found):
                pass
    return found


def _read_dump(data: bytes, found: set) -> bool:
    """Add the (port, inode) of each inet_diag_msg in one netlink datagram; True at the dump's end."""
    import struct

    at = 0
    while at + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, at)
        if length < 16:
            raise OSError("sock_diag answered a malformed message")
        if kind == _NLMSG_DONE:
            return True
        if kind == _NLMSG_ERROR:
            errno = -struct.unpack_from("=i", data, at + 16)[0]
            raise OSError(errno, f"sock_diag refused the dump: {os.strerror(errno)}")
        # inet_diag_msg: family, state, timer, retrans, sockid (sport big-endian first, 48 bytes), expires,
        # rqueue, wqueue, uid, inode
        port = struct.unpack_from(">H", data, at + 16 + 4)[0]
        inode = struct.unpack_from("=I", data, at + 16 + 68)[0]
        found.add((port, str(inode)))
        at += (length + 3) & ~3
    return False


def tcp_sockets():
    """(local port, remote port, state, inode) of each TCP socket here, IPv4 and IPv6, from the kernel's
    ``/proc/net/tcp{,6}`` (no connection made). State ``"0A"`` listens, ``"01"`` is established."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 9:
                yield int(cols[1].rsplit(":", 1)[1], 16), int(cols[2].rsplit(":", 1)[1], 16), cols[3], cols[9]


def log_size(log: Path) -> int:
    """Where a log ends now: what a process writes after this offset is its own (see wait_for_log_line)."""
    try:
        return log.stat().st_size
    except OSError:
        return 0


def wait_for_log_line(log: Path, offset: int, marker: str, pid: int | None, timeout: float, what: str) -> None:
    """Wait until ``marker`` shows in ``log`` after ``offset`` (a server's own readiness line); a LabError naming
    the last line when process ``pid`` exits first, or when ``timeout`` runs out."""
    def ready() -> bool:
        with open(log, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
        if marker in text:
            return True
        if not pid_alive(pid):
            tail = text.strip().splitlines()[-1:]
            raise LabError(f"{what} exited before it was ready" + (f": {tail[0]}" if tail else ""))
        return False

    wait_until(ready, timeout, f"{what} not ready (see {log})")


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child counts as dead
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                return fh.read().split()[2] != "Z"
        except OSError:
            return False


def stop_pid(pid: int | None, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    if not pid_alive(pid):
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    try:
        wait_until(lambda: not pid_alive(pid), timeout, f"process {pid} still running")
    except LabError:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Launcher:
    """One server. Subclasses set ``kind`` and implement ``command``/``profile``; many override start."""

    kind = ""
    host = "127.0.0.1"  # the address it listens on (start waits for it there)

    def __init__(self, root: Path | str, port: int = 0, **options: Any):
        self.root = Path(root)
        self.dir = self.root / self.kind
        self.port = port or free_port()
        self.pid: int | None = None
        self.options = options

    # state ---------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {"kind": self.kind, "root": str(self.root), "port": self.port, "pid": self.pid,
                "options": self.options}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "Launcher":
        obj = cls(state["root"], port=state["port"], **state.get("options", {}))
        obj.pid = state.get("pid")
        return obj

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log(self) -> Path:
        return self.dir / f"{self.kind}.log"

    @property
    def method_logs(self) -> list[Path]:
        """Where this counterpart records the method of every request it receives (its access log, or a
        :class:`~studiodoctor.lab.methodlog.MethodLog`), read by ``methodlog.read_methods``; none when it
        speaks no HTTP."""
        return []

    # lifecycle -----------------------------------------------------------
    def command(self) -> list[str]:
        raise NotImplementedError

    def spawn(self, cmd: list[str], env: dict | None = None, user: str | None = None) -> int:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env={**os.environ, **(env or {})}, user=user,
                                    cwd=self.dir)
        return proc.pid

    def start(self, timeout: float = 20.0) -> "Launcher":
        self.pid = self.spawn(self.command())
        wait_for_port(self.port, timeout, host=self.host, pid=self.pid, log=self.log)
        return self

    def stop(self) -> None:
        stop_pid(self.pid)

    def alive(self) -> bool:
        return pid_alive(self.pid)

    def profile(self) -> dict[str, Any]:
        """Sections of the ``lab`` profile that point at this server."""
        return {}

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
