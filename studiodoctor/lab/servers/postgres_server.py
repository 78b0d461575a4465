"""A real PostgreSQL on loopback (initdb + postgres; as the ``postgres`` user when run as root).

Faults the lab can apply and revert:
- stopped: ``stop()`` / ``start()``                        -> postgres.reachable fail (connection refused)
- wrong password: ``dsn(password="wrong")``                -> postgres.reachable error, stage auth
- sessions idle in transaction: ``start_holder("idle-in-transaction")`` -> postgres.idle_in_transaction
- a waiting lock and a long query: ``start_holder("lock")`` -> postgres.locks / long_queries / idle_in_transaction
- connections near max_connections: ``PostgresServer(..., max_connections=10)`` and
  ``start_holder("connections", 8)``                        -> postgres.connections warn/fail
- ``stop_holders()`` reverts the holder faults (the holders are processes: they survive the CLI).
- a monitoring role: ``create_role(name, password, monitor=True)`` (pg_monitor + CONNECT only).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
from pathlib import Path

from ..launcher import LabError, Launcher, pid_alive, stop_pid, wait_for_port, wait_until

PG_BINDIRS = ["/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin"]


def pg_binary(name: str) -> str:
    for d in PG_BINDIRS:
        path = Path(d) / name
        if path.exists():
            return str(path)
    found = shutil.which(name)
    if found:
        return found
    raise LabError(f"{name} not found: install PostgreSQL with `apt-get install -y postgresql`")


def _traversable_by_others(path: Path) -> bool:
    """Can a non-root user (postgres) reach ``path``? pytest's /tmp/pytest-of-root is 0700, and other
    pytest sessions reset it to 0700 at any time, so changing its mode is no fix."""
    import stat

    for parent in [path, *path.parents]:
        try:
            mode = parent.stat().st_mode
        except FileNotFoundError:
            continue
        if not mode & stat.S_IXOTH:
            return False
    return True


def _external_dir(path: Path) -> Path:
    import hashlib
    import tempfile

    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"studiodoctor-pg-{digest}"


class PostgresServer(Launcher):
    kind = "postgres"

    def __init__(self, root, port: int = 0, password: str = "", dbname: str = "kolibri-studio",
                 max_connections: int = 100, settings: dict | None = None, holders: list | None = None,
                 tls: dict | None = None, **options):
        """``tls={"cert": path, "key": path, "ca": path}``: the server accepts TLS connections only
        (``hostssl`` in pg_hba.conf) and :meth:`dsn` asks for ``sslmode=verify-full`` against ``ca``."""
        password = password or secrets.token_hex(12)
        super().__init__(root, port, password=password, dbname=dbname, max_connections=max_connections,
                         settings=dict(settings or {}), holders=list(holders or []), tls=dict(tls or {}), **options)
        self.tls = self.options["tls"]
        self.settings = self.options["settings"]    # extra `-c name=value` server settings
        self.holders = self.options["holders"]      # PIDs of pg_hold processes (faults)
        self.password = password
        self.dbname = dbname
        self.max_connections = max_connections
        if "pgdir" not in self.options:
            # data, password file and socket live where the postgres user can reach them
            external = os.geteuid() == 0 and not _traversable_by_others(self.dir)
            self.options["pgdir"] = str(_external_dir(self.dir) if external else self.dir)
        self.pgdir = Path(self.options["pgdir"])

    @property
    def data(self) -> Path:
        return self.pgdir / "data"

    def _user(self) -> str | None:
        return "postgres" if os.geteuid() == 0 else None

    def _initdb(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pgdir.mkdir(parents=True, exist_ok=True)
        pwfile = self.pgdir / "pwfile"
        pwfile.write_text(self.password + "\n")
        user = self._user()
        if user:
            pw = pwd.getpwnam(user)
            for path in (self.root, self.dir, self.pgdir, pwfile):
                if path == self.root and path.stat().st_uid != 0:
                    continue
                os.chown(path, pw.pw_uid, pw.pw_gid)
            os.chmod(self.root, 0o755)
        if self.options.get("seed_data"):
            # a cached cluster (the studio variant's migrated template database): copied, not initdb'd
            shutil.copytree(self.options["seed_data"], self.data, symlinks=True)
            os.chmod(self.data, 0o700)
            if user:
                for dirpath, _dirs, files in os.walk(self.data):
                    os.chown(dirpath, pw.pw_uid, pw.pw_gid)
                    for name in files:
                        os.chown(os.path.join(dirpath, name), pw.pw_uid, pw.pw_gid)
            return
        cmd = [pg_binary("initdb"), "-D", str(self.data), "-U", "postgres", "--auth-local=trust",
               "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync"]
        proc = subprocess.run(cmd, capture_output=True, text=True, user=user)
        if proc.returncode != 0:
            raise LabError(f"initdb failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
        if self.tls:
            import re

            hba = self.data / "pg_hba.conf"
            hba.write_text(re.sub(r"(?m)^host(\s)", r"hostssl\1", hba.read_text()))

    def _tls_settings(self) -> list[str]:
        """The server certificate and key, copied where the postgres user owns them (the key 0600)."""
        if not self.tls:
            return []
        out = []
        for key in ("cert", "key"):
            dest = self.pgdir / f"server.{key}"
            shutil.copyfile(self.tls[key], dest)
            os.chmod(dest, 0o600)
            user = self._user()
            if user:
                pw = pwd.getpwnam(user)
                os.chown(dest, pw.pw_uid, pw.pw_gid)
            out += ["-c", f"ssl_{key}_file={dest}"]
        return ["-c", "ssl=on", *out]

    def start(self, timeout: float = 30.0) -> "PostgresServer":
        seeded = False
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
            seeded = bool(self.options.get("seed_data"))
        cmd = [pg_binary("postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.pgdir),
               "-c", "listen_addresses=127.0.0.1", "-c", f"max_connections={self.max_connections}",
               "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off"]
        for name, value in self.settings.items():
            cmd += ["-c", f"{name}={value}"]
        cmd += self._tls_settings()
        self.pid = self.spawn(cmd, user=self._user())
        wait_for_port(self.port, timeout, pid=self.pid, log=self.log)
        if seeded:
            self._set_password()
        self._ensure_database()
        return self

    def _set_password(self) -> None:
        """A copied cluster keeps the password it was built with: set this lab's, over the local socket."""
        import psycopg
        from psycopg import sql

        def set_it() -> bool:
            try:
                with psycopg.connect(host=str(self.pgdir), port=self.port, user="postgres", dbname="postgres",
                                     autocommit=True, connect_timeout=5) as conn:
                    conn.execute(sql.SQL("ALTER ROLE postgres PASSWORD {}").format(sql.Literal(self.password)))
                return True
            except psycopg.OperationalError as exc:
                if "starting up" not in str(exc):
                    raise
                return False

        wait_until(set_it, 30.0, "PostgreSQL still starting up")

    def stop(self, remove_data: bool | None = None) -> None:
        """Stop the server (and the fault holders). Data kept outside ``root`` (see ``pgdir``) is
        removed unless ``remove_data=False``; data under ``root`` is kept unless ``remove_data=True``."""
        import signal

        self.stop_holders()
        stop_pid(self.pid, signal.SIGINT)  # "fast" shutdown
        external = self.pgdir != self.dir
        if remove_data or (remove_data is None and external):
            shutil.rmtree(self.pgdir if external else self.data, ignore_errors=True)

    def dsn(self, dbname: str | None = None, user: str = "postgres", password: str | None = None) -> str:
        pw = self.password if password is None else password
        tls = f"?sslmode=verify-full&sslrootcert={self.tls['ca']}" if self.tls else ""
        return f"postgresql://{user}:{pw}@127.0.0.1:{self.port}/{dbname or self.dbname}{tls}"

    def connect(self, dbname: str | None = None, autocommit: bool = True):
        import psycopg

        return psycopg.connect(self.dsn(dbname), autocommit=autocommit, connect_timeout=5)

    def execute(self, sql: str, params=None, dbname: str | None = None) -> list[tuple]:
        with self.connect(dbname) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def _ensure_database(self) -> None:
        import psycopg

        def created() -> bool:
            try:
                with self.connect("postgres") as conn:
                    exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.dbname,)).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{self.dbname}"')
                return True
            except psycopg.OperationalError as exc:
                if "starting up" not in str(exc):
                    raise
                return False

        wait_until(created, 30.0, "PostgreSQL still starting up")

    def profile(self) -> dict:
        return {"postgres": {"dsn": self.dsn()}}

    # roles and faults ----------------------------------------------------------
    def create_role(self, name: str, password: str, monitor: bool = True) -> str:
        """A login role with CONNECT on the database and, when ``monitor``, only pg_monitor; returns its DSN."""
        from psycopg import sql

        with self.connect() as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name),
                                                                          sql.Literal(password)))
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(self.dbname),
                                                                               sql.Identifier(name)))
            if monitor:
                conn.execute(sql.SQL("GRANT pg_monitor TO {}").format(sql.Identifier(name)))
        return self.dsn(user=name, password=password)

    def start_holder(self, mode: str, n: int = 1, wait: float = 15.0, table: str = "") -> int:
        """Start a pg_hold process (see studiodoctor.lab.servers.pg_hold) and wait until its sessions exist."""
        import sys

        where = {"connections": "true", "idle-in-transaction": "state LIKE 'idle in transaction%%'",
                 "lock": "wait_event_type = 'Lock'"}[mode]
        before = self._held(where)
        argv = [sys.executable, "-m", "studiodoctor.lab.servers.pg_hold", mode, str(n)] + ([table] if table else [])
        pid = self.spawn(argv, env={"STUDIODOCTOR_HOLD_DSN": self.dsn()})
        self.holders.append(pid)
        want = before + (n if mode in ("connections", "lock") else 1)

        def held() -> bool:
            if self._held(where) >= want:
                return True
            if not pid_alive(pid):
                raise LabError(f"pg_hold {mode} exited early (see {self.log})")
            return False

        wait_until(held, wait, f"pg_hold {mode}: sessions not ready")
        return pid

    def _held(self, where: str = "true") -> int:
        from .pg_hold import APP

        return self.execute(f"SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND {where}",
                            (APP,))[0][0]

    def stop_holders(self) -> None:
        while self.holders:
            stop_pid(self.holders.pop())
